//! Files of the runtime full of garbage: the lease, a member's desired state, the state file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgreplica_e2e::faults::case::{summary, Case, OrFail};
use pgreplica_e2e::faults::procs::{agent_pid, signal, until_gone};
use pgreplica_e2e::faults::verdict::Finished;
use pgreplica_e2e::faults::{files, Spec};
use serde_json::Value;

use super::{loaded, outage_below, run, BOUND};

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
        outage_below(
            &mut finished,
            Duration::from_secs(12),
            "the lease lasts 4 s",
        );
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

const GARBAGE: &[u8] = b"\x00\x7f{garbage ]] not json";

/// Wait until `what` holds, polling every 100 ms; when it did.
async fn until(what: impl Fn() -> bool, timeout: Duration) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if what() {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn parses(path: &Path) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some()
}

/// (a) c's desired-state file is garbage and its agent is killed: the restarted agent ignores the
/// file and takes the brain's next desired state. Under load; this is the row's measurement.
async fn garbage_desired(case: &Case, load: pgreplica_e2e::faults::load::Load) -> Finished {
    let member = "c";
    let desired = case.cluster.member_dir(member).join("desired.json");
    let before = agent_pid(case.dir(), member).or_fail(case);
    let injected = Instant::now();
    std::fs::write(&desired, GARBAGE)
        .map_err(|e| format!("write {}: {e}", desired.display()))
        .or_fail(case);
    signal(before, Signal::SIGKILL).or_fail(case);
    until_gone(before, Duration::from_secs(5))
        .await
        .or_fail(case);
    case.say(format!(
        "garbage in {}; SIGKILL the agent of {member} (pid {before})",
        desired.display()
    ));
    let mut failures = Vec::new();
    let dir = case.dir().to_path_buf();
    let restarted = until(
        || agent_pid(&dir, member).is_ok_and(|p| p != before),
        Duration::from_secs(30),
    )
    .await;
    match restarted {
        Some(at) => case.say(format!(
            "agent of {member} running again after {:.3} s (pid {})",
            (at - injected).as_secs_f64(),
            agent_pid(&dir, member).map_or("?".into(), |p| p.to_string())
        )),
        None => failures.push(format!(
            "the agent of {member} was not restarted within 30 s"
        )),
    }
    match until(|| parses(&desired), BOUND).await {
        Some(at) => case.say(format!(
            "{} is a desired state again after {:.3} s",
            desired.display(),
            (at - injected).as_secs_f64()
        )),
        None => failures.push(format!(
            "{} still unreadable {BOUND:?} after the agent was killed",
            desired.display()
        )),
    }
    let log = std::fs::read_to_string(case.dir().join("logs").join(format!("{member}.log")))
        .unwrap_or_default();
    if log.contains("ignoring an unreadable desired-state file") {
        case.say(format!(
            "{member}'s log: ignoring an unreadable desired-state file"
        ));
    }
    let mut finished = case.finish(load, injected, Instant::now(), BOUND).await;
    finished.failures.extend(failures);
    finished
}

/// Member → (PostgreSQL port from `status -o json`, ports from `state.json`).
type MemberPorts = BTreeMap<String, (Value, Value)>;

/// Every member's ports, and the endpoints.
fn ports(case: &Case) -> Result<(MemberPorts, Value), String> {
    let status = case.cluster.status()?;
    let state: Value = std::fs::read_to_string(case.dir().join("state.json"))
        .map_err(|e| format!("state.json: {e}"))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("state.json: {e}")))?;
    let members = status["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let name = m["name"].as_str().unwrap_or_default().to_string();
            let kept = state["members"][&name].clone();
            (name, (m["port"].clone(), kept))
        })
        .collect();
    Ok((members, status["endpoints"].clone()))
}

/// The `mv SRC DST` an error message tells the user to run.
fn suggested_mv(message: &str) -> Option<(String, String)> {
    let start = message.find("`mv ")? + 4;
    let len = message[start..].find('`')?;
    let mut words = message[start..start + len].split_whitespace();
    let (src, dst) = (words.next()?, words.next()?);
    words
        .next()
        .is_none()
        .then(|| (src.to_string(), dst.to_string()))
}

/// (b) The cluster down, garbage in `state.json`: `up` refuses and says what to do; done, `up`
/// comes back Healthy on the same member ports with every acknowledged commit of (a).
async fn garbage_state(case: &Case, finished: &mut Finished) {
    let failures = &mut finished.failures;
    let (ports_before, endpoints_before) = ports(case).or_fail(case);
    case.cluster.run(&["down"]).or_fail(case);
    let state = case.dir().join("state.json");
    std::fs::write(&state, GARBAGE)
        .map_err(|e| format!("write {}: {e}", state.display()))
        .or_fail(case);
    case.say(format!("down; garbage in {}", state.display()));
    let refused = match case.up_again(BOUND) {
        Ok(out) => {
            failures.push(format!("up with a damaged state.json succeeded: {out}"));
            return;
        }
        Err(e) => e,
    };
    case.say(format!("up refused: {}", refused.trim()));
    let Some((src, dst)) = suggested_mv(&refused) else {
        failures.push(format!("up's message says no `mv` to run: {refused}"));
        return;
    };
    std::fs::rename(&src, &dst)
        .map_err(|e| format!("mv {src} {dst}: {e}"))
        .or_fail(case);
    case.say(format!("mv {src} {dst}; up again"));
    let began = Instant::now();
    if let Err(e) = case.up_again(BOUND) {
        failures.push(format!("up after moving the damaged state.json away: {e}"));
        return;
    }
    let spec = case.spec.clone();
    let dir = case.dir().to_path_buf();
    let settled = until(
        || files::status(&dir).is_some_and(|s| files::settled(&s, &spec)),
        BOUND,
    )
    .await;
    let status = case.status().map(|s| summary(&s)).unwrap_or_else(|e| e);
    match settled {
        Some(at) => case.say(format!(
            "Healthy again {:.3} s after the second up: {status}",
            (at - began).as_secs_f64()
        )),
        None => failures.push(format!(
            "not Healthy {BOUND:?} after the second up: {status}"
        )),
    }
    match ports(case) {
        Ok((after, endpoints)) => {
            if after != ports_before {
                failures.push(format!(
                    "member ports changed: before {ports_before:?}, after {after:?}"
                ));
            } else {
                case.say(format!("member ports unchanged: {after:?}"));
            }
            if endpoints != endpoints_before {
                case.say(format!(
                    "note: endpoints changed from {endpoints_before} to {endpoints} (the \
                     state file alone kept them)"
                ));
            }
        }
        Err(e) => failures.push(format!("ports after the second up: {e}")),
    }
    let lost = case.check_commits(&finished.stopped.acks, failures).await;
    if lost > 0 {
        failures.push(format!(
            "{lost} acknowledged commits lost after the second up"
        ));
    }
    finished.row.lost = finished.row.lost.map(|l| l.max(lost));
}

#[test]
fn garbage_state_and_desired_files() {
    run(|| async {
        let (case, load) = loaded("garbage_state_and_desired_files", Spec::lab()).await;
        let mut finished = garbage_desired(&case, load).await;
        garbage_state(&case, &mut finished).await;
        case.conclude(finished);
    });
}
