//! The systems under test.

pub mod patroni;
pub mod pgpool;
pub mod pgreplica;

use std::time::Duration;

/// Ask `cond` until it holds (see [`crate::poll`]).
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), String> {
    crate::poll::until_blocking(timeout, || cond().then_some(()))
        .ok_or_else(|| format!("timed out after {timeout:?} waiting for {what}"))
}

/// Run a future to completion from synchronous code inside the multi-threaded runtime.
pub fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// A fresh directory that the `postgres` user owns (PostgreSQL refuses to run as root).
pub fn postgres_owned_dir(prefix: &str) -> Result<tempfile::TempDir, String> {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| e.to_string())?;
    chown_postgres(tmp.path())?;
    Ok(tmp)
}

pub fn chown_postgres(path: &std::path::Path) -> Result<(), String> {
    let status = std::process::Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("chown {} failed", path.display()))
    }
}

/// `runuser -u postgres -- ARGS...` as a command.
pub fn as_postgres(program: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("runuser");
    cmd.args(["-u", "postgres", "--", program]);
    cmd
}

pub fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|d| d.flatten().map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0)
    } else {
        meta.len()
    }
}

/// A command that runs as the `postgres` user (uid/gid set before exec), in its own process group.
pub fn postgres_command(program: &str) -> Result<std::process::Command, String> {
    use std::os::unix::process::CommandExt;
    let user = nix::unistd::User::from_name("postgres")
        .map_err(|e| e.to_string())?
        .ok_or("no postgres user")?;
    let mut cmd = std::process::Command::new(program);
    cmd.uid(user.uid.as_raw())
        .gid(user.gid.as_raw())
        .env("HOME", &user.dir)
        .env("USER", "postgres")
        .env_remove("PGPASSWORD")
        .process_group(0);
    Ok(cmd)
}

/// Start a long-running process with output appended to `log`.
pub fn spawn_logged(
    mut cmd: std::process::Command,
    log: &std::path::Path,
) -> Result<std::process::Child, String> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("open {}: {e}", log.display()))?;
    let f2 = f.try_clone().map_err(|e| e.to_string())?;
    cmd.stdin(std::process::Stdio::null())
        .stdout(f)
        .stderr(f2)
        .spawn()
        .map_err(|e| format!("spawn {:?}: {e}", cmd.get_program()))
}

/// Run to completion as postgres; error with output on failure.
pub fn run_postgres(program: &str, args: &[&str]) -> Result<String, String> {
    let out = postgres_command(program)?
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    output_text(out, &format!("{program} {args:?}"))
}

/// stdout and stderr of a finished program, or an error naming `what` when it failed.
pub fn output_text(out: std::process::Output, what: &str) -> Result<String, String> {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{what} failed: {text}"))
    }
}

/// SIGKILL every pid; returns them so the caller can wait until they are gone.
pub fn kill9_all(pids: impl IntoIterator<Item = u32>) -> Vec<u32> {
    pids.into_iter()
        .inspect(|pid| {
            let _ = crate::bench::procs::kill9(*pid);
        })
        .collect()
}

/// Wait (bounded) until killed processes have really exited, so their ports and files are free.
pub fn wait_gone(pids: &[u32]) {
    let _ = wait_until("killed processes to exit", Duration::from_secs(10), || {
        pids.iter().all(|p| !crate::bench::procs::alive(*p))
    });
}

pub fn random_password() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("b{:016x}", h.finish())
}

/// Kill a child we started and its process group.
pub fn kill_child(child: &mut std::process::Child) {
    let pid = child.id() as i32;
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `psql -At -c QUERY` against one server (a subprocess, so it is safe from synchronous code).
pub fn psql(port: u16, password: &str, query: &str) -> Result<String, String> {
    let out = std::process::Command::new(crate::bench::pg_bin("psql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-X", "-At", "-F", "|", "-c", query])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "2")
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(format!(
            "psql {query}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
