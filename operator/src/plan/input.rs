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
    /// The lease could not be read (a damaged record, an unreachable store): why. The runtime
    /// then counts it as held by the primary of record for one lease duration, then as expired.
    pub unreadable: Option<String>,
}

impl LeaseView {
    /// The lease as the brain counts it, from one read of the store: the valid holder, or why it
    /// could not be read. An unreadable lease counts as held by the primary of record for one
    /// lease duration after it was first found unreadable (`unreadable_since`, kept by the
    /// runtime), then as expired — never as a permanent outage.
    pub fn counted(
        read: Result<Option<String>, String>,
        unreadable_since: &mut Option<u64>,
        primary: Option<&str>,
        duration_ms: u64,
        now_ms: u64,
    ) -> LeaseView {
        match read {
            Ok(holder) => {
                *unreadable_since = None;
                LeaseView {
                    holder,
                    unreadable: None,
                }
            }
            Err(why) => {
                let since = *unreadable_since.get_or_insert(now_ms);
                let within = now_ms.saturating_sub(since) < duration_ms;
                LeaseView {
                    holder: primary.filter(|_| within).map(String::from),
                    unreadable: Some(why),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LeaseView;

    #[test]
    fn an_unreadable_lease_counts_as_held_for_one_duration_then_expired() {
        let mut since = None;
        type Read = Result<Option<String>, String>;
        let cases: [(u64, Read, Option<&str>, bool); 6] = [
            (1_000, Ok(Some("a".into())), Some("a"), false),
            (2_000, Err("garbage".into()), Some("a"), true),
            (5_999, Err("garbage".into()), Some("a"), true),
            (6_000, Err("garbage".into()), None, true),
            (6_100, Ok(None), None, false),
            (6_200, Err("garbage".into()), Some("a"), true),
        ];
        for (now, read, holder, unreadable) in cases {
            let v = LeaseView::counted(read, &mut since, Some("a"), 4_000, now);
            assert_eq!(v.holder.as_deref(), holder, "at {now}");
            assert_eq!(v.unreadable.is_some(), unreadable, "at {now}");
        }
    }
}

/// A restart or reload asked for by a person: every member (of `members`, or all when empty)
/// whose server started (restart) or last read its configuration (reload) before `at_ms` does it
/// (a restart in its rollout turn, a reload at once).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestartRequest {
    #[serde(default)]
    pub members: Vec<String>,
    pub at_ms: u64,
}

impl RestartRequest {
    /// Does it still ask `member`, whose server started (or read its configuration) at
    /// `done_at_ms`?
    pub fn wants(&self, member: &str, done_at_ms: Option<u64>) -> bool {
        (self.members.is_empty() || self.members.iter().any(|m| m == member))
            && done_at_ms.is_none_or(|t| t < self.at_ms)
    }
}

/// Why a member's volume does not have the size the spec asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeNote {
    /// Asked for; the volume has not grown yet.
    Resizing(String),
    /// It cannot have that size (the storage class does not expand, a volume cannot shrink).
    Refused(String),
}

impl VolumeNote {
    pub fn text(&self) -> &str {
        match self {
            VolumeNote::Resizing(t) | VolumeNote::Refused(t) => t,
        }
    }
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
    /// A restart asked for by a person (`local restart`, `kubectl pgrc restart`).
    pub restart: Option<&'a RestartRequest>,
    /// A reload asked for by a person (`local reload`, `kubectl pgrc reload`).
    pub reload: Option<&'a RestartRequest>,
    /// Members whose running pod differs from the one the runtime would create now, and how
    /// (Kubernetes; none locally): replaced in their rollout turn.
    pub outdated: &'a BTreeMap<String, String>,
    /// Members whose volume does not have the size the spec asks, and why (Kubernetes: growing,
    /// or the storage class refuses; none locally).
    pub volumes: &'a BTreeMap<String, VolumeNote>,
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
