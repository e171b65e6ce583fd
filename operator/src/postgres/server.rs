//! Running `postgres` itself as a child process, stopping it, and passing its log lines on.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::error::{PgError, PgResult};
use super::programs::{absolute, Programs};
use super::query::{connect, Conn, ConnParams};

/// How many of the server's last log lines are kept for error messages.
const LOG_TAIL: usize = 40;

/// PostgreSQL's three shutdown modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGTERM: wait for clients to disconnect.
    Smart,
    /// SIGINT: disconnect clients, checkpoint, stop (WAL reaches streaming standbys first).
    Fast,
    /// SIGQUIT: stop at once; crash recovery on the next start.
    Immediate,
}

impl Shutdown {
    pub fn signal(self) -> Signal {
        match self {
            Shutdown::Smart => Signal::SIGTERM,
            Shutdown::Fast => Signal::SIGINT,
            Shutdown::Immediate => Signal::SIGQUIT,
        }
    }
}

/// Sends the signal of `mode` to the postmaster `pid`.
pub fn signal_postgres(pid: u32, mode: Shutdown) -> PgResult<()> {
    let signal = mode.signal();
    let raw = i32::try_from(pid).map_err(|_| PgError::Signal {
        pid,
        signal: signal.as_str(),
        source: nix::Error::EINVAL,
    })?;
    kill(Pid::from_raw(raw), signal).map_err(|source| PgError::Signal {
        pid,
        signal: signal.as_str(),
        source,
    })
}

/// Fences the server of postmaster `pid` at once: every process of it gets SIGKILL, so no
/// backend or WAL sender can acknowledge or confirm anything more, even while the postmaster is
/// stopped (SIGSTOP, a frozen disk) — where a SIGQUIT would wait for it to continue. Each child
/// of the postmaster leads its own session (PostgreSQL calls `setsid()` in every child), so the
/// postmaster is stopped first (it can fork no more), its children are found by parent pid and
/// killed with their own groups, then the postmaster. The next start runs crash recovery.
pub fn kill_postgres_tree(pid: u32) -> PgResult<()> {
    let raw = i32::try_from(pid).map_err(|_| PgError::Signal {
        pid,
        signal: Signal::SIGKILL.as_str(),
        source: nix::Error::EINVAL,
    })?;
    let postmaster = Pid::from_raw(raw);
    let _ = kill(postmaster, Signal::SIGSTOP);
    for child in crate::procfs::children(pid) {
        if let Ok(c) = i32::try_from(child) {
            let _ = nix::sys::signal::killpg(Pid::from_raw(c), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(c), Signal::SIGKILL);
        }
    }
    kill(postmaster, Signal::SIGKILL).map_err(|source| PgError::Signal {
        pid,
        signal: Signal::SIGKILL.as_str(),
        source,
    })
}

impl Programs {
    /// Starts `postgres -D data <extra_args>` as a child with stdout and stderr piped (read them,
    /// e.g. with [`ServerLog::capture`], or the server blocks once the pipe is full). The child is
    /// not killed when its handle is dropped, but it gets SIGQUIT (immediate shutdown) when the
    /// thread that started it ends, so a dead agent leaves no blind server behind. Start it from a
    /// long-lived thread (a runtime worker or the main thread), never from `spawn_blocking`. It runs
    /// in its own process group: terminal signals reach the agent, which decides.
    pub fn spawn_postgres<I, S>(&self, data: &Path, extra_args: I) -> PgResult<Child>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let data = absolute(data)?;
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(&data)
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(false)
            .process_group(0);
        let parent = nix::unistd::getpid();
        // SAFETY: the closure runs in the forked child before exec and only makes two system
        // calls (prctl, getppid); it allocates nothing and takes no locks.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGQUIT).map_err(std::io::Error::from)?;
                if nix::unistd::getppid() != parent {
                    return Err(std::io::Error::other(
                        "the agent exited before postgres started",
                    ));
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| PgError::Spawn {
            program: "postgres".into(),
            source,
        })?;
        info!(data = %data.display(), pid = child.id(), "postgres started");
        Ok(child)
    }

    /// [`Programs::spawn_postgres`] with its output passed to `tracing` under `label`.
    pub fn start_postgres<I, S>(
        &self,
        data: &Path,
        extra_args: I,
        label: &str,
    ) -> PgResult<PostgresProcess>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = self.spawn_postgres(data, extra_args)?;
        let pid = child.id().ok_or_else(|| PgError::Spawn {
            program: "postgres".into(),
            source: std::io::Error::other("exited at once"),
        })?;
        let log = ServerLog::capture(&mut child, label);
        Ok(PostgresProcess { child, pid, log })
    }
}

/// The server's output: every line logged with the member's label, the last ones kept.
#[derive(Debug)]
pub struct ServerLog {
    lines: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl ServerLog {
    /// Takes the child's stdout and stderr and reads them until the server closes them.
    pub fn capture(child: &mut Child, label: &str) -> ServerLog {
        let lines = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(pass_on(out, label.to_string(), lines.clone())));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(pass_on(err, label.to_string(), lines.clone())));
        }
        ServerLog { lines, readers }
    }

    /// The last lines the server wrote.
    pub fn tail(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        Vec::from(lines.clone()).join("\n")
    }

    /// Waits (bounded) until both pipes are closed, so [`ServerLog::tail`] has the last words.
    pub async fn drain(&mut self, within: Duration) {
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(within, reader).await;
        }
    }
}

async fn pass_on(pipe: impl AsyncRead + Unpin, label: String, keep: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        match severity(&line) {
            Severity::Error => error!(target: "postgres", member = %label, "{line}"),
            Severity::Warning => warn!(target: "postgres", member = %label, "{line}"),
            Severity::Info => info!(target: "postgres", member = %label, "{line}"),
            Severity::Debug => debug!(target: "postgres", member = %label, "{line}"),
        }
        let mut kept = keep.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() == LOG_TAIL {
            kept.pop_front();
        }
        kept.push_back(line);
    }
}

/// The level a server line is logged at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
    Info,
    Debug,
}

/// Refusals our own looks at a starting or stopping server cause (connection attempts every few
/// hundred milliseconds): expected, not worth a person's attention.
const OUR_OWN_NOISE: [&str; 3] = [
    "the database system is starting up",
    "the database system is not yet accepting connections",
    "the database system is shutting down",
];

/// The level of a server line (`%m [%p] SEVERITY:  message`, the prefix pgreplica configures):
/// PANIC and FATAL are errors, ERROR and WARNING warnings, LOG and the rest information; DEBUG
/// lines and the refusals of our own polling are debug. A line without a severity (a DETAIL's
/// continuation, a program's output) is information.
pub fn severity(line: &str) -> Severity {
    let word = line
        .split_once("] ")
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.split_once(':'))
        .map(|(word, _)| word);
    match word {
        Some("PANIC") => Severity::Error,
        Some("FATAL") if OUR_OWN_NOISE.iter().any(|n| line.contains(n)) => Severity::Debug,
        Some("FATAL") => Severity::Error,
        Some("ERROR" | "WARNING") => Severity::Warning,
        Some(w) if w.starts_with("DEBUG") => Severity::Debug,
        _ => Severity::Info,
    }
}

/// A running postmaster started by us.
#[derive(Debug)]
pub struct PostgresProcess {
    child: Child,
    pid: u32,
    log: ServerLog,
}

impl PostgresProcess {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The last lines the server wrote.
    pub fn log_tail(&self) -> String {
        self.log.tail()
    }

    /// Sends the signal of `mode` (without waiting).
    pub fn signal(&self, mode: Shutdown) -> PgResult<()> {
        signal_postgres(self.pid, mode)
    }

    /// The exit status, if the server has exited.
    pub fn try_wait(&mut self) -> PgResult<Option<ExitStatus>> {
        self.child
            .try_wait()
            .map_err(|e| PgError::io("checking on postgres", e))
    }

    /// Waits until the server exits.
    pub async fn wait(&mut self) -> PgResult<ExitStatus> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| PgError::io("waiting for postgres", e))?;
        self.log.drain(Duration::from_secs(1)).await;
        Ok(status)
    }

    /// Stops the server with `mode` and waits up to `patience` for it to exit; if it does not,
    /// escalates to an immediate shutdown, then SIGKILL.
    pub async fn stop(&mut self, mode: Shutdown, patience: Duration) -> PgResult<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        let mut steps = vec![mode];
        if mode != Shutdown::Immediate {
            steps.push(Shutdown::Immediate);
        }
        for step in steps {
            if let Err(e) = self.signal(step) {
                warn!(pid = self.pid, error = %e, "signal to postgres failed");
            }
            if let Ok(waited) = tokio::time::timeout(patience, self.wait()).await {
                let status = waited?;
                info!(pid = self.pid, mode = ?step, %status, "postgres stopped");
                return Ok(status);
            }
            warn!(pid = self.pid, mode = ?step, ?patience, "postgres did not stop in time");
        }
        self.child
            .start_kill()
            .map_err(|e| PgError::io("killing postgres", e))?;
        self.wait().await
    }

    /// Polls every 50 ms, up to `timeout`, until a connection with `params` succeeds, and returns
    /// it. Fails at once if the server exits or rejects the credentials.
    pub async fn wait_ready(&mut self, params: &ConnParams, timeout: Duration) -> PgResult<Conn> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                self.log.drain(Duration::from_secs(1)).await;
                return Err(PgError::ServerExited {
                    status,
                    when: "while starting",
                    tail: self.log_tail(),
                });
            }
            let last = match connect(params).await {
                Ok(conn) => return Ok(conn),
                Err(e) if is_auth_failure(&e) => return Err(e),
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(PgError::Timeout {
                    what: format!("postgres to accept connections (last error: {last})"),
                    after: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn is_auth_failure(e: &PgError) -> bool {
    e.sqlstate()
        .is_some_and(|code| code.code().starts_with("28"))
}

#[cfg(test)]
mod severity_tests {
    use super::{severity, Severity};

    /// Every PostgreSQL line was logged at INFO, FATAL included, and each start logged about 15
    /// FATALs caused by our own polling.
    #[test]
    fn levels_of_server_lines() {
        let p = "2026-12-01 05:00:00.123 UTC [4242] ";
        let table = [
            (format!("{p}LOG:  database system is ready to accept connections"), Severity::Info),
            (format!("{p}FATAL:  the database system is starting up"), Severity::Debug),
            (format!("{p}FATAL:  the database system is not yet accepting connections"), Severity::Debug),
            (format!("{p}FATAL:  could not start WAL streaming: ERROR:  requested starting point 0/5000000 on timeline 1 is not in this server's history"), Severity::Error),
            (format!("{p}PANIC:  could not write to file"), Severity::Error),
            (format!("{p}ERROR:  relation \"t\" does not exist"), Severity::Warning),
            (format!("{p}WARNING:  archive_mode enabled"), Severity::Warning),
            (format!("{p}DEBUG2:  checkpoint"), Severity::Debug),
            ("This server's history forked from timeline 1 at 0/4FFFFC8.".to_string(), Severity::Info),
            ("waiting for server to start.... done".to_string(), Severity::Info),
        ];
        for (line, want) in table {
            assert_eq!(severity(&line), want, "{line}");
        }
    }
}
