//! The names certificates carry: who the brain is, who each agent is.

use rustls::pki_types::{CertificateDer, ServerName};

/// Names under this suffix exist only inside certificates; nothing resolves them through DNS.
const SUFFIX: &str = "pgreplica";

/// The name in the brain's client certificate; agents take member control only from it.
pub fn brain_name(cluster: &str) -> String {
    format!("brain.{cluster}.{SUFFIX}")
}

/// The name the brain expects in `member`'s server certificate.
pub fn agent_name(cluster: &str, member: &str) -> String {
    format!("{member}.{cluster}.{SUFFIX}")
}

/// Whether the end-entity certificate (already verified against the CA) names `name`.
pub fn peer_is(cert: &CertificateDer<'_>, name: &str) -> bool {
    let Ok(name) = ServerName::try_from(name) else {
        return false;
    };
    match webpki::EndEntityCert::try_from(cert) {
        Ok(cert) => cert.verify_is_valid_for_subject_name(&name).is_ok(),
        Err(_) => false,
    }
}
