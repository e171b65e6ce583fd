//! One agent process per member: started, restarted with backoff when it dies (as a kubelet
//! would restart a pod), stopped when the member is removed or the cluster goes down.
//!
//! Agents outlive the brain (as pods outlive a restarted kubelet or operator): they are not its
//! children in any way that ends them, their pids are kept in `members/<m>/agent.pid`, and a new
//! brain adopts the ones still running. An agent that stops answering is killed (fenced) from
//! here: its PostgreSQL receives SIGQUIT when the agent dies (parent-death signal), and is sent
//! one directly as well.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tracing::{info, warn};

use crate::api::PgReplicaClusterSpec;
use crate::instance::config::Placement;
use crate::instance::AgentConfig;

use super::error::LocalError;
use super::layout::{Layout, LocalState};

/// How long the lease lasts in the local runtime: a dead primary is replaced after at most this.
pub const LEASE_DURATION_MS: u64 = crate::brain::timing::LOCAL_LEASE.as_millis() as u64;
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(10);
/// An agent just started (or adopted) is not fenced for not answering yet.
const STARTUP_GRACE: Duration = Duration::from_secs(5);

struct AgentProcess {
    pid: u32,
    /// The agent's configuration file, named on its command line.
    config: PathBuf,
    /// Set for agents this brain started; adopted agents are watched through /proc.
    child: Option<Child>,
    started: Instant,
    /// Asked to stop because its member left the spec (asked once, said once).
    retired: bool,
}

impl AgentProcess {
    /// The exit status when the agent ended (adopted agents: a made-up "gone").
    fn exited(&mut self) -> Option<String> {
        match &mut self.child {
            Some(child) => child.try_wait().ok().flatten().map(|s| s.to_string()),
            None => (!crate::procfs::alive(self.pid)
                || !crate::procfs::mentions(self.pid, &self.config))
            .then(|| "gone".to_string()),
        }
    }
}

pub struct Supervisor {
    layout: Layout,
    exe: PathBuf,
    agents: BTreeMap<String, AgentProcess>,
    /// Member → (restarts so far, not before).
    backoff: BTreeMap<String, (u32, Instant)>,
    /// When this brain's supervisor began: the agents it starts first start with the cluster.
    began: Instant,
}

/// Something worth telling the person watching.
pub struct SupervisorNote {
    /// The event's reason: `AgentAdopted`, `AgentRestarted`, `AgentNotStarted`, `MemberRetired`.
    pub reason: &'static str,
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
            began: Instant::now(),
        })
    }

    /// Take over the agents of `members` that still run from an earlier brain.
    pub fn adopt(&mut self, members: &[String]) -> Vec<SupervisorNote> {
        let mut notes = Vec::new();
        for name in members {
            let Some(pid) = crate::procfs::read_pid(&self.layout.agent_pid_file(name)) else {
                continue;
            };
            let config = canonical(&self.layout.agent_config(name));
            if !crate::procfs::alive(pid) || !crate::procfs::mentions(pid, &config) {
                continue;
            }
            info!(member = %name, pid, "adopted a running agent");
            self.agents.insert(
                name.clone(),
                AgentProcess {
                    pid,
                    config,
                    child: None,
                    started: Instant::now(),
                    retired: false,
                },
            );
            notes.push(SupervisorNote {
                reason: "AgentAdopted",
                member: name.clone(),
                message: format!("adopted its running agent (pid {pid})"),
            });
        }
        notes
    }

    /// The member's agent was started (or adopted) moments ago: not answering yet is expected.
    pub fn starting(&self, member: &str) -> bool {
        self.agents
            .get(member)
            .is_some_and(|a| a.started.elapsed() < STARTUP_GRACE)
    }

    /// While the cluster itself is starting (this brain began moments ago), the members whose
    /// agent is still starting: the brain waits for their first answer before it decides
    /// anything (an agent restarted later is one member's trouble, and waits for nobody).
    pub fn opening(&self) -> Vec<String> {
        if self.began.elapsed() >= STARTUP_GRACE {
            return Vec::new();
        }
        // an adopted agent (child: None) ran before this brain: it answers, or it is in trouble
        self.agents
            .iter()
            .filter(|(m, a)| a.child.is_some() && self.starting(m))
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// Fence a member whose agent stopped answering: SIGKILL the agent and every process of the
    /// PostgreSQL still running on its data directory. The agent is started again as usual.
    pub fn fence(&mut self, member: &str) -> Option<String> {
        let agent = self
            .agents
            .get_mut(member)
            .filter(|a| a.started.elapsed() >= STARTUP_GRACE)?;
        if agent.exited().is_some() {
            // gone, or its pid now belongs to another process
            return None;
        }
        let pid = agent.pid;
        let _ = signal(pid, nix::sys::signal::Signal::SIGKILL);
        let data = self.layout.member_dir(member).join("data");
        let data = canonical(&data);
        let postmaster = crate::instance::datadir::live_postmaster(&data);
        if let Some(pm) = postmaster {
            // every process of the server, stopped or not (a SIGQUIT would wait for a stopped
            // postmaster to continue)
            if let Err(e) = crate::postgres::kill_postgres_tree(pm) {
                warn!(member = %member, error = %e, "could not kill PostgreSQL");
            }
        }
        Some(match postmaster {
            Some(pm) => format!("killed agent pid {pid} and its PostgreSQL (postmaster pid {pm})"),
            None => format!("killed agent pid {pid}"),
        })
    }

    /// Write the agent configuration of `member` (idempotent).
    pub fn write_config(
        &self,
        state: &LocalState,
        spec: &PgReplicaClusterSpec,
        member: &str,
        tls: &crate::tls::LocalTls,
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
        let (tls, _) = tls
            .ensure_member(
                &self.layout.member_tls_dir(member),
                member,
                crate::postgres::RunAs::detect(None).ok().flatten(),
            )
            .map_err(|e| LocalError::Failed(format!("certificate of member {member}: {e}")))?;
        let at = Placement {
            member_dir: canonical(&member_dir),
            listen_host: state.host.clone(),
            port: ports.postgres,
            http: format!("{}:{}", state.host, ports.agent)
                .parse()
                .map_err(|e| LocalError::Failed(format!("agent address: {e}")))?,
            tls: crate::tls::AgentTlsFiles {
                ca: canonical(&tls.ca),
                cert: canonical(&tls.cert),
                key: canonical(&tls.key),
            },
            pg_bindir: std::env::var_os(crate::postgres::BINDIR_ENV).map(PathBuf::from),
            superuser_password_file: absolute(&self.layout.superuser_password())?,
            replication_password_file: absolute(&self.layout.replication_password())?,
            app_password_file: absolute(&self.layout.app_password())?,
            lease_file: absolute(&self.layout.lease_file())?,
            lease_backend: Default::default(),
            lease_duration_ms: LEASE_DURATION_MS,
            allow_networks: vec![],
        };
        let cfg = AgentConfig::for_member(&state.cluster, member, spec, at);
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
            let exited = self.agents.get_mut(&name).and_then(AgentProcess::exited);
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
                    reason: "AgentRestarted",
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
                Ok((pid, child)) => {
                    info!(member = %name, pid, "agent started");
                    let pid_file = self.layout.agent_pid_file(name);
                    if let Err(e) =
                        super::layout::write_atomic(&pid_file, pid.to_string().as_bytes())
                    {
                        warn!(member = %name, error = %e, "cannot record the agent's pid");
                    }
                    self.agents.insert(
                        name.clone(),
                        AgentProcess {
                            pid,
                            config: canonical(&self.layout.agent_config(name)),
                            child: Some(child),
                            started: now,
                            retired: false,
                        },
                    );
                }
                Err(e) => notes.push(SupervisorNote {
                    reason: "AgentNotStarted",
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
            if let Some(agent) = self.agents.get_mut(&name).filter(|a| !a.retired) {
                agent.retired = true;
                let _ = signal(agent.pid, nix::sys::signal::Signal::SIGTERM);
                notes.push(SupervisorNote {
                    reason: "MemberRetired",
                    member: name.clone(),
                    message: "member removed from the spec: agent stopped (its data is kept)"
                        .into(),
                });
            }
        }
        notes
    }

    fn spawn(&self, member: &str) -> Result<(u32, Child), LocalError> {
        let log_path = self.layout.log_file(member);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(LocalError::io(format!("open {}", log_path.display())))?;
        let err = log.try_clone().map_err(LocalError::io("dup log file"))?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(["instance", "run", "--config"])
            .arg(canonical(&self.layout.agent_config(member)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .env(
                "PGREPLICA_LOG",
                std::env::var("PGREPLICA_LOG").unwrap_or_else(|_| "info".into()),
            )
            .kill_on_drop(false)
            // its own session: no terminal signal and no death of the brain reaches it
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(LocalError::io(format!("start the agent of {member}")))?;
        let pid = child
            .id()
            .ok_or_else(|| LocalError::Failed(format!("the agent of {member} exited at once")))?;
        Ok((pid, child))
    }

    /// The pid of a member's agent, for failure injection and diagnostics.
    pub fn agent_pid(&self, member: &str) -> Option<u32> {
        self.agents.get(member).map(|a| a.pid)
    }

    /// SIGTERM every agent (each stops PostgreSQL with a fast shutdown) and wait for them.
    pub async fn stop_all(&mut self, patience: Duration) {
        for agent in self.agents.values() {
            let _ = signal(agent.pid, nix::sys::signal::Signal::SIGTERM);
        }
        for (name, agent) in self.agents.iter_mut() {
            let began = Instant::now();
            loop {
                if let Some(status) = agent.exited() {
                    info!(member = %name, %status, "agent stopped");
                    break;
                }
                if began.elapsed() > patience {
                    warn!(member = %name, "agent did not stop in time: killing it");
                    let _ = signal(agent.pid, nix::sys::signal::Signal::SIGKILL);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = std::fs::remove_file(self.layout.agent_pid_file(name));
        }
        self.agents.clear();
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) -> nix::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| nix::errno::Errno::EINVAL)?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
}

/// One spelling of a path, whatever `--dir` was given as (symlinks and `..` resolved), so that a
/// later brain recognises its agents.
fn canonical(path: &std::path::Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

fn absolute(path: &std::path::Path) -> Result<PathBuf, LocalError> {
    std::path::absolute(path).map_err(LocalError::io(format!("resolve {}", path.display())))
}
