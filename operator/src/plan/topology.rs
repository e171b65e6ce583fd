//! Desired states for a cluster whose primary is settled: the primary keeps sync names and
//! slots, every other member streams from it.

use crate::member::slot_name_for;
use crate::member::{Desired, DesiredRole, Upstream};

use super::input::Input;
use super::output::Plan;
use super::sync::{slots_for, sync_standbys};

pub fn primary_desired(
    input: &Input<'_>,
    primary: &str,
    bootstrap: bool,
    reason: String,
) -> Desired {
    Desired {
        role: DesiredRole::Primary {
            bootstrap,
            sync: sync_standbys(input.spec, primary, input.report(primary)),
            slots: slots_for(input.spec, primary),
        },
        parameters: input.spec.postgres.parameters.clone(),
        restart: false,
        restart_before_ms: None,
        reload_before_ms: None,
        reason,
    }
}

/// Standby of `primary`, or nothing when the runtime does not know where the primary listens.
pub fn standby_desired(
    input: &Input<'_>,
    member: &str,
    primary: &str,
    reason: String,
) -> Option<Desired> {
    let address = input.addresses.get(primary)?;
    let spec = input.spec.member(member)?;
    Some(Desired {
        role: DesiredRole::Standby {
            upstream: Upstream {
                member: primary.to_string(),
                host: address.host.clone(),
                port: address.port,
            },
            slot: slot_name_for(member),
            apply_delay_ms: spec.apply_delay_ms(),
            replay_paused: spec.replay_paused,
            slots: slots_for(input.spec, member),
        },
        parameters: input.spec.postgres.parameters.clone(),
        restart: false,
        restart_before_ms: None,
        reload_before_ms: None,
        reason,
    })
}

/// Every member other than `primary` (and `except`) follows `primary`.
pub fn followers(input: &Input<'_>, plan: &mut Plan, primary: &str, except: &[&str]) {
    for m in &input.spec.members {
        if m.name == primary || except.contains(&m.name.as_str()) {
            continue;
        }
        if let Some(d) = standby_desired(
            input,
            &m.name,
            primary,
            format!("stream from primary {primary}"),
        ) {
            plan.desired.insert(m.name.clone(), d);
        }
    }
}

pub fn stopped(reason: String) -> Desired {
    Desired::new(DesiredRole::Stopped, reason)
}
