//! Errors of the member agent.

use thiserror::Error;

use crate::lease::LeaseError;
use crate::postgres::PgError;

#[derive(Debug, Error)]
pub enum AgentError {
    #[error("agent configuration: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error("lease: {0}")]
    Lease(#[from] LeaseError),
    #[error("{0}")]
    Step(String),
}

impl AgentError {
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
        let what = what.into();
        move |source| AgentError::Io { what, source }
    }
}
