//! The PKI of the certificates the webhook keeps itself: a CA, a serving certificate it signs, a
//! trust bundle of CAs, and what a certificate says about itself. The time is always a parameter
//! (Unix seconds), so every decision here is a pure function; only key generation is not.

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;

/// Certificates are dated this far back, so that a clock a little behind ours accepts them at once.
pub const BACKDATE_SECONDS: i64 = 300;
/// At most this many CAs in a trust bundle: a bundle only grows by rotations, each CA leaves when
/// it expires, and a bound keeps a bundle that many writers merged from growing without end.
pub const MAX_BUNDLE: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("could not generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the {what} cannot be used: {detail}")]
    Unusable { what: &'static str, detail: String },
}

/// A certificate and its private key, PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair").field("cert", &self.cert).finish_non_exhaustive()
    }
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub der: Vec<u8>,
    /// The raw subject and issuer names, to tell which CA signed a certificate.
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    /// DNS names and IP addresses it is valid for, as text.
    pub names: Vec<String>,
    pub is_ca: bool,
    /// The raw subject public key, to check that a key belongs to it.
    pub public_key: Vec<u8>,
}

impl CertInfo {
    /// When it was issued (its notBefore is [`BACKDATE_SECONDS`] earlier).
    pub fn issued_at(&self) -> i64 {
        self.not_before + BACKDATE_SECONDS
    }

    /// When it is due for renewal: once two thirds of its lifetime are gone (cert-manager's default).
    pub fn renew_at(&self) -> i64 {
        let life = (self.not_after - self.issued_at()).max(0);
        self.not_after - life / 3
    }

    pub fn expired(&self, now: i64) -> bool {
        now >= self.not_after
    }

    pub fn signed_by(&self, ca: &CertInfo) -> bool {
        self.issuer == ca.subject
    }
}

/// Parses one DER certificate.
pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => ip_text(ip),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(CertInfo {
        der: der.to_vec(),
        subject: cert.subject().as_raw().to_vec(),
        issuer: cert.issuer().as_raw().to_vec(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        names,
        is_ca: cert.is_ca(),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

fn ip_text(raw: &[u8]) -> Option<String> {
    match raw.len() {
        4 => Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(raw).ok()?).to_string()),
        16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(raw).ok()?).to_string()),
        _ => None,
    }
}

/// The DER of every certificate in a PEM text (anything that is not a certificate is skipped).
pub fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).map(|c| c.to_vec()).collect()
}

/// Parses a PEM certificate and checks that the PEM key belongs to it.
pub fn parse_pair(pair: &Pair, what: &'static str) -> Result<CertInfo, PkiError> {
    let unusable = |detail: String| PkiError::Unusable { what, detail };
    let der = pem_certificates(pair.cert.as_bytes())
        .into_iter()
        .next()
        .ok_or_else(|| unusable("no PEM certificate".into()))?;
    let info = parse(&der).map_err(unusable)?;
    let key = KeyPair::from_pem(&pair.key).map_err(|e| unusable(format!("its key: {e}")))?;
    if key.public_key_raw() != info.public_key.as_slice() {
        return Err(unusable("the key does not belong to the certificate".into()));
    }
    Ok(info)
}

/// One certificate as PEM, the same bytes for the same certificate whoever writes it.
pub fn to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn datetime(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// This machine's clock, in the seconds since the epoch every `now` here is given in.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A new CA valid for `validity` seconds from `now`. Its name carries the time it was made, so that
/// the certificates of two generations of CA name different issuers.
pub fn new_ca(now: i64, validity: i64) -> Result<Pair, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("offloading-webhook CA {now}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = datetime(now - BACKDATE_SECONDS);
    params.not_after = datetime(now + validity.max(1));
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Pair { cert: cert.pem(), key: key.serialize_pem() })
}

/// A serving certificate for `names` (DNS names or IP addresses) signed by `ca`, valid for
/// `validity` seconds from `now` but never beyond the CA itself.
pub fn new_serving(ca: &Pair, names: &[String], now: i64, validity: i64) -> Result<Pair, PkiError> {
    let ca_info = parse_pair(ca, "CA")?;
    let ca_key = KeyPair::from_pem(&ca.key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, ca_key)?;
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = datetime(now - BACKDATE_SECONDS);
    params.not_after = datetime((now + validity.max(1)).min(ca_info.not_after));
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pair { cert: cert.pem(), key: key.serialize_pem() })
}

/// A trust bundle: `mine` (kept whatever their age), then the unexpired certificates of `others`,
/// each once, oldest first, at most [`MAX_BUNDLE`] (the others that expire last are kept). Two
/// writers holding the same set write the same bytes.
pub fn merge_bundle(mine: &[CertInfo], others: &[CertInfo], now: i64) -> Vec<CertInfo> {
    let mut out: Vec<CertInfo> = Vec::new();
    for c in mine {
        if !out.iter().any(|o| o.der == c.der) {
            out.push(c.clone());
        }
    }
    let mut rest: Vec<&CertInfo> =
        others.iter().filter(|c| !c.expired(now) && !out.iter().any(|o| o.der == c.der)).collect();
    rest.sort_by(|a, b| b.not_after.cmp(&a.not_after).then_with(|| a.der.cmp(&b.der)));
    rest.dedup_by(|a, b| a.der == b.der);
    for c in rest {
        if out.len() >= MAX_BUNDLE {
            break;
        }
        out.push(c.clone());
    }
    out.sort_by(|a, b| a.not_before.cmp(&b.not_before).then_with(|| a.der.cmp(&b.der)));
    out
}

/// The PEM text of a bundle.
pub fn bundle_pem(certs: &[CertInfo]) -> String {
    certs.iter().map(|c| to_pem(&c.der)).collect()
}

/// The certificates of a PEM bundle that parse.
pub fn parse_bundle(pem: &[u8]) -> Vec<CertInfo> {
    pem_certificates(pem).iter().filter_map(|d| parse(d).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_serving_certificate_names_its_hosts_and_never_outlives_its_ca() {
        let ca = new_ca(NOW, 1000).unwrap();
        let names = vec!["webhook.ns.svc".to_string(), "127.0.0.1".to_string(), "::1".to_string()];
        let serving = new_serving(&ca, &names, NOW, 5000).unwrap();
        let (ca_info, info) = (parse_pair(&ca, "CA").unwrap(), parse_pair(&serving, "serving").unwrap());
        assert!(ca_info.is_ca && !info.is_ca);
        assert!(info.signed_by(&ca_info));
        assert_eq!(info.names, names);
        assert_eq!(info.not_after, ca_info.not_after, "capped at the CA's expiry");
        assert_eq!(ca_info.issued_at(), NOW);
        // 1000 s of life: renewed when a third is left.
        assert_eq!(ca_info.renew_at(), NOW + 1000 - 333);
    }

    #[test]
    fn two_generations_of_ca_are_told_apart_and_a_foreign_key_is_refused() {
        let (a, b) = (new_ca(NOW, 100).unwrap(), new_ca(NOW + 1, 100).unwrap());
        let serving = new_serving(&a, &["x.example".into()], NOW, 10).unwrap();
        let s = parse_pair(&serving, "serving").unwrap();
        assert!(s.signed_by(&parse_pair(&a, "CA").unwrap()));
        assert!(!s.signed_by(&parse_pair(&b, "CA").unwrap()));
        let mixed = Pair { cert: a.cert.clone(), key: b.key.clone() };
        let e = parse_pair(&mixed, "CA").unwrap_err().to_string();
        assert_eq!(e, "the CA cannot be used: the key does not belong to the certificate");
        let e = parse_pair(&Pair { cert: "garbage".into(), key: a.key }, "CA").unwrap_err().to_string();
        assert_eq!(e, "the CA cannot be used: no PEM certificate");
    }

    #[test]
    fn bundles_keep_mine_drop_the_expired_and_read_the_same_whoever_writes_them() {
        let info = |now, life| parse_pair(&new_ca(now, life).unwrap(), "CA").unwrap();
        let (old, expired, current, next) =
            (info(NOW - 50, 100), info(NOW - 500, 100), info(NOW, 100), info(NOW + 10, 100));
        let a = merge_bundle(&[current.clone(), next.clone()], &[old.clone(), expired.clone()], NOW);
        let b = merge_bundle(
            std::slice::from_ref(&next),
            &[expired, current.clone(), old.clone(), next.clone()],
            NOW,
        );
        assert_eq!(a, vec![old, current.clone(), next]);
        assert_eq!(bundle_pem(&a), bundle_pem(&b));
        assert_eq!(parse_bundle(bundle_pem(&a).as_bytes()), a);

        let many: Vec<CertInfo> = (0..12).map(|i| info(NOW + i, 100 + i)).collect();
        let bounded = merge_bundle(std::slice::from_ref(&current), &many, NOW);
        assert_eq!(bounded.len(), MAX_BUNDLE);
        assert!(bounded.contains(&current));
        assert!(bounded.contains(&many[11]) && !bounded.contains(&many[0]), "the last to expire are kept");
    }

    #[test]
    fn pem_is_canonical() {
        let ca = new_ca(NOW, 100).unwrap();
        let der = pem_certificates(ca.cert.as_bytes()).remove(0);
        assert_eq!(to_pem(&der), ca.cert.replace("\r\n", "\n"));
    }
}
