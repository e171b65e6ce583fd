//! When the holder renews and when it must fence itself. Pure: times are inputs.
//!
//! Measure `last_successful_renew_ms` and `now_ms` on a monotonic clock of the holder, and take the
//! renewal time from *before* the renew call was sent: the store may have written it at any moment
//! of the call. The safety margin covers clock skew between holder and operator and the time the
//! holder needs to actually stop accepting writes.

/// How often the holder renews: a third of the duration, so two renewals may fail before expiry.
pub fn renew_interval_ms(duration_ms: u64) -> u64 {
    (duration_ms / 3).max(1)
}

/// The instant from which the holder must have fenced itself if it has not renewed since
/// `last_successful_renew_ms`: `safety_margin_ms` before the lease can expire.
pub fn fence_at_ms(last_successful_renew_ms: u64, duration_ms: u64, safety_margin_ms: u64) -> u64 {
    last_successful_renew_ms.saturating_add(duration_ms.saturating_sub(safety_margin_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::LeaseRecord;

    /// Whether a holder that last renewed at `last` must have fenced by `now`: what the lease
    /// keeper's deadline (`renew_before`) means. A margin of at least the duration fences at once.
    fn must_fence(last: u64, now: u64, duration_ms: u64, safety_margin_ms: u64) -> bool {
        now >= fence_at_ms(last, duration_ms, safety_margin_ms)
    }

    #[test]
    fn must_fence_table() {
        // (last renew, now, duration, margin, fence?)
        let table = [
            (1_000, 1_000, 3_000, 1_000, false),
            (1_000, 2_999, 3_000, 1_000, false),
            (1_000, 3_000, 3_000, 1_000, true),
            (1_000, 9_000, 3_000, 1_000, true),
            (1_000, 3_999, 3_000, 0, false),
            (1_000, 4_000, 3_000, 0, true),
            // A margin as long as the lease leaves no time at all.
            (1_000, 1_000, 3_000, 3_000, true),
            (1_000, 1_000, 3_000, 5_000, true),
            // A clock reading before the last renewal does not fence.
            (1_000, 500, 3_000, 1_000, false),
            (u64::MAX - 10, u64::MAX - 1, 3_000, 1_000, false),
            (u64::MAX - 10, u64::MAX, 3_000, 1_000, true),
        ];
        for (i, (last, now, duration, margin, want)) in table.into_iter().enumerate() {
            assert_eq!(must_fence(last, now, duration, margin), want, "row {i}");
        }
    }

    #[test]
    fn holder_fences_before_the_lease_expires() {
        // Whatever the timing, with a positive margin the holder is fenced while the lease it
        // last renewed is still valid: nobody can have been promoted yet.
        for duration in [1, 2, 3, 500, 3_000, 10_000] {
            for margin in [1, 2, 100, 999, 2_999] {
                let renewed = LeaseRecord {
                    holder: Some("a".into()),
                    renewed_at_ms: 50_000,
                    duration_ms: duration,
                    transitions: 1,
                };
                let fence_at = fence_at_ms(50_000, duration, margin);
                assert!(must_fence(50_000, fence_at, duration, margin));
                assert!(
                    !renewed.expired(fence_at),
                    "duration {duration} margin {margin}: expired before fencing"
                );
                if fence_at > 50_000 {
                    assert!(!must_fence(50_000, fence_at - 1, duration, margin));
                }
            }
        }
    }

    #[test]
    fn renew_interval_table() {
        for (duration, want) in [(3_000, 1_000), (10_000, 3_333), (2, 1), (1, 1), (0, 1)] {
            assert_eq!(renew_interval_ms(duration), want, "duration {duration}");
        }
    }
}
