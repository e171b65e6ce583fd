//! Renews the lease while this member holds it; fences (stops PostgreSQL at once) before the
//! lease could expire if it cannot renew.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use crate::lease::{must_fence, renew_interval_ms, unix_now_ms, Lease};
use crate::postgres::kill_postgres_tree;

use super::shared::Shared;

/// Fence this long before the lease would expire.
pub const SAFETY_MARGIN_MS: u64 = 500;

pub async fn run(shared: Arc<Shared>, origin: Instant) {
    let every = Duration::from_millis(renew_interval_ms(shared.lease_duration_ms));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if !shared.holds_lease() {
            continue;
        }
        let sent_mono = origin.elapsed().as_millis() as u64;
        match shared.lease.renew(&shared.member, unix_now_ms()).await {
            Ok(true) => shared.last_renew_mono_ms.store(sent_mono, Ordering::SeqCst),
            Ok(false) => fence(&shared, "another member holds the lease"),
            Err(e) => {
                warn!(member = %shared.member, error = %e, "lease renewal failed");
                let last = shared.last_renew_mono_ms.load(Ordering::SeqCst);
                let now = origin.elapsed().as_millis() as u64;
                if must_fence(last, now, shared.lease_duration_ms, SAFETY_MARGIN_MS) {
                    fence(&shared, &format!("could not renew the lease in time: {e}"));
                }
            }
        }
    }
}

fn fence(shared: &Shared, why: &str) {
    error!(member = %shared.member, why, "fencing: stopping PostgreSQL so it cannot accept writes");
    shared.holds_lease.store(false, Ordering::SeqCst);
    let pid = shared.postmaster_pid.load(Ordering::SeqCst);
    if pid != 0 {
        if let Err(e) = kill_postgres_tree(pid) {
            warn!(member = %shared.member, error = %e, "could not signal postgres");
        }
    }
    shared.update_report(|r| {
        r.holds_lease = false;
        r.last_error = Some(format!("fenced: {why}"));
        r.fenced = Some(crate::member::FenceReason::LeaseNotRenewed);
    });
    shared.wake.notify_one();
}
