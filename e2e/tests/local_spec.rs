//! The applied spec is the cluster's: `local apply` counts generations and says what changed;
//! `local up -f FILE` never silently reverts an applied spec; `local restart` restarts members
//! in their turns.

use std::time::Duration;

use pgreplica_e2e::cluster::{repo_file, LocalCluster};

#[test]
fn up_refuses_to_revert_an_applied_spec() {
    let lab = repo_file("examples/minimal.yaml");
    let cluster = LocalCluster::up(&lab, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("local up failed: {e}"));
    let text = std::fs::read_to_string(&lab).expect("minimal.yaml");
    let changed = cluster.dir.join("changed.yaml");
    let edited = text.replacen("spec:\n", "spec:\n  failback: Manual\n", 1);
    assert_ne!(edited, text, "minimal.yaml has a `spec:` line");
    std::fs::write(&changed, edited).expect("write");
    let changed_arg = changed.display().to_string();
    let lab_arg = lab.display().to_string();

    let applied = cluster.run(&["apply", "-f", &changed_arg]).expect("apply");
    assert!(
        applied.contains("(generation 2)") && applied.contains("failback: Automatic → Manual"),
        "{applied}"
    );
    let again = cluster
        .run(&["apply", "-f", &changed_arg])
        .expect("apply again");
    assert!(
        again.contains("nothing changed") && again.contains("generation 2"),
        "{again}"
    );
    let generation = || {
        pgreplica_e2e::poll::until_blocking(Duration::from_secs(10), || {
            let status: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(cluster.dir.join("status.json")).ok()?,
            )
            .ok()?;
            status["status"]["observedGeneration"]
                .as_i64()
                .filter(|g| *g == 2)
        })
    };
    assert_eq!(
        generation(),
        Some(2),
        "the brain reports the applied generation"
    );
    // and keeps what changed in its event history (`local status` shows it)
    let recorded = cluster
        .status()
        .ok()
        .and_then(|s| {
            s["events"].as_array().and_then(|events| {
                events
                    .iter()
                    .find(|e| e["reason"] == "SpecChanged")
                    .and_then(|e| e["message"].as_str().map(String::from))
            })
        })
        .unwrap_or_default();
    assert!(
        recorded.starts_with("generation 2: failback: Automatic → Manual"),
        "SpecChanged event: {recorded:?}"
    );

    cluster.run(&["down"]).expect("down");
    // a stopped cluster says so, and exits 3 (documented exit codes)
    let (code, stopped, _) = cluster.run_raw(&["status"]).expect("status");
    assert!(
        code == Some(3) && stopped.contains("Stopped (was"),
        "status after down: {code:?}\n{stopped}"
    );
    let (code, _, refused) = cluster
        .run_raw(&["up", "-f", &lab_arg, "--detach"])
        .expect("up");
    assert!(
        code == Some(3)
            && refused.contains("failback: Manual → Automatic")
            && refused.contains("--replace-spec"),
        "up with the old file must be refused with 3: {code:?} {refused}"
    );
    cluster
        .run(&["up", "-f", &changed_arg, "--detach"])
        .expect("up with the applied spec");
    cluster.run(&["down"]).expect("down");
    let replaced = cluster
        .run(&["up", "-f", &lab_arg, "--detach", "--replace-spec"])
        .expect("up --replace-spec");
    assert!(replaced.contains("generation 3"), "{replaced}");
    // the event history outlives the brains that wrote it
    let events = cluster.run(&["events"]).expect("events");
    assert!(
        events.contains("SpecChanged") && events.contains("generation 2: failback"),
        "{events}"
    );

    // a restart asked for by a person: one member, then all (the primary after a switchover)
    let one = cluster.run(&["restart", "two", "--timeout-seconds", "120"]);
    assert!(
        one.as_ref().is_ok_and(|o| o.contains("restarted: two")),
        "{one:?}"
    );
    let all = cluster.run(&["restart", "--timeout-seconds", "180"]);
    assert!(
        all.as_ref()
            .is_ok_and(|o| o.contains("restarted: one, two")),
        "{all:?}"
    );
    let (code, _, unknown) = cluster.run_raw(&["restart", "zz"]).expect("restart zz");
    assert!(
        code == Some(2) && unknown.contains("zz is not a member"),
        "{code:?} {unknown}"
    );
}

/// When each member's PostgreSQL last read its configuration, and when it started.
fn load_times(cluster: &LocalCluster) -> Vec<(String, String, String)> {
    let status = cluster.status().expect("status");
    let password = cluster.password();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    cluster
        .member_names()
        .into_iter()
        .map(|name| {
            let port = cluster
                .member(&status, &name)
                .and_then(|m| m["port"].as_u64())
                .expect("a port") as u16;
            let (load, start) = runtime.block_on(async {
                let (client, conn) = tokio_postgres::connect(
                    &pgreplica_e2e::ledger::conninfo(port, &password),
                    tokio_postgres::NoTls,
                )
                .await
                .unwrap_or_else(|e| panic!("connect to {name}: {e}"));
                tokio::spawn(conn);
                let row = client
                    .query_one(
                        "SELECT pg_conf_load_time()::text, pg_postmaster_start_time()::text",
                        &[],
                    )
                    .await
                    .expect("load time");
                (row.get::<_, String>(0), row.get::<_, String>(1))
            });
            (name, load, start)
        })
        .collect()
}

/// `local reload` has one member, then every member, read its configuration again (seen in
/// PostgreSQL's own `pg_conf_load_time()`), and restarts nobody.
#[test]
fn reload_reaches_the_members_asked_without_a_restart() {
    let cluster = LocalCluster::up(
        &repo_file("examples/minimal.yaml"),
        Duration::from_secs(180),
    )
    .unwrap_or_else(|e| panic!("local up failed: {e}"));
    let before = load_times(&cluster);
    let one = cluster.run(&["reload", "two"]);
    assert!(
        one.as_ref().is_ok_and(|o| o.contains("reloaded: two")),
        "{one:?}"
    );
    let after_one = load_times(&cluster);
    for ((name, load, start), (_, load2, start2)) in before.iter().zip(&after_one) {
        assert_eq!(start, start2, "{name} restarted");
        if name == "two" {
            assert!(load2 > load, "two did not read its configuration again");
        } else {
            assert_eq!(load, load2, "{name} was not asked to reload");
        }
    }
    // a reader that went away (`| head`) ends `logs` and `status` quietly, as it ends any Unix
    // tool (killed by SIGPIPE), not with a panic on the broken pipe
    for args in [&["logs", "one"][..], &["status", "-o", "json"][..]] {
        let (read, write) = nix::unistd::pipe().expect("a pipe");
        drop(read);
        let out = std::process::Command::new(pgreplica_e2e::cluster::binary())
            .arg("local")
            .args(args)
            .arg("--dir")
            .arg(&cluster.dir)
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("pgreplica");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked")
                && std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(13),
            "`local {}` with nobody reading: {:?} {stderr}",
            args.join(" "),
            out.status
        );
    }
    // `logs -f` prints what is written after it started: one's server reloading
    let mut follower = std::process::Command::new(pgreplica_e2e::cluster::binary())
        .args(["local", "logs", "one", "-f", "-n", "0", "--dir"])
        .arg(&cluster.dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("pgreplica local logs -f");
    let followed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let followed = followed.clone();
        let mut out = follower.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut text) = followed.lock() {
                    text.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        })
    };
    let all = cluster.run(&["reload"]);
    assert!(
        all.as_ref().is_ok_and(|o| o.contains("reloaded: one, two")),
        "{all:?}"
    );
    let seen = pgreplica_e2e::poll::until_blocking(Duration::from_secs(30), || {
        followed
            .lock()
            .ok()
            .filter(|t| t.contains("reloading configuration files"))
            .map(|_| ())
    });
    let _ = follower.kill();
    let _ = follower.wait();
    let _ = reader.join();
    assert!(
        seen.is_some(),
        "`logs -f` did not print the reload: {:?}",
        followed.lock().map(|t| t.clone()).unwrap_or_default()
    );
    for ((name, load, start), (_, load2, start2)) in after_one.iter().zip(&load_times(&cluster)) {
        assert_eq!(start, start2, "{name} restarted");
        assert!(load2 > load, "{name} did not read its configuration again");
    }
}

/// As root, PostgreSQL runs as the `postgres` user: a state directory it cannot reach (under a
/// `mktemp -d`, or `/root`) was found out after 300 s of initdb failing every 0.2 s. `local up`
/// now refuses at once and names the directory and the fix.
#[test]
fn up_refuses_a_state_directory_postgres_cannot_reach() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: only root runs PostgreSQL as another user");
        return;
    }
    let closed = tempfile::tempdir().expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700))
        .expect("chmod 700");
    let state = closed.path().join("state");
    let out = std::process::Command::new(pgreplica_e2e::cluster::binary())
        .args(["local", "up", "-f"])
        .arg(repo_file("examples/minimal.yaml"))
        .arg("--dir")
        .arg(&state)
        .args(["--detach", "--timeout-seconds", "30"])
        .output()
        .expect("run pgreplica");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "local up succeeded: {stderr}");
    assert!(
        stderr.contains("cannot enter") && stderr.contains(&closed.path().display().to_string()),
        "{stderr}"
    );
    assert!(
        !state.join("members").exists(),
        "members were set up before the refusal"
    );
}

/// A state directory deleted under a running cluster (its data gone with it) left the brain and
/// the agents running for ever, holding the endpoint ports: the brain now stops, and its agents
/// with it.
#[test]
fn a_deleted_state_directory_stops_the_cluster() {
    let cluster = LocalCluster::up(
        &repo_file("examples/minimal.yaml"),
        Duration::from_secs(180),
    )
    .unwrap_or_else(|e| panic!("local up failed: {e}"));
    use pgreplica_e2e::faults::procs;
    let mut pids = vec![procs::brain_pid(&cluster.dir).expect("the brain's pid") as i32];
    for m in cluster.member_names() {
        pids.push(procs::agent_pid(&cluster.dir, &m).expect("an agent's pid") as i32);
    }
    pgreplica_e2e::rm::rm_rf(&cluster.dir).expect("rm -rf the state directory");
    // running: a process that exists and is not a zombie waiting for its parent to reap it
    let alive = |p: i32| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(") ")
                    .map(|(_, rest)| !rest.starts_with('Z'))
            })
            .unwrap_or(false)
    };
    let stopped = pgreplica_e2e::poll::until_blocking(Duration::from_secs(60), || {
        (!pids.iter().any(|p| alive(*p))).then_some(())
    });
    let left: Vec<i32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    for p in &left {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        stopped.is_some(),
        "still running 60 s after the state directory was deleted: {left:?}"
    );
}

/// `up --detach` waited its whole timeout (300 s) while a member failed the same way on every
/// try; it gives up after 30 s of the same error, naming the member and the error.
#[test]
fn up_gives_up_early_on_a_member_that_keeps_failing() {
    let text = std::fs::read_to_string(repo_file("examples/minimal.yaml")).expect("minimal.yaml");
    // a value PostgreSQL refuses at start: every start fails the same way
    let broken = text.replacen(
        "spec:\n",
        "spec:\n  postgres:\n    parameters:\n      shared_buffers: 100TB\n",
        1,
    );
    assert_ne!(broken, text, "minimal.yaml has a `spec:` line");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).expect("write");
    let began = std::time::Instant::now();
    let refused = LocalCluster::up(&file, Duration::from_secs(240))
        .err()
        .expect("up must fail");
    let took = began.elapsed();
    assert!(
        refused.contains("has failed with the same error for 30 s")
            && refused.contains("shared_buffers"),
        "{refused}"
    );
    assert!(
        took < Duration::from_secs(120),
        "gave up only after {took:?}"
    );
    println!("up gave up after {:.1} s", took.as_secs_f64());
}
