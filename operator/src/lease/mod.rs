//! The one-writer lease: which member may accept writes.
//!
//! The primary's agent renews the lease every [`renew_interval_ms`]; if it cannot, it fences itself
//! at [`fence_at_ms`], which is before the lease can expire. The operator promotes another
//! member only when [`LeaseRecord::free`]. An agent that knows it is broken releases the lease at
//! once so failover need not wait for expiry.
//!
//! Time is always an input (`now_ms`, unix milliseconds), so every decision is table-testable.
//! Each runtime implements [`Lease`]: [`FileLease`] for the local runtime, [`KubeLease`] for
//! Kubernetes, [`MemoryLease`] for tests.

mod any;
mod clock;
mod error;
mod file;
mod holder_timing;
mod kube;
mod memory;
mod record;

use std::future::Future;

pub use self::kube::{KubeLease, KubeLeaseError};
pub use any::AnyLease;
pub use clock::unix_now_ms;
pub use error::LeaseError;
pub use file::FileLease;
pub use holder_timing::{fence_at_ms, renew_interval_ms};
pub use memory::MemoryLease;
pub use record::LeaseRecord;

/// A lease store with the same semantics in every runtime. Each call is one atomic
/// read-modify-write of the stored [`LeaseRecord`] (see its methods for the rules).
pub trait Lease: Send + Sync {
    /// The record as stored now; a lease never written reads as free.
    fn read(&self) -> impl Future<Output = Result<LeaseRecord, LeaseError>> + Send;

    /// Take the lease for `duration_ms` if it is free, or extend it if `who` already holds it.
    /// `false` when someone else holds a valid lease.
    fn try_acquire(
        &self,
        who: &str,
        duration_ms: u64,
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, LeaseError>> + Send;

    /// Extend the lease `who` holds. `false` when `who` does not hold a valid lease (someone else
    /// holds it, it was released, or it expired: after expiry only a new acquisition counts).
    fn renew(
        &self,
        who: &str,
        now_ms: u64,
    ) -> impl Future<Output = Result<bool, LeaseError>> + Send;

    /// Give the lease up if `who` holds it; otherwise change nothing.
    fn release(&self, who: &str) -> impl Future<Output = Result<(), LeaseError>> + Send;
}
