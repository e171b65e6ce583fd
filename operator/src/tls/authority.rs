//! Generating the CA and issuing certificates with it (rcgen).

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use time::OffsetDateTime;

use super::TlsError;

/// Tolerated clock difference between machines: certificates are valid from this long ago.
const BACKDATE: Duration = Duration::from_secs(300);

/// A cluster CA: its certificate and private key, PEM.
#[derive(Clone)]
pub struct Authority {
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// An agent's HTTPS port and PostgreSQL: TLS server only.
    Server,
    /// The brain: TLS client only, so a member's certificate can never command another member.
    Client,
}

/// An issued certificate and its new private key, PEM.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

fn window(validity: Duration) -> Result<(OffsetDateTime, OffsetDateTime), TlsError> {
    let now = SystemTime::now();
    let from = now.checked_sub(BACKDATE).unwrap_or(now);
    let until = now
        .checked_add(validity)
        .ok_or_else(|| TlsError::Config(format!("validity {validity:?} is too long")))?;
    Ok((OffsetDateTime::from(from), OffsetDateTime::from(until)))
}

impl Authority {
    /// A new CA for `cluster`, valid for `validity`.
    pub fn generate(cluster: &str, validity: Duration) -> Result<Authority, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("pgreplica {cluster} CA"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (params.not_before, params.not_after) = window(validity)?;
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A CA read back from its PEM certificate and key; fails if they do not belong together.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Authority, TlsError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| TlsError::parse("CA key", e))?;
        let der = super::renewal::first_der(cert_pem, "CA certificate")?;
        let parsed = super::renewal::parse(&der, "CA certificate")?;
        if *parsed.public_key().subject_public_key.data != *key.der_bytes() {
            return Err(TlsError::parse(
                "CA certificate",
                "its key is not the CA key stored with it",
            ));
        }
        Ok(Authority {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A certificate for `names` (DNS names or IP addresses; the first is also the common name).
    pub fn issue(
        &self,
        names: &[String],
        usage: Usage,
        validity: Duration,
    ) -> Result<Issued, TlsError> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(|e| TlsError::parse("CA key", e))?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        if let Some(first) = names.first() {
            dn.push(DnType::CommonName, first.clone());
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match usage {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = window(validity)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
