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
    // two clean stops and starts lost no primary: the brain waits for the agents' first
    // answers (the lease is released and they refuse connections for their first moments)
    for lost in ["PrimaryLost", "FailoverBlocked", "FailoverStarted"] {
        assert!(
            !events.contains(lost),
            "a clean restart read as a loss ({lost}):\n{events}"
        );
    }

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
    assert_eq!(out.status.code(), Some(3), "refused (exit 3): {stderr}");
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

/// Foreground `up` printed every event twice (as a log line and as a progress line), never said
/// the cluster was ready or how to connect, sent a member the same desired state at every tick
/// while it cloned, and its log was nowhere `local logs` could find it. Now: the story once on
/// stdout, a ready line with the connect command, the log in `logs/brain.log` without colour,
/// each desired state logged once, and Ctrl-C stops the cluster with exit 0.
#[test]
fn foreground_up_tells_the_story_once_and_says_ready() {
    use std::io::{BufRead, BufReader, Read};
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};

    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let dir = tmp.path().join("state");
    let (rw, ro) = (
        pgreplica_e2e::cluster::free_port(),
        pgreplica_e2e::cluster::free_port(),
    );
    let mut up = Command::new(pgreplica_e2e::cluster::binary())
        .args(["local", "up", "-f"])
        .arg(repo_file("examples/minimal.yaml"))
        .arg("--dir")
        .arg(&dir)
        .args(["--rw-port", &rw.to_string(), "--ro-port", &ro.to_string()])
        .env("PGREPLICA_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgreplica local up");
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = up.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut stderr = up.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !seen.iter().any(|l: &String| l.contains(" ready: ")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = up.kill();
                panic!("no ready line within 180 s:\n{}", seen.join("\n"));
            }
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(up.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let status = up.wait().expect("wait for up");
    reader.join().expect("stdout reader");
    seen.extend(lines.try_iter());
    let stderr = errors.join().expect("stderr reader");
    let out = seen.join("\n");

    assert_eq!(status.code(), Some(0), "{out}\n{stderr}");
    let ready = seen
        .iter()
        .find(|l| l.contains(" ready: "))
        .expect("ready line");
    assert!(
        ready.contains(&format!("rw 127.0.0.1:{rw}"))
            && ready.contains(&format!("--dir {}", dir.display()))
            && ready.contains("psql"),
        "{ready}"
    );
    assert!(out.contains("stopped; data kept"), "{out}");
    // no log lines on the terminal: they are in the log file
    for text in [&out, &stderr] {
        assert!(
            !text.contains(" INFO ") && !text.contains("\u{1b}["),
            "log lines on the terminal:\n{text}"
        );
    }
    // each event once: `Cloning [two] two: cloning from one: starting`, not again as `two: ...`
    let messages: Vec<&str> = seen
        .iter()
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest))
        .collect();
    for m in &messages {
        if let Some((_, said)) = m.split_once("] ") {
            assert!(!messages.contains(&said), "said twice: {said:?}\n{out}");
        }
    }
    let log = std::fs::read_to_string(dir.join("logs/brain.log")).expect("brain.log");
    assert!(
        log.contains("pgreplica::story") && !log.contains("\u{1b}["),
        "{log}"
    );
    // a desired state is sent (and logged) when it changes, not at every tick of a clone
    let mut sent: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("desired state member="))
        .filter_map(|l| l.split_once("desired state "))
        .map(|(_, what)| what)
        .collect();
    let all = sent.len();
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), all, "a desired state sent again:\n{log}");
}

/// The lab keeps c 3 s behind so that a mistake can be caught there: `pause-replay c` within
/// the delay keeps the rows a bad DELETE removed, also across a crash of c's PostgreSQL (it
/// restarts at its recovery target and pauses there), and `resume-replay c` lets it catch up.
#[test]
fn pause_replay_keeps_a_delayed_members_data_until_resumed() {
    let cluster = LocalCluster::up(&repo_file("examples/lab.yaml"), Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("local up failed: {e}"));
    let status = cluster.status().expect("status");
    let port = |m: &str| {
        cluster
            .member(&status, m)
            .and_then(|m| m["port"].as_u64())
            .expect("a port") as u16
    };
    let (c_port, password) = (port("c"), cluster.password());
    let runtime = pgreplica_e2e::faults::runtime();
    let query = |port: u16, sql: &str| {
        let info = pgreplica_e2e::ledger::conninfo(port, &password);
        let sql = sql.to_string();
        runtime.block_on(async move {
            let (client, conn) = tokio_postgres::connect(&info, tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let rows = client.simple_query(&sql).await.map_err(|e| e.to_string())?;
            Ok::<Option<String>, String>(rows.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(String::from),
                _ => None,
            }))
        })
    };
    let count_on_c = || query(c_port, "SELECT count(*) FROM t").ok().flatten();
    query(
        cluster.rw_port,
        "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000)",
    )
    .expect("rows");
    pgreplica_e2e::poll::until_blocking(Duration::from_secs(30), || {
        (count_on_c().as_deref() == Some("1000")).then_some(())
    })
    .expect("c applies the rows after its delay");

    // the mistake, then the pause within c's 3 s delay
    query(cluster.rw_port, "DELETE FROM t").expect("the bad delete");
    let deleted = std::time::Instant::now();
    let after_delete = query(cluster.rw_port, "SELECT pg_current_wal_lsn()::text")
        .expect("primary's position")
        .expect("an LSN");
    let paused = cluster.run(&["pause-replay", "c"]).expect("pause-replay c");
    assert!(paused.contains("replay paused: data as of"), "{paused}");
    assert_eq!(count_on_c().as_deref(), Some("1000"), "c kept the rows");
    // c has received the delete and its delay has passed: unpaused, it would have applied it
    pgreplica_e2e::poll::until_blocking(Duration::from_secs(30), || {
        let sql = format!("SELECT (pg_last_wal_receive_lsn() >= '{after_delete}')::text");
        let received = query(c_port, &sql).ok().flatten();
        (received.as_deref() == Some("true") && deleted.elapsed() > Duration::from_secs(4))
            .then_some(())
    })
    .expect("c receives the delete");
    assert_eq!(
        count_on_c().as_deref(),
        Some("1000"),
        "c applied the delete"
    );
    let status = cluster.status().expect("status");
    let c = cluster.member(&status, "c").expect("c");
    assert!(c["frozenAt"].is_string(), "{c}");
    // the pause wrote no setting PostgreSQL takes only at a start: no "contains errors" reload
    let c_log = std::fs::read_to_string(cluster.dir.join("logs/c.log")).expect("c's log");
    assert!(
        !c_log.contains("cannot be changed without restarting"),
        "c's log: {}",
        c_log
            .lines()
            .filter(|l| l.contains("without restarting"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // c's PostgreSQL crashes: it starts again at its recovery target, still paused
    let pid_file = cluster.data_dir("c").join("postmaster.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("postmaster.pid")
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 c's postmaster");
    let after_crash = pgreplica_e2e::poll::until_blocking(Duration::from_secs(60), || {
        let new_pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
        if new_pid.is_none_or(|p| p == pid) {
            return None;
        }
        // paused again at its target (a read before that could come early in its replay)
        let status = cluster.status().ok()?;
        let c = cluster.member(&status, "c")?;
        let paused = c["frozenAt"].is_string()
            && c["activity"]
                .as_str()
                .is_some_and(|a| a.starts_with("replay paused"));
        paused.then(count_on_c).flatten()
    });
    assert_eq!(after_crash.as_deref(), Some("1000"), "c after its crash");

    // a file that does not say c is paused would resume it: refused, naming the ways on
    let lab = std::fs::read_to_string(repo_file("examples/lab.yaml")).expect("lab.yaml");
    let manual = lab.replace("failback: Automatic", "failback: Manual");
    assert_ne!(manual, lab);
    let files = cluster.dir.parent().expect("a parent").to_path_buf();
    let unpaused = files.join("manual.yaml");
    std::fs::write(&unpaused, &manual).expect("write");
    let (code, out, err) = cluster
        .run_raw(&["apply", "-f", &unpaused.display().to_string()])
        .expect("apply");
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(err.contains("pgreplica local resume-replay c"), "{err}");
    let paused_file = files.join("manual-paused.yaml");
    let with_pause = manual.replace(
        "applyDelay: 3s\n",
        "applyDelay: 3s\n      replayPaused: true\n",
    );
    assert_ne!(with_pause, manual);
    std::fs::write(&paused_file, with_pause).expect("write");
    cluster
        .run(&["apply", "-f", &paused_file.display().to_string()])
        .expect("apply with c still paused");

    // a paused member never takes the primary's place (failback Manual: a switchover is allowed)
    let (code, out, err) = cluster
        .run_raw(&["switchover", "--to", "c", "--timeout-seconds", "20"])
        .expect("switchover");
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(format!("{out}{err}").contains("paused"), "{out}{err}");

    let resumed = cluster
        .run(&["resume-replay", "c"])
        .expect("resume-replay c");
    assert!(resumed.contains("replay resumed"), "{resumed}");
    pgreplica_e2e::poll::until_blocking(Duration::from_secs(60), || {
        (count_on_c().as_deref() == Some("0")).then_some(())
    })
    .expect("c applies the delete once resumed");
    let status = cluster.status().expect("status");
    assert_eq!(
        query(c_port, "SELECT pg_is_in_recovery()::text")
            .ok()
            .flatten()
            .as_deref(),
        Some("true"),
        "c is still a standby: {status}"
    );
}
