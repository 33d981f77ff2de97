//! The domain, pure and synchronous: names, selectors, and the verdict on a NamespaceOffloading.
//! Shared by the webhook (`admission`) and the reconcile loop, so whatever one accepts the other
//! accepts too. No IO, no async.

pub mod field;
pub mod names;
pub mod node_index;
pub mod rules;
pub mod selector;
pub mod status;

pub use field::{FieldError, aggregate};
pub use names::RemoteNameError;
pub use rules::{
    Context, Generation, Verdict, VirtualNode, VirtualNodes, review_create, review_update,
    scheduling_annotation,
};
