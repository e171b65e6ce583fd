//! Fault suite on the local runtime (real PostgreSQL, real processes): one fault per test, never
//! two at once. Each prints a row and appends it to `target/faults-table.md`.
//!
//! `cargo test -p pgreplica-e2e --test faults` runs them all; add a name to run one.
//!
//! - [`stalls`]: agents, postmasters and a sync standby stopped or killed.
//! - [`data`]: data directories removed (with a stopped sync standby, a standby's, repeatedly).
//! - [`damaged`]: garbage in the lease, the desired-state and the state files.
//! - [`brain`]: the brain killed, in steady state and right after a data loss.
//! - [`delay`]: a member 20 s behind through a failover and a failback.
//! - [`disk`]: an asynchronous standby's disk full.
//! - [`ready`]: readiness means durable.
//! - [`rollout`]: parameters applied to a running cluster (reload, rolling restart), members
//!   added and removed (the primary too: moved by a switchover first).

mod brain;
mod damaged;
mod data;
mod delay;
mod disk;
mod ready;
mod rollout;
mod stalls;

use std::future::Future;
use std::time::{Duration, Instant};

use pgreplica_e2e::faults::case::{Case, OrFail};
use pgreplica_e2e::faults::load::Load;
use pgreplica_e2e::faults::procs::Frozen;
use pgreplica_e2e::faults::verdict::Finished;
use pgreplica_e2e::faults::{runtime, serial, Spec};

/// How long a stopped process stays stopped.
pub const HOLD: Duration = Duration::from_secs(15);
/// Healthy again at most this long after the fault is removed.
pub const BOUND: Duration = Duration::from_secs(120);

pub fn run<F: Future<Output = ()>>(case: impl FnOnce() -> F) {
    let _serial = serial();
    runtime().block_on(case());
}

pub async fn loaded(name: &'static str, spec: Spec) -> (Case, Load) {
    let case = Case::up(name, spec);
    let load = Load::start(&case).await.or_fail(&case);
    case.say(format!(
        "load running: {} commits acknowledged",
        load.ledger.acks().len()
    ));
    (case, load)
}

/// Keep `frozen` stopped for [`HOLD`], SIGCONT, then wait for the cluster to settle and check;
/// the case concludes (or adds its own requirements first).
pub async fn hold(
    case: &Case,
    load: Load,
    what: &str,
    frozen: Frozen,
    injected: Instant,
) -> Finished {
    case.say(format!("SIGSTOP {what} for {HOLD:?}"));
    tokio::time::sleep(HOLD).await;
    let gone = frozen.thaw().or_fail(case);
    let removed = Instant::now();
    case.say(format!("SIGCONT {what}{}", gone_note(&gone)));
    case.finish(load, injected, removed, BOUND).await
}

/// SIGSTOP `pid` for [`HOLD`], SIGCONT, then the usual end.
pub async fn hold_stopped(case: Case, load: Load, what: &str, pid: u32) {
    let injected = Instant::now();
    let frozen = case.freeze(&[pid]).or_fail(&case);
    let finished = hold(
        &case,
        load,
        &format!("{what} (pid {pid})"),
        frozen,
        injected,
    )
    .await;
    case.conclude(finished);
}

/// What SIGCONT found: stopped processes may be killed during the hold (a runtime that fences a
/// silent agent), which is the product's business, not a harness error.
pub fn gone_note(gone: &[u32]) -> String {
    if gone.is_empty() {
        String::new()
    } else {
        format!(" (already gone, killed during the hold: {gone:?})")
    }
}

/// A requirement on the write outage through rw, added to the case's failures.
pub fn outage_below(finished: &mut Finished, limit: Duration, why: &str) {
    let outage = finished.row.outage.unwrap_or(Duration::MAX);
    if outage >= limit {
        finished.failures.push(format!(
            "write outage {:.3} s is not below {:.0} s ({why})",
            outage.as_secs_f64(),
            limit.as_secs_f64()
        ));
    }
}
