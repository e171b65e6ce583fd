//! A lease kept in memory, for tests of the pieces that use a [`Lease`].

use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{Lease, LeaseError, LeaseRecord};

/// An in-process lease with the same rules as every other store.
#[derive(Debug, Default)]
pub struct MemoryLease {
    record: Mutex<LeaseRecord>,
}

impl MemoryLease {
    pub fn new(record: LeaseRecord) -> MemoryLease {
        MemoryLease {
            record: Mutex::new(record),
        }
    }

    fn record(&self) -> MutexGuard<'_, LeaseRecord> {
        // Every change is a single assignment under the lock: a poisoned lock holds a whole record.
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Lease for MemoryLease {
    async fn read(&self) -> Result<LeaseRecord, LeaseError> {
        Ok(self.record().clone())
    }

    async fn try_acquire(
        &self,
        who: &str,
        duration_ms: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError> {
        self.record().acquire(who, duration_ms, now_ms)
    }

    async fn renew(&self, who: &str, now_ms: u64) -> Result<bool, LeaseError> {
        Ok(self.record().renew(who, now_ms))
    }

    async fn release(&self, who: &str) -> Result<(), LeaseError> {
        self.record().release(who);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn follows_the_record_rules() {
        let lease = MemoryLease::default();
        assert!(lease.try_acquire("a", 3_000, 1_000).await.expect("acquire"));
        assert!(!lease.try_acquire("b", 3_000, 2_000).await.expect("acquire"));
        assert!(lease.renew("a", 2_000).await.expect("renew"));
        assert!(!lease.renew("b", 2_000).await.expect("renew"));
        lease.release("b").await.expect("release");
        assert!(lease.read().await.expect("read").is_held_by("a", 2_500));
        lease.release("a").await.expect("release");
        assert!(lease.read().await.expect("read").free(2_500));
    }
}
