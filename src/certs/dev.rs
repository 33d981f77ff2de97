//! A development CA and a serving certificate for the webhook (`offloading-webhook certs`).
//! Re-running it with the same directory keeps the CA and issues a new serving certificate, so a
//! registered caBundle stays valid across rotations.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error(
        "no --dns name and no --ip address given: the certificate must name the host the API server calls"
    )]
    NoNames,
    #[error("could not generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("could not read the existing CA in {dir}: {source} (remove ca.crt and ca.key to make a new CA)")]
    ExistingCa { dir: PathBuf, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("could not write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// PEM text of a serving certificate, its key and the CA that signed it.
pub struct Issued {
    pub ca_cert: String,
    pub ca_key: String,
    pub cert: String,
    pub key: String,
}

/// Issues a serving certificate for `names` (DNS names or IP addresses), valid for `days`,
/// signed by the given CA (PEM cert and key) or by a new one.
pub fn issue(names: &[String], days: i64, ca: Option<(&str, &str)>) -> Result<Issued, CertsError> {
    if names.is_empty() {
        return Err(CertsError::NoNames);
    }
    let now = OffsetDateTime::now_utc();
    let (ca_cert, ca_key_pem, issuer) = match ca {
        Some((cert_pem, key_pem)) => {
            let key = KeyPair::from_pem(key_pem)?;
            let key_pem = key.serialize_pem();
            (cert_pem.to_owned(), key_pem, Issuer::from_ca_cert_pem(cert_pem, key)?)
        }
        None => {
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, "offloading-webhook dev CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_before = now - Duration::minutes(5);
            params.not_after = now + Duration::days(days.max(1) * 2);
            let key = KeyPair::generate()?;
            let cert = params.self_signed(&key)?;
            let key_pem = key.serialize_pem();
            (cert.pem(), key_pem, Issuer::new(params, key))
        }
    };
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(DnType::CommonName, names[0].clone());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(days.max(1));
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued { ca_cert, ca_key: ca_key_pem, cert: cert.pem(), key: key.serialize_pem() })
}

/// Writes `ca.crt`, `ca.key`, `tls.crt`, `tls.key` into `dir`, reusing a CA already there.
/// Each file is written whole and renamed into place, so a server polling them never reads half.
pub fn write_dir(dir: &Path, names: &[String], days: i64) -> Result<Issued, CertsError> {
    fs::create_dir_all(dir).map_err(|source| CertsError::Write { path: dir.to_owned(), source })?;
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let existing = match (fs::read_to_string(&ca_crt), fs::read_to_string(&ca_key)) {
        (Ok(c), Ok(k)) => Some((c, k)),
        _ => None,
    };
    let issued =
        issue(names, days, existing.as_ref().map(|(c, k)| (c.as_str(), k.as_str()))).map_err(|e| {
            match (e, &existing) {
                (CertsError::Generate(source), Some(_)) => {
                    CertsError::ExistingCa { dir: dir.to_owned(), source: Box::new(source) }
                }
                (e, _) => e,
            }
        })?;
    write_atomic(&ca_crt, &issued.ca_cert, false)?;
    write_atomic(&ca_key, &issued.ca_key, true)?;
    // Key first: a poller that sees the new cert with the old key rejects the pair and retries.
    write_atomic(&dir.join("tls.key"), &issued.key, true)?;
    write_atomic(&dir.join("tls.crt"), &issued.cert, false)?;
    Ok(issued)
}

fn write_atomic(path: &Path, content: &str, secret: bool) -> Result<(), CertsError> {
    let err = |source| CertsError::Write { path: path.to_owned(), source };
    let tmp = path.with_extension("tmp");
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(err)?;
    f.write_all(content.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_for_dns_and_ip_and_reuses_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let first = write_dir(dir.path(), &names, 30).unwrap();
        let second = write_dir(dir.path(), &names, 30).unwrap();
        assert_eq!(first.ca_cert, second.ca_cert);
        assert_ne!(first.cert, second.cert);
        assert!(matches!(issue(&[], 1, None), Err(CertsError::NoNames)));
    }
}
