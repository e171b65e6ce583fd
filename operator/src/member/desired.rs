//! The desired state of one member, decided by the brain and converged by the agent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a standby streams from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Upstream {
    pub member: String,
    pub host: String,
    pub port: u16,
}

/// Which standbys the primary waits for: `FIRST <count> (names...)`, or none.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SyncStandbys {
    pub count: u32,
    pub names: Vec<String>,
}

impl SyncStandbys {
    /// The value of `synchronous_standby_names`.
    pub fn setting(&self) -> String {
        if self.names.is_empty() || self.count == 0 {
            String::new()
        } else {
            let quoted: Vec<String> = self.names.iter().map(|n| format!("\"{n}\"")).collect();
            format!("FIRST {} ({})", self.count, quoted.join(", "))
        }
    }
}

/// The role the brain wants a member to play.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "role", rename_all = "camelCase")]
pub enum DesiredRole {
    /// Accept writes: initdb when `bootstrap` and there is no data, promote a standby otherwise.
    #[serde(rename_all = "camelCase")]
    Primary {
        bootstrap: bool,
        sync: SyncStandbys,
        /// Physical slots to keep, one per standby; other `pgreplica_` slots are dropped.
        slots: Vec<String>,
    },
    /// Stream from `upstream` through `slot`, applying WAL `apply_delay_ms` late.
    #[serde(rename_all = "camelCase")]
    Standby {
        upstream: Upstream,
        slot: String,
        apply_delay_ms: u64,
        /// Apply no more WAL until this is false again (`spec.members[].replayPaused`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        replay_paused: bool,
        /// Copies of the other members' slots, kept and advanced on this standby so that, once
        /// promoted, it still holds the WAL the others need.
        #[serde(default)]
        slots: Vec<String>,
    },
    /// Stop PostgreSQL with a fast shutdown and keep it down (switchover, fencing).
    Stopped,
}

/// What the brain hands to one agent, with the reason for logs and status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Desired {
    #[serde(flatten)]
    pub role: DesiredRole,
    /// Server parameters (`spec.postgres.parameters`), written into `pgreplica.conf` and
    /// reloaded; those PostgreSQL applies only at a restart wait for `restart`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// The plan lets this member restart now to apply parameters that wait for a restart
    /// (one member at a time, the primary never: it is moved by a switchover instead).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart: bool,
    /// A restart asked for by a person: restart when the running server started before this
    /// (unix milliseconds); a server started since has done it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_before_ms: Option<u64>,
    /// A reload asked for by a person: write the configuration again and have the server read
    /// it (and its certificates) when it last did so before this (unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload_before_ms: Option<u64>,
    pub reason: String,
}

impl Desired {
    /// A desired role with no parameters and no restart.
    pub fn new(role: DesiredRole, reason: String) -> Desired {
        Desired {
            role,
            parameters: BTreeMap::new(),
            restart: false,
            restart_before_ms: None,
            reload_before_ms: None,
            reason,
        }
    }

    /// The plan lets this member restart now and it has a reason to: settings waiting for a
    /// restart, or a requested restart its server (started at `started_at_ms`) has not had.
    pub fn restart_due(&self, pending_restart: bool, started_at_ms: u64) -> bool {
        (self.restart && pending_restart)
            || self.restart_before_ms.is_some_and(|t| started_at_ms < t)
    }

    /// A requested reload the server (which last read its configuration at `reloaded_at_ms`)
    /// has not had.
    pub fn reload_due(&self, reloaded_at_ms: u64) -> bool {
        self.reload_before_ms.is_some_and(|t| reloaded_at_ms < t)
    }

    /// The role with what makes it differ from another of the same role, for logs:
    /// `primary, sync FIRST 1 ("b")`, `standby of a, apply delay 3000 ms`.
    pub fn summary(&self) -> String {
        let mut text = match &self.role {
            DesiredRole::Primary { sync, .. } => match sync.setting() {
                s if s.is_empty() => "primary, no sync standby".to_string(),
                s => format!("primary, sync {s}"),
            },
            DesiredRole::Standby {
                upstream,
                apply_delay_ms,
                ..
            } => match apply_delay_ms {
                0 => format!("standby of {}", upstream.member),
                d => format!("standby of {}, apply delay {d} ms", upstream.member),
            },
            DesiredRole::Stopped => "stopped".to_string(),
        };
        if self.restart || self.restart_before_ms.is_some() {
            text.push_str(", may restart");
        }
        if self.reload_before_ms.is_some() {
            text.push_str(", reload asked");
        }
        text
    }

    pub fn role_name(&self) -> &'static str {
        match self.role {
            DesiredRole::Primary { .. } => "primary",
            DesiredRole::Standby { .. } => "standby",
            DesiredRole::Stopped => "stopped",
        }
    }

    /// Same role, parameters and restart permission (the reason may differ without requiring
    /// any action).
    pub fn same_action(&self, other: &Desired) -> bool {
        self.role == other.role
            && self.parameters == other.parameters
            && self.restart == other.restart
            && self.restart_before_ms == other.restart_before_ms
            && self.reload_before_ms == other.reload_before_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_tell_two_states_of_one_role_apart() {
        let upstream = Upstream {
            member: "a".into(),
            host: "127.0.0.1".into(),
            port: 5432,
        };
        let primary = |names: Vec<&str>| DesiredRole::Primary {
            bootstrap: false,
            sync: SyncStandbys {
                count: 1,
                names: names.into_iter().map(String::from).collect(),
            },
            slots: vec![],
        };
        let standby = |delay| DesiredRole::Standby {
            upstream: upstream.clone(),
            slot: "pgreplica_c".into(),
            apply_delay_ms: delay,
            replay_paused: false,
            slots: vec![],
        };
        let mut restart = Desired::new(standby(0), "r".into());
        restart.restart_before_ms = Some(1);
        let table = [
            (
                Desired::new(primary(vec![]), "r".into()),
                "primary, no sync standby",
            ),
            (
                Desired::new(primary(vec!["b"]), "r".into()),
                "primary, sync FIRST 1 (\"b\")",
            ),
            (Desired::new(standby(0), "r".into()), "standby of a"),
            (
                Desired::new(standby(3000), "r".into()),
                "standby of a, apply delay 3000 ms",
            ),
            (restart, "standby of a, may restart"),
            (Desired::new(DesiredRole::Stopped, "r".into()), "stopped"),
        ];
        for (desired, want) in table {
            assert_eq!(desired.summary(), want);
        }
    }

    #[test]
    fn sync_setting() {
        let table = [
            (0, vec![], ""),
            (1, vec![], ""),
            (1, vec!["b"], "FIRST 1 (\"b\")"),
            (1, vec!["b", "rpi-1"], "FIRST 1 (\"b\", \"rpi-1\")"),
            (0, vec!["b"], ""),
        ];
        for (count, names, want) in table {
            let s = SyncStandbys {
                count,
                names: names.into_iter().map(String::from).collect(),
            };
            assert_eq!(s.setting(), want);
        }
    }

    #[test]
    fn desired_json_shape() {
        let mut d = Desired::new(
            DesiredRole::Standby {
                upstream: Upstream {
                    member: "a".into(),
                    host: "127.0.0.1".into(),
                    port: 5433,
                },
                slot: "pgreplica_b".into(),
                apply_delay_ms: 3000,
                replay_paused: false,
                slots: vec!["pgreplica_c".into()],
            },
            "follow a".into(),
        );
        let plain = serde_json::to_value(&d).expect("serializes");
        assert!(plain.get("parameters").is_none() && plain.get("restart").is_none());
        d.parameters.insert("work_mem".into(), "8MB".into());
        d.restart = true;
        let json = serde_json::to_value(&d).expect("serializes");
        assert_eq!(json["role"], "standby");
        assert_eq!(json["applyDelayMs"], 3000);
        assert_eq!(json["parameters"]["work_mem"], "8MB");
        assert_eq!(json["restart"], true);
        let back: Desired = serde_json::from_value(json).expect("parses");
        assert_eq!(back, d);
    }
}
