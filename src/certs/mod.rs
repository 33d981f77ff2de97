//! Certificates: a development CA written to a directory (the `certs` command, [`dev`]), the PKI
//! of certificates the webhook keeps itself ([`pki`]), and the Secret the replicas keep them in,
//! renewed before they expire ([`managed`]).

pub mod dev;
pub mod managed;
pub mod pki;

pub use dev::{CertsError, Issued, issue, write_dir};
