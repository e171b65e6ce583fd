//! The local brain: the proxies for the endpoints, the agent supervisor, and the one tick
//! (`brain::Brain`) over the local world (`world.rs`) until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Notify};
use tracing::{info, warn};

use crate::api::validate::parse_and_validate;
use crate::api::PgReplicaCluster;
use crate::brain::{timing, Brain};
use crate::lease::FileLease;
use crate::net::http::BrainClient;
use crate::net::proxy::run_proxy;
use crate::plan::SilencePolicy;
use crate::tls::LocalTls;

use super::error::LocalError;
use super::layout::{Layout, LocalState};
use super::members::Supervisor;
use super::status_file::LocalStatus;
use super::world::{modified, LocalWorld};

static STORY_TO_STDOUT: AtomicBool = AtomicBool::new(true);
static STORY_TO_LOG: AtomicBool = AtomicBool::new(false);

/// Where the story (progress lines, events) goes from now on: stdout for a person, the log
/// (`tracing`, target `pgreplica::story`) for `pgreplica local logs`. A foreground `up` tells
/// both (its log goes to the brain's log file), a detached brain the log alone (its stdout is
/// that file too), every other command the terminal alone.
pub fn tell_story(stdout: bool, log: bool) {
    STORY_TO_STDOUT.store(stdout, Ordering::Relaxed);
    STORY_TO_LOG.store(log, Ordering::Relaxed);
}

/// One line of the story.
pub fn progress(line: &str) {
    story(false, line);
}

/// One line of the story about something that went wrong (logged as a warning).
pub fn story(warning: bool, line: &str) {
    if STORY_TO_LOG.load(Ordering::Relaxed) {
        if warning {
            warn!(target: "pgreplica::story", "{line}");
        } else {
            info!(target: "pgreplica::story", "{line}");
        }
    }
    if STORY_TO_STDOUT.load(Ordering::Relaxed) {
        let now = jiff::Timestamp::now().strftime("%H:%M:%S%.3f");
        println!("{now} {line}");
    }
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
    let state =
        LocalState::load(&layout)?.ok_or_else(|| LocalError::NoCluster(layout.dir.clone()))?;
    let cluster = load_spec(&layout)?;
    let spec_stamp = modified(&layout.spec_file());
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
        timing::WAIT_FOR_ROUTE,
        stopped(stop_rx.clone()),
    ));
    let ro = tokio::spawn(run_proxy(
        "ro",
        ro_listener,
        ro_rx,
        timing::WAIT_FOR_ROUTE,
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
    let brain_client = BrainClient::new(tls.authority(), &state.cluster)
        .map_err(|e| LocalError::Failed(format!("the brain's certificate: {e}")))?;
    let names = cluster.spec.member_names();
    let adopted = supervisor.adopt(&names);
    // the status and the event history of the brain before this one: the story goes on
    let (status, events) = LocalStatus::load(&layout)
        .ok()
        .flatten()
        .map(|s| (s.status, s.events.into_iter().collect()))
        .unwrap_or_default();
    let mut term =
        signal(SignalKind::terminate()).map_err(LocalError::io("install SIGTERM handler"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(LocalError::io("install SIGINT handler"))?;
    progress(&format!(
        "cluster {} starting: rw endpoint {}:{}, ro endpoint {}:{}, state in {}",
        state.cluster,
        state.host,
        state.rw_port,
        state.host,
        state.ro_port,
        layout.dir.display()
    ));
    let brain = Brain::new(
        brain_client.agents.clone(),
        Some(SilencePolicy {
            after_ms: timing::AGENT_FENCE_AFTER.as_millis() as u64,
            misses: timing::FENCE_AFTER_MISSES,
        }),
    );
    let mut world = LocalWorld {
        lease: FileLease::new(layout.lease_file()),
        layout: layout.clone(),
        state,
        cluster,
        spec_stamp,
        tls,
        brain: brain_client,
        next_member_check: std::time::Instant::now() + timing::CERT_CHECK,
        supervisor,
        status,
        events,
        activities: Default::default(),
        ready: false,
        rw: rw_tx,
        ro: ro_tx,
    };
    for note in adopted {
        world.remember(note.reason, Some(&note.member), &note.message);
        progress(&format!("{}: {}", note.member, note.message));
    }
    brain
        .run(&mut world, Arc::new(Notify::new()), async {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
        .await;

    progress("stopping: agents stop PostgreSQL with a fast shutdown");
    world.supervisor.stop_all(Duration::from_secs(90)).await;
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
