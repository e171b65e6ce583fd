//! Counters of one proxy, cheap to update from every connection and readable at any time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

#[derive(Debug, Default)]
pub struct ProxyStats {
    accepted: AtomicU64,
    active: AtomicU64,
    waiting_for_route: AtomicU64,
    no_route: AtomicU64,
    connect_failures: AtomicU64,
    closed_on_route_change: AtomicU64,
    routed: Mutex<BTreeMap<SocketAddr, u64>>,
}

/// A copy of the counters at one moment, for status output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyStatsSnapshot {
    /// Clients accepted since start.
    pub accepted: u64,
    /// Clients connected now (waiting, connecting or relaying).
    pub active: u64,
    /// Clients waiting now for a route to appear.
    pub waiting_for_route: u64,
    /// Clients closed because no backend was routed within the wait, or none could be reached.
    pub no_route: u64,
    /// Failed connection attempts to backends.
    pub connect_failures: u64,
    /// Connections closed because their backend left the route list.
    pub closed_on_route_change: u64,
    /// Connections relayed to each backend since start.
    pub routed: BTreeMap<SocketAddr, u64>,
}

impl ProxyStats {
    pub fn snapshot(&self) -> ProxyStatsSnapshot {
        ProxyStatsSnapshot {
            accepted: self.accepted.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            waiting_for_route: self.waiting_for_route.load(Ordering::Relaxed),
            no_route: self.no_route.load(Ordering::Relaxed),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
            closed_on_route_change: self.closed_on_route_change.load(Ordering::Relaxed),
            routed: self.routed_map().clone(),
        }
    }

    /// Connections relayed to `backend` since start.
    pub fn routed_to(&self, backend: SocketAddr) -> u64 {
        self.routed_map().get(&backend).copied().unwrap_or(0)
    }

    pub(super) fn accepted(&self) -> Gauge<'_> {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Gauge::up(&self.active)
    }

    pub(super) fn waiting(&self) -> Gauge<'_> {
        Gauge::up(&self.waiting_for_route)
    }

    pub(super) fn no_route(&self) {
        self.no_route.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn connect_failed(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn closed_on_route_change(&self) {
        self.closed_on_route_change.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn routed(&self, backend: SocketAddr) {
        *self.routed_map().entry(backend).or_default() += 1;
    }

    fn routed_map(&self) -> std::sync::MutexGuard<'_, BTreeMap<SocketAddr, u64>> {
        // A panic while holding this lock cannot leave the map half-updated; keep counting.
        self.routed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Counts one up while alive, also when its task is aborted.
pub(super) struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    fn up(counter: &'a AtomicU64) -> Gauge<'a> {
        counter.fetch_add(1, Ordering::Relaxed);
        Gauge(counter)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_count_down_when_dropped_and_snapshot_serializes() {
        let stats = ProxyStats::default();
        let a: SocketAddr = "127.0.0.1:5432".parse().expect("addr");
        {
            let _active = stats.accepted();
            let _waiting = stats.waiting();
            stats.routed(a);
            stats.routed(a);
            let during = stats.snapshot();
            assert_eq!((during.active, during.waiting_for_route), (1, 1));
        }
        let after = stats.snapshot();
        assert_eq!(
            (after.accepted, after.active, after.waiting_for_route),
            (1, 0, 0)
        );
        assert_eq!(stats.routed_to(a), 2);
        let json = serde_json::to_value(&after).expect("serializes");
        assert_eq!(json["routed"]["127.0.0.1:5432"], 2);
        assert_eq!(json["closedOnRouteChange"], 0);
    }
}
