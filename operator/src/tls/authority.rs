//! The operator's own certificate authority: a long-lived CA and short-lived server
//! certificates it signs, renewed well before they expire. Pure: PEM text in, PEM text out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};

/// How long the CA is valid.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a server certificate is valid.
pub const CERT_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);
/// A server certificate is renewed once less than this is left.
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("certificate authority: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("certificate authority: the clock is outside the certificate date range")]
    Clock,
    #[error("certificate authority: no random serial number: {0}")]
    Random(String),
}

/// A CA: its certificate and key, PEM, and the cluster it was made for (its name is in the
/// CA's subject, which every certificate it signs names as issuer).
#[derive(Clone, PartialEq, Eq)]
pub struct Authority {
    pub cluster: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authority")
    }
}

/// A server certificate signed by an [`Authority`], with the time it stops being valid.
#[derive(Clone, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    /// Seconds since the Unix epoch.
    pub not_after: u64,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("not_after", &self.not_after)
            .finish()
    }
}

fn ca_params(cluster: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Lagless");
    dn.push(DnType::CommonName, format!("{cluster} CA"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn serial() -> Result<SerialNumber, IssueError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| IssueError::Random(e.to_string()))?;
    // Positive, as DER integers in serial numbers must be.
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

fn validity(
    now: SystemTime,
    lifetime: Duration,
) -> Result<(time::OffsetDateTime, u64), IssueError> {
    let since = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| IssueError::Clock)?;
    // An hour back, for peers whose clocks lag.
    let start = since.saturating_sub(Duration::from_secs(3600)).as_secs();
    let end = since.as_secs() + lifetime.as_secs();
    Ok((at(start)?, end))
}

fn at(secs: u64) -> Result<time::OffsetDateTime, IssueError> {
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).map_err(|_| IssueError::Clock)?)
        .map_err(|_| IssueError::Clock)
}

impl Authority {
    /// A new CA for `cluster`.
    pub fn create(cluster: &str, now: SystemTime) -> Result<Self, IssueError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params(cluster);
        let (start, end) = validity(now, CA_LIFETIME)?;
        params.not_before = start;
        params.not_after = at(end)?;
        params.serial_number = Some(serial()?);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cluster: cluster.to_string(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A server certificate for `names` (DNS names, wildcards or IP addresses), usable by
    /// servers and as a client certificate.
    pub fn issue(&self, names: &[String], now: SystemTime) -> Result<Issued, IssueError> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::new(ca_params(&self.cluster), ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Lagless");
        if let Some(first) = names.first() {
            dn.push(DnType::CommonName, first.clone());
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let (start, end) = validity(now, CERT_LIFETIME)?;
        params.not_before = start;
        params.not_after = at(end)?;
        params.serial_number = Some(serial()?);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: end,
        })
    }
}

/// Whether a certificate valid until `not_after` (Unix seconds) is due for renewal at `now`.
pub fn due(not_after: u64, now: SystemTime) -> bool {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(u64::MAX);
    now.saturating_add(RENEW_BEFORE.as_secs()) >= not_after
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    fn verify(authority: &Authority, issued: &Issued, name: &str) -> Result<(), String> {
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(authority.cert_pem.as_bytes())
            .map_err(|e| e.to_string())?;
        roots.add(ca).map_err(|e| e.to_string())?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|e| e.to_string())?;
        let leaf = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn issued_certificates_verify_for_their_names_only() {
        let now = SystemTime::now();
        let ca = Authority::create("db", now).expect("ca");
        let names = vec![
            "*.db-headless.ns.svc".to_string(),
            "db-proxy".to_string(),
            "127.0.0.1".to_string(),
        ];
        let issued = ca.issue(&names, now).expect("issue");
        verify(&ca, &issued, "db-0.db-headless.ns.svc").expect("wildcard member name");
        verify(&ca, &issued, "db-proxy").expect("service name");
        verify(&ca, &issued, "127.0.0.1").expect("address");
        assert!(verify(&ca, &issued, "db-0.other.ns.svc").is_err());
        // Another CA's certificate does not verify against this one.
        let other = Authority::create("db", now).expect("ca");
        let foreign = other.issue(&names, now).expect("issue");
        assert!(verify(&ca, &foreign, "db-proxy").is_err());
        // A renewed certificate from the same CA verifies, with a new key.
        let renewed = ca.issue(&names, now).expect("issue");
        assert_ne!(renewed.key_pem, issued.key_pem);
        verify(&ca, &renewed, "db-proxy").expect("renewed");
    }

    #[test]
    fn renewal_is_due_a_month_before_expiry() {
        let now = SystemTime::now();
        let ca = Authority::create("db", now).expect("ca");
        let issued = ca.issue(&["x".to_string()], now).expect("issue");
        assert!(!due(issued.not_after, now));
        assert!(!due(
            issued.not_after,
            now + Duration::from_secs(59 * 24 * 3600)
        ));
        assert!(due(
            issued.not_after,
            now + Duration::from_secs(61 * 24 * 3600)
        ));
    }
}
