//! AdmissionReview in, AdmissionResponse out. `review` is the envelope around the pure verdict
//! of [`crate::offloading`]; `http` is the axum router.

pub mod http;
pub mod review;
pub mod wire;

pub use http::{AdmissionState, MAX_BODY_BYTES, router};
pub use review::{Endpoint, Enforcement};
