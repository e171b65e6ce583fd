//! pgreplica: a Kubernetes operator (and a local runtime) for PostgreSQL streaming-replication
//! clusters whose members each say how they replicate.

pub mod api;
pub mod brain;
pub mod cli;
pub mod instance;
pub mod lease;
pub mod member;
pub mod net;
pub mod password;
pub mod plan;
pub mod postgres;
pub mod procfs;
pub mod runtime;
pub mod tls;
