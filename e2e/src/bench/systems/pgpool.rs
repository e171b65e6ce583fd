//! pgpool-II 4.3 in streaming-replication mode in front of three PostgreSQL servers set up the
//! lab's way (a primary, b synchronous via synchronous_standby_names, c async with
//! recovery_min_apply_delay = 3s), with a failover_command that promotes the new main node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use super::{
    kill_child, postgres_command, postgres_owned_dir, random_password, run_postgres, spawn_logged,
    wait_until,
};
use crate::bench::pg;
use crate::bench::pg_bin;
use crate::bench::procs;
use crate::bench::system::{Proc, System};
use crate::cluster::free_port;

pub struct Pgpool {
    fast: bool,
    tmp: Option<tempfile::TempDir>,
    pgpool: Option<Child>,
    port: u16,
    pg_ports: BTreeMap<String, u16>,
    password: String,
    repl_password: String,
}

impl Pgpool {
    pub fn new(fast: bool) -> Pgpool {
        Pgpool {
            fast,
            tmp: None,
            pgpool: None,
            port: 0,
            pg_ports: BTreeMap::new(),
            password: String::new(),
            repl_password: String::new(),
        }
    }

    fn base(&self) -> PathBuf {
        self.tmp
            .as_ref()
            .map(|t| t.path().to_path_buf())
            .unwrap_or_default()
    }

    fn pg_ctl(&self, m: &str, action: &[&str]) -> Result<String, String> {
        let data = self.data_dir(m).display().to_string();
        let log = self.base().join(format!("{m}.log")).display().to_string();
        let mut args = vec!["-D", &data, "-l", &log, "-w"];
        args.extend_from_slice(action);
        run_postgres(&pg_bin("pg_ctl"), &args)
    }

    fn server_conf(&self, m: &str) -> String {
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             wal_level = replica\nhot_standby = on\nmax_wal_senders = 10\nmax_replication_slots = 10\n\
             wal_log_hints = on\npassword_encryption = 'scram-sha-256'\n",
            self.pg_ports[m],
            self.base().display()
        );
        let _ = m;
        conf
    }

    fn clone_standby(&self, m: &str) -> Result<(), String> {
        let data = self.data_dir(m).display().to_string();
        let pa = self.pg_ports["a"].to_string();
        let slot = format!("slot_{m}");
        std::fs::write(self.base().join(".pgpass_tmp"), "").ok();
        let mut cmd = postgres_command(&pg_bin("pg_basebackup"))?;
        let out = cmd
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pa,
                "-U",
                "replicator",
                "-D",
                &data,
            ])
            .args(["-X", "stream", "--checkpoint=fast", "-C", "-S", &slot])
            .env("PGPASSWORD", &self.repl_password)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "pg_basebackup for {m}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mut conf = self
            .server_conf(m)
            .replace("synchronous_standby_names = 'b'\n", "");
        conf.push_str(&format!(
            "primary_conninfo = 'host=127.0.0.1 port={pa} user=replicator password={} application_name={m}'\n\
             primary_slot_name = '{slot}'\n",
            self.repl_password
        ));
        if m == "c" {
            conf.push_str("recovery_min_apply_delay = '3s'\n");
        }
        std::fs::write(self.data_dir(m).join("postgresql.auto.conf"), conf)
            .map_err(|e| e.to_string())?;
        std::fs::write(self.data_dir(m).join("standby.signal"), "").map_err(|e| e.to_string())?;
        super::chown_postgres(&self.data_dir(m))?;
        self.pg_ctl(m, &["start"]).map(|_| ())
    }

    fn write_pgpool_conf(&self) -> Result<(), String> {
        let base = self.base();
        let (period, retries, delay) = if self.fast { (1, 1, 1) } else { (5, 2, 1) };
        let mut conf = format!(
            "backend_clustering_mode = 'streaming_replication'\n\
             listen_addresses = '127.0.0.1'\nport = {port}\nsocket_dir = '{b}'\n\
             pcp_listen_addresses = ''\npcp_port = {pcp}\npcp_socket_dir = '{b}'\n\
             pid_file_name = '{b}/pgpool.pid'\nlogdir = '{b}'\n\
             enable_pool_hba = on\npool_passwd = '{b}/pool_passwd'\n\
             load_balance_mode = off\nnum_init_children = 32\n\
             sr_check_period = 1\nsr_check_user = 'postgres'\nsr_check_password = '{pw}'\n\
             health_check_period = {period}\nhealth_check_timeout = 5\nhealth_check_max_retries = {retries}\n\
             health_check_retry_delay = {delay}\nhealth_check_user = 'postgres'\nhealth_check_password = '{pw}'\n\
             failover_on_backend_error = on\n\
             failover_command = '{b}/failover.sh %d %P %m %R'\n\
             log_min_messages = warning\n",
            port = self.port,
            pcp = free_port(),
            b = base.display(),
            pw = self.password,
        );
        for (i, m) in ["a", "b", "c"].iter().enumerate() {
            conf.push_str(&format!(
                "backend_hostname{i} = '127.0.0.1'\nbackend_port{i} = {}\nbackend_weight{i} = 1\n\
                 backend_data_directory{i} = '{}'\nbackend_flag{i} = '{}'\nbackend_application_name{i} = '{m}'\n",
                self.pg_ports[*m],
                self.data_dir(m).display(),
                if *m == "c" { "DISALLOW_TO_FAILOVER" } else { "ALLOW_TO_FAILOVER" }
            ));
        }
        std::fs::write(base.join("pgpool.conf"), conf).map_err(|e| e.to_string())?;
        std::fs::write(
            base.join("pool_passwd"),
            format!("postgres:TEXT{}\n", self.password),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(
            base.join("pool_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(base.join("pcp.conf"), "").map_err(|e| e.to_string())?;
        // The lab's failover: when the primary fails, promote the new main node.
        let script = format!(
            "#!/bin/sh\n# failed_node old_primary new_main new_main_pgdata\n\
             echo \"$(date +%T.%N) failover: failed=$1 old_primary=$2 new_main=$3\" >> {b}/failover.log\n\
             if [ \"$1\" = \"$2\" ] && [ -n \"$4\" ]; then\n  {pg_ctl} -D \"$4\" -w promote >> {b}/failover.log 2>&1\nfi\nexit 0\n",
            b = base.display(),
            pg_ctl = pg_bin("pg_ctl")
        );
        let path = base.join("failover.sh");
        std::fs::write(&path, script).map_err(|e| e.to_string())?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        for f in ["pgpool.conf", "pool_passwd", "pool_hba.conf", "pcp.conf"] {
            std::fs::set_permissions(
                base.join(f),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .map_err(|e| e.to_string())?;
        }
        super::chown_postgres(&base)
    }

    /// (port, status, role) per node from `SHOW pool_nodes` through pgpool.
    fn pool_nodes(&self) -> Vec<(String, String, String)> {
        let text = super::psql(self.port, &self.password, "SHOW pool_nodes").unwrap_or_default();
        // node_id|hostname|port|status|pg_status|lb_weight|role|pg_role|...
        text.lines()
            .map(|l| l.split('|').map(str::to_string).collect::<Vec<_>>())
            .filter(|f| f.len() > 6)
            .map(|f| (f[2].clone(), f[3].clone(), f[6].clone()))
            .collect()
    }

    fn pgpool_pids(&self) -> Vec<u32> {
        let Some(parent) = self.pgpool.as_ref().map(|c| c.id()) else {
            return Vec::new();
        };
        let mut pids = vec![parent];
        pids.extend(procs::children(parent));
        pids
    }
}

impl System for Pgpool {
    fn name(&self) -> String {
        if self.fast { "pgpool-fast" } else { "pgpool" }.into()
    }

    fn up(&mut self) -> Result<(), String> {
        self.down();
        let tmp = postgres_owned_dir("bench-pgpool-")?;
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(|e| e.to_string())?;
        self.tmp = Some(tmp);
        self.password = random_password();
        self.repl_password = random_password();
        self.port = free_port();
        for m in ["a", "b", "c"] {
            self.pg_ports.insert(m.into(), free_port());
        }
        let pwfile = self.base().join("pwfile");
        std::fs::write(&pwfile, &self.password).map_err(|e| e.to_string())?;
        super::chown_postgres(&pwfile)?;
        let data = self.data_dir("a").display().to_string();
        run_postgres(
            &pg_bin("initdb"),
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-k",
                "-A",
                "scram-sha-256",
                "--pwfile",
                &pwfile.display().to_string(),
            ],
        )?;
        let mut conf =
            std::fs::read_to_string(self.data_dir("a").join("postgresql.conf")).unwrap_or_default();
        conf.push_str(&self.server_conf("a"));
        std::fs::write(self.data_dir("a").join("postgresql.conf"), conf)
            .map_err(|e| e.to_string())?;
        std::fs::write(
            self.data_dir("a").join("pg_hba.conf"),
            "local all all trust\nhost replication replicator 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .map_err(|e| e.to_string())?;
        super::chown_postgres(&self.data_dir("a"))?;
        self.pg_ctl("a", &["start"])?;
        super::psql(
            self.pg_ports["a"],
            &self.password,
            &format!(
                "CREATE ROLE replicator REPLICATION LOGIN PASSWORD '{}'",
                self.repl_password
            ),
        )?;
        self.clone_standby("b")?;
        self.clone_standby("c")?;
        // b becomes synchronous only once it exists (else the primary's commits would wait).
        super::psql(
            self.pg_ports["a"],
            &self.password,
            "ALTER SYSTEM SET synchronous_standby_names = 'b'",
        )?;
        super::psql(
            self.pg_ports["a"],
            &self.password,
            "SELECT pg_reload_conf()",
        )?;
        self.write_pgpool_conf()?;
        let mut cmd = postgres_command("/usr/sbin/pgpool")?;
        let b = self.base();
        cmd.arg("-n")
            .arg("-f")
            .arg(b.join("pgpool.conf"))
            .arg("-F")
            .arg(b.join("pcp.conf"))
            .arg("-a")
            .arg(b.join("pool_hba.conf"));
        self.pgpool = Some(spawn_logged(cmd, &b.join("pgpool.log"))?);
        wait_until(
            "pgpool to see a primary and b, c up",
            Duration::from_secs(60),
            || {
                let nodes = self.pool_nodes();
                nodes.len() == 3
                    && nodes.iter().all(|(_, s, _)| s == "up")
                    && nodes[0].2 == "primary"
            },
        )
        .map_err(|e| format!("{e}\n{}", self.diagnostics()))?;
        wait_until("b sync and c streaming", Duration::from_secs(30), || {
            super::psql(
                self.pg_ports["a"],
                &self.password,
                "SELECT application_name, sync_state FROM pg_stat_replication ORDER BY 1",
            )
            .unwrap_or_default()
                == "b|sync\nc|async\n"
        })?;
        super::psql(
            self.port,
            &self.password,
            "CREATE TABLE ledger (writer int, seq bigint, PRIMARY KEY (writer, seq))",
        )?;
        Ok(())
    }

    fn down(&mut self) {
        let mut killed = Vec::new();
        if let Some(mut c) = self.pgpool.take() {
            killed.extend(super::kill9_all(self.pgpool_pids_of(c.id())));
            kill_child(&mut c);
        }
        for m in ["a", "b", "c"] {
            killed.extend(super::kill9_all(procs::postmaster_pid(&self.data_dir(m))));
        }
        super::wait_gone(&killed);
        self.tmp = None;
    }

    fn write_conninfo(&self) -> String {
        pg::conninfo(self.port, &self.password)
    }

    fn password(&self) -> String {
        self.password.clone()
    }

    fn replication_login(&self) -> (String, String) {
        ("replicator".into(), self.repl_password.clone())
    }

    fn member_port(&self, member: &str) -> u16 {
        self.pg_ports.get(member).copied().unwrap_or(0)
    }

    fn data_dir(&self, member: &str) -> PathBuf {
        self.base().join(member)
    }

    fn primary(&self) -> Option<String> {
        let nodes = self.pool_nodes();
        let port = nodes.iter().find(|n| n.2 == "primary")?.0.clone();
        self.pg_ports
            .iter()
            .find(|(_, p)| p.to_string() == port)
            .map(|(m, _)| m.clone())
    }

    fn noticed_loss(&self, member: &str) -> bool {
        let port = self.pg_ports[member].to_string();
        self.pool_nodes()
            .iter()
            .any(|(p, status, _)| *p == port && status != "up" && status != "waiting")
    }

    fn kill_member(&mut self, member: &str) -> Result<(), String> {
        // pgpool has no per-member manager: the node dying is its postmaster dying.
        let pm = procs::postmaster_pid(&self.data_dir(member)).ok_or("no postmaster.pid")?;
        procs::kill9(pm)
    }

    fn killer(&self, member: &str) -> Box<dyn Fn() + Send> {
        let data = self.data_dir(member);
        Box::new(move || {
            if let Some(pid) = procs::postmaster_pid(&data) {
                if procs::alive(pid) {
                    let _ = procs::kill9(pid);
                }
            }
        })
    }

    fn restarts_crashed_member(&self) -> bool {
        false
    }

    fn switchover(&mut self, _to: &str) -> Result<(), String> {
        Err("not supported: pgpool-II has no switchover that keeps the old primary as a standby without \
             the manual steps of the lab (detach, promote, pg_basebackup, reattach)"
            .into())
    }

    fn recovers_destroyed_member(&self) -> bool {
        false
    }

    fn automatic_failback(&self) -> bool {
        false
    }

    fn restore_topology(&mut self, _timeout: Duration) -> Result<(), String> {
        if self.primary().as_deref() == Some("a") && self.pool_nodes().iter().all(|n| n.1 == "up") {
            Ok(())
        } else {
            Err("pgpool-II does not bring the old primary back without a human".into())
        }
    }

    fn processes(&self) -> Vec<Proc> {
        vec![Proc {
            role: "pgpool (parent + pre-forked children)".into(),
            pids: self.pgpool_pids(),
        }]
    }

    fn install_size(&self) -> (u64, String) {
        let size = std::fs::metadata("/usr/sbin/pgpool")
            .map(|m| m.len())
            .unwrap_or(0);
        (
            size,
            "/usr/sbin/pgpool (Debian package; shared libraries not counted)".into(),
        )
    }

    fn version(&self) -> String {
        std::process::Command::new("/usr/sbin/pgpool")
            .arg("--version")
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout).trim(),
                    String::from_utf8_lossy(&o.stderr).trim()
                )
            })
            .unwrap_or_default()
    }

    fn config_note(&self) -> String {
        if self.fast {
            "recommended fast: health_check_period 1, max_retries 1, retry_delay 1; failover_on_backend_error on; \
             failover_command promotes the new main node (pg_ctl promote); c DISALLOW_TO_FAILOVER"
                .into()
        } else {
            "the lab's settings: health_check_period 5, max_retries 2, retry_delay 1 (pgpool's default is no \
             health check at all); failover_on_backend_error on (default); failover_command promotes the new \
             main node (pg_ctl promote); c DISALLOW_TO_FAILOVER"
                .into()
        }
    }

    fn diagnostics(&self) -> String {
        let mut out = String::new();
        for f in ["pgpool.log", "failover.log", "a.log", "b.log"] {
            let log = std::fs::read_to_string(self.base().join(f)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            out.push_str(&format!(
                "--- {f} ---\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        out
    }
}

impl Pgpool {
    fn pgpool_pids_of(&self, parent: u32) -> Vec<u32> {
        let mut pids = procs::children(parent);
        pids.push(parent);
        pids
    }
}

impl Drop for Pgpool {
    fn drop(&mut self) {
        self.down();
    }
}
