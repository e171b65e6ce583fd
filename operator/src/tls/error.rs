use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("could not make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot read the certificate {what}: {reason}")]
    Parse { what: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl TlsError {
    pub(crate) fn parse(what: impl Into<String>, reason: impl ToString) -> TlsError {
        TlsError::Parse {
            what: what.into(),
            reason: reason.to_string(),
        }
    }
}
