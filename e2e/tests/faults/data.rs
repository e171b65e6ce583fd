//! Data directories removed: the primary's with the sync standby stopped, a sync standby's, and
//! the primary's again and again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgreplica_e2e::faults::case::{Case, OrFail};
use pgreplica_e2e::faults::dirs::Untouched;
use pgreplica_e2e::faults::load::Load;
use pgreplica_e2e::faults::procs::{agent_pid, postmaster_pid};
use pgreplica_e2e::faults::{files, Spec};

use super::{gone_note, loaded, run, BOUND};

fn rm_rf(case: &Case, data: &Path) {
    pgreplica_e2e::rm::rm_rf(data).or_fail(case);
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
        rm_rf(&case, &data);
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

/// The sync standby's data directory deleted under load: it is re-cloned and the cluster is
/// Healthy again, nothing lost.
#[test]
fn standby_data_removed() {
    run(|| async {
        let (case, load) = loaded("standby_data_removed", Spec::lab()).await;
        let status = case.status().or_fail(&case);
        let sync = files::members_where(&status, "syncState", "sync");
        let [sync] = sync.as_slice() else {
            case.fail(&format!("expected one sync standby, status says {sync:?}"));
        };
        let data = case.cluster.data_dir(sync);
        let injected = Instant::now();
        rm_rf(&case, &data);
        case.say(format!("rm -rf {} (sync standby {sync})", data.display()));
        let mut finished = case.finish(load, injected, injected, BOUND).await;
        let status = case.status().unwrap_or_default();
        let clones: Vec<String> = files::events(&status)
            .into_iter()
            .filter(|(reason, member, _)| reason == "Recloning" && member == sync)
            .map(|(reason, _, message)| format!("{reason}: {message}"))
            .collect();
        match clones.as_slice() {
            [] => finished
                .failures
                .push(format!("no Recloning event for {sync} in status")),
            seen => case.say(format!("events for {sync}: {seen:?}")),
        }
        case.conclude(finished);
    });
}

const CYCLES: usize = 8;
const PER_CYCLE: Duration = Duration::from_secs(60);

/// Wait for the watcher to see the cluster unsettled after `from` (the fault took effect), then
/// settled again; when it settled.
async fn cycle_settled(load: &Load, from: Instant, bound: Duration) -> Result<Instant, String> {
    let watch = load.watch();
    let deadline = from + bound;
    let mut unsettled = false;
    loop {
        if let Some(l) = watch.latest().filter(|l| l.at > from) {
            if !l.settled {
                unsettled = true;
            } else if unsettled {
                return Ok(l.at);
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} within {bound:?}",
                if unsettled {
                    "not settled again"
                } else {
                    "the fault was never seen"
                }
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The primary's data directory deleted [`CYCLES`] times, each time once the cluster is settled
/// again (failback Automatic brings the primary back to a), under load throughout.
#[test]
fn failover_cycles() {
    run(|| async {
        let (case, load) = loaded("failover_cycles", Spec::lab()).await;
        let first = Instant::now();
        let mut last = first;
        let mut failures = Vec::new();
        let timeline = |case: &Case| case.status().map(|s| s["timeline"].clone());
        let before = timeline(&case);
        for n in 1..=CYCLES {
            let primary = case.primary().or_fail(&case);
            let data = case.cluster.data_dir(&primary);
            let at = Instant::now();
            last = at;
            rm_rf(&case, &data);
            match cycle_settled(&load, at, PER_CYCLE).await {
                Ok(settled) => case.say(format!(
                    "cycle {n}: rm -rf {primary}/data at {:+.3}s, settled {:.3} s later",
                    (at - first).as_secs_f64(),
                    (settled - at).as_secs_f64()
                )),
                Err(e) => {
                    failures.push(format!("cycle {n} ({primary}): {e}"));
                    break;
                }
            }
        }
        case.say(format!(
            "{CYCLES} cycles in {:.3} s; timeline {} → {}",
            first.elapsed().as_secs_f64(),
            before.unwrap_or_default(),
            timeline(&case).unwrap_or_default()
        ));
        let mut finished = case.finish(load, first, last, BOUND).await;
        finished.failures.extend(failures);
        case.conclude(finished);
    });
}
