//! The brain's side of member control, shared by both runtimes: one pooled client carrying a
//! certificate of the cluster CA, issued again before it expires or when the CA changes.

use std::time::Instant;

use super::AgentClient;
use crate::tls::{brain_client, Authority, TlsError, LEAF_VALIDITY};

pub struct BrainClient {
    pub agents: AgentClient,
    renew_at: Instant,
    ca_pem: String,
}

impl BrainClient {
    /// A client with a fresh certificate of `authority` naming the brain of `cluster`.
    pub fn new(authority: &Authority, cluster: &str) -> Result<BrainClient, TlsError> {
        let (config, renew_in) = brain_client(authority, cluster, LEAF_VALIDITY)?;
        Ok(BrainClient {
            agents: AgentClient::new(config),
            renew_at: Instant::now() + renew_in,
            ca_pem: authority.cert_pem().to_string(),
        })
    }

    /// Its certificate is not due for renewal yet.
    pub fn current(&self, now: Instant) -> bool {
        now < self.renew_at
    }

    /// Issue a new certificate when due or when `authority` is not the CA it was issued by
    /// (connections in the pool are dropped with the old one); true when it did.
    pub fn refresh(&mut self, authority: &Authority, cluster: &str) -> Result<bool, TlsError> {
        let now = Instant::now();
        if self.current(now) && self.ca_pem == authority.cert_pem() {
            return Ok(false);
        }
        let (config, renew_in) = brain_client(authority, cluster, LEAF_VALIDITY)?;
        self.agents.renew(config);
        self.renew_at = now + renew_in;
        self.ca_pem = authority.cert_pem().to_string();
        Ok(true)
    }
}
