//! The local runtime's side of the one tick (`brain::World`): the spec file, agent processes
//! supervised here, the lease file, the endpoint proxies, `status.json` and progress lines.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::PgReplicaCluster;
use crate::brain::{timing, AgentAddress, Next, Outcome, Snapshot, World};
use crate::lease::{unix_now_ms, FileLease, Lease};
use crate::net::http::{BrainClient, Target};
use crate::plan::{Address, Observation, Plan};
use crate::tls::{agent_name, LocalTls};

use super::brain::{load_spec, progress, story};
use super::error::LocalError;
use super::layout::{Layout, LocalState};
use super::members::Supervisor;
use super::status_file::{Endpoints, LocalEvent, LocalMember, LocalStatus};

const KEPT_EVENTS: usize = 100;

pub struct LocalWorld {
    pub layout: Layout,
    pub state: LocalState,
    pub cluster: PgReplicaCluster,
    pub spec_stamp: Option<SystemTime>,
    pub tls: LocalTls,
    pub brain: BrainClient,
    pub next_member_check: Instant,
    pub supervisor: Supervisor,
    pub lease: FileLease,
    /// The status as last saved (the brain starts from it).
    pub status: crate::api::PgReplicaClusterStatus,
    pub events: VecDeque<LocalEvent>,
    pub activities: BTreeMap<String, String>,
    /// The cluster was ready at the last tick (a person is told when it becomes ready).
    pub ready: bool,
    pub rw: watch::Sender<Vec<SocketAddr>>,
    pub ro: watch::Sender<Vec<SocketAddr>>,
}

impl LocalWorld {
    pub fn remember(&mut self, reason: &str, member: Option<&str>, message: &str) {
        self.events.push_back(LocalEvent {
            at: jiff::Timestamp::now().to_string(),
            reason: reason.to_string(),
            member: member.map(String::from),
            message: message.to_string(),
        });
        while self.events.len() > KEPT_EVENTS {
            self.events.pop_front();
        }
    }

    /// `pgreplica local apply` wrote a new spec: take it when valid.
    fn reload_spec(&mut self) -> Result<(), LocalError> {
        let stamp = modified(&self.layout.spec_file());
        if stamp == self.spec_stamp {
            return Ok(());
        }
        self.spec_stamp = stamp;
        match load_spec(&self.layout) {
            Ok(new) => {
                // `local apply` counted the new spec's generation in the state file
                if let Ok(Some(on_disk)) = LocalState::load(&self.layout) {
                    self.state.generation = on_disk.generation;
                }
                self.state
                    .assign_ports(new.spec.members.iter().map(|m| m.name.as_str()))?;
                self.state.save(&self.layout)?;
                for m in &new.spec.members {
                    self.supervisor
                        .write_config(&self.state, &new.spec, &m.name, &self.tls)?;
                }
                progress("spec changed: applying");
                if let Some(event) =
                    crate::plan::spec_changed(&self.cluster.spec, &new.spec, self.state.generation)
                {
                    self.remember(event.reason.as_str(), None, &event.message);
                }
                self.cluster = new;
            }
            Err(e) => error!(error = %e, "the changed spec is invalid; keeping the previous one"),
        }
        Ok(())
    }

    /// The brain's client certificate and the members' server certificates, renewed when due.
    fn refresh_certificates(&mut self, members: &[String]) {
        match self
            .brain
            .refresh(self.tls.authority(), &self.state.cluster)
        {
            Ok(true) => info!("renewed the brain's client certificate"),
            Ok(false) => {}
            Err(e) => error!(error = %e, "cannot renew the brain's client certificate"),
        }
        let now = Instant::now();
        if now >= self.next_member_check {
            self.next_member_check = now + timing::CERT_CHECK;
            let owner = crate::postgres::RunAs::detect(None).ok().flatten();
            for member in members {
                let dir = self.layout.member_tls_dir(member);
                if let Err(e) = self.tls.ensure_member(&dir, member, owner) {
                    error!(member = %member, error = %e, "cannot renew the member's certificate");
                }
            }
        }
    }

    fn agent_address(&self, member: &str) -> AgentAddress {
        self.state
            .agent_addr(member)
            .map(|addr| Target {
                name: agent_name(&self.state.cluster, member),
                addr,
            })
            .ok_or_else(|| "no agent address".to_string())
    }

    fn status_file(&self, outcome: &Outcome<'_>) -> LocalStatus {
        let status = &outcome.plan.status;
        let members = self
            .cluster
            .spec
            .members
            .iter()
            .map(|m| {
                let st = status.members.iter().find(|s| s.name == m.name);
                let report = outcome
                    .observations
                    .get(&m.name)
                    .and_then(Observation::report);
                LocalMember::from_status(
                    m,
                    st,
                    self.state
                        .members
                        .get(&m.name)
                        .map(|p| p.postgres)
                        .unwrap_or(0),
                    self.layout
                        .member_dir(&m.name)
                        .join("data")
                        .display()
                        .to_string(),
                    report
                        .map(|r| r.activity.clone())
                        .unwrap_or_else(|| "agent unreachable".into()),
                )
            })
            .collect();
        let endpoints = Endpoints {
            rw: format!("{}:{}", self.state.host, self.state.rw_port),
            ro: format!("{}:{}", self.state.host, self.state.ro_port),
        };
        LocalStatus {
            running: true,
            waiting_for: outcome.plan.waiting_for.clone(),
            events: self.events.iter().cloned().collect(),
            updated_at: jiff::Timestamp::now().to_string(),
            ..LocalStatus::from_status(
                self.state.cluster.clone(),
                status.clone(),
                endpoints,
                members,
            )
        }
        .with_spec(&self.cluster.spec)
    }
}

impl World for LocalWorld {
    async fn snapshot(&mut self) -> Next {
        // the state directory was deleted under a running cluster (its data with it): there is
        // nothing left to run, and agents kept running would hold the ports for ever. Agents
        // writing their files create directories again; the spec and the passwords nobody does.
        if !self.layout.spec_file().exists() && !self.layout.superuser_password().exists() {
            progress(&format!(
                "the state directory {} is gone: stopping",
                self.layout.dir.display()
            ));
            return Next::Gone;
        }
        if let Err(e) = self.reload_spec() {
            error!(error = %e, "cannot apply the changed spec");
        }
        let wanted = crate::plan::members_to_run(&self.cluster.spec, &self.status);
        for note in self.supervisor.ensure(&wanted) {
            self.remember(note.reason, Some(&note.member), &note.message);
            progress(&format!("{}: {}", note.member, note.message));
        }
        self.refresh_certificates(&wanted);
        let now_ms = unix_now_ms();
        let lease = self
            .lease
            .read()
            .await
            .map_err(|e| e.to_string())
            .map(|record| (!record.free(now_ms)).then_some(record.holder).flatten());
        let request = |path: std::path::PathBuf| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
        };
        let restart = request(self.layout.restart_request());
        let reload = request(self.layout.reload_request());
        let switchover_to = std::fs::read_to_string(self.layout.switchover_request())
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let addresses: BTreeMap<String, Address> = self
            .state
            .members
            .iter()
            .map(|(n, p)| {
                (
                    n.clone(),
                    Address {
                        host: self.state.host.clone(),
                        port: p.postgres,
                    },
                )
            })
            .collect();
        let agents = wanted
            .iter()
            .map(|m| (m.clone(), self.agent_address(m)))
            .collect();
        Next::Tick(Box::new(Snapshot {
            cluster: self.state.cluster.clone(),
            spec: self.cluster.spec.clone(),
            generation: self.state.generation,
            status: self.status.clone(),
            agents,
            addresses,
            lease,
            lease_duration_ms: timing::LOCAL_LEASE.as_millis() as u64,
            switchover_to,
            // members run from the pgreplica binary that started them; no templates here
            outdated: BTreeMap::new(),
            // a local member's data directory has no size of its own
            volumes: BTreeMap::new(),
            restart,
            reload,
            opening: self.supervisor.opening(),
            now_ms,
        }))
    }

    async fn recreate(&mut self, _member: &str) {}

    async fn fence(&mut self, member: &str, why: &str) -> Option<String> {
        let what = self.supervisor.fence(member)?;
        info!(member = %member, why = %why, "fenced: {what}");
        Some(format!("{what}; it is started again"))
    }

    async fn route(&mut self, plan: &Plan) {
        let addrs = |members: &[String]| -> Vec<SocketAddr> {
            members
                .iter()
                .filter_map(|m| self.state.postgres_addr(m))
                .collect()
        };
        let rw = addrs(plan.routes.rw.as_slice());
        let ro = addrs(&plan.routes.ro);
        self.rw.send_if_modified(|current| replace(current, rw));
        self.ro.send_if_modified(|current| replace(current, ro));
    }

    async fn forget_switchover(&mut self) {
        let _ = std::fs::remove_file(self.layout.switchover_request());
    }

    async fn record(&mut self, outcome: &Outcome<'_>) {
        for e in outcome.events {
            let line = match &e.member {
                Some(m) => format!("{} [{m}] {}", e.reason.as_str(), e.message),
                None => format!("{} {}", e.reason.as_str(), e.message),
            };
            story(e.reason.is_warning(), &line);
            self.remember(e.reason.as_str(), e.member.as_deref(), &e.message);
        }
        for (name, obs) in outcome.observations {
            let activity = match obs {
                Observation::Reported(r) => r.activity.clone(),
                Observation::Unknown { .. } if self.supervisor.starting(name) => {
                    "agent starting".to_string()
                }
                Observation::Unknown { why } => format!("agent unreachable ({why})"),
            };
            if self.activities.get(name) != Some(&activity) {
                let line = format!("{name}: {activity}");
                // an event of this tick may have said it already (`Cloning [b] b: cloning ...`)
                if !outcome.events.iter().any(|e| e.message == line) {
                    progress(&line);
                }
                self.activities.insert(name.clone(), activity);
            }
        }
        self.status = outcome.plan.status.clone();
        let file = self.status_file(outcome);
        let ready = file.is_ready();
        if ready && !self.ready {
            progress(&format!(
                "ready: rw {}, ro {}; connect with: eval \"$(pgreplica local env{})\"; psql",
                file.endpoints.rw,
                file.endpoints.ro,
                self.layout.dir_flag()
            ));
        }
        self.ready = ready;
        if let Err(e) = file.save(&self.layout) {
            warn!(error = %e, "cannot write status.json");
        }
    }
}

fn replace(current: &mut Vec<SocketAddr>, new: Vec<SocketAddr>) -> bool {
    if *current == new {
        false
    } else {
        *current = new;
        true
    }
}

pub fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
