//! One agent process per member: started, restarted with backoff when it dies (as a kubelet
//! would restart a pod), stopped when the member is removed or the cluster goes down.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tracing::{info, warn};

use crate::api::PgReplicaClusterSpec;
use crate::instance::AgentConfig;

use super::error::LocalError;
use super::layout::{Layout, LocalState};

/// How long the lease lasts in the local runtime: a dead primary is replaced after at most this.
pub const LEASE_DURATION_MS: u64 = 4_000;
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(10);

struct AgentProcess {
    child: Child,
    started: Instant,
}

pub struct Supervisor {
    layout: Layout,
    exe: PathBuf,
    agents: BTreeMap<String, AgentProcess>,
    /// Member → (restarts so far, not before).
    backoff: BTreeMap<String, (u32, Instant)>,
}

/// Something worth telling the person watching.
pub struct SupervisorNote {
    pub member: String,
    pub message: String,
}

impl Supervisor {
    pub fn new(layout: Layout) -> Result<Supervisor, LocalError> {
        let exe = std::env::current_exe().map_err(LocalError::io("find the pgreplica binary"))?;
        Ok(Supervisor {
            layout,
            exe,
            agents: BTreeMap::new(),
            backoff: BTreeMap::new(),
        })
    }

    /// Write the agent configuration of `member` (idempotent).
    pub fn write_config(
        &self,
        state: &LocalState,
        spec: &PgReplicaClusterSpec,
        member: &str,
    ) -> Result<(), LocalError> {
        let ports = state
            .members
            .get(member)
            .ok_or_else(|| LocalError::Failed(format!("no ports for member {member}")))?;
        let member_dir = self.layout.member_dir(member);
        std::fs::create_dir_all(&member_dir)
            .map_err(LocalError::io(format!("create {}", member_dir.display())))?;
        // PostgreSQL runs as an unprivileged user when we are root: it must be able to walk here.
        for dir in [&self.layout.dir, &self.layout.dir.join("members")] {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        }
        let cfg = AgentConfig {
            cluster: state.cluster.clone(),
            member: member.to_string(),
            member_dir: absolute(&member_dir)?,
            listen_host: state.host.clone(),
            port: ports.postgres,
            http: format!("{}:{}", state.host, ports.agent)
                .parse()
                .map_err(|e| LocalError::Failed(format!("agent address: {e}")))?,
            pg_bindir: std::env::var_os(crate::postgres::BINDIR_ENV).map(PathBuf::from),
            run_as: None,
            superuser_password_file: absolute(&self.layout.superuser_password())?,
            replication_password_file: absolute(&self.layout.replication_password())?,
            lease_file: absolute(&self.layout.lease_file())?,
            lease_backend: Default::default(),
            lease_duration_ms: LEASE_DURATION_MS,
            allow_networks: vec![],
            parameters: spec.postgres.parameters.clone(),
            max_slot_wal_keep_size: "1GB".into(),
        };
        let json = serde_json::to_vec_pretty(&cfg)
            .map_err(|e| LocalError::Failed(format!("encode agent config: {e}")))?;
        super::layout::write_atomic(&self.layout.agent_config(member), &json)
    }

    /// Start agents that should run and do not; stop agents of removed members.
    pub fn ensure(&mut self, wanted: &[String]) -> Vec<SupervisorNote> {
        let mut notes = Vec::new();
        let now = Instant::now();
        // reap
        let names: Vec<String> = self.agents.keys().cloned().collect();
        for name in names {
            let exited = self
                .agents
                .get_mut(&name)
                .and_then(|a| a.child.try_wait().ok().flatten());
            if let Some(status) = exited {
                let ran = self.agents.remove(&name).map(|a| a.started.elapsed());
                if !wanted.contains(&name) {
                    continue;
                }
                let (count, _) = self.backoff.get(&name).copied().unwrap_or((0, now));
                let count = if ran.is_some_and(|d| d > Duration::from_secs(60)) {
                    0
                } else {
                    count + 1
                };
                let delay =
                    Duration::from_millis(250 * (1u64 << count.min(6))).min(MAX_RESTART_BACKOFF);
                self.backoff.insert(name.clone(), (count, now + delay));
                notes.push(SupervisorNote {
                    member: name.clone(),
                    message: format!(
                        "agent exited ({status}); restarting in {} ms",
                        delay.as_millis()
                    ),
                });
            }
        }
        for name in wanted {
            if self.agents.contains_key(name) {
                continue;
            }
            if let Some((_, not_before)) = self.backoff.get(name) {
                if now < *not_before {
                    continue;
                }
            }
            match self.spawn(name) {
                Ok(child) => {
                    info!(member = %name, pid = child.id(), "agent started");
                    self.agents.insert(
                        name.clone(),
                        AgentProcess {
                            child,
                            started: now,
                        },
                    );
                }
                Err(e) => notes.push(SupervisorNote {
                    member: name.clone(),
                    message: format!("cannot start agent: {e}"),
                }),
            }
        }
        let removed: Vec<String> = self
            .agents
            .keys()
            .filter(|n| !wanted.contains(n))
            .cloned()
            .collect();
        for name in removed {
            if let Some(agent) = self.agents.get(&name) {
                terminate(&agent.child);
                notes.push(SupervisorNote {
                    member: name.clone(),
                    message: "member removed from the spec: agent stopped (its data is kept)"
                        .into(),
                });
            }
        }
        notes
    }

    fn spawn(&self, member: &str) -> Result<Child, LocalError> {
        let log_path = self.layout.log_file(member);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(LocalError::io(format!("open {}", log_path.display())))?;
        let err = log.try_clone().map_err(LocalError::io("dup log file"))?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(["instance", "run", "--config"])
            .arg(self.layout.agent_config(member))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .env(
                "PGREPLICA_LOG",
                std::env::var("PGREPLICA_LOG").unwrap_or_else(|_| "info".into()),
            )
            .kill_on_drop(false)
            .process_group(0);
        // SAFETY: only async-signal-safe prctl between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        cmd.spawn()
            .map_err(LocalError::io(format!("start the agent of {member}")))
    }

    /// The pid of a member's agent, for failure injection and diagnostics.
    pub fn agent_pid(&self, member: &str) -> Option<u32> {
        self.agents.get(member).and_then(|a| a.child.id())
    }

    /// SIGTERM every agent (each stops PostgreSQL with a fast shutdown) and wait for them.
    pub async fn stop_all(&mut self, patience: Duration) {
        for agent in self.agents.values() {
            terminate(&agent.child);
        }
        for (name, agent) in self.agents.iter_mut() {
            match tokio::time::timeout(patience, agent.child.wait()).await {
                Ok(Ok(status)) => info!(member = %name, %status, "agent stopped"),
                _ => {
                    warn!(member = %name, "agent did not stop in time: killing it");
                    let _ = agent.child.start_kill();
                    let _ = agent.child.wait().await;
                }
            }
        }
        self.agents.clear();
    }
}

fn terminate(child: &Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

fn absolute(path: &std::path::Path) -> Result<PathBuf, LocalError> {
    std::path::absolute(path).map_err(LocalError::io(format!("resolve {}", path.display())))
}
