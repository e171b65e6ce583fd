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
mod sync;
mod topology;

#[cfg(test)]
mod tests;

pub use input::{Address, Input, LeaseView, Observation, RestartRequest};
pub use invalid::{invalid_status, truncate, MAX_MESSAGE};
pub use output::{EventReason, Plan, PlanEvent, Routes};
pub use report::material_change;
pub use silence::{Silence, SilencePolicy};

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
