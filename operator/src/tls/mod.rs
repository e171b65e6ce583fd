//! The cluster's own certificate authority and what it issues (ADR 0005).
//!
//! Every cluster has a CA. It signs one server certificate per member (the agent's HTTPS port and
//! PostgreSQL's TLS) and the brain's client certificate; an agent accepts member control only over
//! a connection whose client certificate chains to the CA and names the brain.

mod authority;
mod error;
mod identity;
mod renewal;
mod rustls_config;
mod store;

#[cfg(test)]
mod tests;

pub use authority::{Authority, Issued, Usage};
pub use error::TlsError;
pub use identity::{agent_name, brain_name, peer_is};
pub use renewal::{verdict, CertFacts, Verdict};
pub use rustls_config::{
    client_config, server_config, stamp, verifying_client_config, ServerTls, Stamp,
};
pub use store::{brain_client, pair_usable, AgentTlsFiles, LocalTls};

use std::time::Duration;

/// How long the CA is valid: the data it protects lives for years.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a member's or the brain's certificate is valid; renewed with a third left.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
