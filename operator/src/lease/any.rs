//! The lease an agent holds, whichever store its runtime uses.

use super::{FileLease, KubeLease, Lease, LeaseError, LeaseRecord};

pub enum AnyLease {
    File(FileLease),
    Kube(Box<KubeLease>),
}

impl Lease for AnyLease {
    async fn read(&self) -> Result<LeaseRecord, LeaseError> {
        match self {
            AnyLease::File(l) => l.read().await,
            AnyLease::Kube(l) => l.read().await,
        }
    }

    async fn try_acquire(
        &self,
        who: &str,
        duration_ms: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError> {
        match self {
            AnyLease::File(l) => l.try_acquire(who, duration_ms, now_ms).await,
            AnyLease::Kube(l) => l.try_acquire(who, duration_ms, now_ms).await,
        }
    }

    async fn renew(&self, who: &str, now_ms: u64) -> Result<bool, LeaseError> {
        match self {
            AnyLease::File(l) => l.renew(who, now_ms).await,
            AnyLease::Kube(l) => l.renew(who, now_ms).await,
        }
    }

    async fn release(&self, who: &str) -> Result<(), LeaseError> {
        match self {
            AnyLease::File(l) => l.release(who).await,
            AnyLease::Kube(l) => l.release(who).await,
        }
    }
}
