//! The files pgreplica writes into a data directory: `pgreplica.conf` (included last from
//! postgresql.conf; every setting pgreplica owns), `pg_hba.conf`, and `standby.signal`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::member::{DesiredRole, Lsn};
use crate::postgres::quote::{conf_value, conninfo};
use crate::postgres::{ConnParams, PgResult};

use super::config::{AgentConfig, REPLICATION_USER, SUPERUSER};

pub const OWNED_CONF: &str = "pgreplica.conf";
const INCLUDE_LINE: &str = "include_if_exists = 'pgreplica.conf'\t# pgreplica: must stay last";

/// `pgreplica.conf` for a role and the spec's parameters. The first two lines record both so the
/// agent can tell what is configured without parsing PostgreSQL's syntax back.
pub fn render_conf(
    cfg: &AgentConfig,
    role: &DesiredRole,
    parameters: &BTreeMap<String, String>,
    passfile: &Path,
) -> PgResult<String> {
    let marker = serde_json::to_string(role).unwrap_or_default();
    let recorded = serde_json::to_string(parameters).unwrap_or_default();
    let mut lines = vec![
        format!("{ROLE_MARKER}{marker}"),
        format!("{PARAMETERS_MARKER}{recorded}"),
        "# Managed by pgreplica; edits are overwritten.".to_string(),
    ];
    let mut set = |name: &str, value: &str| -> PgResult<()> {
        lines.push(format!("{name} = {}", conf_value(value)?));
        Ok(())
    };
    for (name, value) in parameters {
        set(&name.to_ascii_lowercase(), value)?;
    }
    let listen = if cfg.allow_networks.is_empty() {
        cfg.listen_host.clone()
    } else {
        "*".to_string()
    };
    set("listen_addresses", &listen)?;
    set("port", &cfg.port.to_string())?;
    set("unix_socket_directories", "")?;
    set("cluster_name", &cfg.member)?;
    set("wal_level", "replica")?;
    set("max_wal_senders", "16")?;
    set("max_replication_slots", "16")?;
    set("hot_standby", "on")?;
    set("hot_standby_feedback", "on")?;
    set("wal_log_hints", "on")?;
    set("max_slot_wal_keep_size", &cfg.max_slot_wal_keep_size)?;
    set("wal_receiver_status_interval", "1s")?;
    set("wal_receiver_timeout", "10s")?;
    set("wal_sender_timeout", "10s")?;
    // pg_rewind needs the old primary's WAL back to the last common checkpoint.
    set("wal_keep_size", "128MB")?;
    set("wal_retrieve_retry_interval", "500ms")?;
    set("password_encryption", "scram-sha-256")?;
    // TLS with the member's certificate of the cluster CA (ADR 0005).
    set("ssl", "on")?;
    set("ssl_cert_file", &cfg.tls.cert.to_string_lossy())?;
    set("ssl_key_file", &cfg.tls.key.to_string_lossy())?;
    set("log_line_prefix", "%m [%p] ")?;
    // In every role: PostgreSQL reads it only at start, so a value that differed between roles
    // would leave a promoted member with a restart pending for ever.
    set("recovery_target_timeline", "latest")?;
    match role {
        DesiredRole::Primary { sync, .. } => {
            set("synchronous_standby_names", &sync.setting())?;
        }
        DesiredRole::Standby {
            upstream,
            slot,
            apply_delay_ms,
            ..
        } => {
            // verify-full: the upstream's certificate must name the member we mean
            let mut source =
                ConnParams::new(upstream.host.clone(), upstream.port, REPLICATION_USER)
                    .with_tls(Some(cfg.member_tls(&upstream.member)))
                    .with_application_name(cfg.member.clone());
            source.connect_timeout = std::time::Duration::from_secs(2);
            let conninfo = format!(
                "{} {}",
                source.conninfo(false)?,
                conninfo(&[("passfile", &passfile.to_string_lossy())])?
            );
            set("synchronous_standby_names", "")?;
            set("primary_conninfo", &conninfo)?;
            set("primary_slot_name", slot)?;
            set("recovery_min_apply_delay", &format!("{apply_delay_ms}ms"))?;
        }
        DesiredRole::Stopped => {}
    }
    Ok(lines.join("\n") + "\n")
}

const PAUSED_MARKER: &str = "# pgreplica replay paused at: ";

/// A paused standby's lines: where its replay paused (a comment, read back by
/// [`configured_paused_at`]) and, with `guard`, the recovery target that keeps it there across a
/// restart ([`paused_guard`]).
pub fn paused_conf(paused_at: Option<Lsn>, guard: bool) -> String {
    let mut out = paused_at
        .map(|lsn| format!("{PAUSED_MARKER}{lsn}\n"))
        .unwrap_or_default();
    if guard {
        out.push_str(&paused_guard(paused_at));
    }
    out
}

/// The recovery target at the position replay paused at (none known: the first consistent
/// point), where a starting server pauses again. PostgreSQL reads it only at a start and logs a
/// reload that changes it as an error in the file, so it is written for a start and kept only
/// while a server started with it runs (`pending_restart` ignores it).
pub fn paused_guard(paused_at: Option<Lsn>) -> String {
    match paused_at {
        Some(lsn) => format!(
            "recovery_target_lsn = '{lsn}'\nrecovery_target_inclusive = off\nrecovery_target_action = 'pause'\n"
        ),
        None => "recovery_target = 'immediate'\nrecovery_target_action = 'pause'\n".to_string(),
    }
}

/// The configuration holds a paused standby's recovery target.
pub fn has_guard(conf: &str) -> bool {
    conf.lines()
        .any(|l| l.trim_start().starts_with("recovery_target_action"))
}

/// Where `paused_conf` recorded the replay paused, if it did.
pub fn configured_paused_at(conf: &str) -> Option<Lsn> {
    conf.lines()
        .find_map(|l| l.strip_prefix(PAUSED_MARKER))
        .and_then(|l| l.trim().parse().ok())
}

const ROLE_MARKER: &str = "# pgreplica role: ";
const PARAMETERS_MARKER: &str = "# pgreplica parameters: ";

/// The role recorded in the first line of `pgreplica.conf`, if any.
pub fn configured_role(conf: &str) -> Option<DesiredRole> {
    let first = conf.lines().next()?;
    let json = first.strip_prefix(ROLE_MARKER)?;
    serde_json::from_str(json).ok()
}

/// The parameters recorded in `pgreplica.conf` (none recorded: a file of an older version, whose
/// parameters are unknown).
pub fn configured_parameters(conf: &str) -> Option<BTreeMap<String, String>> {
    let json = conf
        .lines()
        .take(3)
        .find_map(|l| l.strip_prefix(PARAMETERS_MARKER))?;
    serde_json::from_str(json).ok()
}

/// Replication only for the replication user; everything by scram-sha-256; from any network
/// beyond loopback only over TLS (`hostssl`): a connection in the clear finds no rule.
pub fn render_hba(cfg: &AgentConfig) -> String {
    let mut lines = vec![
        "# Managed by pgreplica; edits are overwritten.".to_string(),
        "local   all          all                         scram-sha-256".to_string(),
    ];
    let loopback = ["127.0.0.1/32", "::1/128"].map(|net| ("host   ", net.to_string()));
    let networks = cfg
        .allow_networks
        .iter()
        .map(|net| ("hostssl", net.clone()));
    for (kind, net) in loopback.into_iter().chain(networks) {
        lines.push(format!(
            "{kind} replication  {REPLICATION_USER:<12} {net:<18} scram-sha-256"
        ));
        lines.push(format!(
            "{kind} all          {SUPERUSER:<12} {net:<18} scram-sha-256"
        ));
        lines.push(format!(
            "{kind} all          all          {net:<18} scram-sha-256"
        ));
    }
    lines.join("\n") + "\n"
}

/// Make postgresql.conf include `pgreplica.conf` last (once).
pub fn with_include(postgresql_conf: &str) -> String {
    if postgresql_conf.contains(INCLUDE_LINE) {
        return postgresql_conf.to_string();
    }
    let mut out = postgresql_conf.to_string();
    if !out.ends_with('\n') && !out.is_empty() {
        out.push('\n');
    }
    out.push_str(INCLUDE_LINE);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::{SyncStandbys, Upstream};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn cfg() -> AgentConfig {
        AgentConfig {
            cluster: "lab".into(),
            member: "b".into(),
            member_dir: PathBuf::from("/x/b"),
            listen_host: "127.0.0.1".into(),
            port: 6001,
            http: "127.0.0.1:7001".parse().expect("addr"),
            tls: crate::tls::AgentTlsFiles::in_dir(std::path::Path::new("/tls")),
            pg_bindir: None,
            run_as: None,
            superuser_password_file: PathBuf::from("/x/su"),
            replication_password_file: PathBuf::from("/x/repl"),
            lease_file: PathBuf::from("/x/lease"),
            lease_backend: Default::default(),
            lease_duration_ms: 4000,
            allow_networks: vec![],
            max_slot_wal_keep_size: "1GB".into(),
            application: None,
        }
    }

    #[test]
    fn standby_conf_has_conninfo_slot_delay_and_records_its_role() {
        let role = DesiredRole::Standby {
            upstream: Upstream {
                member: "a".into(),
                host: "127.0.0.1".into(),
                port: 6000,
            },
            slot: "pgreplica_b".into(),
            apply_delay_ms: 3000,
            replay_paused: false,
            slots: vec![],
        };
        let parameters = BTreeMap::from([("Max_Connections".to_string(), "50".to_string())]);
        let conf =
            render_conf(&cfg(), &role, &parameters, Path::new("/x/b/pgpass")).expect("renders");
        // TLS verified against the CA for the upstream member's name, at the upstream's address
        assert!(conf.contains("primary_conninfo = 'host=''a.lab.pgreplica'' hostaddr=''127.0.0.1'' sslmode=''verify-full'' sslrootcert=''/tls/ca.crt'' port=''6000'' user=''replicator'' dbname=''postgres'' connect_timeout=''2'' application_name=''b'' passfile=''/x/b/pgpass'''"), "{conf}");
        assert!(conf.contains("ssl = 'on'"));
        assert!(conf.contains("ssl_cert_file = '/tls/tls.crt'"));
        assert!(conf.contains("ssl_key_file = '/tls/tls.key'"));
        assert!(conf.contains("primary_slot_name = 'pgreplica_b'"));
        assert!(conf.contains("recovery_min_apply_delay = '3000ms'"));
        assert!(conf.contains("recovery_target_timeline = 'latest'"));
        assert!(conf.contains("max_connections = '50'"));
        assert_eq!(configured_role(&conf), Some(role));
        assert_eq!(configured_parameters(&conf), Some(parameters));
    }

    #[test]
    fn primary_conf_has_sync_names() {
        let role = DesiredRole::Primary {
            bootstrap: false,
            sync: SyncStandbys {
                count: 1,
                names: vec!["b".into()],
            },
            slots: vec!["pgreplica_b".into()],
        };
        let conf = render_conf(&cfg(), &role, &BTreeMap::new(), Path::new("/p")).expect("renders");
        assert!(
            conf.contains("synchronous_standby_names = 'FIRST 1 (\"b\")'"),
            "{conf}"
        );
        assert!(!conf.contains("primary_conninfo"));
        assert!(
            conf.contains("recovery_target_timeline = 'latest'"),
            "same as a standby's"
        );
        assert_eq!(configured_role(&conf), Some(role));
        assert_eq!(configured_parameters(&conf), Some(BTreeMap::new()));
        // a file written before parameters were recorded: unknown, so written again
        let old: String = conf
            .lines()
            .filter(|l| !l.starts_with(PARAMETERS_MARKER))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(configured_parameters(&old), None);
    }

    /// A setting PostgreSQL reads only at start must not differ between roles: a promoted member
    /// would report it pending a restart, and a rollout would move the primary for ever.
    #[test]
    fn roles_differ_only_in_settings_a_reload_applies() {
        let names = |role: &DesiredRole| -> std::collections::BTreeSet<String> {
            render_conf(&cfg(), role, &BTreeMap::new(), Path::new("/p"))
                .expect("renders")
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once(" = ").map(|(n, _)| n.to_string()))
                .collect()
        };
        let primary = names(&DesiredRole::Primary {
            bootstrap: false,
            sync: SyncStandbys::default(),
            slots: vec![],
        });
        let standby = names(&DesiredRole::Standby {
            upstream: Upstream {
                member: "a".into(),
                host: "127.0.0.1".into(),
                port: 6000,
            },
            slot: "pgreplica_b".into(),
            apply_delay_ms: 0,
            replay_paused: false,
            slots: vec![],
        });
        // all of context sighup in PostgreSQL 13 and later
        let reloadable = [
            "primary_conninfo",
            "primary_slot_name",
            "recovery_min_apply_delay",
        ];
        let differ: Vec<&String> = primary.symmetric_difference(&standby).collect();
        assert!(
            differ.iter().all(|n| reloadable.contains(&n.as_str())),
            "{differ:?}"
        );
    }

    #[test]
    fn hba_allows_replication_only_to_the_replication_user() {
        let hba = render_hba(&cfg());
        for line in hba.lines().filter(|l| l.contains(" replication ")) {
            assert!(line.contains(REPLICATION_USER), "{line}");
        }
        assert!(!hba.contains("trust"));
        assert!(!hba.contains(" md5"));
    }

    #[test]
    fn hba_accepts_networks_beyond_loopback_only_over_tls() {
        let mut pod = cfg();
        pod.allow_networks = vec!["0.0.0.0/0".into(), "::/0".into()];
        let hba = render_hba(&pod);
        let table = [
            ("127.0.0.1/32", "host "),
            ("::1/128", "host "),
            ("0.0.0.0/0", "hostssl "),
            ("::/0", "hostssl "),
        ];
        for (net, kind) in table {
            let rules: Vec<&str> = hba
                .lines()
                .filter(|l| l.contains(&format!(" {net} ")))
                .collect();
            assert_eq!(rules.len(), 3, "{net}: {hba}");
            assert!(
                rules.iter().all(|l| l.starts_with(kind)),
                "{net}: {rules:?}"
            );
        }
    }

    #[test]
    fn include_is_added_once() {
        let once = with_include("max_connections = 100\n");
        assert_eq!(with_include(&once), once);
        assert!(once.ends_with("# pgreplica: must stay last\n"));
    }

    #[test]
    fn a_paused_standby_has_its_guard_only_for_a_start() {
        let at = Some(Lsn(0x3000060));
        // (paused at, guard, has the guard, recorded position)
        let table = [
            (at, false, false, at),
            (at, true, true, at),
            (None, true, true, None),
            (None, false, false, None),
        ];
        for (paused_at, guard, want_guard, want_at) in table {
            let conf = paused_conf(paused_at, guard);
            assert_eq!(has_guard(&conf), want_guard, "{conf}");
            assert_eq!(configured_paused_at(&conf), want_at, "{conf}");
        }
        assert!(paused_conf(at, true).contains("recovery_target_lsn = '0/3000060'"));
        assert!(paused_conf(None, true).contains("recovery_target = 'immediate'"));
    }
}
