//! Renews the lease while this member holds it; fences (stops PostgreSQL at once) before the
//! lease could expire if it cannot renew.
//!
//! The fence has a deadline of its own: a renewal that never answers (a node cut off from the API
//! server, where the request waits on TCP timeouts for half a minute) is abandoned at the moment
//! the holder must have fenced, and a renewal that fails is tried again until then, not only at
//! the next renewal interval (which may come after the lease expired).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use crate::lease::{fence_at_ms, renew_interval_ms, unix_now_ms, Lease};
use crate::postgres::kill_postgres_tree;

use super::shared::Shared;

/// Fence this long before the lease would expire.
pub const SAFETY_MARGIN_MS: u64 = 500;

/// Pause between two attempts of a renewal that failed.
const RETRY_MS: u64 = 250;

pub async fn run(shared: Arc<Shared>, origin: Instant) {
    let every = Duration::from_millis(renew_interval_ms(shared.lease_duration_ms));
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mono_now = || origin.elapsed().as_millis() as u64;
    loop {
        interval.tick().await;
        if !shared.holds_lease() {
            continue;
        }
        let last = shared.last_renew_mono_ms.load(Ordering::SeqCst);
        let deadline = fence_at_ms(last, shared.lease_duration_ms, SAFETY_MARGIN_MS);
        let renewal = renew_before(deadline, mono_now, |now_ms| {
            shared.lease.renew(&shared.member, now_ms)
        });
        match renewal.await {
            Renewal::Renewed { sent_mono_ms } => {
                shared
                    .last_renew_mono_ms
                    .store(sent_mono_ms, Ordering::SeqCst);
            }
            Renewal::Lost => fence(&shared, "another member holds the lease"),
            Renewal::TooLate(why) => fence(
                &shared,
                &format!("could not renew the lease in time: {why}"),
            ),
        }
    }
}

/// What the attempts to renew before the fence's deadline came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Renewal {
    /// Renewed by the attempt sent at this monotonic time.
    Renewed { sent_mono_ms: u64 },
    /// Another member holds the lease.
    Lost,
    /// The deadline came first: the last attempt's error, or that it never answered.
    TooLate(String),
}

/// Try to renew until `deadline_mono_ms`: each attempt is abandoned when the deadline comes, a
/// failed one is retried every [`RETRY_MS`]. `renew` gets the wall-clock time of the attempt.
pub(crate) async fn renew_before<R, F>(
    deadline_mono_ms: u64,
    mono_now: impl Fn() -> u64,
    renew: R,
) -> Renewal
where
    R: Fn(u64) -> F,
    F: Future<Output = Result<bool, crate::lease::LeaseError>>,
{
    let mut why = String::from("no time left to try");
    loop {
        let sent = mono_now();
        let left = deadline_mono_ms.saturating_sub(sent);
        if left == 0 {
            return Renewal::TooLate(why);
        }
        match tokio::time::timeout(Duration::from_millis(left), renew(unix_now_ms())).await {
            Ok(Ok(true)) => return Renewal::Renewed { sent_mono_ms: sent },
            Ok(Ok(false)) => return Renewal::Lost,
            Ok(Err(e)) => {
                warn!(error = %e, "lease renewal failed; trying again until the fence's deadline");
                why = e.to_string();
            }
            Err(_) => {
                return Renewal::TooLate(format!("the lease store did not answer within {left} ms"))
            }
        }
        let left = deadline_mono_ms.saturating_sub(mono_now());
        tokio::time::sleep(Duration::from_millis(left.min(RETRY_MS))).await;
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

#[cfg(test)]
mod tests;
