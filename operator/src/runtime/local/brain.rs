//! The local brain: observe every agent, plan, act, report — every 200 ms — and keep the
//! endpoints pointing at the right members.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::validate::parse_and_validate;
use crate::api::{PgReplicaCluster, PgReplicaClusterStatus};
use crate::lease::{unix_now_ms, FileLease, Lease};
use crate::member::MemberReport;
use crate::net::http::{AgentClient, BrainClient, Target};
use crate::net::proxy::run_proxy;
use crate::plan::{plan, Address, Input, LeaseView, Observation, Plan};
use crate::tls::{agent_name, LocalTls};

use super::error::LocalError;
use super::layout::{Layout, LocalState};
use super::members::Supervisor;
use super::status_file::{Endpoints, LocalEvent, LocalMember, LocalStatus};

const TICK: Duration = Duration::from_millis(200);
const AGENT_TIMEOUT: Duration = Duration::from_millis(800);
/// Clients wait this long for a primary during a failover instead of being refused.
const WAIT_FOR_ROUTE: Duration = Duration::from_secs(15);
const KEPT_EVENTS: usize = 100;
/// How often member certificates are checked for renewal.
const CERT_CHECK: Duration = Duration::from_secs(60);
/// An agent that answers nothing for this long (and at least `FENCE_AFTER_MISSES` looks in a
/// row) is killed together with its PostgreSQL: well below the lease, so that a stalled agent
/// cannot leave a server acknowledging commits while another member is promoted.
const AGENT_FENCE_AFTER: Duration = Duration::from_millis(2_000);
const FENCE_AFTER_MISSES: u32 = 2;

/// How long each agent has not answered.
#[derive(Default)]
struct Silence {
    since: BTreeMap<String, (std::time::Instant, u32)>,
}

impl Silence {
    /// Members silent long enough to be fenced now (each is reported once per silence).
    fn update(&mut self, observations: &BTreeMap<String, Observation>) -> Vec<String> {
        let now = std::time::Instant::now();
        let mut fence = Vec::new();
        for (name, obs) in observations {
            match obs {
                Observation::Reported(_) => {
                    self.since.remove(name);
                }
                Observation::Unknown { .. } => {
                    let (since, misses) = self.since.entry(name.clone()).or_insert((now, 0));
                    *misses += 1;
                    if *misses >= FENCE_AFTER_MISSES && now - *since >= AGENT_FENCE_AFTER {
                        fence.push(name.clone());
                        // a fenced member is fenced again only after another whole silence
                        *since = now;
                        *misses = 0;
                    }
                }
            }
        }
        fence
    }
}

/// Where progress lines go: the terminal in the foreground, the log when detached.
pub fn progress(line: &str) {
    let now = jiff::Timestamp::now().strftime("%H:%M:%S%.3f");
    println!("{now} {line}");
}

pub fn load_spec(layout: &Layout) -> Result<PgReplicaCluster, LocalError> {
    let text = std::fs::read_to_string(layout.spec_file()).map_err(LocalError::io(format!(
        "read {}",
        layout.spec_file().display()
    )))?;
    parse_and_validate(&text)
        .map(|v| v.cluster)
        .map_err(|e| LocalError::Invalid(format!("{}:\n{e}", layout.spec_file().display())))
}

/// Run until SIGTERM/SIGINT. Agents are stopped (each stops PostgreSQL cleanly) on the way out.
pub async fn run(layout: Layout) -> Result<(), LocalError> {
    let mut state =
        LocalState::load(&layout)?.ok_or_else(|| LocalError::NoCluster(layout.dir.clone()))?;
    let mut cluster = load_spec(&layout)?;
    let mut spec_stamp = modified(&layout.spec_file());
    std::fs::write(layout.brain_pid_file(), std::process::id().to_string())
        .map_err(LocalError::io("write brain.pid"))?;

    let rw_listener = bind(
        &state.host,
        state.rw_port,
        "read-write endpoint",
        "--rw-port",
    )
    .await?;
    let ro_listener = bind(
        &state.host,
        state.ro_port,
        "read-only endpoint",
        "--ro-port",
    )
    .await?;
    let (rw_tx, rw_rx) = watch::channel(Vec::<SocketAddr>::new());
    let (ro_tx, ro_rx) = watch::channel(Vec::<SocketAddr>::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let rw = tokio::spawn(run_proxy(
        "rw",
        rw_listener,
        rw_rx,
        WAIT_FOR_ROUTE,
        stopped(stop_rx.clone()),
    ));
    let ro = tokio::spawn(run_proxy(
        "ro",
        ro_listener,
        ro_rx,
        WAIT_FOR_ROUTE,
        stopped(stop_rx.clone()),
    ));

    let tls = LocalTls::open(&layout.tls_dir(), &state.cluster).map_err(|e| {
        LocalError::Failed(format!(
            "the cluster CA in {}: {e}",
            layout.tls_dir().display()
        ))
    })?;
    let mut supervisor = Supervisor::new(layout.clone())?;
    for m in &cluster.spec.members {
        supervisor.write_config(&state, &cluster.spec, &m.name, &tls)?;
    }
    let mut certificates = Certificates::new(&tls, &state.cluster)?;
    let names: Vec<String> = cluster
        .spec
        .members
        .iter()
        .map(|m| m.name.clone())
        .collect();
    let mut events: VecDeque<LocalEvent> = VecDeque::new();
    for note in supervisor.adopt(&names) {
        remember(
            &mut events,
            "AgentAdopted",
            Some(&note.member),
            &note.message,
        );
        progress(&format!("{}: {}", note.member, note.message));
    }
    let mut silence = Silence::default();
    let lease = FileLease::new(layout.lease_file());
    let mut status: PgReplicaClusterStatus = super::status_file::LocalStatus::load(&layout)
        .ok()
        .flatten()
        .map(|s| s.status)
        .unwrap_or_default();
    let mut activities: BTreeMap<String, String> = BTreeMap::new();
    let mut term =
        signal(SignalKind::terminate()).map_err(LocalError::io("install SIGTERM handler"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(LocalError::io("install SIGINT handler"))?;
    let generation = 1i64;
    let mut lease_unreadable_since: Option<u64> = None;
    progress(&format!(
        "cluster {} starting: rw endpoint {}:{}, ro endpoint {}:{}, state in {}",
        state.cluster,
        state.host,
        state.rw_port,
        state.host,
        state.ro_port,
        layout.dir.display()
    ));

    loop {
        // spec changes (`pgreplica local apply`)
        let stamp = modified(&layout.spec_file());
        if stamp != spec_stamp {
            spec_stamp = stamp;
            match load_spec(&layout) {
                Ok(new) => {
                    state.assign_ports(new.spec.members.iter().map(|m| m.name.as_str()))?;
                    state.save(&layout)?;
                    for m in &new.spec.members {
                        supervisor.write_config(&state, &new.spec, &m.name, &tls)?;
                    }
                    progress("spec changed: applying");
                    cluster = new;
                }
                Err(e) => {
                    error!(error = %e, "the changed spec is invalid; keeping the previous one")
                }
            }
        }
        let spec = &cluster.spec;
        let wanted: Vec<String> = spec.members.iter().map(|m| m.name.clone()).collect();
        for note in supervisor.ensure(&wanted) {
            remember(
                &mut events,
                "AgentRestarted",
                Some(&note.member),
                &note.message,
            );
            progress(&format!("{}: {}", note.member, note.message));
        }

        certificates.refresh(&tls, &layout, &state.cluster, &wanted);
        let observations = observe(certificates.agents(), &state, &wanted).await;
        for member in silence.update(&observations) {
            if let Some(what) = supervisor.fence(&member) {
                let message = format!(
                    "the agent did not answer for {} ms: fenced ({what}); it is started again",
                    AGENT_FENCE_AFTER.as_millis()
                );
                error!(member = %member, "{message}");
                progress(&format!("Fenced [{member}] {message}"));
                remember(&mut events, "Fenced", Some(&member), &message);
            }
        }
        let now_ms = unix_now_ms();
        let read = lease
            .read()
            .await
            .map_err(|e| e.to_string())
            .map(|record| (!record.free(now_ms)).then_some(record.holder).flatten());
        if let (Err(why), None) = (&read, lease_unreadable_since) {
            warn!(error = %why, "cannot read the lease: it counts as held by the primary of record for one lease duration");
        }
        let lease_view = LeaseView::counted(
            read,
            &mut lease_unreadable_since,
            status.current_primary.as_deref(),
            super::members::LEASE_DURATION_MS,
            now_ms,
        );
        let switchover = std::fs::read_to_string(layout.switchover_request())
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let addresses: BTreeMap<String, Address> = state
            .members
            .iter()
            .map(|(n, p)| {
                (
                    n.clone(),
                    Address {
                        host: state.host.clone(),
                        port: p.postgres,
                    },
                )
            })
            .collect();
        let decided = plan(&Input {
            cluster: &state.cluster,
            spec,
            generation,
            status: &status,
            members: &observations,
            addresses: &addresses,
            lease: &lease_view,
            switchover_to: switchover.as_deref(),
            now_ms,
        });
        for (member, why) in &decided.fence {
            if let Some(what) = supervisor.fence(member) {
                let message = format!("{why}: fenced ({what}); it is started again");
                error!(member = %member, "{message}");
                progress(&format!("Fenced [{member}] {message}"));
                remember(&mut events, "Fenced", Some(member), &message);
            }
        }
        act(certificates.agents(), &state, &observations, &decided).await;
        route(&state, &decided, &rw_tx, &ro_tx);
        if decided.switchover_consumed {
            let _ = std::fs::remove_file(layout.switchover_request());
        }
        for e in &decided.events {
            let line = match &e.member {
                Some(m) => format!("{} [{m}] {}", e.reason.as_str(), e.message),
                None => format!("{} {}", e.reason.as_str(), e.message),
            };
            if e.reason.is_warning() {
                warn!(cluster = %state.cluster, "{line}");
            } else {
                info!(cluster = %state.cluster, "{line}");
            }
            progress(&line);
            remember(
                &mut events,
                e.reason.as_str(),
                e.member.as_deref(),
                &e.message,
            );
        }
        for (name, obs) in &observations {
            let activity = match obs {
                Observation::Reported(r) => r.activity.clone(),
                Observation::Unknown { why } => format!("agent unreachable ({why})"),
            };
            if activities.get(name) != Some(&activity) {
                progress(&format!("{name}: {activity}"));
                activities.insert(name.clone(), activity);
            }
        }
        status = decided.status.clone();
        let report = local_status(
            &layout,
            &state,
            &cluster,
            &decided,
            &observations,
            &events,
            true,
        );
        if let Err(e) = report.save(&layout) {
            warn!(error = %e, "cannot write status.json");
        }

        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }

    progress("stopping: agents stop PostgreSQL with a fast shutdown");
    supervisor.stop_all(Duration::from_secs(90)).await;
    let _ = stop_tx.send(true);
    let _ = rw.await;
    let _ = ro.await;
    if let Ok(Some(mut last)) = LocalStatus::load(&layout) {
        last.running = false;
        let _ = last.save(&layout);
    }
    let _ = std::fs::remove_file(layout.brain_pid_file());
    progress("stopped; data kept (pgreplica local up resumes it, pgreplica local down --purge deletes it)");
    Ok(())
}

async fn bind(
    host: &str,
    port: u16,
    what: &'static str,
    flag: &'static str,
) -> Result<TcpListener, LocalError> {
    TcpListener::bind((host, port))
        .await
        .map_err(|_| LocalError::PortBusy { port, what, flag })
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn target(state: &LocalState, member: &str) -> Option<Target> {
    Some(Target {
        name: agent_name(&state.cluster, member),
        addr: state.agent_addr(member)?,
    })
}

async fn observe(
    agents: &AgentClient,
    state: &LocalState,
    members: &[String],
) -> BTreeMap<String, Observation> {
    let asks = members.iter().map(|name| async move {
        let obs = match target(state, name) {
            None => Observation::Unknown {
                why: "no agent address".into(),
            },
            Some(target) => match agents
                .get_json::<MemberReport>(&target, "/status", AGENT_TIMEOUT)
                .await
            {
                Ok(report) => Observation::Reported(Box::new(report)),
                Err(e) => Observation::Unknown { why: e.to_string() },
            },
        };
        (name.clone(), obs)
    });
    join_all(asks).await.into_iter().collect()
}

/// Hand each agent its desired state when it differs from what the agent has.
async fn act(
    agents: &AgentClient,
    state: &LocalState,
    observations: &BTreeMap<String, Observation>,
    decided: &Plan,
) {
    let sends = decided.desired.iter().filter_map(|(name, desired)| {
        let report = observations.get(name)?.report()?;
        let same = report.desired.as_ref().is_some_and(|d| d.same_role(desired));
        if same {
            return None;
        }
        let target = target(state, name)?;
        Some(async move {
            info!(member = %name, role = desired.role_name(), reason = %desired.reason, "desired state");
            if let Err(e) = agents
                .send_json(&target, "PUT", "/desired", desired, AGENT_TIMEOUT)
                .await
            {
                warn!(member = %name, error = %e, "could not hand over the desired state");
            }
        })
    });
    join_all(sends).await;
}

/// The brain's client certificate and the members' server certificates, renewed before expiry.
struct Certificates {
    brain: BrainClient,
    next_member_check: std::time::Instant,
}

impl Certificates {
    fn new(tls: &LocalTls, cluster: &str) -> Result<Certificates, LocalError> {
        Ok(Certificates {
            brain: BrainClient::new(tls.authority(), cluster)
                .map_err(|e| LocalError::Failed(format!("the brain's certificate: {e}")))?,
            next_member_check: std::time::Instant::now() + CERT_CHECK,
        })
    }

    fn agents(&self) -> &AgentClient {
        &self.brain.agents
    }

    fn refresh(&mut self, tls: &LocalTls, layout: &Layout, cluster: &str, members: &[String]) {
        match self.brain.refresh(tls.authority(), cluster) {
            Ok(true) => info!("renewed the brain's client certificate"),
            Ok(false) => {}
            Err(e) => error!(error = %e, "cannot renew the brain's client certificate"),
        }
        let now = std::time::Instant::now();
        if now >= self.next_member_check {
            self.next_member_check = now + CERT_CHECK;
            let owner = crate::postgres::RunAs::detect(None).ok().flatten();
            for member in members {
                if let Err(e) = tls.ensure_member(&layout.member_tls_dir(member), member, owner) {
                    error!(member = %member, error = %e, "cannot renew the member's certificate");
                }
            }
        }
    }
}

fn route(
    state: &LocalState,
    decided: &Plan,
    rw: &watch::Sender<Vec<SocketAddr>>,
    ro: &watch::Sender<Vec<SocketAddr>>,
) {
    let rw_addrs: Vec<SocketAddr> = decided
        .routes
        .rw
        .iter()
        .filter_map(|m| state.postgres_addr(m))
        .collect();
    let mut ro_addrs: Vec<SocketAddr> = decided
        .routes
        .ro
        .iter()
        .filter_map(|m| state.postgres_addr(m))
        .collect();
    if ro_addrs.is_empty() {
        // no ready standby: reads still work, from the primary
        ro_addrs = rw_addrs.clone();
    }
    rw.send_if_modified(|current| replace(current, rw_addrs));
    ro.send_if_modified(|current| replace(current, ro_addrs));
}

fn replace(current: &mut Vec<SocketAddr>, new: Vec<SocketAddr>) -> bool {
    if *current == new {
        false
    } else {
        *current = new;
        true
    }
}

fn remember(events: &mut VecDeque<LocalEvent>, reason: &str, member: Option<&str>, message: &str) {
    events.push_back(LocalEvent {
        at: jiff::Timestamp::now().to_string(),
        reason: reason.to_string(),
        member: member.map(String::from),
        message: message.to_string(),
    });
    while events.len() > KEPT_EVENTS {
        events.pop_front();
    }
}

fn local_status(
    layout: &Layout,
    state: &LocalState,
    cluster: &PgReplicaCluster,
    decided: &Plan,
    observations: &BTreeMap<String, Observation>,
    events: &VecDeque<LocalEvent>,
    running: bool,
) -> LocalStatus {
    let status = &decided.status;
    let members = cluster
        .spec
        .members
        .iter()
        .map(|m| {
            let st = status.members.iter().find(|s| s.name == m.name);
            let report = observations.get(&m.name).and_then(Observation::report);
            LocalMember::from_status(
                m,
                st,
                state.members.get(&m.name).map(|p| p.postgres).unwrap_or(0),
                layout
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
        rw: format!("{}:{}", state.host, state.rw_port),
        ro: format!("{}:{}", state.host, state.ro_port),
    };
    LocalStatus {
        running,
        waiting_for: decided.waiting_for.clone(),
        events: events.iter().cloned().collect(),
        updated_at: jiff::Timestamp::now().to_string(),
        ..LocalStatus::from_status(state.cluster.clone(), status.clone(), endpoints, members)
    }
}
