//! `synchronous_standby_names` for the primary: `FIRST 1` over the members marked Sync, in spec
//! order. Required durability lists them whether or not they stream (commits wait); Preferred
//! lists only those that stream now (commits go on, asynchronously, while none does).

use crate::api::{Durability, PgReplicaClusterSpec, Replication};
use crate::member::{MemberReport, SyncStandbys};

pub fn sync_standbys(
    spec: &PgReplicaClusterSpec,
    primary: &str,
    primary_report: Option<&MemberReport>,
) -> SyncStandbys {
    let streaming = |name: &str| {
        primary_report.is_some_and(|r| {
            r.standbys
                .iter()
                .any(|s| s.name == name && s.state == "streaming")
        })
    };
    let names: Vec<String> = spec
        .members
        .iter()
        .filter(|m| m.name != primary && m.replication == Replication::Sync)
        .filter(|m| spec.durability == Durability::Required || streaming(&m.name))
        .map(|m| m.name.clone())
        .collect();
    SyncStandbys {
        count: u32::from(!names.is_empty()),
        names,
    }
}

/// One physical slot per member other than the primary.
pub fn slots_for(spec: &PgReplicaClusterSpec, primary: &str) -> Vec<String> {
    spec.members
        .iter()
        .filter(|m| m.name != primary)
        .map(|m| crate::member::slot_name_for(&m.name))
        .collect()
}
