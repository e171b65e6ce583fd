//! The TCP endpoints of the local runtime: a read-write port that leads to the current primary and
//! a read-only port that spreads connections over ready standbys.
//!
//! Routes come from a `watch` channel the runtime keeps current. A connection whose backend leaves
//! the route list is closed at once, so a client never keeps writing to a demoted primary. When the
//! runtime drops its sender the proxy fails closed: open connections end and new ones get no route.

mod connection;
mod stats;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::net::accept::accept_until;

pub use stats::{ProxyStats, ProxyStatsSnapshot};

/// Bound on connecting to one backend, so a black-holed address cannot stall a client for minutes.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A TCP endpoint; configure it, keep [`Proxy::stats`] if you want the counters, then [`Proxy::run`].
pub struct Proxy {
    name: String,
    routes: watch::Receiver<Vec<SocketAddr>>,
    wait_for_route: Duration,
    connect_timeout: Duration,
    stats: Arc<ProxyStats>,
}

/// What every connection task of one running proxy reads.
struct Shared {
    name: String,
    wait_for_route: Duration,
    connect_timeout: Duration,
    stats: Arc<ProxyStats>,
    /// Round-robin position over the route list.
    next: AtomicUsize,
}

impl Proxy {
    /// `wait_for_route`: how long a client accepted while no backend is routed waits for one
    /// (during a failover it sees a short pause instead of a refusal).
    pub fn new(
        name: impl Into<String>,
        routes: watch::Receiver<Vec<SocketAddr>>,
        wait_for_route: Duration,
    ) -> Proxy {
        Proxy {
            name: name.into(),
            routes,
            wait_for_route,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            stats: Arc::default(),
        }
    }

    /// Replace the bound on connecting to one backend.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Proxy {
        self.connect_timeout = timeout;
        self
    }

    /// The counters, shared with the running proxy.
    pub fn stats(&self) -> Arc<ProxyStats> {
        Arc::clone(&self.stats)
    }

    /// Accept clients until `shutdown` completes; then close the listener and every connection.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let Proxy {
            name,
            routes,
            wait_for_route,
            connect_timeout,
            stats,
        } = self;
        if let Ok(addr) = listener.local_addr() {
            info!(proxy = %name, %addr, ?wait_for_route, "endpoint listening");
        }
        let shared = Arc::new(Shared {
            name: name.clone(),
            wait_for_route,
            connect_timeout,
            stats,
            next: AtomicUsize::new(0),
        });
        accept_until(&name, listener, shutdown, Duration::ZERO, |client, peer| {
            connection::serve_client(Arc::clone(&shared), routes.clone(), client, peer)
        })
        .await;
        info!(proxy = %name, "endpoint stopped");
    }
}

/// Run a proxy without keeping its counters: [`Proxy::new`] then [`Proxy::run`].
pub async fn run_proxy(
    name: impl Into<String>,
    listener: TcpListener,
    routes: watch::Receiver<Vec<SocketAddr>>,
    wait_for_route: Duration,
    shutdown: impl Future<Output = ()>,
) {
    Proxy::new(name, routes, wait_for_route)
        .run(listener, shutdown)
        .await;
}
