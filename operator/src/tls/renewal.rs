//! When a certificate must be issued again: missing, from another CA, for other names, or with a
//! third of its life left. A pure decision over facts read from the certificate.

use std::collections::BTreeSet;
use std::net::IpAddr;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::{Authority, TlsError};

/// What matters about an issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    /// Validity, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// Its DNS names and IP addresses.
    pub names: BTreeSet<String>,
    /// Whether the CA's key signed it.
    pub from_ca: bool,
}

/// Keep the certificate, or issue it again and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Renew(String),
}

pub(super) fn first_der(pem: &str, what: &str) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::parse(what, e))
}

pub(super) fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, TlsError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| TlsError::parse(what, e))
}

impl CertFacts {
    /// Read `cert_pem` and check it against `ca`.
    pub fn read(cert_pem: &str, ca: &Authority) -> Result<CertFacts, TlsError> {
        let der = first_der(cert_pem, "certificate")?;
        let cert = parse(&der, "certificate")?;
        let ca_der = first_der(ca.cert_pem(), "CA certificate")?;
        let ca_cert = parse(&ca_der, "CA certificate")?;
        let from_ca = cert.verify_signature(Some(ca_cert.public_key())).is_ok();
        let mut names = BTreeSet::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => {
                        names.insert(dns.to_string());
                    }
                    GeneralName::IPAddress(bytes) => {
                        let ip = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            names.insert(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(CertFacts {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            names,
            from_ca,
        })
    }
}

/// Whether a certificate with `facts` (None: there is none, or it cannot be read) still serves
/// `wanted` names at `now` (seconds since the epoch). Renewal starts with a third of the life left.
pub fn verdict(facts: Option<&CertFacts>, wanted: &[String], now: i64) -> Verdict {
    let Some(facts) = facts else {
        return Verdict::Renew("there is no readable certificate".to_string());
    };
    if !facts.from_ca {
        return Verdict::Renew("it was not issued by the cluster CA".to_string());
    }
    let wanted: BTreeSet<String> = wanted.iter().cloned().collect();
    if facts.names != wanted {
        return Verdict::Renew(format!(
            "it names {:?}, the member needs {:?}",
            facts.names, wanted
        ));
    }
    let life = (facts.not_after - facts.not_before).max(0);
    let renew_at = facts.not_after - life / 3;
    if now >= renew_at {
        return Verdict::Renew(format!(
            "it expires at {} (renewal due from {renew_at})",
            facts.not_after
        ));
    }
    Verdict::Keep
}
