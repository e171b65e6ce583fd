//! Fault suite on the local runtime (real PostgreSQL, real processes): one fault per test, never
//! two at once. Each prints a row and appends it to `target/faults-table.md`.
//!
//! `cargo test -p pgreplica-e2e --test faults` runs them all; add a name to run one.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use pgreplica_e2e::bench::procs::alive;
use pgreplica_e2e::faults::case::{Case, OrFail};
use pgreplica_e2e::faults::dirs::Untouched;
use pgreplica_e2e::faults::load::{sql, Load};
use pgreplica_e2e::faults::procs::{agent_pid, brain_pid, postmaster_pid, signal, until_gone};
use pgreplica_e2e::faults::table::Row;
use pgreplica_e2e::faults::{files, runtime, serial, Spec, PROBE_WRITER};
use pgreplica_e2e::ledger::Ack;

/// How long a stopped process stays stopped.
const HOLD: Duration = Duration::from_secs(15);
/// Healthy again at most this long after the fault is removed.
const BOUND: Duration = Duration::from_secs(120);

fn run<F: Future<Output = ()>>(case: impl FnOnce() -> F) {
    let _serial = serial();
    runtime().block_on(case());
}

async fn loaded(name: &'static str, spec: Spec) -> (Case, Load) {
    let case = Case::up(name, spec);
    let load = Load::start(&case).await.or_fail(&case);
    case.say(format!(
        "load running: {} commits acknowledged",
        load.ledger.acks().len()
    ));
    (case, load)
}

/// SIGSTOP `pid` for [`HOLD`], SIGCONT, then the usual end.
async fn hold_stopped(case: Case, load: Load, what: &str, pid: u32) {
    let injected = Instant::now();
    let frozen = case.freeze(&[pid]).or_fail(&case);
    case.say(format!("SIGSTOP {what} (pid {pid}) for {HOLD:?}"));
    tokio::time::sleep(HOLD).await;
    let gone = frozen.thaw().or_fail(&case);
    let removed = Instant::now();
    case.say(format!("SIGCONT {what}{}", gone_note(&gone)));
    let finished = case.finish(load, injected, removed, BOUND).await;
    case.conclude(finished);
}

/// What SIGCONT found: stopped processes may be killed during the hold (a runtime that fences a
/// silent agent), which is the product's business, not a harness error.
fn gone_note(gone: &[u32]) -> String {
    if gone.is_empty() {
        String::new()
    } else {
        format!(" (already gone, killed during the hold: {gone:?})")
    }
}

async fn agent_sigstop(name: &'static str, spec: Spec) {
    let (case, load) = loaded(name, spec).await;
    let primary = case.primary().or_fail(&case);
    let pid = agent_pid(case.dir(), &primary).or_fail(&case);
    hold_stopped(case, load, &format!("the agent of primary {primary}"), pid).await;
}

#[test]
fn agent_sigstop_two_sync_required() {
    run(|| agent_sigstop("agent_sigstop_two_sync_required", Spec::two_sync_required()));
}

#[test]
fn agent_sigstop_lab() {
    run(|| agent_sigstop("agent_sigstop_lab", Spec::lab()));
}

#[test]
fn postmaster_sigstop() {
    run(|| async {
        let (case, load) = loaded("postmaster_sigstop", Spec::lab()).await;
        let primary = case.primary().or_fail(&case);
        let pid = postmaster_pid(case.dir(), &primary).or_fail(&case);
        hold_stopped(
            case,
            load,
            &format!("the postmaster of primary {primary}"),
            pid,
        )
        .await;
    });
}

#[test]
fn agent_sigkill() {
    run(|| async {
        let (case, load) = loaded("agent_sigkill", Spec::lab()).await;
        let primary = case.primary().or_fail(&case);
        let pid = agent_pid(case.dir(), &primary).or_fail(&case);
        let injected = Instant::now();
        signal(pid, Signal::SIGKILL).or_fail(&case);
        until_gone(pid, Duration::from_secs(5)).await.or_fail(&case);
        case.say(format!(
            "SIGKILL the agent of primary {primary} (pid {pid})"
        ));
        let finished = case.finish(load, injected, injected, BOUND).await;
        case.conclude(finished);
    });
}

/// The sync standby stopped (agent and postmaster), then the primary's data directory deleted:
/// nothing may be promoted that lacks acknowledged commits, and no surviving data directory may be
/// touched while the cluster waits.
#[test]
fn double_failure_held() {
    run(|| async {
        let (case, load) = loaded("double_failure_held", Spec::lab()).await;
        let status = case.status().or_fail(&case);
        let primary = files::current_primary(&status)
            .ok_or("no primary".to_string())
            .or_fail(&case);
        let sync = files::members_where(&status, "syncState", "sync");
        let [sync] = sync.as_slice() else {
            case.fail(&format!("expected one sync standby, status says {sync:?}"));
        };
        let survivors: Vec<(String, PathBuf)> = case
            .cluster
            .member_names()
            .into_iter()
            .filter(|m| *m != primary)
            .map(|m| (m.clone(), case.cluster.data_dir(&m)))
            .collect();
        let pids = [
            agent_pid(case.dir(), sync).or_fail(&case),
            postmaster_pid(case.dir(), sync).or_fail(&case),
        ];
        let injected = Instant::now();
        let mut untouched = Untouched::remember(&survivors, injected).or_fail(&case);
        let frozen = case.freeze(&pids).or_fail(&case);
        case.say(format!(
            "SIGSTOP sync standby {sync}: agent and postmaster {pids:?}"
        ));
        let data = case.cluster.data_dir(&primary);
        std::fs::remove_dir_all(&data)
            .map_err(|e| format!("rm -rf {}: {e}", data.display()))
            .or_fail(&case);
        case.say(format!("rm -rf {}; holding 20 s", data.display()));
        let mut every = tokio::time::interval(Duration::from_millis(200));
        let hold_until = Instant::now() + Duration::from_secs(20);
        let mut checks = 0;
        while Instant::now() < hold_until {
            every.tick().await;
            untouched.check();
            checks += 1;
        }
        let gone = frozen.thaw().or_fail(&case);
        let removed = Instant::now();
        case.say(format!("SIGCONT {sync}{}", gone_note(&gone)));
        let mut finished = case.finish(load, injected, removed, BOUND).await;
        finished.failures.extend(untouched.failures(checks));
        case.conclude(finished);
    });
}

/// The lease file overwritten with garbage for 10 s: writes may stop for at most about one lease
/// (4 s locally), status must say the lease is unreadable, and the cluster must recover.
#[test]
fn garbage_lease() {
    run(|| async {
        let (case, load) = loaded("garbage_lease", Spec::lab()).await;
        let lease = files::lease_file(case.dir());
        let scratch = lease.with_extension("garbage");
        let injected = Instant::now();
        let mut every = tokio::time::interval(Duration::from_millis(100));
        let mut n: u32 = 0;
        while injected.elapsed() < Duration::from_secs(10) {
            every.tick().await;
            n += 1;
            let garbage = format!("\u{0}\u{7f}{{garbage {n} ]]").into_bytes();
            std::fs::write(&scratch, &garbage)
                .and_then(|()| std::fs::rename(&scratch, &lease))
                .map_err(|e| format!("overwrite {}: {e}", lease.display()))
                .or_fail(&case);
        }
        let removed = Instant::now();
        case.say(format!(
            "{n} garbage writes to {} over 10 s; stopped",
            lease.display()
        ));
        let mut finished = case.finish(load, injected, removed, BOUND).await;
        let outage = finished.row.outage.unwrap_or(Duration::MAX);
        if outage >= Duration::from_secs(12) {
            finished.failures.push(format!(
                "write outage {:.3} s is not below 12 s (the lease lasts 4 s)",
                outage.as_secs_f64()
            ));
        }
        match finished
            .stopped
            .watch
            .saw_condition("LeaseReadable", "False")
        {
            Some(msg) => case.say(format!("status said LeaseReadable=False: {msg}")),
            None => finished
                .failures
                .push("status never had condition LeaseReadable=False".into()),
        }
        case.conclude(finished);
    });
}

/// A cluster reported ready with Required durability already has a synchronous standby.
#[test]
fn ready_means_durable() {
    run(|| async {
        let case = Case::up("ready_means_durable", Spec::three_sync_required());
        let primary = case.primary().or_fail(&case);
        let port = case.port(&primary).or_fail(&case);
        let rows = sql(
            port,
            &case.password,
            "SELECT application_name::text, sync_state::text, state::text \
             FROM pg_stat_replication ORDER BY 1",
            Duration::from_secs(10),
        )
        .await
        .or_fail(&case);
        let states: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        case.say(format!(
            "right after up: pg_stat_replication on {primary}: {states:?}"
        ));
        let mut failures = Vec::new();
        if !states.iter().any(|(_, sync, _)| sync == "sync") {
            failures.push(format!(
                "ready, but no standby is in sync_state 'sync' on {primary}: {states:?}"
            ));
        }
        case.conclude_row(Row::default(), failures);
    });
}

/// The brain killed in steady state: agents and PostgreSQL go on; `up` again adopts them and
/// reports ready only from what the new brain saw.
#[test]
fn brain_sigkill_steady() {
    run(|| async {
        let (case, load) = loaded("brain_sigkill_steady", Spec::lab()).await;
        let members = case.cluster.member_names();
        let pids = |f: fn(&std::path::Path, &str) -> Result<u32, String>| {
            members
                .iter()
                .map(|m| f(case.dir(), m).map(|p| (m.clone(), p)))
                .collect::<Result<BTreeMap<String, u32>, String>>()
        };
        let postmasters = pids(postmaster_pid).or_fail(&case);
        let agents = pids(agent_pid).or_fail(&case);
        let primary = case.primary().or_fail(&case);
        let brain = brain_pid(case.dir()).or_fail(&case);
        let injected = Instant::now();
        signal(brain, Signal::SIGKILL).or_fail(&case);
        until_gone(brain, Duration::from_secs(5))
            .await
            .or_fail(&case);
        case.say(format!(
            "SIGKILL brain {brain}; agents {agents:?}, postmasters {postmasters:?}"
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut failures = Vec::new();
        for (what, map) in [("agents", &agents), ("postmasters", &postmasters)] {
            let dead: Vec<String> = map
                .iter()
                .filter(|(_, pid)| !alive(**pid))
                .map(|(m, pid)| format!("{m} (pid {pid})"))
                .collect();
            if !dead.is_empty() {
                failures.push(format!("{what} died with the brain: {}", dead.join(", ")));
            }
        }
        let insert = format!("INSERT INTO ledger (writer, seq) VALUES ({PROBE_WRITER}, 1)");
        let port = case.port(&primary).or_fail(&case);
        match sql(port, &case.password, &insert, Duration::from_secs(5)).await {
            Ok(_) => {
                if let Ok(mut acks) = load.ledger.acks.lock() {
                    acks.push(Ack {
                        writer: PROBE_WRITER,
                        seq: 1,
                        at: Instant::now(),
                    });
                }
                case.say(format!("5 s later: a direct commit on {primary} succeeded"));
            }
            Err(e) => failures.push(format!(
                "5 s after the brain died, commit on {primary}: {e}"
            )),
        }
        let up_started = SystemTime::now();
        let again = case.up_again(BOUND);
        let seen = files::status(case.dir());
        match again {
            Err(e) => failures.push(format!("up again: {e}")),
            Ok(_) => {
                let stamp = seen
                    .as_ref()
                    .map_or(serde_json::Value::Null, |s| s["updatedAt"].clone());
                let written = seen.as_ref().and_then(files::updated_at);
                // how long before `up` started the status it reported ready from was written
                let before = written.map(|t| up_started.duration_since(t).ok());
                case.say(format!("up again returned; status.json updatedAt {stamp}"));
                match before {
                    Some(None) => {}
                    Some(Some(d)) => failures.push(format!(
                        "up again reported ready from a status written {:.3} s before it started \
                         (updatedAt {stamp}): the new brain had observed nothing yet",
                        d.as_secs_f64()
                    )),
                    None => failures.push(format!(
                        "up again returned but status.json has no updatedAt ({stamp})"
                    )),
                }
            }
        }
        let removed = Instant::now();
        let mut finished = case.finish(load, injected, removed, BOUND).await;
        let restarted: Vec<String> = postmasters
            .iter()
            .filter_map(|(m, before)| match postmaster_pid(case.dir(), m) {
                Ok(now) if now == *before => None,
                Ok(now) => Some(format!("{m} {before} → {now}")),
                Err(e) => Some(format!("{m} {before} → {e}")),
            })
            .collect();
        if !restarted.is_empty() {
            failures.push(format!(
                "postmasters not adopted but restarted: {}",
                restarted.join(", ")
            ));
        }
        finished.failures.extend(failures);
        case.conclude(finished);
    });
}
