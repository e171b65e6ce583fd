//! [`LeaseRecord`] ↔ `coordination.k8s.io/v1` `LeaseSpec`. Pure.
//!
//! | record           | Lease spec                                              |
//! |------------------|---------------------------------------------------------|
//! | `holder`         | `holderIdentity` (absent or empty: nobody)              |
//! | `renewed_at_ms`  | `renewTime` (MicroTime; absent: 0)                      |
//! | `duration_ms`    | `leaseDurationSeconds`, rounded **up** to whole seconds |
//! | `transitions`    | `leaseTransitions`                                      |
//!
//! Rounding the duration up means readers may see the lease valid up to a second longer than its
//! holder assumes: the holder fences on its own (shorter) duration, so the error is on the safe side.
//! `acquireTime` is set when a new term starts; fields the record does not know (`preferredHolder`,
//! `strategy`) are kept as they were.

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;

use super::KubeLeaseError;
use crate::lease::LeaseRecord;

/// The record a Lease spec says; an absent spec is a lease never held.
pub fn record_from_spec(spec: Option<&LeaseSpec>) -> LeaseRecord {
    let Some(spec) = spec else {
        return LeaseRecord::default();
    };
    LeaseRecord {
        holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
        renewed_at_ms: spec.renew_time.as_ref().map_or(0, micro_time_ms),
        duration_ms: spec
            .lease_duration_seconds
            .map_or(0, |s| u64::try_from(s).unwrap_or(0).saturating_mul(1_000)),
        transitions: spec
            .lease_transitions
            .map_or(0, |t| u64::try_from(t).unwrap_or(0)),
    }
}

/// `base` (the spec as read, if any) carrying `record`. `acquired_at_ms` is the start of a new
/// term, if this write starts one.
pub fn spec_with_record(
    base: Option<LeaseSpec>,
    record: &LeaseRecord,
    acquired_at_ms: Option<u64>,
) -> Result<LeaseSpec, KubeLeaseError> {
    let mut spec = base.unwrap_or_default();
    spec.holder_identity = record.holder.clone();
    spec.renew_time = match record.renewed_at_ms {
        0 => None,
        ms => Some(micro_time(ms)?),
    };
    spec.lease_duration_seconds = duration_seconds(record.duration_ms);
    spec.lease_transitions = Some(i32::try_from(record.transitions).unwrap_or(i32::MAX));
    if let Some(ms) = acquired_at_ms {
        spec.acquire_time = Some(micro_time(ms)?);
    }
    Ok(spec)
}

/// Whole seconds, rounded up; `None` for no duration.
pub fn duration_seconds(duration_ms: u64) -> Option<i32> {
    (duration_ms > 0).then(|| i32::try_from(duration_ms.div_ceil(1_000)).unwrap_or(i32::MAX))
}

fn micro_time(ms: u64) -> Result<MicroTime, KubeLeaseError> {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map(MicroTime)
        .ok_or(KubeLeaseError::TimeOutOfRange { ms })
}

/// Milliseconds since the epoch; sub-millisecond digits are dropped, times before 1970 read as 0.
fn micro_time_ms(time: &MicroTime) -> u64 {
    u64::try_from(time.0.as_millisecond()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> MicroTime {
        MicroTime(text.parse().expect("timestamp"))
    }

    fn held(holder: &str, renewed_at_ms: u64, duration_ms: u64, transitions: u64) -> LeaseRecord {
        LeaseRecord {
            holder: Some(holder.to_string()),
            renewed_at_ms,
            duration_ms,
            transitions,
        }
    }

    /// 2024-01-02T03:04:05.678Z
    const T: u64 = 1_704_164_645_678;

    #[test]
    fn record_from_spec_table() {
        let table = [
            (None, LeaseRecord::default()),
            (Some(LeaseSpec::default()), LeaseRecord::default()),
            (
                Some(LeaseSpec {
                    holder_identity: Some("a".into()),
                    renew_time: Some(at("2024-01-02T03:04:05.678901Z")),
                    lease_duration_seconds: Some(3),
                    lease_transitions: Some(2),
                    ..LeaseSpec::default()
                }),
                held("a", T, 3_000, 2),
            ),
            // Released the way client-go releases: an empty holder is nobody.
            (
                Some(LeaseSpec {
                    holder_identity: Some(String::new()),
                    renew_time: Some(at("2024-01-02T03:04:05.678Z")),
                    lease_duration_seconds: Some(1),
                    lease_transitions: Some(5),
                    ..LeaseSpec::default()
                }),
                LeaseRecord {
                    holder: None,
                    renewed_at_ms: T,
                    duration_ms: 1_000,
                    transitions: 5,
                },
            ),
            // Nonsense from another writer reads as nothing rather than wrapping around.
            (
                Some(LeaseSpec {
                    holder_identity: Some("b".into()),
                    renew_time: Some(at("1969-12-31T23:59:59Z")),
                    lease_duration_seconds: Some(-3),
                    lease_transitions: Some(-1),
                    ..LeaseSpec::default()
                }),
                held("b", 0, 0, 0),
            ),
        ];
        for (i, (spec, want)) in table.into_iter().enumerate() {
            assert_eq!(record_from_spec(spec.as_ref()), want, "row {i}");
        }
    }

    #[test]
    fn spec_with_record_table() {
        // (record, acquired at, holder, renew time, seconds, transitions, acquire time)
        let table = [
            (
                held("a", T, 3_000, 1),
                Some(T),
                Some("a"),
                Some("2024-01-02T03:04:05.678Z"),
                Some(3),
                1,
                Some("2024-01-02T03:04:05.678Z"),
            ),
            // 2.5 s is written as 3 s: others wait longer, never shorter.
            (
                held("a", T, 2_500, 1),
                None,
                Some("a"),
                Some("2024-01-02T03:04:05.678Z"),
                Some(3),
                1,
                None,
            ),
            (
                LeaseRecord {
                    holder: None,
                    renewed_at_ms: T,
                    duration_ms: 3_000,
                    transitions: 4,
                },
                None,
                None,
                Some("2024-01-02T03:04:05.678Z"),
                Some(3),
                4,
                None,
            ),
            (LeaseRecord::default(), None, None, None, None, 0, None),
            (
                held("a", T, 3_000, u64::MAX),
                None,
                Some("a"),
                Some("2024-01-02T03:04:05.678Z"),
                Some(3),
                i32::MAX,
                None,
            ),
        ];
        for (i, (record, acquired, holder, renew, seconds, transitions, acquire)) in
            table.into_iter().enumerate()
        {
            let spec = spec_with_record(None, &record, acquired).expect("in range");
            assert_eq!(spec.holder_identity.as_deref(), holder, "row {i}");
            assert_eq!(spec.renew_time, renew.map(at), "row {i}");
            assert_eq!(spec.lease_duration_seconds, seconds, "row {i}");
            assert_eq!(spec.lease_transitions, Some(transitions), "row {i}");
            assert_eq!(spec.acquire_time, acquire.map(at), "row {i}");
        }
    }

    #[test]
    fn spec_with_record_keeps_what_the_record_does_not_know() {
        let base = LeaseSpec {
            holder_identity: Some("old".into()),
            acquire_time: Some(at("2023-01-01T00:00:00Z")),
            preferred_holder: Some("b".into()),
            strategy: Some("OldestEmulationVersion".into()),
            ..LeaseSpec::default()
        };
        let spec = spec_with_record(Some(base), &held("a", T, 3_000, 2), None).expect("in range");
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.acquire_time, Some(at("2023-01-01T00:00:00Z")));
        assert_eq!(spec.preferred_holder.as_deref(), Some("b"));
        assert_eq!(spec.strategy.as_deref(), Some("OldestEmulationVersion"));
    }

    #[test]
    fn whole_second_records_round_trip() {
        for record in [
            held("a", T, 3_000, 1),
            held("member-b", 1, 60_000, 7),
            LeaseRecord {
                holder: None,
                renewed_at_ms: T,
                duration_ms: 1_000,
                transitions: 3,
            },
            LeaseRecord::default(),
        ] {
            let spec = spec_with_record(None, &record, None).expect("in range");
            // Through JSON too, as the API server stores it.
            let spec: LeaseSpec =
                serde_json::from_value(serde_json::to_value(&spec).expect("encodes"))
                    .expect("decodes");
            assert_eq!(record_from_spec(Some(&spec)), record);
        }
    }

    #[test]
    fn duration_seconds_table() {
        let table = [
            (0, None),
            (1, Some(1)),
            (999, Some(1)),
            (1_000, Some(1)),
            (1_001, Some(2)),
            (2_500, Some(3)),
            (u64::MAX, Some(i32::MAX)),
        ];
        for (ms, want) in table {
            assert_eq!(duration_seconds(ms), want, "{ms} ms");
        }
    }

    #[test]
    fn times_a_lease_cannot_hold_are_errors() {
        for ms in [u64::MAX, 300_000_000_000_000] {
            assert!(matches!(
                spec_with_record(None, &held("a", ms, 3_000, 1), None),
                Err(KubeLeaseError::TimeOutOfRange { ms: got }) if got == ms
            ));
        }
        assert!(spec_with_record(None, &held("a", T, 3_000, 1), Some(u64::MAX)).is_err());
    }
}
