//! The validation rules, written once: every rule has a message shared by the Rust validator
//! (`validate.rs`, used by `pgreplica validate` and the operator) and the CEL rule placed in the
//! generated CRD (`cel.rs`, enforced by the API server).

use super::duration::DURATION_PATTERN;

pub const DNS_LABEL_PATTERN: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";
/// `<cluster>-<member>` must stay a DNS label (63 characters).
pub const MAX_OBJECT_NAME: usize = 63;
pub const MAX_MEMBER_NAME: usize = 20;

pub const MSG_CLUSTER_NAME: &str = "must be a lowercase DNS label (a-z, 0-9, '-', starting with a letter) because Services are named <cluster>-rw: rename the cluster";
pub const MSG_NAME_LENGTH: &str = "cluster name and member name together must fit in 62 characters so <cluster>-<member> is a valid object name: shorten metadata.name or the member names";
pub const MSG_MEMBERS_REQUIRED: &str =
    "at least one member is required: list the members, the preferred primary first";
pub const MSG_TOO_MANY_MEMBERS: &str =
    "at most 9 members are supported: remove members or split the cluster";
pub const MSG_MEMBER_NAME: &str = "must be a lowercase DNS label of at most 20 characters (a-z, 0-9, '-', starting with a letter, not ending with '-'), such as a or rpi-1";
pub const MSG_UNIQUE_NAMES: &str =
    "member names must be unique: rename or remove the duplicate member";
pub const MSG_PRIMARY: &str =
    "must name one of spec.members[].name: set primary to the member that should bootstrap the cluster";
pub const MSG_PRIMARY_PROMOTABLE: &str = "must name a member that can be promoted and catch up (Sync, or promotable: true, and no applyDelay): the cluster bootstraps and fails back there";
pub const MSG_DELAY_FORMAT: &str = "must be a non-negative whole number with a unit (ms, s, min, h or d), such as 3s, 500ms or 1min";
pub const MSG_PAUSE_ASYNC: &str = "only Async members may have their replay paused (a paused Sync member could not take over): pause a delayed Async member, or remove replayPaused";
pub const MSG_PRIMARY_PAUSED: &str = "must not name a member whose replay is paused: resume its replay (replayPaused: false) or choose another primary";
pub const MSG_DELAY_ASYNC: &str = "only Async members may have an apply delay: set replication: Async on this member or remove applyDelay";
/// Application role and database names: plain lowercase SQL identifiers.
pub const APP_NAME_PATTERN: &str = "^[a-z_][a-z0-9_]*$";
/// Names the application may not take: pgreplica's own roles and PostgreSQL's databases.
pub const RESERVED_APP_NAMES: &[&str] = &["postgres", "replicator", "template0", "template1"];
pub const MSG_APP_NAME: &str = "must be a lowercase SQL identifier (a-z, 0-9, '_', not starting with a digit or pg_) other than postgres, replicator, template0 and template1, such as app or shop";
pub const MSG_ALPINE_IMAGE: &str = "alpine images are not supported: their PostgreSQL runs as uid 70 on musl libc, and the agent pgreplica copies into every member needs glibc: use a Debian image such as postgres:15-bookworm (the default)";
pub const MSG_DURABILITY: &str = "durability Required needs a Sync member other than spec.primary: mark a standby replication: Sync or set durability: Preferred";

/// A PostgreSQL parameter pgreplica sets itself, and where the user says what they want instead.
pub struct OwnedParameter {
    pub name: &'static str,
    pub instead: &'static str,
}

/// Parameters refused in `spec.postgres.parameters` (PostgreSQL names are case-insensitive).
pub const OWNED_PARAMETERS: &[OwnedParameter] = &[
    OwnedParameter {
        name: "synchronous_standby_names",
        instead: "set replication: Sync on members and spec.durability",
    },
    OwnedParameter {
        name: "primary_conninfo",
        instead: "pgreplica points every standby at the current primary",
    },
    OwnedParameter {
        name: "primary_slot_name",
        instead: "pgreplica gives every standby its own slot",
    },
    OwnedParameter {
        name: "recovery_min_apply_delay",
        instead: "use spec.members[].applyDelay on an Async member",
    },
    OwnedParameter {
        name: "recovery_target_timeline",
        instead: "standbys always follow the latest timeline",
    },
    OwnedParameter {
        name: "hot_standby",
        instead: "standbys always serve reads",
    },
    OwnedParameter {
        name: "port",
        instead: "the runtime chooses each member's port",
    },
    OwnedParameter {
        name: "listen_addresses",
        instead: "the runtime chooses where members listen",
    },
    OwnedParameter {
        name: "unix_socket_directories",
        instead: "the runtime places sockets next to the data",
    },
    OwnedParameter {
        name: "data_directory",
        instead: "use spec.members[].storage",
    },
    OwnedParameter {
        name: "hba_file",
        instead: "pgreplica writes pg_hba.conf",
    },
    OwnedParameter {
        name: "ident_file",
        instead: "pgreplica manages authentication files",
    },
    OwnedParameter {
        name: "config_file",
        instead: "pgreplica writes the configuration",
    },
    OwnedParameter {
        name: "wal_level",
        instead: "replication needs replica or higher; pgreplica sets it",
    },
    OwnedParameter {
        name: "max_wal_senders",
        instead: "pgreplica sizes it from spec.members",
    },
    OwnedParameter {
        name: "max_replication_slots",
        instead: "pgreplica sizes it from spec.members",
    },
    OwnedParameter {
        name: "wal_log_hints",
        instead: "pg_rewind needs it; pgreplica sets it",
    },
    OwnedParameter {
        name: "password_encryption",
        instead: "pgreplica always uses scram-sha-256",
    },
];

impl OwnedParameter {
    pub fn message(&self) -> String {
        format!(
            "{} is managed by pgreplica ({}): remove it from spec.postgres.parameters",
            self.name, self.instead
        )
    }
}

/// One CEL rule and where in the CRD schema it sits.
pub struct CelRule {
    /// Property names from the root of the schema; `[]` is the root, `"*"` is a list's items.
    pub at: &'static [&'static str],
    pub rule: String,
    pub message: String,
    /// Relative path (from `at`) reported with the error, when it is a child.
    pub field_path: Option<&'static str>,
}

/// Every CEL rule, each paired with the Rust check in `validate.rs` that gives the same message.
pub fn cel_rules() -> Vec<CelRule> {
    let mut rules = vec![
        CelRule {
            at: &[],
            rule: format!("self.metadata.name.matches('{DNS_LABEL_PATTERN}')"),
            message: MSG_CLUSTER_NAME.into(),
            field_path: Some(".metadata.name"),
        },
        CelRule {
            at: &[],
            rule: format!(
                "self.spec.members.all(m, size(self.metadata.name) + 1 + size(m.name) <= {MAX_OBJECT_NAME})"
            ),
            message: MSG_NAME_LENGTH.into(),
            field_path: Some(".metadata.name"),
        },
        CelRule {
            at: &["spec", "members", "*", "name"],
            rule: format!("self.matches('{DNS_LABEL_PATTERN}')"),
            message: MSG_MEMBER_NAME.into(),
            field_path: None,
        },
        CelRule {
            at: &["spec", "members"],
            rule: "self.all(m, self.exists_one(n, n.name == m.name))".into(),
            message: MSG_UNIQUE_NAMES.into(),
            field_path: None,
        },
        CelRule {
            at: &["spec"],
            rule: "self.members.exists(m, m.name == self.primary)".into(),
            message: MSG_PRIMARY.into(),
            field_path: Some(".primary"),
        },
        CelRule {
            at: &["spec"],
            rule: "!self.members.exists(m, m.name == self.primary) || self.members.exists(m, m.name == self.primary && !has(m.applyDelay) && (has(m.promotable) ? m.promotable : m.replication == 'Sync'))".into(),
            message: MSG_PRIMARY_PROMOTABLE.into(),
            field_path: Some(".primary"),
        },
        CelRule {
            at: &["spec", "members", "*", "applyDelay"],
            rule: format!("self.matches('{DURATION_PATTERN}')"),
            message: MSG_DELAY_FORMAT.into(),
            field_path: None,
        },
        CelRule {
            at: &["spec", "members", "*"],
            rule: "!has(self.applyDelay) || self.replication == 'Async'".into(),
            message: MSG_DELAY_ASYNC.into(),
            field_path: Some(".applyDelay"),
        },
        CelRule {
            at: &["spec", "members", "*"],
            rule: "!has(self.replayPaused) || !self.replayPaused || self.replication == 'Async'"
                .into(),
            message: MSG_PAUSE_ASYNC.into(),
            field_path: Some(".replayPaused"),
        },
        CelRule {
            at: &["spec"],
            rule: "!self.members.exists(m, m.name == self.primary && has(m.replayPaused) && m.replayPaused)".into(),
            message: MSG_PRIMARY_PAUSED.into(),
            field_path: Some(".primary"),
        },
        CelRule {
            at: &["spec"],
            rule: "!has(self.durability) || self.durability != 'Required' || self.members.exists(m, m.replication == 'Sync' && m.name != self.primary)".into(),
            message: MSG_DURABILITY.into(),
            field_path: Some(".durability"),
        },
        CelRule {
            at: &["spec", "postgres", "image"],
            rule: "!self.lowerAscii().contains('alpine')".into(),
            message: MSG_ALPINE_IMAGE.into(),
            field_path: None,
        },
    ];
    let reserved = RESERVED_APP_NAMES
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    for field in ["user", "database"] {
        rules.push(CelRule {
            at: match field {
                "user" => &["spec", "application", "user"],
                _ => &["spec", "application", "database"],
            },
            rule: format!(
                "self.matches('{APP_NAME_PATTERN}') && !self.startsWith('pg_') && !(self in [{reserved}])"
            ),
            message: MSG_APP_NAME.into(),
            field_path: None,
        });
    }
    rules.extend(OWNED_PARAMETERS.iter().map(|p| CelRule {
        at: &["spec", "postgres", "parameters"],
        rule: format!("!self.exists(k, k.lowerAscii() == '{}')", p.name),
        message: p.message(),
        field_path: None,
    }));
    rules
}
