//! What the brain sees: the spec, its last status, every member as observed, the lease, the time.

use std::collections::BTreeMap;

use crate::api::{PgReplicaClusterSpec, PgReplicaClusterStatus};
use crate::member::MemberReport;

/// One member as the runtime could observe it.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// The agent answered.
    Reported(Box<MemberReport>),
    /// The agent did not answer (process gone, node down, network); `why` is for humans.
    Unknown { why: String },
}

impl Observation {
    pub fn report(&self) -> Option<&MemberReport> {
        match self {
            Observation::Reported(r) => Some(r),
            Observation::Unknown { .. } => None,
        }
    }
}

/// Where a member's PostgreSQL listens, as the runtime knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

/// The one-writer lease as of `now_ms`: `holder` is `None` once released or expired.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LeaseView {
    pub holder: Option<String>,
}

/// Everything `plan` decides from. No I/O happens behind any of it.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    pub cluster: &'a str,
    pub spec: &'a PgReplicaClusterSpec,
    pub generation: i64,
    pub status: &'a PgReplicaClusterStatus,
    pub members: &'a BTreeMap<String, Observation>,
    pub addresses: &'a BTreeMap<String, Address>,
    pub lease: &'a LeaseView,
    /// A switchover asked for by a person (`local switchover --to`, `kubectl pgrc switchover`).
    pub switchover_to: Option<&'a str>,
    /// Unix milliseconds.
    pub now_ms: u64,
}

impl<'a> Input<'a> {
    pub fn report(&self, member: &str) -> Option<&'a MemberReport> {
        self.members.get(member).and_then(Observation::report)
    }

    pub fn unknown_why(&self, member: &str) -> Option<&'a str> {
        match self.members.get(member) {
            Some(Observation::Unknown { why }) => Some(why),
            None => Some("no agent yet"),
            Some(Observation::Reported(_)) => None,
        }
    }
}
