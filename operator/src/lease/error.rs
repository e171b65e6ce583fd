use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum LeaseError {
    #[error("a lease holder needs a non-empty name")]
    EmptyHolder,
    #[error("a lease needs a duration above zero")]
    ZeroDuration,
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} does not hold a lease record: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("could not encode the lease record: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("lease lock {path} stayed busy for {waited:?}")]
    Busy { path: PathBuf, waited: Duration },
    #[error("lease operation did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// For lease stores of other runtimes (such as a Kubernetes Lease object).
    #[error("{store} lease store failed: {source}")]
    Store {
        store: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
