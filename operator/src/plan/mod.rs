//! The brain: pure decisions shared by every runtime. Given the spec, the last status, every
//! member as observed, the lease and the time, `plan` returns desired states, routes, a new
//! status and events. No I/O, no clock reads; most tests live here as tables.

mod candidates;
mod handover;
mod input;
mod invalid;
mod output;
mod report;
mod rollout;
mod routes;
mod sever;
mod silence;
mod spec_change;
mod sync;
mod topology;

#[cfg(test)]
mod tests;

pub use input::{Address, Input, LeaseView, Observation, RestartRequest, VolumeNote};
pub use invalid::{invalid_status, truncate, MAX_MESSAGE};
pub use output::{EventReason, Plan, PlanEvent, Routes};
pub use report::{frozen_at, material_change};
pub use silence::{Silence, SilencePolicy};
pub use spec_change::spec_changed;

/// The members a runtime keeps running: those of the spec, and a primary (current or target)
/// removed from it until the plan has moved the primary to a member of the spec.
pub fn members_to_run(
    spec: &crate::api::PgReplicaClusterSpec,
    status: &crate::api::PgReplicaClusterStatus,
) -> Vec<String> {
    let mut names = spec.member_names();
    for primary in [&status.current_primary, &status.target_primary]
        .into_iter()
        .flatten()
    {
        if !names.contains(primary) {
            names.push(primary.clone());
        }
    }
    names
}

/// Decide what every member should do now.
pub fn plan(input: &Input<'_>) -> Plan {
    let mut plan = Plan {
        status: input.status.clone(),
        ..Plan::default()
    };
    match input.status.current_primary.clone() {
        None => handover::bootstrap(input, &mut plan),
        Some(current) => handover::steer(input, &current, &mut plan),
    }
    rollout::reloads(input, &mut plan);
    report::finish(input, &mut plan);
    plan
}
