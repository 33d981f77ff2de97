# Two stages: build with cargo, run as non-root on a distroless base (no shell, read-only root).
# The dependencies are built in a layer of their own, from Cargo.toml and Cargo.lock alone, so an
# edit of the sources rebuilds the crate and nothing else.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Empty targets where the manifest names them: this build compiles only the dependencies.
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs benches/admission.rs \
 && cargo build --release --locked --bin offloading-webhook \
 && rm -rf src benches
COPY . .
# COPY keeps the files' own times, which may be older than the placeholders' build: touch them so
# cargo sees the crate changed.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin offloading-webhook \
 && strip target/release/offloading-webhook

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/offloading-webhook /usr/local/bin/offloading-webhook
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/offloading-webhook"]
