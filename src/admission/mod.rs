//! AdmissionReview in, AdmissionResponse out. `review` is the envelope around the pure verdict
//! of [`crate::offloading`]; `http` is the axum router.

pub mod budget;
pub mod http;
pub mod review;
pub mod wire;

pub use budget::Budget;
pub use http::{AdmissionState, MAX_BODY_BYTES, router, router_with};
pub use review::{Endpoint, Enforcement};
