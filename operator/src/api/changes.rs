//! What changed between two specs, in words a person acts on: `local apply` and `local up`
//! print it, so nobody replaces a spec without seeing what it reverts.

use std::collections::BTreeMap;

use super::spec::{MemberSpec, PgReplicaClusterSpec};

/// One line per change, with what pgreplica will do about it. Empty when nothing changed.
pub fn describe(old: &PgReplicaClusterSpec, new: &PgReplicaClusterSpec) -> Vec<String> {
    let mut out = Vec::new();
    if old.primary != new.primary {
        out.push(format!(
            "primary: {} → {} (a switchover to {} once it is caught up)",
            old.primary, new.primary, new.primary
        ));
    }
    out.extend(arrow("failback: ", &old.failback, &new.failback, ""));
    out.extend(arrow(
        "durability: ",
        &old.durability,
        &new.durability,
        " (synchronous standby names change on the primary)",
    ));
    out.extend(arrow(
        "volumeReclaim: ",
        &old.volume_reclaim,
        &new.volume_reclaim,
        "",
    ));
    parameters(&old.postgres.parameters, &new.postgres.parameters, &mut out);
    if old.postgres.image != new.postgres.image {
        out.push(format!(
            "postgres.image: {} → {} (Kubernetes: pods recreated one at a time, standbys first, the primary last after a switchover)",
            old.postgres.image, new.postgres.image
        ));
    }
    if old.application != new.application {
        out.push("application: changed (made sure of on the primary)".into());
    }
    if old.clients != new.clients {
        out.push("clients: changed (Kubernetes NetworkPolicy)".into());
    }
    members(&old.members, &new.members, &mut out);
    out
}

fn parameters(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    out: &mut Vec<String>,
) {
    let mut changed = Vec::new();
    for (name, value) in new {
        match old.get(name) {
            None => changed.push(format!("{name} = {value} (new)")),
            Some(was) if was != value => changed.push(format!("{name}: {was} → {value}")),
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        changed.push(format!("{name} removed (back to PostgreSQL's default)"));
    }
    if !changed.is_empty() {
        out.push(format!(
            "postgres.parameters: {}; every member reloads them within seconds; those PostgreSQL applies only at a restart are rolled out one member at a time (standbys first, the primary last after a switchover)",
            changed.join(", ")
        ));
    }
}

fn members(old: &[MemberSpec], new: &[MemberSpec], out: &mut Vec<String>) {
    for m in new {
        match old.iter().find(|o| o.name == m.name) {
            None => out.push(format!(
                "member {} added ({:?}): cloned from the primary (data kept from an earlier membership is used again when it fits)",
                m.name, m.replication
            )),
            Some(o) if o != m => out.push(format!("member {}: {}", m.name, member_change(o, m))),
            Some(_) => {}
        }
    }
    for o in old.iter().filter(|o| !new.iter().any(|m| m.name == o.name)) {
        out.push(format!(
            "member {} removed: its agent and PostgreSQL stop (a primary only once a switchover has moved it), its slot is dropped; its data is kept (on Kubernetes deleted with volumeReclaim: Delete)",
            o.name
        ));
    }
}

/// `{label}{old:?} → {new:?}{then}` when they differ.
fn arrow<T: std::fmt::Debug + PartialEq>(
    label: &str,
    old: &T,
    new: &T,
    then: &str,
) -> Option<String> {
    (old != new).then(|| format!("{label}{old:?} → {new:?}{then}"))
}

fn member_change(old: &MemberSpec, new: &MemberSpec) -> String {
    let mut parts = Vec::new();
    parts.extend(arrow(
        "replication ",
        &old.replication,
        &new.replication,
        "",
    ));
    if old.apply_delay != new.apply_delay {
        parts.push(format!(
            "applyDelay {} → {}",
            old.apply_delay.as_deref().unwrap_or("none"),
            new.apply_delay.as_deref().unwrap_or("none")
        ));
    }
    if old.promotable != new.promotable {
        parts.push(format!(
            "promotable {} → {}",
            new_or_default(old.promotable),
            new_or_default(new.promotable)
        ));
    }
    if old.replay_paused != new.replay_paused {
        parts.push(if new.replay_paused {
            "replay paused: it applies no more WAL, serves no reads and is never promoted until resumed".into()
        } else {
            "replay resumed: it catches up and serves reads again".into()
        });
    }
    if old.storage != new.storage {
        parts.push("storage changed".into());
    }
    if old.node_selector != new.node_selector
        || old.affinity != new.affinity
        || old.tolerations != new.tolerations
        || old.resources != new.resources
    {
        parts.push(
            "placement or resources changed (Kubernetes: the pod is recreated in its turn)".into(),
        );
    }
    parts.join(", ")
}

fn new_or_default(v: Option<bool>) -> String {
    v.map_or("default".into(), |b| b.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lab with two parameters.
    fn lab() -> String {
        crate::api::validate::TEST_LAB.replacen(
            "  members:",
            "  postgres:\n    parameters: {work_mem: 4MB, max_connections: \"50\"}\n  members:",
            1,
        )
    }

    fn spec(edit: &[(&str, &str)]) -> PgReplicaClusterSpec {
        crate::api::validate::edited_spec(&lab(), edit)
    }

    #[test]
    fn each_change_is_one_line_that_says_what_happens() {
        // (edit, expected lines (substrings, in order))
        type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (vec![], vec![]),
            (
                vec![("work_mem: 4MB", "work_mem: 8MB")],
                vec!["postgres.parameters: work_mem: 4MB → 8MB; every member reloads"],
            ),
            (
                vec![("work_mem: 4MB, ", "shared_buffers: 256MB, ")],
                vec!["shared_buffers = 256MB (new), work_mem removed"],
            ),
            (vec![("primary: a", "primary: b")], vec!["primary: a → b"]),
            (
                vec![("primary: a", "primary: a\n  failback: Manual")],
                vec!["failback: Automatic → Manual"],
            ),
            (
                vec![("applyDelay: 3s", "applyDelay: 5s")],
                vec!["member c: applyDelay 3s → 5s"],
            ),
            (
                vec![("    - {name: b, replication: Sync}\n", "")],
                vec!["member b removed: its agent and PostgreSQL stop (a primary only once a switchover has moved it), its slot is dropped"],
            ),
            (
                vec![(
                    "{name: a, replication: Sync}",
                    "{name: a, replication: Sync}\n    - {name: d, replication: Sync}",
                )],
                vec!["member d added (Sync)"],
            ),
        ];
        for (edit, want) in cases {
            let got = describe(&spec(&[]), &spec(&edit));
            assert_eq!(got.len(), want.len(), "{edit:?}: {got:?}");
            for (line, w) in got.iter().zip(&want) {
                assert!(line.contains(w), "{edit:?}: {line:?} lacks {w:?}");
            }
        }
    }
}
