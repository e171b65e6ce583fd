//! The member agent (`pgreplica instance run`): runs PostgreSQL as its child, bootstraps or clones
//! its data directory, watches the directory's health, reports status over HTTP, and converges
//! the server to the role the brain asks for.

mod agent;
pub mod conf_files;
pub mod config;
pub mod converge;
pub mod datadir;
pub mod error;
mod http;
mod lease_keeper;
mod observe;
pub mod shared;
mod standby_slots;
mod watchdog;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::lease::{AnyLease, FileLease, KubeLease};
use crate::member::Desired;
use crate::postgres::Programs;

pub use agent::Agent;
pub use config::AgentConfig;
pub use error::AgentError;
use shared::Shared;

/// How often the agent looks again when nothing wakes it.
const TICK: Duration = Duration::from_millis(200);

/// Run the agent until SIGTERM/SIGINT. PostgreSQL is stopped (fast) on the way out.
pub async fn run(cfg: AgentConfig) -> Result<(), AgentError> {
    let programs = Programs::detect(cfg.pg_bindir.as_deref(), cfg.run_as.as_deref())?;
    let stored = load_desired(&cfg);
    let (desired_tx, mut desired_rx) = watch::channel(stored);
    let shared = Arc::new(Shared::new(
        &cfg.member,
        cfg.data_dir(),
        lease_for(&cfg).await?,
        cfg.lease_duration_ms,
        desired_tx,
    ));
    let origin = Instant::now();
    let mut agent = Agent::new(cfg.clone(), shared.clone(), programs, origin)?;
    agent.prepare()?;

    let listener = tokio::net::TcpListener::bind(cfg.http)
        .await
        .map_err(AgentError::io(format!("listen on {}", cfg.http)))?;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let tls = crate::tls::ServerTls::from_files(&cfg.tls.ca, &cfg.tls.cert, &cfg.tls.key)
        .map_err(|e| AgentError::Config(format!("the agent's certificate: {e}")))?;
    let handler_shared = shared.clone();
    let brain = Arc::new(crate::tls::brain_name(&cfg.cluster));
    let http = tokio::spawn(crate::net::http::serve_with(
        listener,
        crate::net::http::ServeOptions::default(),
        Some(Arc::new(tls)),
        move |req| http::handle(handler_shared.clone(), brain.clone(), req),
        async {
            let _ = http_stopped.await;
        },
    ));
    let watchdog = tokio::spawn(watchdog::run(shared.clone()));
    let keeper = tokio::spawn(lease_keeper::run(shared.clone(), origin));
    info!(member = %cfg.member, http = %cfg.http, port = cfg.port, data = %cfg.data_dir().display(), "agent started");

    let mut term =
        signal(SignalKind::terminate()).map_err(AgentError::io("install SIGTERM handler"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(AgentError::io("install SIGINT handler"))?;
    let mut persisted = desired_rx.borrow().clone();
    loop {
        let desired = desired_rx.borrow_and_update().clone();
        if desired != persisted {
            if let Some(d) = &desired {
                store_desired(&cfg, d);
            }
            persisted = desired.clone();
        }
        // A long step (a start waiting for recovery, a clone) gives way to SIGTERM at once; a
        // rewind is let finish, since an interrupted pg_rewind leaves a directory that must be
        // cloned again.
        let busy = {
            let pass = agent.pass(desired.as_ref());
            let mut pass = std::pin::pin!(pass);
            let stop = tokio::select! {
                busy = &mut pass => Ok(busy),
                _ = term.recv() => Err(()),
                _ = int.recv() => Err(()),
            };
            match stop {
                Ok(busy) => Some(busy),
                Err(()) if shared.critical.load(std::sync::atomic::Ordering::SeqCst) => {
                    info!(member = %cfg.member, "stop requested: letting the running rewind finish first");
                    let _ = pass.await;
                    None
                }
                Err(()) => {
                    info!(member = %cfg.member, "stop requested during a step: abandoning it");
                    None
                }
            }
        };
        let Some(busy) = busy else {
            break;
        };
        let pause = if busy { Duration::ZERO } else { TICK };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = desired_rx.changed() => {}
            _ = shared.wake.notified() => {}
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    agent.shutdown().await;
    watchdog.abort();
    keeper.abort();
    let _ = stop_http.send(());
    let _ = http.await;
    info!(member = %cfg.member, "agent stopped");
    Ok(())
}

/// The lease store of this runtime: a file locally, a Lease object in Kubernetes.
async fn lease_for(cfg: &AgentConfig) -> Result<AnyLease, AgentError> {
    Ok(match &cfg.lease_backend {
        config::LeaseBackend::File => AnyLease::File(FileLease::new(cfg.lease_file.clone())),
        config::LeaseBackend::Kubernetes { namespace, name } => {
            let client = kube::Client::try_default().await.map_err(|e| {
                AgentError::Config(format!(
                    "cannot reach the Kubernetes API for the lease: {e}"
                ))
            })?;
            AnyLease::Kube(Box::new(KubeLease::new(
                kube::Api::namespaced(client, namespace),
                name.clone(),
            )))
        }
    })
}

fn load_desired(cfg: &AgentConfig) -> Option<Desired> {
    let text = std::fs::read_to_string(cfg.desired_file()).ok()?;
    match serde_json::from_str(&text) {
        Ok(d) => Some(d),
        Err(e) => {
            warn!(member = %cfg.member, error = %e, "ignoring an unreadable desired-state file");
            None
        }
    }
}

/// Keep the last desired state so a restarted agent resumes before the brain speaks again.
fn store_desired(cfg: &AgentConfig, desired: &Desired) {
    let path = cfg.desired_file();
    let tmp = path.with_extension("json.tmp");
    let written = serde_json::to_vec_pretty(desired)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        warn!(member = %cfg.member, error = %e, "could not store the desired state");
    }
}
