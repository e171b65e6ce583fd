//! The brain killed: in steady state, and right after the primary lost its data directory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use pgreplica_e2e::bench::procs::alive;
use pgreplica_e2e::faults::case::{Case, OrFail};
use pgreplica_e2e::faults::load::sql;
use pgreplica_e2e::faults::procs::{agent_pid, brain_pid, postmaster_pid, signal, until_gone};
use pgreplica_e2e::faults::{files, Spec, PROBE_WRITER};
use pgreplica_e2e::ledger::Ack;

use super::{loaded, run, BOUND};

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

/// SIGKILL the brain, `up` again and require it to report ready from a status the new brain
/// wrote; the failures.
async fn kill_brain_and_up(case: &Case) -> Vec<String> {
    let brain = brain_pid(case.dir()).or_fail(case);
    signal(brain, Signal::SIGKILL).or_fail(case);
    until_gone(brain, Duration::from_secs(5))
        .await
        .or_fail(case);
    // `up` refuses while the dead brain's pid still exists (a zombie not yet reaped by init)
    let reaped = Instant::now();
    let proc_dir = std::path::PathBuf::from(format!("/proc/{brain}"));
    while proc_dir.exists() && reaped.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    case.say(format!(
        "SIGKILL brain {brain}; {} {:.3} s later",
        if proc_dir.exists() {
            "still not reaped"
        } else {
            "reaped"
        },
        reaped.elapsed().as_secs_f64()
    ));
    let mut failures = Vec::new();
    let up_started = SystemTime::now();
    match case.up_again(BOUND) {
        Err(e) => failures.push(format!("up again: {e}")),
        Ok(_) => {
            let seen = files::status(case.dir());
            let written = seen.as_ref().and_then(files::updated_at);
            case.say(format!(
                "up again returned after {:.3} s: {}",
                up_started.elapsed().unwrap_or_default().as_secs_f64(),
                seen.as_ref()
                    .map_or("no status".into(), pgreplica_e2e::faults::case::summary)
            ));
            if written.is_none_or(|t| t < up_started) {
                failures.push(
                    "up again reported ready from a status the new brain did not write".into(),
                );
            }
        }
    }
    failures
}

/// The primary's data directory deleted and, 0.1 s later, the brain SIGKILLed (before it could
/// finish the failover); `up` again: the failover completes, the preferred primary returns,
/// nothing is lost.
#[test]
fn brain_sigkill_after_data_loss() {
    run(|| async {
        let (case, load) = loaded("brain_sigkill_after_data_loss", Spec::lab()).await;
        let primary = case.primary().or_fail(&case);
        let data = case.cluster.data_dir(&primary);
        let injected = Instant::now();
        pgreplica_e2e::rm::rm_rf(&data).or_fail(&case);
        case.say(format!("rm -rf {}", data.display()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let failures = kill_brain_and_up(&case).await;
        let removed = Instant::now();
        let mut finished = case.finish(load, injected, removed, BOUND).await;
        finished.failures.extend(failures);
        case.conclude(finished);
    });
}
