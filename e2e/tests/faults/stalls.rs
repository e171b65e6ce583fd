//! Processes stopped or killed: the primary's agent or postmaster, the sync standby as a whole.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pgreplica_e2e::faults::case::OrFail;
use pgreplica_e2e::faults::load::sql;
use pgreplica_e2e::faults::procs::{agent_pid, children, pgrp, postmaster_pid, signal, until_gone};
use pgreplica_e2e::faults::verdict::rel;
use pgreplica_e2e::faults::{files, Spec};

use super::{hold, hold_stopped, loaded, outage_below, run, BOUND};

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
fn agent_sigstop_two_sync_preferred() {
    run(|| {
        agent_sigstop(
            "agent_sigstop_two_sync_preferred",
            Spec::two_sync_preferred(),
        )
    });
}

#[test]
fn agent_sigstop_one_sync_required() {
    run(|| agent_sigstop("agent_sigstop_one_sync_required", Spec::one_sync_required()));
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

/// The sync standby really down for [`super::HOLD`]: its agent and every process of its
/// PostgreSQL (the postmaster and its children: startup, WAL receiver, backends) stopped, so it
/// neither streams nor answers. With Preferred durability writes must go on (rw outage below
/// `outage` when given); with Required they may wait, and only no loss and recovery count.
async fn sync_standby_down(name: &'static str, spec: Spec, outage: Option<Duration>) {
    let (case, load) = loaded(name, spec).await;
    let status = case.status().or_fail(&case);
    let sync = files::members_where(&status, "syncState", "sync");
    let [sync] = sync.as_slice() else {
        case.fail(&format!("expected one sync standby, status says {sync:?}"));
    };
    let agent = agent_pid(case.dir(), sync).or_fail(&case);
    let postmaster = postmaster_pid(case.dir(), sync).or_fail(&case);
    let injected = Instant::now();
    // the postmaster first: stopped, it forks no new child while the children are listed
    let mut frozen = case.freeze(&[agent, postmaster]).or_fail(&case);
    let kids = children(postmaster);
    let stopped = frozen.also(&kids).or_fail(&case);
    case.remember_frozen(&stopped);
    let groups: Vec<Option<u32>> = stopped.iter().map(|p| pgrp(*p)).collect();
    let what = format!(
        "sync standby {sync}: agent {agent}, postmaster {postmaster} and its children {stopped:?} \
         (process groups {groups:?})"
    );
    let primary = case.primary().or_fail(&case);
    let port = case.port(&primary).or_fail(&case);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let watching = tokio::spawn(replication_seen(
        port,
        case.password.clone(),
        sync.clone(),
        injected,
        seen.clone(),
    ));
    let mut finished = hold(&case, load, &what, frozen, injected).await;
    watching.abort();
    for line in seen.lock().map(|s| s.clone()).unwrap_or_default() {
        case.say(format!("on {primary}: {line}"));
    }
    if let Some(limit) = outage {
        outage_below(
            &mut finished,
            limit,
            "Preferred: writes go on without a sync standby",
        );
    }
    case.conclude(finished);
}

/// Every 100 ms until aborted: how the primary at `port` sees `standby` (its row in
/// `pg_stat_replication`) and `synchronous_standby_names`; each change, timed from `origin`.
async fn replication_seen(
    port: u16,
    password: String,
    standby: String,
    origin: Instant,
    seen: Arc<Mutex<Vec<String>>>,
) {
    let query = format!(
        "SELECT coalesce((SELECT state || '/' || sync_state FROM pg_stat_replication \
         WHERE application_name = '{standby}' LIMIT 1), 'absent'), \
         current_setting('synchronous_standby_names')"
    );
    let mut last = String::new();
    loop {
        let now = match sql(port, &password, &query, Duration::from_millis(500)).await {
            Ok(rows) => rows.first().map_or("no row".into(), |r| {
                let (state, names): (String, String) = (r.get(0), r.get(1));
                format!("{standby} {state}, synchronous_standby_names '{names}'")
            }),
            Err(e) => format!("no answer ({e})"),
        };
        if now != last {
            if let Ok(mut s) = seen.lock() {
                s.push(format!("{:+.3}s {now}", rel(Instant::now(), origin)));
            }
            last = now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn sync_standby_down_preferred() {
    run(|| {
        sync_standby_down(
            "sync_standby_down_preferred",
            Spec::lab(),
            Some(Duration::from_secs(5)),
        )
    });
}

#[test]
fn sync_standby_down_required() {
    run(|| {
        sync_standby_down(
            "sync_standby_down_required",
            Spec::one_sync_required(),
            None,
        )
    });
}
