//! The postgres process itself: start failures are reported with the server's words, and the
//! server does not outlive the thread (agent) that started it.

use std::time::Duration;

use super::eventually;
use crate::postgres::testing::TestServer;
use crate::postgres::PgError;

/// Gone, or a zombie waiting to be reaped.
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[tokio::test]
async fn start_failure_and_parent_death() {
    let pg = TestServer::initdb("process").await;

    // A server that cannot start: the error carries its last log lines.
    let mut bad = pg
        .programs
        .start_postgres(pg.data_dir(), ["-c", "no_such_setting_x=1"], "bad")
        .unwrap();
    let err = bad
        .wait_ready(&pg.params(), Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(matches!(err, PgError::ServerExited { .. }), "{err}");
    assert!(err.to_string().contains("no_such_setting_x"), "{err}");

    // Started from a thread that then ends: the server gets SIGQUIT and exits.
    let programs = pg.programs.clone();
    let data = pg.data_dir().to_path_buf();
    let params = pg.params();
    let started = std::time::Instant::now();
    let pid = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let child = programs
                .spawn_postgres(&data, ["-c", "log_min_messages=fatal"])
                .unwrap();
            let pid = child.id().unwrap();
            // It really runs: it accepts a connection before the thread ends.
            eventually(
                "postgres to accept a connection",
                Duration::from_secs(20),
                || async { crate::postgres::connect(&params).await.ok() },
            )
            .await;
            pid
        })
    })
    .join()
    .unwrap();
    eventually(
        "postgres to exit after the thread that started it ended",
        Duration::from_secs(20),
        || async { is_dead(pid).then_some(()) },
    )
    .await;
    eprintln!(
        "postgres {pid} was gone {:?} after it started",
        started.elapsed()
    );
    let _ = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(pid as i32),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
}
