//! State shared between the agent's loop, its data-directory watchdog, its lease keeper and its
//! HTTP face.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::{watch, Notify};
use tracing::info;

use crate::lease::AnyLease;
use crate::member::{Desired, MemberReport};

use super::datadir::Identity;

pub struct Shared {
    pub member: String,
    pub data_dir: PathBuf,
    pub lease: AnyLease,
    pub lease_duration_ms: u64,
    /// The current report; receivers are woken when it changes in more than its numbers.
    pub report: watch::Sender<MemberReport>,
    pub desired: watch::Sender<Option<Desired>>,
    /// The postmaster's pid while one runs (0 when none).
    pub postmaster_pid: AtomicU32,
    /// Identity of the data directory the running server was started on.
    pub started_on: Mutex<Option<Identity>>,
    /// Set by the watchdog when the data directory vanished under the server.
    pub data_lost: Mutex<Option<String>>,
    pub holds_lease: AtomicBool,
    /// Monotonic milliseconds (since agent start) of the last successful lease renewal.
    pub last_renew_mono_ms: AtomicU64,
    /// Unix milliseconds of the loop's last pass (for /healthz).
    pub last_tick_ms: AtomicU64,
    /// The loop is inside a step (a clone or a start may take minutes without a new pass).
    pub in_step: AtomicBool,
    /// A step that must not be abandoned halfway runs (a rewind).
    pub critical: AtomicBool,
    /// Wakes the loop at once (data loss, fencing).
    pub wake: Notify,
}

impl Shared {
    /// The state of a freshly started agent.
    pub fn new(
        member: &str,
        data_dir: PathBuf,
        lease: AnyLease,
        lease_duration_ms: u64,
        desired: watch::Sender<Option<Desired>>,
    ) -> Shared {
        Shared {
            member: member.to_string(),
            data_dir,
            lease,
            lease_duration_ms,
            report: watch::channel(MemberReport::new(member)).0,
            desired,
            postmaster_pid: AtomicU32::new(0),
            started_on: Mutex::new(None),
            data_lost: Mutex::new(None),
            holds_lease: AtomicBool::new(false),
            last_renew_mono_ms: AtomicU64::new(0),
            last_tick_ms: AtomicU64::new(crate::lease::unix_now_ms()),
            critical: AtomicBool::new(false),
            in_step: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    pub fn report(&self) -> MemberReport {
        self.report.borrow().clone()
    }

    /// Change the report; a change beyond its numbers gets a new revision and wakes long polls.
    pub fn update_report(&self, f: impl FnOnce(&mut MemberReport)) {
        self.report.send_if_modified(|r| {
            let before = r.clone();
            f(r);
            let news = !r.same_but_numbers(&before);
            if news {
                r.revision = before.revision + 1;
            }
            news
        });
    }

    /// A desired state from the brain: the loop takes it at its next pass, and the report says
    /// at once that the agent has it (a pass may be inside a clone for minutes; a report still
    /// naming the previous state would have the brain send this one again at every tick).
    /// Whether it differs from the one the agent had.
    pub fn receive_desired(&self, desired: Desired) -> bool {
        let changed = self.desired.send_if_modified(|current| {
            if current.as_ref() == Some(&desired) {
                false
            } else {
                info!(member = %self.member, what = %desired.summary(), reason = %desired.reason, "new desired state");
                *current = Some(desired.clone());
                true
            }
        });
        self.update_report(|r| r.desired = Some(desired));
        changed
    }

    pub fn set_activity(&self, activity: impl Into<String>) {
        let activity = activity.into();
        self.update_report(|r| r.activity = activity);
    }

    pub fn data_lost(&self) -> Option<String> {
        self.data_lost
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    pub fn set_data_lost(&self, reason: Option<String>) {
        let mut guard = self.data_lost.lock().unwrap_or_else(|e| e.into_inner());
        *guard = reason;
    }

    pub fn set_started_on(&self, identity: Option<Identity>, pid: u32) {
        let mut guard = self.started_on.lock().unwrap_or_else(|e| e.into_inner());
        *guard = identity;
        self.postmaster_pid.store(pid, Ordering::SeqCst);
    }

    pub fn started_on(&self) -> Option<Identity> {
        *self.started_on.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn holds_lease(&self) -> bool {
        self.holds_lease.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::DesiredRole;

    #[test]
    fn the_report_has_a_desired_state_as_soon_as_it_is_received() {
        let dir = std::env::temp_dir().join(format!("pgr-shared-{}", std::process::id()));
        let lease = AnyLease::File(crate::lease::FileLease::new(dir.join("lease")));
        let shared = Shared::new("a", dir.join("data"), lease, 4_000, watch::channel(None).0);
        let stopped = Desired::new(DesiredRole::Stopped, "switchover".into());
        let revision = shared.report().revision;

        // no pass of the loop runs here: the report alone says the agent has it
        assert!(shared.receive_desired(stopped.clone()));
        let report = shared.report();
        assert_eq!(report.desired.as_ref(), Some(&stopped));
        assert!(report.revision > revision, "long polls are woken");
        assert!(
            !shared.receive_desired(stopped),
            "the same again is no change"
        );
    }
}
