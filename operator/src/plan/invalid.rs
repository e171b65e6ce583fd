//! A spec that fails validation: what status says, once per generation.

use crate::api::{Condition, ConditionType, PgReplicaClusterStatus, Phase};

use super::report::rfc3339;

/// Longest condition message (the API server stores them; a person reads them).
pub const MAX_MESSAGE: usize = 1000;

/// The status for an invalid spec: phase `Invalid`, `Ready` and `SpecValid` false with the
/// problems; everything else as it was (members keep running as they are). `None` when this
/// generation was already reported invalid: nothing new to write, no Event storm.
pub fn invalid_status(
    previous: &PgReplicaClusterStatus,
    generation: Option<i64>,
    problems: &str,
    now_ms: u64,
) -> Option<PgReplicaClusterStatus> {
    if previous.observed_generation == generation && previous.phase == Some(Phase::Invalid) {
        return None;
    }
    let mut next = previous.clone();
    next.phase = Some(Phase::Invalid);
    next.observed_generation = generation;
    let condition = |type_: ConditionType| Condition {
        type_: type_.as_str().into(),
        status: "False".into(),
        reason: "InvalidSpec".into(),
        message: truncate(problems, MAX_MESSAGE),
        last_transition_time: rfc3339(now_ms),
        observed_generation: generation,
    };
    next.conditions
        .retain(|c| !c.is(ConditionType::Ready) && !c.is(ConditionType::SpecValid));
    next.conditions.push(condition(ConditionType::Ready));
    next.conditions.push(condition(ConditionType::SpecValid));
    Some(next)
}

/// At most `max` bytes of `text`, cut at a character boundary, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_spec_is_reported_once_per_generation() {
        let healthy = PgReplicaClusterStatus {
            phase: Some(Phase::Healthy),
            observed_generation: Some(1),
            ..Default::default()
        };
        let first = invalid_status(&healthy, Some(2), "spec.primary: no such member", 0)
            .expect("a new generation is reported");
        assert_eq!(first.phase, Some(Phase::Invalid));
        assert_eq!(first.observed_generation, Some(2));
        let ready = first
            .conditions
            .iter()
            .find(|c| c.is(ConditionType::Ready))
            .expect("Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(first
            .conditions
            .iter()
            .any(|c| c.is(ConditionType::SpecValid)));
        // (previous, generation) → reported again?
        let cases = [
            (&first, Some(2), false),
            (&first, Some(3), true),
            (&healthy, Some(1), true),
        ];
        for (previous, generation, again) in cases {
            assert_eq!(
                invalid_status(previous, generation, "x", 0).is_some(),
                again,
                "{:?} {generation:?}",
                previous.phase
            );
        }
    }

    #[test]
    fn long_messages_are_cut_at_a_character() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "abc…");
        assert_eq!(truncate("aé", 2), "a…");
    }
}
