//! Where the endpoints lead, for both runtimes (the local proxies and the Kubernetes Services):
//! - `rw`: the primary of record, once it runs as primary and holds the lease;
//! - `ro`: standbys that are ready (streaming from the primary) and apply WAL without a delay —
//!   a delayed member would answer reads with data seconds old; when no standby qualifies, the
//!   primary, so that reads keep working (never stale);
//! - `standbys`: every ready standby, delayed or not (the `-r` endpoint adds the primary).

use crate::api::{MemberStatus, PgReplicaClusterSpec};

use super::output::Routes;

pub fn routes(
    spec: &PgReplicaClusterSpec,
    current: Option<&str>,
    members: &[MemberStatus],
) -> Routes {
    let ready = |name: &str| members.iter().any(|m| m.name == name && m.ready);
    let rw = current.filter(|c| ready(c)).map(String::from);
    let standbys: Vec<String> = spec
        .members
        .iter()
        .filter(|m| Some(m.name.as_str()) != current && ready(&m.name))
        .map(|m| m.name.clone())
        .collect();
    let mut ro: Vec<String> = spec
        .members
        .iter()
        .filter(|m| standbys.contains(&m.name) && m.apply_delay_ms() == 0)
        .map(|m| m.name.clone())
        .collect();
    let ro_is_primary = ro.is_empty() && rw.is_some();
    if ro_is_primary {
        ro.extend(rw.clone());
    }
    Routes {
        rw,
        ro,
        standbys,
        ro_is_primary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> PgReplicaClusterSpec {
        let yaml =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lab.yaml"))
                .expect("lab.yaml");
        crate::api::validate::parse_and_validate(&yaml)
            .expect("valid")
            .cluster
            .spec
    }

    fn status(ready: &[&str]) -> Vec<MemberStatus> {
        ["a", "b", "c"]
            .iter()
            .map(|n| MemberStatus {
                name: n.to_string(),
                role: crate::api::Role::Standby,
                ready: ready.contains(n),
                sync_state: None,
                timeline: None,
                received_lsn: None,
                replayed_lsn: None,
                replay_lag_seconds: None,
                last_error: None,
                last_event: None,
                fenced: None,
            })
            .collect()
    }

    #[test]
    fn reads_never_go_to_the_delayed_member() {
        // the lab: a primary, b sync, c async with a 3 s apply delay
        let spec = lab();
        // (current primary, ready members) → (rw, ro, standbys, ro falls back to the primary)
        type Case<'a> = (
            Option<&'a str>,
            &'a [&'a str],
            Option<&'a str>,
            &'a [&'a str],
            &'a [&'a str],
            bool,
        );
        let cases: [Case; 7] = [
            (
                Some("a"),
                &["a", "b", "c"],
                Some("a"),
                &["b"],
                &["b", "c"],
                false,
            ),
            // b lost: only the delayed c is a standby; reads go to the primary, not to c
            (Some("a"), &["a", "c"], Some("a"), &["a"], &["c"], true),
            (Some("a"), &["a"], Some("a"), &["a"], &[], true),
            // a primary not ready yet: no writes, and no reads from c either
            (Some("a"), &["b", "c"], None, &["b"], &["b", "c"], false),
            (Some("a"), &["c"], None, &[], &["c"], false),
            // after a failover to b: a (no delay) serves reads again once it streams
            (
                Some("b"),
                &["a", "b", "c"],
                Some("b"),
                &["a"],
                &["a", "c"],
                false,
            ),
            (None, &[], None, &[], &[], false),
        ];
        for (current, ready, rw, ro, standbys, fallback) in cases {
            let r = routes(&spec, current, &status(ready));
            assert_eq!(r.rw.as_deref(), rw, "{current:?} {ready:?}");
            assert_eq!(r.ro, ro, "{current:?} {ready:?}");
            assert_eq!(r.standbys, standbys, "{current:?} {ready:?}");
            assert_eq!(r.ro_is_primary, fallback, "{current:?} {ready:?}");
        }
    }
}
