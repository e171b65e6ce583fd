use thiserror::Error;

/// Why objects could not be built from a `PgReplicaCluster`. Objects read from the API server
/// always have what is needed; these guard against a cluster built by hand.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BuildError {
    #[error("the PgReplicaCluster has no metadata.name")]
    NoName,
    #[error("PgReplicaCluster {cluster} has no metadata.namespace")]
    NoNamespace { cluster: String },
    #[error(
        "PgReplicaCluster {cluster} has no metadata.uid, so objects built from it cannot name their owner"
    )]
    NoUid { cluster: String },
}
