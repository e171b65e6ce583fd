//! What the scenarios need from a system under test. Every system runs the lab topology: a
//! (preferred primary), b (synchronous standby), c (asynchronous standby, 3 s apply delay).

use std::path::PathBuf;
use std::time::Duration;

/// A process whose memory we report.
pub struct Proc {
    /// e.g. "brain", "agent a", "patroni b", "etcd", "pgpool (all processes)"
    pub role: String,
    pub pids: Vec<u32>,
}

pub trait System: Send {
    /// Short name for tables: pgreplica, patroni, patroni-default, pgpool.
    fn name(&self) -> String;
    /// Bring up a fresh lab cluster (a primary, b sync, c async + delay); create the ledger table.
    fn up(&mut self) -> Result<(), String>;
    fn down(&mut self);
    /// Connection string the writers use (the system's write endpoint).
    fn write_conninfo(&self) -> String;
    fn password(&self) -> String;
    /// User and password for `pg_basebackup`.
    fn replication_login(&self) -> (String, String);
    fn member_port(&self, member: &str) -> u16;
    fn data_dir(&self, member: &str) -> PathBuf;
    /// The system's own idea of the primary.
    fn primary(&self) -> Option<String>;
    /// Whether the system has noticed that `member` (the primary) failed, as shown by its own
    /// status (our events, Patroni's /cluster, pgpool's SHOW pool_nodes). Called after
    /// `mark_before_failure`.
    fn noticed_loss(&self, member: &str) -> bool;
    /// Remember the current state so `noticed_loss` reports only new notices.
    fn mark_before_failure(&mut self) {}
    /// The member dies as a node would: its manager process and its PostgreSQL, SIGKILL.
    fn kill_member(&mut self, member: &str) -> Result<(), String>;
    /// A closure that kills whatever of `member` runs (manager and postgres), for keeping a node
    /// down while a supervisor would restart it.
    fn killer(&self, member: &str) -> Box<dyn Fn() + Send>;
    /// Whether something restarts a crashed member's manager at once (our supervisor, a kubelet).
    fn restarts_crashed_member(&self) -> bool {
        true
    }
    /// What a kubelet/systemd would do after `kill_member` (restart the manager), if the system
    /// does not do it itself.
    fn restart_member(&mut self, _member: &str) -> Result<(), String> {
        Ok(())
    }
    /// Start moving the primary to `to`. Err("not supported: ...") when the system cannot.
    fn switchover(&mut self, to: &str) -> Result<(), String>;
    /// Whether the system brings a destroyed member back by itself.
    fn recovers_destroyed_member(&self) -> bool;
    /// Whether the system moves the primary back to the preferred member by itself.
    fn automatic_failback(&self) -> bool;
    /// Wait until a is primary again with b and c streaming (calling `switchover` if the system
    /// has no automatic failback). Err when it cannot (the run then starts a fresh cluster).
    fn restore_topology(&mut self, timeout: Duration) -> Result<(), String>;
    /// Management processes (not PostgreSQL) for the footprint.
    fn processes(&self) -> Vec<Proc>;
    /// Size of the binaries the user installs besides PostgreSQL, in bytes, with a note.
    fn install_size(&self) -> (u64, String);
    /// Versions, for the report.
    fn version(&self) -> String;
    /// How it is configured, for the report ("recommended fast" or "default" and the settings).
    fn config_note(&self) -> String;
    /// Diagnostics on failure.
    fn diagnostics(&self) -> String {
        String::new()
    }
}
