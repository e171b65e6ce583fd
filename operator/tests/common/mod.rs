//! Harness for the member-agent tests: real `pgreplica instance run` processes, each running a
//! real PostgreSQL, in one temporary directory per cluster. The test plays the brain by PUTting
//! desired states and reads each agent's `/status`, over HTTPS with the brain's certificate of
//! the cluster's own CA, as the runtimes do.
//!
//! On a failing test the cluster prints every member's log tail and last report before the
//! agents are stopped (SIGTERM, then SIGKILL after a bounded wait, by PID).

#![allow(dead_code)] // not every test binary uses every helper

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pgreplica::instance::AgentConfig;
use pgreplica::lease::{FileLease, Lease, LeaseRecord};
use pgreplica::member::{Desired, DesiredRole, MemberReport, SyncStandbys, Upstream};
use pgreplica::net::http::{AgentClient, Target};
use pgreplica::postgres::{connect, slot_name_for, Conn, ConnParams};
use pgreplica::tls::{agent_name, LocalTls};
use tempfile::TempDir;

/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(50);
const HTTP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long an agent may take to stop after SIGTERM (it stops PostgreSQL with a fast shutdown).
const STOP_PATIENCE: Duration = Duration::from_secs(20);
const LEASE_DURATION_MS: u64 = 5_000;

/// Polls `check` every [`POLL`] until it returns `Some`, or panics naming `what` after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A loopback port nobody listens on now, outside the ephemeral range (the test's brain keeps
/// connections open, and their local ports come from that range).
pub fn free_port() -> u16 {
    pgreplica::net::ports::free_port("127.0.0.1").expect("a free port")
}

/// A random password with characters that need quoting in every place it goes.
pub fn random_password() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("getrandom");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("pw'{hex}\\:x")
}

/// One member: its agent process and where it lives.
pub struct Member {
    pub name: String,
    pub port: u16,
    pub http: SocketAddr,
    /// The member directory (`data/` inside it).
    pub dir: PathBuf,
    pub log: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    last_report: Mutex<Option<MemberReport>>,
}

impl Member {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The agent's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn agent_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// A cluster of agents in one temporary directory.
pub struct Cluster {
    pub name: String,
    members: Vec<Member>,
    superuser_password: String,
    /// The application role's password (`app`, database `app`).
    pub app_password: String,
    lease_file: PathBuf,
    started: Instant,
    /// The cluster CA (as the local runtime keeps it) and the brain's client.
    pub tls: LocalTls,
    pub brain: AgentClient,
    // Last: removed after the agents stopped.
    root: TempDir,
}

impl Cluster {
    /// Configures (does not start) one agent per name.
    pub fn new(name: &str, members: &[&str]) -> Cluster {
        let root = tempfile::Builder::new()
            .prefix(&format!("pgreplica-agent-{name}-"))
            .tempdir()
            .expect("temp dir");
        // PostgreSQL runs as `postgres` when we are root: it must traverse the root.
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod 0755");
        let superuser_password = random_password();
        let superuser_file = root.path().join("superuser.pw");
        let replication_file = root.path().join("replication.pw");
        std::fs::write(&superuser_file, format!("{superuser_password}\n")).expect("write");
        std::fs::write(&replication_file, format!("{}\n", random_password())).expect("write");
        let app_password = random_password();
        let app_file = root.path().join("app.pw");
        std::fs::write(&app_file, format!("{app_password}\n")).expect("write");
        let lease_file = root.path().join("lease.json");
        let tls = LocalTls::open(&root.path().join("tls"), name).expect("cluster CA");
        let owner = pgreplica::postgres::RunAs::detect(None).expect("postgres user");
        let (brain_tls, _) = tls.brain_client().expect("brain certificate");
        let mut list = Vec::new();
        for member in members {
            let dir = root.path().join(member);
            let port = free_port();
            let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let (files, _) = tls
                .ensure_member(&dir.join("tls"), member, owner)
                .expect("member certificate");
            let cfg = AgentConfig {
                cluster: name.to_string(),
                member: member.to_string(),
                member_dir: dir.clone(),
                listen_host: "127.0.0.1".into(),
                port,
                http,
                tls: files,
                pg_bindir: None,
                run_as: None,
                superuser_password_file: superuser_file.clone(),
                replication_password_file: replication_file.clone(),
                lease_file: lease_file.clone(),
                lease_backend: Default::default(),
                lease_duration_ms: LEASE_DURATION_MS,
                allow_networks: vec![],
                max_slot_wal_keep_size: "1GB".into(),
                application: Some(pgreplica::instance::config::ApplicationConfig {
                    user: "app".into(),
                    database: "app".into(),
                    password_file: app_file.clone(),
                }),
            };
            let config = root.path().join(format!("{member}.json"));
            std::fs::write(&config, serde_json::to_vec_pretty(&cfg).expect("json"))
                .expect("write config");
            list.push(Member {
                name: member.to_string(),
                port,
                http,
                log: root.path().join(format!("{member}.log")),
                dir,
                config,
                child: None,
                last_report: Mutex::new(None),
            });
        }
        Cluster {
            name: name.to_string(),
            members: list,
            superuser_password,
            app_password,
            lease_file,
            started: Instant::now(),
            tls,
            brain: AgentClient::new(brain_tls),
            root,
        }
    }

    /// Configures and starts every agent; waits until each serves `/status`.
    pub async fn start(name: &str, members: &[&str]) -> Cluster {
        let mut cluster = Cluster::new(name, members);
        for m in members {
            cluster.start_agent(m);
        }
        for m in members {
            cluster
                .wait_for(
                    m,
                    "the agent to serve /status",
                    Duration::from_secs(20),
                    |_| true,
                )
                .await;
        }
        cluster
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    fn member_mut(&mut self, name: &str) -> &mut Member {
        self.members
            .iter_mut()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no member {name}"))
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Seconds since the cluster was set up, for log lines.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Spawns `pgreplica instance run` for `name`, output to its log file.
    pub fn start_agent(&mut self, name: &str) {
        let member = self.member_mut(name);
        assert!(member.child.is_none(), "{name} already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .expect("open log");
        let err = log.try_clone().expect("clone log handle");
        let child = Command::new(env!("CARGO_BIN_EXE_pgreplica"))
            .args(["instance", "run", "--config"])
            .arg(&member.config)
            .env("PGREPLICA_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .expect("spawn pgreplica instance run");
        member.child = Some(child);
    }

    /// Hands `desired` to the agent of `name`.
    pub async fn put(&self, name: &str, desired: Desired) {
        let (status, body) = self
            .brain
            .send_json(
                &self.target(name),
                "PUT",
                "/desired",
                &desired,
                HTTP_TIMEOUT,
            )
            .await
            .unwrap_or_else(|e| panic!("PUT /desired to {name}: {e}"));
        assert_eq!(
            status,
            200,
            "PUT /desired to {name}: {}",
            String::from_utf8_lossy(&body)
        );
        println!(
            "[{} {:6.2}s] {name} ← {} ({})",
            self.name,
            self.elapsed(),
            desired.role_name(),
            desired.reason
        );
    }

    /// Where `name`'s agent listens and the name its certificate carries.
    pub fn target(&self, name: &str) -> Target {
        Target {
            name: agent_name(&self.name, name),
            addr: self.member(name).http,
        }
    }

    /// The agent's report now, or `None` when it does not answer.
    pub async fn try_status(&self, name: &str) -> Option<MemberReport> {
        let m = self.member(name);
        let report: MemberReport = self
            .brain
            .get_json(&self.target(name), "/status", HTTP_TIMEOUT)
            .await
            .ok()?;
        *m.last_report.lock().unwrap_or_else(|e| e.into_inner()) = Some(report.clone());
        Some(report)
    }

    pub async fn status(&self, name: &str) -> MemberReport {
        self.try_status(name)
            .await
            .unwrap_or_else(|| panic!("{name}'s agent does not answer /status"))
    }

    /// Polls `name`'s report until `pred` holds; panics after `limit` with the last report.
    pub async fn wait_for(
        &self,
        name: &str,
        what: &str,
        limit: Duration,
        mut pred: impl FnMut(&MemberReport) -> bool,
    ) -> MemberReport {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(report) = self.try_status(name).await {
                if pred(&report) {
                    return report;
                }
            }
            if Instant::now() >= deadline {
                let last = self
                    .member(name)
                    .last_report
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                panic!(
                    "timed out after {limit:?} waiting for {name}: {what}; last report: {last:#?}"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `name` runs as a primary with healthy data.
    pub async fn wait_primary(&self, name: &str, limit: Duration) -> MemberReport {
        self.wait_for(name, "running primary", limit, |r| {
            r.is_running_primary() && r.converged
        })
        .await
    }

    /// Waits until `name` streams from `upstream`.
    pub async fn wait_streaming(
        &self,
        name: &str,
        upstream: &str,
        limit: Duration,
    ) -> MemberReport {
        self.wait_for(name, &format!("streaming from {upstream}"), limit, |r| {
            r.is_streaming_from(upstream) && r.converged
        })
        .await
    }

    /// Superuser connection parameters for `name`'s server.
    pub fn params(&self, name: &str) -> ConnParams {
        let mut params = ConnParams::new("127.0.0.1", self.member(name).port, "postgres")
            .with_password(self.superuser_password.clone())
            .with_application_name("pgreplica-agent-test");
        params.connect_timeout = Duration::from_secs(2);
        params
    }

    /// A superuser connection to `name`'s server.
    pub async fn sql(&self, name: &str) -> Conn {
        connect(&self.params(name))
            .await
            .unwrap_or_else(|e| panic!("connecting to {name}: {e}"))
    }

    /// The lease record as stored now.
    pub async fn lease(&self) -> LeaseRecord {
        FileLease::new(self.lease_file.clone())
            .read()
            .await
            .expect("read lease")
    }

    /// `Upstream` naming `name`'s server.
    pub fn upstream(&self, name: &str) -> Upstream {
        Upstream {
            member: name.to_string(),
            host: "127.0.0.1".into(),
            port: self.member(name).port,
        }
    }

    /// Desired: standby of `upstream` through this member's slot.
    pub fn standby_of(&self, name: &str, upstream: &str, apply_delay_ms: u64) -> Desired {
        Desired {
            role: DesiredRole::Standby {
                upstream: self.upstream(upstream),
                slot: slot_name_for(name),
                apply_delay_ms,
                replay_paused: false,
                slots: vec![],
            },
            parameters: Default::default(),
            restart: false,
            restart_before_ms: None,
            reload_before_ms: None,
            reason: format!("test: {name} follows {upstream}"),
        }
    }

    /// Stops one agent with SIGTERM (it stops PostgreSQL fast), SIGKILL if it hangs.
    pub fn stop_agent(&mut self, name: &str) {
        if let Some(mut child) = self.member_mut(name).child.take() {
            terminate(&mut child, name);
        }
    }

    fn dump(&self) {
        for m in &self.members {
            let log = m.log_text();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(80)..].join("\n");
            let status = self.blocking_status(&m.name).unwrap_or_else(|| {
                m.last_report
                    .lock()
                    .map(|r| format!("(agent silent; last seen) {:#?}", *r))
                    .unwrap_or_default()
            });
            eprintln!(
                "===== {} / {}: agent log tail ({}) =====\n{tail}\n===== {} / {}: /status =====\n{status}\n",
                self.name,
                m.name,
                m.log.display(),
                self.name,
                m.name
            );
        }
    }
}

impl Cluster {
    /// `GET /status` from outside any async runtime (Drop may run inside one), bounded.
    fn blocking_status(&self, name: &str) -> Option<String> {
        let (brain, target) = (self.brain.clone(), self.target(name));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            let report: MemberReport = runtime
                .block_on(brain.get_json(&target, "/status", Duration::from_secs(2)))
                .ok()?;
            serde_json::to_string_pretty(&report).ok()
        })
        .join()
        .ok()
        .flatten()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("PGREPLICA_TEST_DUMP").is_some() {
            self.dump();
        }
        let stopping = Instant::now();
        // SIGTERM everyone first so they stop in parallel, then wait for each.
        for m in &self.members {
            if let Some(pid) = m.agent_pid() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                terminate(&mut child, &m.name);
            }
        }
        println!(
            "[{} {:6.2}s] agents stopped in {:.2}s",
            self.name,
            self.elapsed(),
            stopping.elapsed().as_secs_f64()
        );
    }
}

/// SIGTERM (again, harmless), wait up to [`STOP_PATIENCE`], then SIGKILL.
fn terminate(child: &mut Child, name: &str) {
    let pid = Pid::from_raw(child.id() as i32);
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_PATIENCE;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("agent {name} did not stop within {STOP_PATIENCE:?}: SIGKILL");
    let _ = kill(pid, Signal::SIGKILL);
    let _ = child.wait();
}

/// Desired: primary with `FIRST count (sync...)` and one slot per named standby.
pub fn primary(bootstrap: bool, sync: &[&str], standbys: &[&str]) -> Desired {
    Desired {
        role: DesiredRole::Primary {
            bootstrap,
            sync: SyncStandbys {
                count: u32::from(!sync.is_empty()),
                names: sync.iter().map(|s| s.to_string()).collect(),
            },
            slots: standbys.iter().map(|s| slot_name_for(s)).collect(),
        },
        parameters: Default::default(),
        restart: false,
        restart_before_ms: None,
        reload_before_ms: None,
        reason: format!("test: primary (sync {sync:?})"),
    }
}

pub fn stopped() -> Desired {
    Desired {
        role: DesiredRole::Stopped,
        parameters: Default::default(),
        restart: false,
        restart_before_ms: None,
        reload_before_ms: None,
        reason: "test: stop".into(),
    }
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet: it no longer runs).
pub fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// The postmaster pid from `data/postmaster.pid`.
pub fn postmaster_pid(data: &Path) -> i32 {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).expect("postmaster.pid");
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid in postmaster.pid")
}

/// Creates the test table on a primary.
pub async fn create_table(conn: &Conn) {
    conn.batch("CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY, note text)")
        .await
        .expect("create table");
}

pub async fn insert(conn: &Conn, id: i64, note: &str) {
    conn.client()
        .execute("INSERT INTO t (id, note) VALUES ($1, $2)", &[&id, &note])
        .await
        .unwrap_or_else(|e| panic!("insert {id}: {e}"));
}

/// Whether row `id` is visible on `conn`'s server.
pub async fn has_row(conn: &Conn, id: i64) -> bool {
    conn.client()
        .query_opt("SELECT 1 FROM t WHERE id = $1", &[&id])
        .await
        .unwrap_or_else(|e| panic!("select {id}: {e}"))
        .is_some()
}

/// Every id in `t`.
pub async fn ids(conn: &Conn) -> std::collections::BTreeSet<i64> {
    conn.client()
        .query("SELECT id FROM t", &[])
        .await
        .expect("select ids")
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .collect()
}

/// Connects to `name` and checks that every id in `want` is there; polls (bounded) since a
/// standby may still be replaying.
pub async fn wait_rows(cluster: &Cluster, name: &str, want: &[i64], limit: Duration) {
    let mut missing: Vec<i64> = want.to_vec();
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(conn) = connect(&cluster.params(name)).await {
            if let Ok(rows) = conn.client().query("SELECT id FROM t", &[]).await {
                let have: std::collections::BTreeSet<i64> =
                    rows.iter().map(|r| r.get::<_, i64>(0)).collect();
                missing = want
                    .iter()
                    .copied()
                    .filter(|id| !have.contains(id))
                    .collect();
                if missing.is_empty() {
                    return;
                }
            }
        }
        if Instant::now() >= deadline {
            let shown: Vec<i64> = missing.iter().take(20).copied().collect();
            panic!(
                "{name} lacks {} of {} expected rows after {limit:?}, e.g. {shown:?}",
                missing.len(),
                want.len()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Indexes of the first lines of `log` containing each of `needles`, in order; panics naming
/// the first needle not found after the previous one.
pub fn lines_in_order(log: &str, needles: &[&str]) -> Vec<usize> {
    let lines: Vec<&str> = log.lines().collect();
    let mut at = 0;
    let mut found = Vec::new();
    for needle in needles {
        match lines[at..].iter().position(|l| l.contains(needle)) {
            Some(i) => {
                found.push(at + i);
                at += i + 1;
            }
            None => panic!(
                "log line {needle:?} not found after line {at} (order: {needles:?}); \
                 earlier anywhere: {}",
                lines[..at].iter().any(|l| l.contains(needle))
            ),
        }
    }
    found
}
