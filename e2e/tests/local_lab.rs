//! The lab through `pgreplica local`: sync and delayed async standbys, the
//! primary's data directory deleted under writing clients, failover, automatic re-clone,
//! failback, and every acknowledged commit on every member.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgreplica_e2e::cluster::{repo_file, LocalCluster};
use pgreplica_e2e::ledger::{missing_on, reader, writer, Ledger};
use pgreplica_e2e::report::Stages;
use serde_json::Value;

const WRITERS: i32 = 4;

fn port_of(cluster: &LocalCluster, status: &Value, member: &str) -> u16 {
    cluster
        .member(status, member)
        .and_then(|m| m["port"].as_u64())
        .unwrap_or(0) as u16
}

fn ready(status: &Value, member: &str) -> bool {
    status["members"]
        .as_array()
        .is_some_and(|ms| ms.iter().any(|m| m["name"] == member && m["ready"] == true))
}

/// One query on a fresh connection (bounded: a stalled server fails the step, not the run).
async fn sql(port: u16, password: &str, query: &str) -> Result<Vec<tokio_postgres::Row>, String> {
    pgreplica_e2e::faults::load::sql(port, password, query, Duration::from_secs(30)).await
}

/// Poll until `query` returns at least one row on `port`.
async fn until_row(
    port: u16,
    password: &str,
    query: &str,
    timeout: Duration,
) -> Result<Instant, String> {
    pgreplica_e2e::poll::until(timeout, || async {
        sql(port, password, query)
            .await
            .is_ok_and(|rows| !rows.is_empty())
            .then(Instant::now)
    })
    .await
    .ok_or_else(|| format!("no row for `{query}` on port {port} within {timeout:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_on_the_local_runtime() {
    let mut stages = Stages::default();
    stages.say("stage 1: configuration — up -f examples/lab.yaml --detach");
    let cluster = LocalCluster::up(&repo_file("examples/lab.yaml"), Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("local up failed: {e}"));
    let result = scenario(&cluster, &mut stages).await;
    if let Err(e) = result {
        println!("{}", cluster.diagnostics());
        panic!("lab scenario failed: {e}");
    }
}

async fn scenario(cluster: &LocalCluster, stages: &mut Stages) -> Result<(), String> {
    let password = cluster.password();
    let (status, _) =
        cluster.wait_for("the cluster to be ready", Duration::from_secs(60), |s| {
            s["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })?;
    let (pa, pb, pc) = (
        port_of(cluster, &status, "a"),
        port_of(cluster, &status, "b"),
        port_of(cluster, &status, "c"),
    );
    stages.say(format!("ready: topology {}", status["topology"]));

    // Stage 1: b is sync and c async on the primary; a row is on b at once and on c after ~3 s.
    let rows = sql(
        cluster.rw_port,
        &password,
        "SELECT application_name, sync_state FROM pg_stat_replication ORDER BY 1",
    )
    .await?;
    let states: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    stages.say(format!("pg_stat_replication on the primary: {states:?}"));
    if states
        != vec![
            ("b".to_string(), "sync".to_string()),
            ("c".to_string(), "async".to_string()),
        ]
    {
        return Err(format!("expected b sync and c async, got {states:?}"));
    }
    sql(cluster.rw_port, &password, "CREATE TABLE ledger (writer int, seq bigint, at timestamptz DEFAULT now(), PRIMARY KEY (writer, seq))").await?;
    sql(cluster.rw_port, &password, "CREATE TABLE probe (id int)").await?;
    let committed = Instant::now();
    sql(cluster.rw_port, &password, "INSERT INTO probe VALUES (1)").await?;
    let on_b = until_row(
        pb,
        &password,
        "SELECT 1 FROM probe WHERE id = 1",
        Duration::from_secs(5),
    )
    .await?;
    let early_on_c = !sql(pc, &password, "SELECT 1 FROM probe WHERE id = 1")
        .await
        .unwrap_or_default()
        .is_empty()
        && committed.elapsed() < Duration::from_secs(2);
    let on_c = until_row(
        pc,
        &password,
        "SELECT 1 FROM probe WHERE id = 1",
        Duration::from_secs(20),
    )
    .await?;
    stages.say(format!(
        "row visible on b after {:.3}s, on c after {:.3}s (declared delay 3s)",
        (on_b - committed).as_secs_f64(),
        (on_c - committed).as_secs_f64()
    ));
    if early_on_c || on_c - committed < Duration::from_millis(2_700) {
        return Err("c applied the row before its 3 s delay".into());
    }

    // The read-only endpoint never leads to c, which applies WAL 3 s late: every read through
    // it right after a commit (once b has it) sees the row.
    let committed = Instant::now();
    sql(cluster.rw_port, &password, "INSERT INTO probe VALUES (2)").await?;
    until_row(
        pb,
        &password,
        "SELECT 1 FROM probe WHERE id = 2",
        Duration::from_secs(5),
    )
    .await?;
    let mut missed = 0;
    for _ in 0..10 {
        let rows = sql(
            cluster.ro_port,
            &password,
            "SELECT 1 FROM probe WHERE id = 2",
        )
        .await?;
        missed += usize::from(rows.is_empty());
    }
    let c_had_it = !sql(pc, &password, "SELECT 1 FROM probe WHERE id = 2")
        .await?
        .is_empty();
    stages.say(format!(
        "10 reads through the ro endpoint {:.3}s after a commit: {missed} missed the row (c had it: {c_had_it})",
        committed.elapsed().as_secs_f64()
    ));
    if c_had_it {
        return Err(
            "c applied the row before the reads were done: the check proves nothing".into(),
        );
    }
    if missed > 0 {
        return Err(format!(
            "{missed} of 10 reads through the ro endpoint went to the delayed member c"
        ));
    }

    // Stage 2: writers through rw, readers through ro, then delete the primary's data directory.
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for id in 0..WRITERS {
        tasks.push(tokio::spawn(writer(
            id,
            cluster.rw_port,
            password.clone(),
            ledger.clone(),
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(reader(
        cluster.ro_port,
        password.clone(),
        stop.clone(),
        reads.clone(),
    )));
    let warmup = Instant::now();
    while ledger.acks().len() < 200 && warmup.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stages.say(format!(
        "stage 2: {WRITERS} writers running ({} commits acknowledged so far)",
        ledger.acks().len()
    ));
    let data_dir = cluster
        .member(&status, "a")
        .and_then(|m| m["dataDir"].as_str().map(String::from))
        .ok_or("no dataDir for a")?;
    let injected = Instant::now();
    pgreplica_e2e::rm::rm_rf(std::path::Path::new(&data_dir))?;
    stages.say(format!("failure injected: rm -rf {data_dir}"));
    let (_, detected) =
        cluster.wait_for("the loss to be detected", Duration::from_secs(30), |s| {
            s["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["reason"] == "PrimaryLost"))
        })?;
    stages.say(format!(
        "primary lost detected after {:.3}s",
        (detected - injected).as_secs_f64()
    ));
    let (s, promoted) = cluster.wait_for("b to be the primary", Duration::from_secs(60), |s| {
        s["currentPrimary"] == "b" && ready(s, "b")
    })?;
    stages.say(format!(
        "b promoted after {:.3}s (timeline {})",
        (promoted - injected).as_secs_f64(),
        s["timeline"]
    ));
    let first_ack = wait_first_ack_after(&ledger, promoted, Duration::from_secs(30)).await?;
    let (outage, writable) = ledger
        .longest_gap_between(injected, first_ack)
        .unwrap_or((first_ack - injected, first_ack));
    stages.say(format!(
        "new primary writable through rw after {:.3}s (write outage {:.3}s)",
        (writable - injected).as_secs_f64(),
        outage.as_secs_f64()
    ));
    let (_, rejoined) = cluster.wait_for("a to stream again", Duration::from_secs(120), |s| {
        s["members"].as_array().is_some_and(|ms| {
            ms.iter()
                .any(|m| m["name"] == "a" && m["ready"] == true && m["role"] == "standby")
        }) || (s["currentPrimary"] == "a" && s["lastFailover"]["to"] == "a")
    })?;
    stages.say(format!(
        "stage 3: old primary a re-cloned and streaming after {:.3}s",
        (rejoined - injected).as_secs_f64()
    ));
    let (s, back) = cluster.wait_for(
        "failback to a with every member ready",
        Duration::from_secs(180),
        |s| {
            s["currentPrimary"] == "a"
                && s["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        },
    )?;
    stages.say(format!(
        "failback done after {:.3}s: topology {}",
        (back - injected).as_secs_f64(),
        s["topology"]
    ));
    let after_failback = Instant::now();
    while ledger
        .acks()
        .iter()
        .filter(|a| a.at > after_failback)
        .count()
        < 100
        && after_failback.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let acks = ledger.acks();
    if let Some((gap, _)) = ledger.longest_gap_between(rejoined, Instant::now()) {
        stages.say(format!(
            "longest write outage during failback: {:.3}s",
            gap.as_secs_f64()
        ));
    }
    stages.say(format!(
        "{} commits acknowledged by {WRITERS} writers; {} reads through ro; {} client errors (reconnects)",
        acks.len(),
        reads.load(Ordering::SeqCst),
        ledger.errors.lock().map(|e| e.len()).unwrap_or(0)
    ));

    // Every acknowledged commit is on every member (c after its delay).
    let (s, _) = cluster.wait_for("every member ready", Duration::from_secs(60), |s| {
        s["readyMembers"] == "3/3"
    })?;
    let ports = [
        ("a", port_of(cluster, &s, "a")),
        ("b", port_of(cluster, &s, "b")),
        ("c", port_of(cluster, &s, "c")),
    ];
    if ports.iter().any(|(_, p)| *p == 0) || [pa, pb, pc] != [ports[0].1, ports[1].1, ports[2].1] {
        return Err(format!("member ports changed: {ports:?}"));
    }
    for (name, port) in ports {
        let deadline = Instant::now() + Duration::from_secs(30);
        let missing = loop {
            let missing = missing_on(port, &password, &acks).await?;
            if missing.is_empty() || Instant::now() > deadline {
                break missing;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        stages.say(format!(
            "{name}: {} of {} acknowledged commits present",
            acks.len() - missing.len(),
            acks.len()
        ));
        if !missing.is_empty() {
            return Err(format!(
                "{name} lacks {} acknowledged commits, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
    }
    // standbys keep copies of the other members' slots, so a promoted one holds their WAL
    let deadline = Instant::now() + Duration::from_secs(20);
    for (name, port) in [("b", ports[1].1), ("c", ports[2].1)] {
        let want: Vec<String> = ["a", "b", "c"]
            .iter()
            .filter(|m| **m != name)
            .map(|m| format!("pgreplica_{m}"))
            .collect();
        let slots = loop {
            let rows = sql(
                port,
                &password,
                "SELECT slot_name::text FROM pg_replication_slots ORDER BY 1",
            )
            .await?;
            let slots: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            if slots == want || Instant::now() > deadline {
                break slots;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        stages.say(format!("{name} keeps slot copies {slots:?}"));
        if slots != want {
            return Err(format!(
                "{name} should keep slot copies {want:?}, has {slots:?}"
            ));
        }
    }
    stages.say("lab passed: 0 acknowledged commits lost");
    Ok(())
}

async fn wait_first_ack_after(
    ledger: &Ledger,
    after: Instant,
    timeout: Duration,
) -> Result<Instant, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(a) = ledger
            .acks()
            .iter()
            .filter(|a| a.at >= after)
            .map(|a| a.at)
            .min()
        {
            return Ok(a);
        }
        if Instant::now() > deadline {
            return Err("no commit acknowledged after the failover".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
