# Two stages: build with cargo, run as non-root on a distroless base (no shell, read-only root).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin offloading-webhook

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/offloading-webhook /usr/local/bin/offloading-webhook
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/offloading-webhook"]
