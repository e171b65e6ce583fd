//! Test fixture: a real PostgreSQL server on a free loopback port in a temporary directory.
//! Compiled only for tests. Works as root (the directory is handed to the run-as user) and as a
//! normal user. Methods panic with a readable message: this is for tests.
//!
//! ```ignore
//! let mut pg = TestServer::primary("a").await;
//! let conn = pg.connect().await;
//! // ...
//! pg.stop(Shutdown::Fast).await;
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use tempfile::TempDir;

use super::config::{
    ensure_included, write_hba, write_settings, write_standby_signal, SETTINGS_FILE,
};
use super::programs::Programs;
use super::query::{Conn, ConnParams};
use super::run_as::{chown_to, write_private_file};
use super::server::{PostgresProcess, Shutdown};

/// The superuser every fixture server has.
pub const SUPERUSER: &str = "pgreplica";

/// How long a fixture server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a fast shutdown may take before escalating.
const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// Programs found on this machine, running as `postgres` when the tests run as root.
pub fn programs() -> Programs {
    Programs::detect(None, None).unwrap_or_else(|e| panic!("PostgreSQL programs: {e}"))
}

/// A loopback port nobody listens on now, outside the ephemeral range.
pub fn free_port() -> u16 {
    crate::net::ports::free_port("127.0.0.1").unwrap_or_else(|e| panic!("a free port: {e}"))
}

/// A password with a quote and a backslash in it, so every quoting path is exercised.
pub fn random_password() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).unwrap_or_else(|e| panic!("getrandom: {e}"));
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("pw'{hex}\\:x")
}

/// One PostgreSQL server for a test; stopped (fast) and deleted when dropped.
pub struct TestServer {
    pub programs: Programs,
    label: String,
    port: u16,
    password: String,
    data: PathBuf,
    process: Option<PostgresProcess>,
    // Last field: dropped after the server is stopped.
    dir: TempDir,
}

impl TestServer {
    /// A configured, running primary.
    pub async fn primary(label: &str) -> TestServer {
        let mut server = TestServer::initdb(label).await;
        server.start().await;
        server
    }

    /// A fresh cluster (initdb + configuration), not started.
    pub async fn initdb(label: &str) -> TestServer {
        let server = TestServer::empty(label, random_password());
        let pwfile = server.dir().join("pwfile");
        let line = format!("{}\n", server.password);
        write_private_file(&pwfile, line.as_bytes(), server.programs.run_as)
            .unwrap_or_else(|e| panic!("{e}"));
        server
            .programs
            .initdb(&server.data, SUPERUSER, &pwfile)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        server.configure(&[]);
        server
    }

    /// A server with the same superuser password as `other` and no data directory yet: the
    /// target of a `pg_basebackup` from `other`.
    pub fn empty_like(other: &TestServer, label: &str) -> TestServer {
        TestServer::empty(label, other.password.clone())
    }

    fn empty(label: &str, password: String) -> TestServer {
        let programs = programs();
        let dir = tempfile::Builder::new()
            .prefix(&format!("pgreplica-test-{label}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        chown_to(dir.path(), programs.run_as).unwrap_or_else(|e| panic!("{e}"));
        let data = dir.path().join("data");
        TestServer {
            programs,
            label: label.to_string(),
            port: free_port(),
            password,
            data,
            process: None,
            dir,
        }
    }

    /// Writes our settings file (`extra` after the base settings) and pg_hba.conf.
    pub fn configure(&self, extra: &[(&str, &str)]) {
        let port = self.port.to_string();
        let mut settings: Vec<(&str, &str)> = vec![
            ("listen_addresses", "127.0.0.1"),
            ("port", &port),
            ("unix_socket_directories", ""),
            ("wal_level", "replica"),
            ("max_wal_senders", "10"),
            ("max_replication_slots", "10"),
            ("hot_standby", "on"),
            ("wal_log_hints", "on"),
            // pg_rewind reads the target's WAL back to the last common checkpoint.
            ("wal_keep_size", "128MB"),
        ];
        settings.extend_from_slice(extra);
        let run_as = self.programs.run_as;
        write_settings(&self.data, SETTINGS_FILE, &settings, run_as)
            .and_then(|()| ensure_included(&self.data, SETTINGS_FILE))
            .and_then(|()| {
                write_hba(
                    &self.data,
                    &[
                        "host all all 127.0.0.1/32 scram-sha-256".to_string(),
                        "host replication all 127.0.0.1/32 scram-sha-256".to_string(),
                    ],
                    run_as,
                )
            })
            .unwrap_or_else(|e| panic!("configuring {}: {e}", self.label));
    }

    /// Makes this (cloned, stopped) server a standby streaming from `primary_conninfo`.
    pub fn configure_standby(&self, primary_conninfo: &str, slot: Option<&str>) {
        let mut extra = vec![("primary_conninfo", primary_conninfo)];
        if let Some(slot) = slot {
            extra.push(("primary_slot_name", slot));
        }
        self.configure(&extra);
        write_standby_signal(&self.data, self.programs.run_as).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts the server and waits until it accepts connections. Picks another port and retries
    /// if the port was taken meanwhile.
    pub async fn start(&mut self) {
        assert!(self.process.is_none(), "{} is already running", self.label);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut process = self
                .programs
                .start_postgres(&self.data, std::iter::empty::<&str>(), &self.label)
                .unwrap_or_else(|e| panic!("starting {}: {e}", self.label));
            match process.wait_ready(&self.params(), START_TIMEOUT).await {
                Ok(_conn) => {
                    self.process = Some(process);
                    return;
                }
                Err(e) => {
                    let _ = process.stop(Shutdown::Immediate, STOP_PATIENCE).await;
                    let tail = process.log_tail();
                    if attempts < 3 && tail.contains("could not bind") {
                        self.port = free_port();
                        self.configure_port();
                        continue;
                    }
                    panic!("{} did not start: {e}\n{tail}", self.label);
                }
            }
        }
    }

    fn configure_port(&self) {
        // Rewrites only the port, keeping the rest of our settings file.
        let path = self.data.join(SETTINGS_FILE);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
        let rewritten: String = text
            .lines()
            .map(|l| {
                if l.starts_with("port = ") {
                    format!("port = '{}'\n", self.port)
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        write_private_file(&path, rewritten.as_bytes(), self.programs.run_as)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops the server with `mode` and waits for it to exit.
    pub async fn stop(&mut self, mode: Shutdown) -> ExitStatus {
        let mut process = self
            .process
            .take()
            .unwrap_or_else(|| panic!("{} is not running", self.label));
        process
            .stop(mode, STOP_PATIENCE)
            .await
            .unwrap_or_else(|e| panic!("stopping {}: {e}", self.label))
    }

    /// The running server process, if started.
    pub fn process(&mut self) -> Option<&mut PostgresProcess> {
        self.process.as_mut()
    }

    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Superuser connection parameters.
    pub fn params(&self) -> ConnParams {
        let mut params = ConnParams::new("127.0.0.1", self.port, SUPERUSER)
            .with_password(self.password.clone())
            .with_application_name(format!("pgreplica-test-{}", self.label));
        params.connect_timeout = Duration::from_secs(2);
        params
    }

    /// A superuser connection.
    pub async fn connect(&self) -> Conn {
        super::query::connect(&self.params())
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.label))
    }

    /// Writes a password file for `user` on this server, readable by the run-as user.
    pub fn write_pgpass(&self, name: &str, user: &str, password: &str) -> PathBuf {
        let path = self.dir().join(name);
        let line = super::quote::pgpass_line("127.0.0.1", self.port, user, password)
            .unwrap_or_else(|e| panic!("{e}"));
        write_private_file(&path, line.as_bytes(), self.programs.run_as)
            .unwrap_or_else(|e| panic!("{e}"));
        path
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// The temporary directory holding the data directory (owned by the run-as user).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        // Drop cannot await: signal, then poll for the exit (bounded), escalating.
        for (mode, patience) in [
            (Shutdown::Fast, STOP_PATIENCE),
            (Shutdown::Immediate, Duration::from_secs(5)),
        ] {
            if process.signal(mode).is_err() {
                return; // already gone
            }
            let deadline = std::time::Instant::now() + patience;
            while std::time::Instant::now() < deadline {
                if !matches!(process.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(process.pid() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
