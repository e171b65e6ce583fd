//! Errors of the Kubernetes runtime, each with a category for metrics and Event reasons.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum KubeError {
    #[error("the cluster object has no {0}")]
    MissingField(&'static str),
    #[error("building {what}: {source}")]
    Build {
        what: &'static str,
        #[source]
        source: super::builders::BuildError,
    },
    #[error("{action} {kind} {name}: {source}")]
    Api {
        action: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot reach the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    #[error("the PgReplicaCluster CRD is not installed: install the release file first: `kubectl apply --server-side -f pgreplica-<version>.yaml` (from release/build.sh) ({0})")]
    CrdMissing(#[source] kube::Error),
    #[error("{0}")]
    Other(String),
    /// A request naming something that is not there (exit code 2).
    #[error("{0}")]
    Invalid(String),
    /// The cluster turned the request down (exit code 3).
    #[error("{0}")]
    Refused(String),
    /// Waited as long as asked; the work may still go on (exit code 4).
    #[error("{0}")]
    TimedOut(String),
}

impl KubeError {
    /// A short word for metrics labels and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            KubeError::MissingField(_) => "InvalidObject",
            KubeError::Build { .. } => "BuildFailed",
            KubeError::Api { .. } => "ApiError",
            KubeError::Client(_) => "ClientError",
            KubeError::CrdMissing(_) => "CrdMissing",
            KubeError::Other(_) => "Other",
            KubeError::Invalid(_) => "Invalid",
            KubeError::Refused(_) => "Refused",
            KubeError::TimedOut(_) => "TimedOut",
        }
    }

    pub fn api(
        action: &'static str,
        kind: &'static str,
        name: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> KubeError {
        let name = name.into();
        move |source| KubeError::Api {
            action,
            kind,
            name,
            source,
        }
    }
}
