//! A changed spec as an event a person reads later (`kubectl describe`, `local status`): what
//! changed and what pgreplica does about it, in the words `local apply` prints.

use crate::api::changes::describe;
use crate::api::PgReplicaClusterSpec;

use super::invalid::{truncate, MAX_MESSAGE};
use super::output::{EventReason, PlanEvent};

/// The `SpecChanged` event for a new generation, or nothing when no field a person set changed.
pub fn spec_changed(
    old: &PgReplicaClusterSpec,
    new: &PgReplicaClusterSpec,
    generation: i64,
) -> Option<PlanEvent> {
    let lines = describe(old, new);
    if lines.is_empty() {
        return None;
    }
    Some(PlanEvent {
        reason: EventReason::SpecChanged,
        member: None,
        message: truncate(
            &format!("generation {generation}: {}", lines.join("; ")),
            MAX_MESSAGE,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::validate::{edited_spec, TEST_LAB};

    #[test]
    fn a_changed_spec_says_what_changed() {
        let old = edited_spec(TEST_LAB, &[]);
        let cases = [
            (vec![], None),
            (
                vec![("primary: a", "primary: b")],
                Some("generation 2: primary: a → b (a switchover to b once it is caught up)"),
            ),
            (
                vec![("    - {name: c, replication: Async, applyDelay: 3s}\n", "")],
                Some("generation 2: member c removed"),
            ),
        ];
        for (edits, want) in cases {
            let new = edited_spec(TEST_LAB, &edits);
            let event = spec_changed(&old, &new, 2);
            match want {
                None => assert_eq!(event, None),
                Some(start) => {
                    let event = event.expect("an event");
                    assert_eq!(event.reason, EventReason::SpecChanged);
                    assert!(event.message.starts_with(start), "{}", event.message);
                }
            }
        }
    }
}
