//! Where the local runtime keeps things, and the ports it chose (kept so `up` resumes the same
//! cluster on the same ports).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::LocalError;

pub const DEFAULT_ROOT: &str = ".pgreplica";
pub const DEFAULT_RW_PORT: u16 = 15432;
pub const DEFAULT_RO_PORT: u16 = 15433;

/// Paths under a cluster's state directory.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn spec_file(&self) -> PathBuf {
        self.dir.join("cluster.yaml")
    }
    pub fn status_file(&self) -> PathBuf {
        self.dir.join("status.json")
    }
    pub fn brain_pid_file(&self) -> PathBuf {
        self.dir.join("brain.pid")
    }
    pub fn lease_file(&self) -> PathBuf {
        self.dir.join("lease.json")
    }
    pub fn secrets_dir(&self) -> PathBuf {
        self.dir.join("secrets")
    }
    pub fn superuser_password(&self) -> PathBuf {
        self.secrets_dir().join("superuser-password")
    }
    pub fn replication_password(&self) -> PathBuf {
        self.secrets_dir().join("replication-password")
    }
    /// The password of `spec.application.user`.
    pub fn app_password(&self) -> PathBuf {
        self.secrets_dir().join("app-password")
    }
    /// The cluster CA (`ca.crt`, and `ca.key`, which only the brain reads).
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.join("tls")
    }
    /// A member's certificate, key and a copy of the CA certificate.
    pub fn member_tls_dir(&self, member: &str) -> PathBuf {
        self.member_dir(member).join("tls")
    }
    pub fn member_dir(&self, member: &str) -> PathBuf {
        self.dir.join("members").join(member)
    }
    pub fn agent_config(&self, member: &str) -> PathBuf {
        self.member_dir(member).join("agent.json")
    }
    /// The pid of the member's agent, so that a new brain adopts an agent that outlived the last.
    pub fn agent_pid_file(&self, member: &str) -> PathBuf {
        self.member_dir(member).join("agent.pid")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.logs_dir().join(format!("{name}.log"))
    }
    pub fn switchover_request(&self) -> PathBuf {
        self.dir.join("switchover-request")
    }

    /// `local restart`: which members, asked when (JSON of `plan::RestartRequest`).
    pub fn restart_request(&self) -> PathBuf {
        self.dir.join("restart-request.json")
    }

    /// `local reload`: which members, asked when (JSON of `plan::RestartRequest`).
    pub fn reload_request(&self) -> PathBuf {
        self.dir.join("reload-request.json")
    }

    /// The pid of a running brain, if any.
    pub fn running_brain(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.brain_pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // a brain that was killed is a zombie until reaped: not running
        let alive = u32::try_from(pid).is_ok_and(crate::procfs::alive);
        alive.then_some(pid)
    }
}

/// Ports of one member.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MemberPorts {
    pub postgres: u16,
    pub agent: u16,
}

/// What `up` decided once and keeps.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LocalState {
    pub cluster: String,
    pub host: String,
    pub rw_port: u16,
    pub ro_port: u16,
    pub members: BTreeMap<String, MemberPorts>,
    /// Counts the specs applied (`metadata.generation` on Kubernetes); status reports it as
    /// `observedGeneration` once the brain acts on it.
    #[serde(default = "first_generation")]
    pub generation: i64,
}

fn first_generation() -> i64 {
    1
}

impl LocalState {
    pub fn load(layout: &Layout) -> Result<Option<LocalState>, LocalError> {
        match std::fs::read_to_string(layout.state_file()) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                let path = layout.state_file();
                LocalError::Invalid(format!(
                    "{} is damaged ({e}). Move it away (`mv {} {}.damaged`) and run `pgreplica local up -f FILE --dir {}` again: the member ports are recovered from members/*/agent.json and every member's data is kept",
                    path.display(),
                    path.display(),
                    path.display(),
                    layout.dir.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LocalError::io(format!(
                "read {}",
                layout.state_file().display()
            ))(e)),
        }
    }

    /// Rebuild the state of a cluster whose state file is gone from its members' agent
    /// configurations (ports and host as the members' data directories know them). The endpoint
    /// ports come from the last status file when it can be read, else from the caller.
    pub fn recover(layout: &Layout, rw_port: u16, ro_port: u16) -> Option<LocalState> {
        let last = super::status_file::LocalStatus::load(layout).ok().flatten();
        let port_of = |addr: Option<&str>| {
            addr.and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| p.parse::<u16>().ok())
        };
        let rw_port = port_of(last.as_ref().map(|s| s.endpoints.rw.as_str())).unwrap_or(rw_port);
        let ro_port = port_of(last.as_ref().map(|s| s.endpoints.ro.as_str())).unwrap_or(ro_port);
        let entries = std::fs::read_dir(layout.dir.join("members")).ok()?;
        let mut state: Option<LocalState> = None;
        for entry in entries.filter_map(Result::ok) {
            let Ok(text) = std::fs::read_to_string(entry.path().join("agent.json")) else {
                continue;
            };
            let Ok(cfg) = serde_json::from_str::<crate::instance::AgentConfig>(&text) else {
                continue;
            };
            let s = state.get_or_insert_with(|| LocalState {
                cluster: cfg.cluster.clone(),
                host: cfg.listen_host.clone(),
                rw_port,
                ro_port,
                members: BTreeMap::new(),
                generation: first_generation(),
            });
            s.members.insert(
                cfg.member.clone(),
                MemberPorts {
                    postgres: cfg.port,
                    agent: cfg.http.port(),
                },
            );
        }
        state
    }

    pub fn save(&self, layout: &Layout) -> Result<(), LocalError> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| LocalError::Failed(format!("encode state: {e}")))?;
        write_atomic(&layout.state_file(), &bytes)
    }

    /// Give every member in `names` ports, keeping the ones it has.
    pub fn assign_ports<'a>(
        &mut self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), LocalError> {
        let mut taken: Vec<u16> = self
            .members
            .values()
            .flat_map(|p| [p.postgres, p.agent])
            .chain([self.rw_port, self.ro_port])
            .collect();
        // nothing listens on the ports picked until the members start: never pick one twice
        let mut pick = |host: &str| -> Result<u16, LocalError> {
            loop {
                let port = free_port(host)?;
                if !taken.contains(&port) {
                    taken.push(port);
                    return Ok(port);
                }
            }
        };
        for name in names {
            if !self.members.contains_key(name) {
                let ports = MemberPorts {
                    postgres: pick(&self.host)?,
                    agent: pick(&self.host)?,
                };
                self.members.insert(name.to_string(), ports);
            }
        }
        Ok(())
    }

    pub fn agent_addr(&self, member: &str) -> Option<SocketAddr> {
        let ports = self.members.get(member)?;
        format!("{}:{}", self.host, ports.agent).parse().ok()
    }

    pub fn postgres_addr(&self, member: &str) -> Option<SocketAddr> {
        let ports = self.members.get(member)?;
        format!("{}:{}", self.host, ports.postgres).parse().ok()
    }
}

/// A port free now and outside the ephemeral range (see `net::ports`).
pub fn free_port(host: &str) -> Result<u16, LocalError> {
    crate::net::ports::free_port(host).map_err(LocalError::io("pick a free port"))
}

pub fn port_is_free(host: &str, port: u16) -> bool {
    TcpListener::bind((host, port)).is_ok()
}

/// Write via a temporary file and rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LocalError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(LocalError::io(format!("write {}", path.display())))
}

/// The state directory: the one given, else `./.pgreplica/<cluster>` (or the only cluster there).
impl Layout {
    /// What a command run from here needs to find this cluster: nothing when it is the only
    /// one under the default directory, ` --dir DIR` otherwise.
    pub fn dir_flag(&self) -> String {
        if resolve_dir(None, None).is_ok_and(|d| d == self.dir) {
            String::new()
        } else {
            format!(" --dir {}", self.dir.display())
        }
    }
}

pub fn resolve_dir(given: Option<&Path>, cluster: Option<&str>) -> Result<PathBuf, LocalError> {
    if let Some(dir) = given {
        return Ok(dir.to_path_buf());
    }
    let root = PathBuf::from(DEFAULT_ROOT);
    if let Some(name) = cluster {
        return Ok(root.join(name));
    }
    let names: Vec<String> = std::fs::read_dir(&root)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().join("state.json").exists())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    match names.as_slice() {
        [] => Err(LocalError::NoCluster(root)),
        [one] => Ok(root.join(one)),
        _ => Err(LocalError::SeveralClusters {
            dir: root,
            names: names.join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ports PostgreSQL binds later are never the local end of someone's connection: they lie
    /// below the ephemeral range, and no port is handed out twice.
    #[test]
    fn member_ports_are_outside_the_ephemeral_range_and_distinct() {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .unwrap_or_else(|_| "32768 60999".into());
        let low: u16 = range
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(32_768);
        let mut state = LocalState {
            cluster: "lab".into(),
            host: "127.0.0.1".into(),
            rw_port: 15432,
            ro_port: 15433,
            members: BTreeMap::new(),
            generation: 1,
        };
        let names: Vec<String> = (0..9).map(|i| format!("m{i}")).collect();
        state
            .assign_ports(names.iter().map(String::as_str))
            .expect("ports");
        let mut all: Vec<u16> = state
            .members
            .values()
            .flat_map(|p| [p.postgres, p.agent])
            .collect();
        if low > 21_000 {
            assert!(all.iter().all(|p| *p < low), "{all:?} below {low}");
        }
        all.extend([state.rw_port, state.ro_port]);
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count, "no port twice");
    }
}
