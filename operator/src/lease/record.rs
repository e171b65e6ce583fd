//! The lease record and its rules, shared by every lease store. No I/O, no clock.

use serde::{Deserialize, Serialize};

use super::LeaseError;

/// Who may accept writes, until when. Times are unix milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LeaseRecord {
    pub holder: Option<String>,
    /// When the holder last acquired or renewed it.
    pub renewed_at_ms: u64,
    /// How long after `renewed_at_ms` the lease stays valid.
    pub duration_ms: u64,
    /// How many times the lease was taken while free: a term number that grows with every new
    /// holding, also when the same member takes it again after expiry or release.
    pub transitions: u64,
}

impl LeaseRecord {
    /// The first instant at which the lease is no longer valid.
    pub fn expires_at_ms(&self) -> u64 {
        self.renewed_at_ms.saturating_add(self.duration_ms)
    }

    /// Whether the validity ran out. A clock behind `renewed_at_ms` sees the lease as valid.
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at_ms()
    }

    /// Whether `who` holds a lease that is still valid.
    pub fn is_held_by(&self, who: &str, now_ms: u64) -> bool {
        self.holder.as_deref() == Some(who) && !self.expired(now_ms)
    }

    /// Nobody holds it, or the holding expired: another member may take it (and be promoted).
    pub fn free(&self, now_ms: u64) -> bool {
        self.holder.is_none() || self.expired(now_ms)
    }

    /// Take the lease if free (a new term), or extend it if `who` holds it. Returns whether `who`
    /// holds it afterwards.
    pub fn acquire(
        &mut self,
        who: &str,
        duration_ms: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError> {
        if who.is_empty() {
            return Err(LeaseError::EmptyHolder);
        }
        if duration_ms == 0 {
            return Err(LeaseError::ZeroDuration);
        }
        if self.is_held_by(who, now_ms) {
            self.renewed_at_ms = self.renewed_at_ms.max(now_ms);
            self.duration_ms = duration_ms;
            return Ok(true);
        }
        if !self.free(now_ms) {
            return Ok(false);
        }
        self.holder = Some(who.to_string());
        self.renewed_at_ms = now_ms;
        self.duration_ms = duration_ms;
        self.transitions = self.transitions.saturating_add(1);
        Ok(true)
    }

    /// Extend a valid lease held by `who`. Never moves the expiry backwards (a clock that runs
    /// behind cannot shorten what others were told).
    pub fn renew(&mut self, who: &str, now_ms: u64) -> bool {
        if !self.is_held_by(who, now_ms) {
            return false;
        }
        self.renewed_at_ms = self.renewed_at_ms.max(now_ms);
        true
    }

    /// Give the lease up if `who` is the named holder (valid or expired). Returns whether it did.
    pub fn release(&mut self, who: &str) -> bool {
        if who.is_empty() || self.holder.as_deref() != Some(who) {
            return false;
        }
        self.holder = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(who: &str, renewed_at_ms: u64, duration_ms: u64) -> LeaseRecord {
        LeaseRecord {
            holder: Some(who.into()),
            renewed_at_ms,
            duration_ms,
            transitions: 1,
        }
    }

    #[test]
    fn validity_table() {
        let unheld = LeaseRecord {
            holder: None,
            renewed_at_ms: 1_000,
            duration_ms: 3_000,
            transitions: 4,
        };
        // (record, now, expired, held by a, free)
        let table = [
            (held("a", 1_000, 3_000), 1_000, false, true, false),
            (held("a", 1_000, 3_000), 3_999, false, true, false),
            (held("a", 1_000, 3_000), 4_000, true, false, true),
            (held("a", 1_000, 3_000), 9_000, true, false, true),
            // A clock behind the last renewal keeps the lease valid.
            (held("a", 1_000, 3_000), 500, false, true, false),
            (held("b", 1_000, 3_000), 2_000, false, false, false),
            (unheld.clone(), 2_000, false, false, true),
            (unheld, 9_000, true, false, true),
            (
                held("a", u64::MAX - 1, 3_000),
                u64::MAX - 1,
                false,
                true,
                false,
            ),
        ];
        for (i, (record, now, expired, held_by_a, free)) in table.into_iter().enumerate() {
            assert_eq!(record.expired(now), expired, "row {i} expired");
            assert_eq!(record.is_held_by("a", now), held_by_a, "row {i} held by a");
            assert_eq!(record.free(now), free, "row {i} free");
        }
    }

    #[test]
    fn acquire_rules() {
        let mut r = LeaseRecord::default();
        assert!(r.acquire("a", 3_000, 1_000).expect("valid"));
        assert_eq!(r, held("a", 1_000, 3_000));

        // Someone else is refused while the lease is valid, and nothing changes.
        assert!(!r.acquire("b", 3_000, 3_999).expect("valid"));
        assert_eq!(r, held("a", 1_000, 3_000));

        // The holder extends its own term without starting a new one.
        assert!(r.acquire("a", 5_000, 2_000).expect("valid"));
        assert_eq!(
            (r.renewed_at_ms, r.duration_ms, r.transitions),
            (2_000, 5_000, 1)
        );

        // After expiry another member takes it: a new term.
        assert!(r.acquire("b", 3_000, 7_000).expect("valid"));
        assert_eq!(r.holder.as_deref(), Some("b"));
        assert_eq!((r.renewed_at_ms, r.transitions), (7_000, 2));

        // The same member taking it again after its own expiry is a new term too.
        assert!(r.acquire("b", 3_000, 10_000).expect("valid"));
        assert_eq!(r.transitions, 3);

        assert!(matches!(
            r.acquire("", 3_000, 0),
            Err(LeaseError::EmptyHolder)
        ));
        assert!(matches!(
            r.acquire("c", 0, 20_000),
            Err(LeaseError::ZeroDuration)
        ));
    }

    #[test]
    fn renew_rules() {
        let mut r = held("a", 1_000, 3_000);
        assert!(r.renew("a", 2_000));
        assert_eq!(r.renewed_at_ms, 2_000);
        assert!(!r.renew("b", 2_500), "others cannot renew");
        assert_eq!(r.renewed_at_ms, 2_000);
        // A renewal with a clock behind the record does not shorten the lease.
        assert!(r.renew("a", 1_500));
        assert_eq!(r.renewed_at_ms, 2_000);
        // After expiry the holder must acquire again.
        assert!(!r.renew("a", 5_000));
        assert_eq!(r, held("a", 2_000, 3_000));
        assert!(!LeaseRecord::default().renew("a", 0));
    }

    #[test]
    fn release_rules() {
        let mut r = held("a", 1_000, 3_000);
        assert!(!r.release("b"));
        assert!(!r.release(""));
        assert!(r.is_held_by("a", 2_000));
        assert!(r.release("a"));
        assert!(r.free(2_000));
        assert!(!r.release("a"), "already released");
        // A released lease can be taken at once, long before the old term would have expired.
        assert!(r.acquire("b", 3_000, 2_000).expect("valid"));
        assert_eq!(r.transitions, 2);
    }

    #[test]
    fn record_round_trips_through_json_and_tolerates_missing_fields() {
        let r = held("a", 1_000, 3_000);
        let text = serde_json::to_string(&r).expect("encodes");
        assert_eq!(
            text,
            r#"{"holder":"a","renewedAtMs":1000,"durationMs":3000,"transitions":1}"#
        );
        assert_eq!(
            serde_json::from_str::<LeaseRecord>(&text).expect("decodes"),
            r
        );
        assert_eq!(
            serde_json::from_str::<LeaseRecord>("{}").expect("decodes"),
            LeaseRecord::default()
        );
    }
}
