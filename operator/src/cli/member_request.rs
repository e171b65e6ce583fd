//! A restart or reload asked for by a person, the same way from both faces of the command line
//! (`pgreplica local restart|reload`, `kubectl pgrc restart|reload`): which members, what is
//! promised, and when it is done according to the cluster's status.

use crate::api::MemberStatus;
use crate::plan::RestartRequest;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Restart,
    Reload,
}

impl Kind {
    /// The request for `member` (or every member), asked now.
    pub fn request(member: Option<&str>) -> RestartRequest {
        RestartRequest {
            members: member.map(|m| vec![m.to_string()]).unwrap_or_default(),
            at_ms: crate::lease::unix_now_ms(),
        }
    }

    /// What the person is told once asked.
    pub fn announce(self, targets: &[String]) -> String {
        match self {
            Kind::Restart => format!(
                "restart of {} requested: one member at a time, standbys first, the primary last after a switchover",
                targets.join(", ")
            ),
            Kind::Reload => format!(
                "reload of {} requested: each member writes its configuration again and PostgreSQL reads it (and its certificates) without a restart",
                targets.join(", ")
            ),
        }
    }

    /// The member has done it since `asked` (RFC 3339 times from status).
    fn done_by(self, member: &MemberStatus, asked: jiff::Timestamp) -> bool {
        let at = match self {
            Kind::Restart => member.started_at.as_deref(),
            Kind::Reload => member.reloaded_at.as_deref(),
        };
        at.and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|t| t > asked)
    }

    /// Every target has done it (a restart also waits for the cluster to be Healthy again).
    /// Returns the lines to print when done.
    pub fn finished(
        self,
        members: &[MemberStatus],
        targets: &[String],
        asked_ms: u64,
        healthy: bool,
    ) -> Option<Vec<String>> {
        let asked = jiff::Timestamp::from_millisecond(i64::try_from(asked_ms).ok()?).ok()?;
        let done = targets.iter().all(|t| {
            members
                .iter()
                .any(|m| &m.name == t && self.done_by(m, asked))
        });
        if !done || (self == Kind::Restart && !healthy) {
            return None;
        }
        let mut lines = vec![match self {
            Kind::Restart => format!("restarted: {}", targets.join(", ")),
            Kind::Reload => format!("reloaded: {}", targets.join(", ")),
        }];
        if self == Kind::Reload {
            for m in members.iter().filter(|m| targets.contains(&m.name)) {
                if !m.pending_restart.is_empty() {
                    lines.push(format!(
                        "{}: waits for a restart to apply {} (it restarts in its turn)",
                        m.name,
                        m.pending_restart.join(", ")
                    ));
                }
            }
        }
        Some(lines)
    }

    /// The error when it did not finish in time.
    pub fn late(self, timeout_seconds: u64, look: &str) -> String {
        let what = match self {
            Kind::Restart => "restarted",
            Kind::Reload => "reloaded",
        };
        format!("not every member {what} within {timeout_seconds} s (it goes on in the background): see `{look}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, started: &str, reloaded: &str, pending: &[&str]) -> MemberStatus {
        serde_json::from_value(serde_json::json!({
            "name": name,
            "role": "Standby",
            "ready": true,
            "startedAt": started,
            "reloadedAt": reloaded,
            "pendingRestart": pending,
        }))
        .expect("a member status")
    }

    #[test]
    fn done_when_every_target_did_it_since_the_request() {
        // asked at 2026-12-01T00:00:10Z
        let asked = 1_796_083_210_000;
        let old = "2026-12-01T00:00:00Z";
        let new = "2026-12-01T00:00:20Z";
        let targets = vec!["a".to_string(), "b".to_string()];
        // (what, kind, members, healthy, done)
        let cases = [
            (
                "reload: both read since",
                Kind::Reload,
                vec![member("a", old, new, &[]), member("b", old, new, &[])],
                false,
                true,
            ),
            (
                "reload: b not yet",
                Kind::Reload,
                vec![member("a", old, new, &[]), member("b", old, old, &[])],
                true,
                false,
            ),
            (
                "restart: both started since, Healthy",
                Kind::Restart,
                vec![member("a", new, new, &[]), member("b", new, new, &[])],
                true,
                true,
            ),
            (
                "restart: not Healthy yet",
                Kind::Restart,
                vec![member("a", new, new, &[]), member("b", new, new, &[])],
                false,
                false,
            ),
            (
                "restart: a reload is no restart",
                Kind::Restart,
                vec![member("a", old, new, &[]), member("b", new, new, &[])],
                true,
                false,
            ),
        ];
        for (what, kind, members, healthy, want) in cases {
            assert_eq!(
                kind.finished(&members, &targets, asked, healthy).is_some(),
                want,
                "{what}"
            );
        }
        let lines = Kind::Reload
            .finished(
                &[
                    member("a", old, new, &["shared_buffers"]),
                    member("b", old, new, &[]),
                ],
                &targets,
                asked,
                true,
            )
            .expect("done");
        assert_eq!(
            lines,
            vec![
                "reloaded: a, b".to_string(),
                "a: waits for a restart to apply shared_buffers (it restarts in its turn)"
                    .to_string()
            ]
        );
    }
}
