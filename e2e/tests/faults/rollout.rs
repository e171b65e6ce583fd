//! Day two under load: parameters changed with `local apply` reach every running member — a
//! reload-only one at once, a restart-needing one by a rolling restart (standbys first, the primary
//! last after a switchover and an automatic failback) — and a member joins and leaves; nothing
//! lost.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pgreplica_e2e::faults::case::{Case, OrFail};
use pgreplica_e2e::faults::Spec;

use super::{loaded, run, BOUND};

const MEMBERS: [&str; 3] = ["a", "b", "c"];

/// The lab's file with `parameters` under `spec.postgres`, written next to the cluster.
fn lab_with(case: &Case, name: &str, parameters: &str) -> PathBuf {
    let text = std::fs::read_to_string(&case.spec.file)
        .map_err(|e| e.to_string())
        .or_fail(case);
    let edited = text.replacen(
        "spec:\n",
        &format!("spec:\n  postgres:\n    parameters: {{{parameters}}}\n"),
        1,
    );
    assert_ne!(edited, text, "the lab file has a `spec:` line");
    let path = case.dir().join(format!("{name}.yaml"));
    std::fs::write(&path, edited)
        .map_err(|e| e.to_string())
        .or_fail(case);
    path
}

/// A one-row query on `member`, None when it does not answer.
async fn one(case: &Case, member: &str, sql: &str) -> Option<String> {
    let port = case.port(member).ok()?;
    let conninfo = format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2 password='{}'",
        case.password
    );
    let client = pgreplica_e2e::bench::pg::connect(&conninfo).await.ok()?;
    let row = client.query_one(sql, &[]).await.ok()?;
    row.try_get::<_, String>(0).ok()
}

/// The member's entry in status.json, if any.
fn member_status(case: &Case, member: &str) -> Option<serde_json::Value> {
    case.status().ok()?["status"]["members"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == member)
        .cloned()
}

/// `SHOW name` on every member, None where it does not answer.
async fn shown(case: &Case, name: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for m in MEMBERS {
        out.push(one(case, m, &format!("SHOW {name}")).await);
    }
    out
}

async fn everywhere(case: &Case, name: &str, value: &str, within: Duration) -> Option<Duration> {
    let began = Instant::now();
    pgreplica_e2e::poll::until(within, || async {
        shown(case, name)
            .await
            .iter()
            .all(|v| v.as_deref() == Some(value))
            .then(|| began.elapsed())
    })
    .await
}

/// The brain's progress lines with one of these event reasons, in order.
/// The brain's events with one of `reasons`, oldest first, as `Reason [member] message`, from the
/// event history in status.json (the brain log's wording is for people and may change).
fn brain_events(case: &Case, reasons: &[&str]) -> Vec<String> {
    let status = case.status().unwrap_or_default();
    status["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| reasons.iter().any(|r| e["reason"].as_str() == Some(r)))
        .map(|e| {
            format!(
                "{} [{}] {}",
                e["reason"].as_str().unwrap_or("?"),
                e["member"].as_str().unwrap_or("-"),
                e["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn parameters_reload_and_rolling_restart() {
    run(|| async {
        let (case, load) = loaded("parameters_reload_and_rolling_restart", Spec::lab()).await;
        // reload only: every member within seconds, nobody restarts
        let file = lab_with(&case, "work-mem", "work_mem: 7MB");
        let out = case
            .cluster
            .run(&["apply", "-f", &file.display().to_string()])
            .or_fail(&case);
        case.say(format!("local apply: {}", out.trim()));
        let took = everywhere(&case, "work_mem", "7MB", Duration::from_secs(20)).await;
        let Some(took) = took else {
            case.fail(&format!(
                "work_mem is not 7MB everywhere after 20 s: {:?}",
                shown(&case, "work_mem").await
            ));
        };
        case.say(format!(
            "work_mem 7MB on a, b and c {:.3} s after the apply",
            took.as_secs_f64()
        ));
        if !brain_events(&case, &["Restarting", "SwitchoverStarted"]).is_empty() {
            case.fail("a reload-only parameter restarted a member");
        }
        // restart needed: one member at a time, the primary last
        let before: Vec<Option<String>> = shown(&case, "shared_buffers").await;
        let file = lab_with(
            &case,
            "shared-buffers",
            "work_mem: 7MB, shared_buffers: 48MB",
        );
        let injected = Instant::now();
        let out = case
            .cluster
            .run(&["apply", "-f", &file.display().to_string()])
            .or_fail(&case);
        case.say(format!(
            "local apply: {}; shared_buffers before: {before:?}",
            out.trim()
        ));
        let took = everywhere(&case, "shared_buffers", "48MB", BOUND).await;
        let Some(took) = took else {
            case.fail(&format!(
                "shared_buffers is not 48MB everywhere after {BOUND:?}: {:?}",
                shown(&case, "shared_buffers").await
            ));
        };
        case.say(format!(
            "shared_buffers 48MB on a, b and c {:.3} s after the apply",
            took.as_secs_f64()
        ));
        let removed = Instant::now();
        let mut finished = case.finish(load, injected, removed, BOUND).await;
        let order = brain_events(
            &case,
            &[
                "Restarting",
                "SwitchoverStarted",
                "FailbackStarted",
                "Promoted",
            ],
        );
        for line in &order {
            case.say(format!("rollout: {line}"));
        }
        let starts: Vec<&str> = order
            .iter()
            .filter_map(|l| {
                l.split_once('[')
                    .and_then(|(_, r)| r.split_once(']'))
                    .map(|(m, _)| m)
            })
            .collect();
        // c (async) restarts, then b (sync), then a moves to b and back
        let want = ["c", "b", "b", "b", "a", "a"];
        if starts != want {
            finished.failures.push(format!("rollout order {starts:?}, expected {want:?} (Restarting c, Restarting b, SwitchoverStarted b, Promoted b, FailbackStarted a, Promoted a)"));
        }
        let status = case.status().or_fail(&case);
        let generation = status["status"]["observedGeneration"].as_i64();
        if generation != Some(3) {
            finished.failures.push(format!(
                "observedGeneration {generation:?} after two applies, expected 3"
            ));
        }
        case.conclude(finished);
    });
}

/// A board joins (d, Sync) and is retired again, under the load: d is cloned and streams; once it
/// is out of the spec its slot is gone from the primary and its data directory is kept.
#[test]
fn member_added_and_removed() {
    run(|| async {
        let (case, load) = loaded("member_added_and_removed", Spec::lab()).await;
        let text = std::fs::read_to_string(&case.spec.file)
            .map_err(|e| e.to_string())
            .or_fail(&case);
        let with_d = case.dir().join("with-d.yaml");
        std::fs::write(
            &with_d,
            format!("{text}    - name: d\n      replication: Sync\n"),
        )
        .map_err(|e| e.to_string())
        .or_fail(&case);
        let injected = Instant::now();
        let out = case
            .cluster
            .run(&["apply", "-f", &with_d.display().to_string()])
            .or_fail(&case);
        case.say(format!("local apply: {}", out.trim()));
        let ready = pgreplica_e2e::poll::until(BOUND, || async {
            member_status(&case, "d")
                .filter(|m| m["ready"] == true)
                .map(|_| injected.elapsed())
        })
        .await;
        let Some(took) = ready else {
            case.fail("d is not ready after the apply");
        };
        case.say(format!(
            "d cloned and streaming {:.3} s after the apply",
            took.as_secs_f64()
        ));
        let slot =
            "SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = 'pgreplica_d'";
        let primary = case.primary().or_fail(&case);
        if one(&case, &primary, slot).await.as_deref() != Some("1") {
            case.fail("the primary has no slot for d");
        }
        let out = case
            .cluster
            .run(&["apply", "-f", &case.spec.file.display().to_string()])
            .or_fail(&case);
        case.say(format!("local apply: {}", out.trim()));
        let gone = pgreplica_e2e::poll::until(BOUND, || async {
            let primary = case.primary().ok()?;
            (member_status(&case, "d").is_none()
                && one(&case, &primary, slot).await.as_deref() == Some("0"))
            .then_some(())
        })
        .await;
        if gone.is_none() {
            case.fail("d is still in status or its slot is still on the primary");
        }
        case.say("d out of status, its slot dropped from the primary");
        let removed = Instant::now();
        let mut finished = case.finish(load, injected, removed, BOUND).await;
        let retired = case
            .status()
            .map(|s| pgreplica_e2e::faults::files::events(&s))
            .unwrap_or_default()
            .into_iter()
            .filter(|(reason, member, _)| reason == "MemberRetired" && member == "d")
            .count();
        if retired != 1 {
            finished.failures.push(format!(
                "{retired} MemberRetired events for d, expected one"
            ));
        }
        if !case.cluster.data_dir("d").join("PG_VERSION").exists() {
            finished
                .failures
                .push("d's data directory was not kept".into());
        }
        case.conclude(finished);
    });
}

/// The primary removed from the spec: b is the primary after a switchover (failback Manual) and
/// the new spec leaves b out. The primary moves back to a by a clean switchover before b's agent
/// stops; the old runtimes stopped b's agent first, which was a failover (PrimaryLost).
#[test]
fn the_primary_removed_from_the_spec() {
    run(|| async {
        let (case, load) = loaded("the_primary_removed_from_the_spec", Spec::lab_manual()).await;
        let out = case
            .cluster
            .run(&["switchover", "--to", "b"])
            .or_fail(&case);
        case.say(format!("local switchover: {}", out.trim()));
        let on_b = pgreplica_e2e::poll::until(BOUND, || async {
            let status = case.status().ok()?;
            (pgreplica_e2e::faults::files::current_primary(&status).as_deref() == Some("b")
                && pgreplica_e2e::faults::files::settled(&status, &case.spec))
            .then_some(())
        })
        .await;
        if on_b.is_none() {
            case.fail("b is not the settled primary after the switchover");
        }
        let text = std::fs::read_to_string(&case.spec.file)
            .map_err(|e| e.to_string())
            .or_fail(&case);
        let without_b = text.replacen("    - name: b\n      replication: Sync\n", "", 1);
        assert_ne!(without_b, text, "the file has member b");
        let file = case.dir().join("without-b.yaml");
        std::fs::write(&file, without_b)
            .map_err(|e| e.to_string())
            .or_fail(&case);
        let injected = Instant::now();
        let out = case
            .cluster
            .run(&["apply", "-f", &file.display().to_string()])
            .or_fail(&case);
        case.say(format!("local apply: {}", out.trim()));
        let moved = pgreplica_e2e::poll::until(BOUND, || async {
            let status = case.status().ok()?;
            (pgreplica_e2e::faults::files::current_primary(&status).as_deref() == Some("a")
                && member_status(&case, "b").is_none())
            .then(|| injected.elapsed())
        })
        .await;
        let Some(took) = moved else {
            case.fail("the primary did not move to a, or b is still in status");
        };
        case.say(format!(
            "primary on a, b out of status {:.3} s after the apply",
            took.as_secs_f64()
        ));
        let removed = Instant::now();
        let mut finished = case.finish(load, injected, removed, BOUND).await;
        let events = case
            .status()
            .map(|s| pgreplica_e2e::faults::files::events(&s))
            .unwrap_or_default();
        for (reason, member, message) in &events {
            if [
                "SwitchoverStarted",
                "PrimaryLost",
                "FailoverStarted",
                "MemberRetired",
            ]
            .contains(&reason.as_str())
            {
                case.say(format!("event {reason} [{member}] {message}"));
            }
        }
        let count = |r: &str| events.iter().filter(|(reason, ..)| reason == r).count();
        if count("PrimaryLost") + count("FailoverStarted") > 0 {
            finished
                .failures
                .push("removing the primary was a failover, not a switchover".into());
        }
        if count("SwitchoverStarted") != 2 {
            finished.failures.push(format!(
                "{} switchovers, expected 2 (to b asked, back to a for the removal)",
                count("SwitchoverStarted")
            ));
        }
        if !case.cluster.data_dir("b").join("PG_VERSION").exists() {
            finished
                .failures
                .push("b's data directory was not kept".into());
        }
        case.conclude(finished);
    });
}
