//! `pause-replay` / `resume-replay`, the part both faces (`pgreplica local`, `kubectl pgrc`)
//! share: what the spec becomes, and when the wait is over.

use crate::api::{PgReplicaCluster, PgReplicaClusterSpec};

pub fn verb(pause: bool) -> &'static str {
    if pause {
        "pause-replay"
    } else {
        "resume-replay"
    }
}

/// Set `replayPaused` on `member` and check the result with the CRD's rules; the member's index
/// in `spec.members`, or an error that names the fix.
pub fn set(cluster: &mut PgReplicaCluster, member: &str, pause: bool) -> Result<usize, String> {
    let names = cluster.spec.member_names();
    let Some(index) = cluster.spec.members.iter().position(|m| m.name == member) else {
        return Err(format!(
            "{member} is not a member of this cluster (members: {})",
            names.join(", ")
        ));
    };
    cluster.spec.members[index].replay_paused = pause;
    crate::api::validate::validate(cluster).map_err(|e| {
        format!(
            "cannot {} {member}'s replay: {e}",
            if pause { "pause" } else { "resume" }
        )
    })?;
    Ok(index)
}

/// Members paused in `applied` that `next` keeps but no longer pauses: applying `next` would
/// resume them, and they would apply at once what they held back (the mistake they were paused
/// for included). A member `next` removes is not listed: removing it is explicit.
pub fn would_resume(applied: &PgReplicaClusterSpec, next: &PgReplicaClusterSpec) -> Vec<String> {
    applied
        .members
        .iter()
        .filter(|m| m.replay_paused)
        .filter(|m| next.member(&m.name).is_some_and(|n| !n.replay_paused))
        .map(|m| m.name.clone())
        .collect()
}

/// Why a file that would resume `members` is refused, and the two ways on.
pub fn resume_refused(source: &str, members: &[String]) -> String {
    let list = members.join(", ");
    format!(
        "{list}: replay is paused, and {source} does not say `replayPaused: true` for {}: applying it would resume {list}, which would then apply everything held back, the mistake included. Resume on purpose with `pgreplica local resume-replay {}`, or add `replayPaused: true` to {} in {source}",
        if members.len() == 1 { "it" } else { "them" },
        members[0],
        if members.len() == 1 { "it" } else { "each" },
    )
}

/// Whether the member reached what was asked: paused (its data has a time), or streaming again.
pub fn reached(pause: bool, frozen_at: Option<&str>, ready: bool) -> bool {
    if pause {
        frozen_at.is_some()
    } else {
        frozen_at.is_none() && ready
    }
}

/// What a paused member's reader should know about tables it cannot read.
pub fn locked_note(locks: &[String]) -> Option<String> {
    (!locks.is_empty()).then(|| {
        format!(
            "{} locked by a DROP, TRUNCATE or ALTER it began replaying: reads of {} wait until it is resumed",
            locks.join(", "),
            if locks.len() == 1 { "it" } else { "them" }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> PgReplicaCluster {
        crate::api::validate::parse_and_validate(include_str!("../../../examples/lab.yaml"))
            .expect("lab parses")
            .cluster
    }

    #[test]
    fn only_a_delayed_or_async_member_can_be_paused() {
        // (member, pause, Ok(index) or a piece of the error)
        let table: [(&str, bool, Result<usize, &str>); 5] = [
            ("c", true, Ok(2)),
            ("c", false, Ok(2)),
            ("b", true, Err("Async")),
            ("a", true, Err("primary")),
            (
                "zz",
                true,
                Err("zz is not a member of this cluster (members: a, b, c)"),
            ),
        ];
        for (member, pause, want) in table {
            let mut cluster = lab();
            let got = set(&mut cluster, member, pause);
            match (want, got) {
                (Ok(w), Ok(g)) => {
                    assert_eq!(w, g, "{member}");
                    assert_eq!(cluster.spec.members[g].replay_paused, pause, "{member}");
                }
                (Err(w), Err(g)) => assert!(g.contains(w), "{member}: {g}"),
                (w, g) => panic!("{member} {pause}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn a_file_that_would_resume_a_paused_member_is_named() {
        let lab = lab().spec;
        let paused = {
            let mut c = lab.clone();
            c.members[2].replay_paused = true;
            c
        };
        let without_c = {
            let mut c = lab.clone();
            c.members.truncate(2);
            c
        };
        // (what, applied, next, would resume)
        let table: [(&str, &PgReplicaClusterSpec, &PgReplicaClusterSpec, &[&str]); 4] = [
            ("nothing paused", &lab, &lab, &[]),
            ("paused, kept paused", &paused, &paused, &[]),
            ("paused, the file says nothing", &paused, &lab, &["c"]),
            ("paused, removed", &paused, &without_c, &[]),
        ];
        for (what, applied, next, want) in table {
            assert_eq!(would_resume(applied, next), want, "{what}");
        }
        let message = resume_refused("lab.yaml", &["c".into()]);
        assert!(
            message.contains("pgreplica local resume-replay c"),
            "{message}"
        );
        assert!(
            message.contains("add `replayPaused: true` to it in lab.yaml"),
            "{message}"
        );
    }

    #[test]
    fn the_wait_ends_when_the_member_is_where_it_was_asked_to_be() {
        // (pause, frozen at, ready, reached)
        let table = [
            (true, None, true, false),
            (true, Some("t"), false, true),
            (false, Some("t"), true, false),
            (false, None, false, false),
            (false, None, true, true),
        ];
        for (pause, frozen, ready, want) in table {
            assert_eq!(
                reached(pause, frozen, ready),
                want,
                "{pause} {frozen:?} {ready}"
            );
        }
    }

    #[test]
    fn locked_tables_are_named() {
        assert_eq!(locked_note(&[]), None);
        assert_eq!(
            locked_note(&["public.t".into()]).as_deref(),
            Some("public.t locked by a DROP, TRUNCATE or ALTER it began replaying: reads of it wait until it is resumed")
        );
    }
}
