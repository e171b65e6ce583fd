//! Every timing constant of the control loop, in one place, and how they relate. The relations
//! are checked by a test: a change that breaks one (a fence that would come after the lease could
//! expire, a long poll that outlives its own timeout) fails there, not in a failover.

use std::time::Duration;

/// The brain looks again at least this often when nothing wakes it (a report change wakes it at
/// once): time-based decisions (lease expiry, silent agents) are taken within one tick.
pub const TICK: Duration = Duration::from_millis(200);

/// One request to an agent (a handover, or the answer to a long poll once it is due).
pub const AGENT_TIMEOUT: Duration = Duration::from_millis(800);

/// An agent holds a `/status` long poll this long when its report does not change: the answer
/// then doubles as a heartbeat.
pub const LONG_POLL: Duration = Duration::from_millis(400);

/// After a failed request to an agent, the next one waits this long (a refused connection fails
/// at once: without a pause the watcher would spin).
pub const RETRY_AFTER: Duration = Duration::from_millis(100);

/// An agent silent this long (and for at least [`FENCE_AFTER_MISSES`] ticks) is fenced by the
/// local runtime: killed with its PostgreSQL and started again, well before its lease can expire,
/// so that a stalled agent never leaves a server acknowledging commits while another member is
/// promoted. On Kubernetes the kubelet's liveness probe plays this part.
pub const AGENT_FENCE_AFTER: Duration = Duration::from_millis(2_000);
pub const FENCE_AFTER_MISSES: u32 = 2;

/// The one-writer lease on the local runtime (a file) and on Kubernetes (a Lease object: whole
/// seconds, and room for API round trips).
pub const LOCAL_LEASE: Duration = Duration::from_millis(4_000);
pub const KUBE_LEASE: Duration = Duration::from_millis(6_000);

/// On Kubernetes, status that changed only in numbers (lag, LSNs) is written at most this often;
/// a change of phase, primary, readiness, role or condition is written at once.
pub const STATUS_REFRESH: Duration = Duration::from_secs(5);

/// Supporting objects (Secrets, RBAC, Services, Lease, PDB, NetworkPolicy, volumes, pods) are
/// made sure of this often on Kubernetes, and whenever the cluster object or a member pod changes;
/// never inside the tick.
pub const SUPPORTING_OBJECTS: Duration = Duration::from_secs(30);

/// Member certificates are checked for renewal this often.
pub const CERT_CHECK: Duration = Duration::from_secs(60);

/// Clients of the local endpoints wait this long for a route during a failover instead of being
/// refused.
pub const WAIT_FOR_ROUTE: Duration = Duration::from_secs(15);

/// The longest a member can go unheard before the brain sees it as unknown: a long poll that is
/// due plus the request timeout.
pub const fn unheard_at_most() -> Duration {
    Duration::from_millis(LONG_POLL.as_millis() as u64 + AGENT_TIMEOUT.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timings_keep_their_order() {
        // a stall is seen as silence before the silence is long enough to fence
        assert!(unheard_at_most() < AGENT_FENCE_AFTER);
        // the fence (silence, then one more tick to act) lands before the lease can expire
        assert!(AGENT_FENCE_AFTER + TICK * FENCE_AFTER_MISSES < LOCAL_LEASE);
        // the brain sees an expired lease within a tick; the lease outlives several ticks
        assert!(TICK * 10 <= LOCAL_LEASE && LOCAL_LEASE <= KUBE_LEASE);
        // a long poll is answered before the request that carries it times out
        assert!(LONG_POLL < AGENT_TIMEOUT);
        assert!(RETRY_AFTER < TICK);
        // a status refresh is slower than a tick, faster than supporting objects
        assert!(TICK < STATUS_REFRESH && STATUS_REFRESH < SUPPORTING_OBJECTS);
        assert_eq!(
            KUBE_LEASE.as_millis() % 1000,
            0,
            "a Lease counts whole seconds"
        );
    }
}
