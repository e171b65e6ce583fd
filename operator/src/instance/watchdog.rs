//! Notices within a tenth of a second that the data directory vanished or was replaced under a
//! running server, stops PostgreSQL at once (it would otherwise go on acknowledging commits into
//! unlinked files for seconds) and releases the lease in the same breath, so failover need not
//! wait for anything.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, warn};

use crate::lease::Lease;
use crate::postgres::kill_postgres_tree;

use super::datadir::loss_reason;
use super::shared::Shared;

pub const WATCH_INTERVAL: Duration = Duration::from_millis(100);

pub async fn run(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(WATCH_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        check(&shared).await;
    }
}

/// One look; public for tests.
pub async fn check(shared: &Shared) {
    let pid = shared.postmaster_pid.load(Ordering::SeqCst);
    let Some(started) = shared.started_on() else {
        return;
    };
    if pid == 0 || shared.data_lost().is_some() {
        return;
    }
    let Some(reason) = loss_reason(&shared.data_dir, started) else {
        return;
    };
    error!(member = %shared.member, %reason, pid, "data directory lost: stopping PostgreSQL immediately and releasing the lease");
    if let Err(e) = kill_postgres_tree(pid) {
        warn!(member = %shared.member, error = %e, "could not signal postgres");
    }
    shared.set_data_lost(Some(reason.clone()));
    if shared.holds_lease.swap(false, Ordering::SeqCst) {
        if let Err(e) = shared.lease.release(&shared.member).await {
            warn!(member = %shared.member, error = %e, "could not release the lease");
        }
    }
    shared.update_report(|r| {
        r.last_error = Some(format!("data directory lost: {reason}"));
        r.activity = "fenced: data directory lost".into();
        r.fenced = Some(crate::member::FenceReason::DataDirectoryLost);
        r.holds_lease = false;
    });
    shared.wake.notify_one();
}
