//! What an agent reports about its member at `/status`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lsn::Lsn;

use super::desired::Desired;

/// The role PostgreSQL plays now, as the agent sees it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ActualRole {
    Primary,
    Standby,
    /// No PostgreSQL running (never started, stopped on purpose, or crashed).
    Stopped,
    /// Making a data directory: initdb, pg_basebackup or pg_rewind.
    Preparing,
}

/// Is the data directory fit to run?
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum DataHealth {
    Healthy,
    /// There is no data directory yet.
    Missing,
    /// The data directory vanished or was replaced while PostgreSQL ran.
    Lost {
        reason: String,
    },
    /// A data directory exists but cannot be used (not PostgreSQL, wrong system, half a clone).
    Invalid {
        reason: String,
    },
}

/// How the primary counts a standby for commits (`pg_stat_replication.sync_state`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SyncState {
    /// Confirms commits now.
    Sync,
    /// One of a quorum that confirms commits.
    Quorum,
    /// Would confirm commits if a sync standby went away.
    Potential,
    Async,
    /// Anything else PostgreSQL may say (an empty value while a standby connects).
    #[serde(other)]
    Other,
}

impl SyncState {
    /// From PostgreSQL's text.
    pub fn from_pg(text: &str) -> SyncState {
        match text {
            "sync" => SyncState::Sync,
            "quorum" => SyncState::Quorum,
            "potential" => SyncState::Potential,
            "async" => SyncState::Async,
            _ => SyncState::Other,
        }
    }

    /// PostgreSQL's word for it (what status shows).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Sync => "sync",
            SyncState::Quorum => "quorum",
            SyncState::Potential => "potential",
            SyncState::Async => "async",
            SyncState::Other => "",
        }
    }
}

/// A standby as the primary sees it in `pg_stat_replication`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StandbyView {
    pub name: String,
    pub state: String,
    pub sync_state: SyncState,
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    pub replay_lag_seconds: Option<f64>,
}

/// Where a standby's WAL receiver is connected, whatever its state (`pg_stat_wal_receiver`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WalSender {
    pub host: Option<String>,
    pub port: u16,
}

/// Why an agent stopped its own PostgreSQL to keep it from accepting writes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum FenceReason {
    /// The data directory vanished or was replaced under the running server.
    DataDirectoryLost,
    /// The lease could not be renewed before it could expire.
    LeaseNotRenewed,
    /// The server ran but answered nothing for too long.
    Unresponsive,
}

impl FenceReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FenceReason::DataDirectoryLost => "DataDirectoryLost",
            FenceReason::LeaseNotRenewed => "LeaseNotRenewed",
            FenceReason::Unresponsive => "Unresponsive",
        }
    }
}

fn yes() -> bool {
    true
}

/// The agent's whole report; the brain's only view of a member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberReport {
    pub member: String,
    /// The desired state the agent is converging to (as last received).
    pub desired: Option<Desired>,
    pub role: ActualRole,
    /// PostgreSQL accepts connections.
    pub running: bool,
    pub data: DataHealth,
    pub system_identifier: Option<u64>,
    pub timeline: Option<u32>,
    /// Primary: current WAL position.
    pub current_lsn: Option<Lsn>,
    /// Standby: WAL received and flushed from the upstream.
    pub received_lsn: Option<Lsn>,
    /// Standby: WAL replayed.
    pub replayed_lsn: Option<Lsn>,
    pub replay_lag_seconds: Option<f64>,
    /// Standby whose replay is paused: when the last transaction it applied committed (unix
    /// milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_at_ms: Option<u64>,
    /// Paused standby: tables a transaction it began replaying has locked (a DROP, TRUNCATE or
    /// ALTER not committed yet at the pause): reading them there waits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frozen_locks: Vec<String>,
    /// Standby: the member it streams from, when its WAL receiver is streaming.
    pub streaming_from: Option<String>,
    /// Standby: the server its WAL receiver is connected to, in any state (a receiver that is
    /// connected can confirm commits to that server).
    #[serde(default)]
    pub wal_sender: Option<WalSender>,
    /// A PostgreSQL server process exists, whether or not it answers (`running` means it
    /// answers). A server that does not answer may still confirm or acknowledge commits through
    /// connections it already has. Reports without the field are taken to have one.
    #[serde(default = "yes")]
    pub server_process: bool,
    /// Primary: every connected standby.
    #[serde(default)]
    pub standbys: Vec<StandbyView>,
    /// Settings in the configuration that PostgreSQL applies only at a restart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_restart: Vec<String>,
    /// Unix milliseconds when the running server was started (it accepted connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<u64>,
    /// Unix milliseconds when the running server last read its configuration (started with
    /// it, or reloaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reloaded_at_ms: Option<u64>,
    /// The parameters the running server has read (reloaded, or started with): until they are
    /// the spec's, `pending_restart` may not list everything yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_parameters: Option<BTreeMap<String, String>>,
    /// After a clean shutdown: the shutdown checkpoint's location (standbys must have it
    /// before a switchover promotes one of them).
    pub shutdown_checkpoint: Option<Lsn>,
    /// The desired state is reached.
    pub converged: bool,
    /// What the agent is doing, such as `cloning from a: 43%`.
    pub activity: String,
    pub last_error: Option<String>,
    /// PostgreSQL crashes since the agent started.
    pub crashes: u32,
    /// The agent holds the one-writer lease.
    pub holds_lease: bool,
    /// Unix milliseconds of this report.
    pub at_ms: u64,
    /// The agent fenced its server (set when it did; cleared when a server starts again).
    #[serde(default)]
    pub fenced: Option<FenceReason>,
    /// Counts the report's changes other than its numbers ([`MemberReport::same_but_numbers`]):
    /// a long poll (`GET /status?since=N`) returns as soon as it differs from `N`.
    #[serde(default)]
    pub revision: u64,
}

impl MemberReport {
    /// A fresh report for an agent that has not looked at anything yet.
    pub fn new(member: &str) -> Self {
        Self {
            member: member.to_string(),
            desired: None,
            role: ActualRole::Stopped,
            running: false,
            data: DataHealth::Missing,
            system_identifier: None,
            timeline: None,
            current_lsn: None,
            received_lsn: None,
            replayed_lsn: None,
            replay_lag_seconds: None,
            frozen_at_ms: None,
            frozen_locks: Vec::new(),
            streaming_from: None,
            wal_sender: None,
            server_process: false,
            standbys: Vec::new(),
            pending_restart: Vec::new(),
            applied_parameters: None,
            started_at_ms: None,
            reloaded_at_ms: None,
            shutdown_checkpoint: None,
            converged: false,
            activity: "starting".into(),
            last_error: None,
            crashes: 0,
            holds_lease: false,
            at_ms: 0,
            fenced: None,
            revision: 0,
        }
    }

    /// The same report but for what moves all the time: WAL positions, lag, its time and
    /// revision. A difference in anything else (role, health, upstream, lease, activity, errors)
    /// is news the brain must hear at once.
    pub fn same_but_numbers(&self, other: &MemberReport) -> bool {
        fn plain(r: &MemberReport) -> MemberReport {
            let mut r = r.clone();
            r.current_lsn = None;
            r.received_lsn = None;
            r.replayed_lsn = None;
            r.replay_lag_seconds = None;
            r.at_ms = 0;
            r.revision = 0;
            for s in &mut r.standbys {
                s.flush_lsn = None;
                s.replay_lsn = None;
                s.replay_lag_seconds = None;
            }
            r
        }
        plain(self) == plain(other)
    }

    pub fn is_running_primary(&self) -> bool {
        self.running && self.role == ActualRole::Primary && self.data == DataHealth::Healthy
    }

    pub fn is_streaming_from(&self, upstream: &str) -> bool {
        self.running
            && self.role == ActualRole::Standby
            && self.streaming_from.as_deref() == Some(upstream)
    }

    /// Nothing of this member can confirm a commit to anyone but `target` (listening at
    /// `host:port`): it runs no server; or it is a primary; or its WAL receiver is connected to
    /// the target; or it has none and its agent converged on streaming from the target (a
    /// receiver that is merely reconnecting could still be pointed at the old primary).
    pub fn follows_only(&self, target: &str, host: &str, port: u16) -> bool {
        if !self.running {
            // a server that does not answer may still stream: only no server at all is proof
            return !self.server_process;
        }
        if self.role == ActualRole::Primary {
            return true;
        }
        match &self.wal_sender {
            Some(s) => s.port == port && s.host.as_deref() == Some(host),
            None => {
                self.converged
                    && self.desired.as_ref().is_some_and(|d| {
                        matches!(&d.role, super::DesiredRole::Standby { upstream, .. } if upstream.member == target)
                    })
            }
        }
    }

    /// The agent knows its data is gone or unusable.
    pub fn data_lost(&self) -> Option<&str> {
        match &self.data {
            DataHealth::Lost { reason } => Some(reason),
            _ => None,
        }
    }
}

#[cfg(test)]
mod sync_state_tests {
    use super::SyncState;

    #[test]
    fn sync_states_read_as_postgres_writes_them() {
        for (text, state) in [
            ("sync", SyncState::Sync),
            ("quorum", SyncState::Quorum),
            ("potential", SyncState::Potential),
            ("async", SyncState::Async),
            ("", SyncState::Other),
            ("something new", SyncState::Other),
        ] {
            assert_eq!(SyncState::from_pg(text), state, "{text:?}");
            let json = format!("\"{text}\"");
            assert_eq!(
                serde_json::from_str::<SyncState>(&json).ok(),
                Some(state),
                "{json}"
            );
        }
        assert_eq!(SyncState::Sync.as_str(), "sync");
    }
}
