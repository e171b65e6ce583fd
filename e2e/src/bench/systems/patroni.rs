//! Patroni 4 with one etcd, three members on loopback: a (first leader), b (synchronous via
//! `synchronous_mode`), c (`nosync`, `nofailover`, `recovery_min_apply_delay = 3s`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use serde_json::Value;

use super::{
    kill_child, postgres_command, postgres_owned_dir, random_password, spawn_logged, wait_until,
};
use crate::bench::pg;
use crate::bench::procs;
use crate::bench::system::{Proc, System};
use crate::cluster::free_port;

pub const VENV: &str = "/opt/patroni-venv";

pub struct Patroni {
    fast: bool,
    tmp: Option<tempfile::TempDir>,
    etcd: Option<Child>,
    etcd_port: u16,
    members: BTreeMap<String, Child>,
    pg_ports: BTreeMap<String, u16>,
    api_ports: BTreeMap<String, u16>,
    password: String,
    repl_password: String,
}

impl Patroni {
    pub fn new(fast: bool) -> Patroni {
        Patroni {
            fast,
            tmp: None,
            etcd: None,
            etcd_port: 0,
            members: BTreeMap::new(),
            pg_ports: BTreeMap::new(),
            api_ports: BTreeMap::new(),
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

    fn config_path(&self, m: &str) -> PathBuf {
        self.base().join(format!("{m}.yml"))
    }

    fn write_config(&self, m: &str) -> Result<(), String> {
        let (ttl, loop_wait, retry) = if self.fast { (5, 1, 2) } else { (30, 10, 10) };
        let base = self.base();
        let dir = base.join(m);
        let delayed = m == "c";
        let tags = if delayed {
            "  nofailover: true\n  nosync: true\n"
        } else {
            "  nofailover: false\n  nosync: false\n"
        };
        let recovery = if delayed {
            "  recovery_conf:\n    recovery_min_apply_delay: 3s\n"
        } else {
            ""
        };
        let basebackup = if self.fast {
            "  basebackup:\n    - checkpoint: fast\n"
        } else {
            ""
        };
        let yaml = format!(
            r#"scope: bench
namespace: /service/
name: {m}
log:
  level: INFO
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
etcd3:
  hosts: 127.0.0.1:{etcd}
bootstrap:
  dcs:
    ttl: {ttl}
    loop_wait: {loop_wait}
    retry_timeout: {retry}
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        hot_standby: "on"
  initdb:
    - encoding: UTF8
    - data-checksums
    - auth-local: trust
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
postgresql:
  listen: 127.0.0.1:{port}
  connect_address: 127.0.0.1:{port}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {dir}/pgpass
  authentication:
    superuser:
      username: postgres
      password: {pw}
    replication:
      username: replicator
      password: {rpw}
  parameters:
    unix_socket_directories: {dir}
{recovery}{basebackup}tags:
{tags}"#,
            api = self.api_ports[m],
            etcd = self.etcd_port,
            port = self.pg_ports[m],
            data = dir.join("data").display(),
            bin = crate::bench::PG_BIN,
            dir = dir.display(),
            pw = self.password,
            rpw = self.repl_password,
        );
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::write(self.config_path(m), yaml).map_err(|e| e.to_string())?;
        super::chown_postgres(&base)
    }

    fn start_member(&mut self, m: &str) -> Result<(), String> {
        let mut cmd = postgres_command(&format!("{VENV}/bin/patroni"))?;
        cmd.arg(self.config_path(m));
        let child = spawn_logged(cmd, &self.base().join(format!("{m}.log")))?;
        self.members.insert(m.to_string(), child);
        Ok(())
    }

    fn api(&self, m: &str, path: &str) -> Option<Value> {
        let out = std::process::Command::new("curl")
            .args(["-s", "-m", "1"])
            .arg(format!("http://127.0.0.1:{}{path}", self.api_ports.get(m)?))
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// /cluster from any member that answers.
    fn cluster(&self) -> Option<Value> {
        ["b", "c", "a"].iter().find_map(|m| self.api(m, "/cluster"))
    }

    fn leader(&self) -> Option<String> {
        let c = self.cluster()?;
        c["members"].as_array()?.iter().find_map(|m| {
            (m["role"] == "leader" || m["role"] == "primary")
                .then(|| m["name"].as_str().map(String::from))
                .flatten()
        })
    }

    fn patroni_pids(&self, m: &str) -> Vec<u32> {
        procs::find(&["bin/patroni", &self.config_path(m).display().to_string()])
    }

    fn patronictl(&self, args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new(format!("{VENV}/bin/patronictl"))
            .arg("-c")
            .arg(self.config_path("a"))
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        super::output_text(out, &format!("patronictl {args:?}"))
    }

    fn all_streaming(&self, leader: &str) -> bool {
        let port = self.pg_ports[leader];
        let text = super::psql(
            port,
            &self.password,
            "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1",
        )
        .unwrap_or_default();
        let got: Vec<&str> = text.lines().collect();
        let want: Vec<&str> = ["a", "b", "c"]
            .into_iter()
            .filter(|m| *m != leader)
            .collect();
        got == want
    }
}

impl System for Patroni {
    fn name(&self) -> String {
        if self.fast {
            "patroni"
        } else {
            "patroni-default"
        }
        .into()
    }

    fn up(&mut self) -> Result<(), String> {
        self.down();
        let tmp = postgres_owned_dir("bench-patroni-")?;
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .map_err(|e| e.to_string())?;
        self.tmp = Some(tmp);
        self.password = random_password();
        self.repl_password = random_password();
        self.etcd_port = free_port();
        let peer = free_port();
        for m in ["a", "b", "c"] {
            self.pg_ports.insert(m.into(), free_port());
            self.api_ports.insert(m.into(), free_port());
        }
        let mut etcd = postgres_command("etcd")?;
        etcd.args([
            "--name",
            "e",
            "--data-dir",
            &self.base().join("etcd").display().to_string(),
            "--listen-client-urls",
            &format!("http://127.0.0.1:{}", self.etcd_port),
            "--advertise-client-urls",
            &format!("http://127.0.0.1:{}", self.etcd_port),
            "--listen-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls",
            &format!("http://127.0.0.1:{peer}"),
            "--initial-cluster",
            &format!("e=http://127.0.0.1:{peer}"),
        ]);
        self.etcd = Some(spawn_logged(etcd, &self.base().join("etcd.log"))?);
        for m in ["a", "b", "c"] {
            self.write_config(m)?;
        }
        self.start_member("a")?;
        wait_until("a to lead", Duration::from_secs(90), || {
            self.api("a", "/patroni")
                .is_some_and(|v| v["role"] == "primary" || v["role"] == "master")
                && self.leader().as_deref() == Some("a")
        })
        .map_err(|e| format!("{e}\n{}", self.diagnostics()))?;
        self.start_member("b")?;
        self.start_member("c")?;
        wait_until(
            "b and c streaming, b sync",
            Duration::from_secs(120),
            || {
                self.all_streaming("a")
                    && self.cluster().is_some_and(|c| {
                        c["members"].as_array().is_some_and(|ms| {
                            ms.iter()
                                .any(|m| m["name"] == "b" && (m["role"] == "sync_standby"))
                        })
                    })
            },
        )
        .map_err(|e| format!("{e}\n{}", self.diagnostics()))?;
        super::psql(
            self.pg_ports["a"],
            &self.password,
            "CREATE TABLE ledger (writer int, seq bigint, PRIMARY KEY (writer, seq))",
        )?;
        Ok(())
    }

    fn down(&mut self) {
        let mut killed = Vec::new();
        let names: Vec<String> = self.members.keys().cloned().collect();
        for m in names {
            if let Some(mut c) = self.members.remove(&m) {
                kill_child(&mut c);
            }
            killed.extend(super::kill9_all(self.patroni_pids(&m)));
            killed.extend(super::kill9_all(procs::postmaster_pid(&self.data_dir(&m))));
        }
        if let Some(mut e) = self.etcd.take() {
            kill_child(&mut e);
        }
        super::wait_gone(&killed);
        self.tmp = None;
    }

    fn write_conninfo(&self) -> String {
        let ports: Vec<u16> = ["a", "b", "c"].iter().map(|m| self.pg_ports[*m]).collect();
        pg::read_write_conninfo(&ports, &self.password)
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
        self.base().join(member).join("data")
    }

    fn primary(&self) -> Option<String> {
        self.leader()
    }

    fn noticed_loss(&self, member: &str) -> bool {
        let Some(c) = self.cluster() else {
            return false;
        };
        !c["members"].as_array().is_some_and(|ms| {
            ms.iter().any(|m| {
                m["name"] == member
                    && (m["role"] == "leader" || m["role"] == "primary")
                    && m["state"] == "running"
            })
        })
    }

    fn kill_member(&mut self, member: &str) -> Result<(), String> {
        let pids = self.patroni_pids(member);
        if pids.is_empty() {
            return Err(format!("no patroni process for {member}"));
        }
        let pm = procs::postmaster_pid(&self.data_dir(member));
        for pid in pids.iter().chain(pm.iter()) {
            procs::kill9(*pid)?;
        }
        if let Some(mut c) = self.members.remove(member) {
            let _ = c.wait();
        }
        Ok(())
    }

    fn killer(&self, member: &str) -> Box<dyn Fn() + Send> {
        let cfg = self.config_path(member).display().to_string();
        let data = self.data_dir(member);
        Box::new(move || {
            for pid in procs::find(&["bin/patroni", &cfg]) {
                let _ = procs::kill9(pid);
            }
            if let Some(pid) = procs::postmaster_pid(&data) {
                if procs::alive(pid) {
                    let _ = procs::kill9(pid);
                }
            }
        })
    }

    fn restart_member(&mut self, member: &str) -> Result<(), String> {
        if let Some(mut c) = self.members.remove(member) {
            let _ = c.wait();
        }
        self.start_member(member)
    }

    fn switchover(&mut self, to: &str) -> Result<(), String> {
        // patronictl exits 0 even when Patroni refuses (candidate not yet healthy/in sync): ask
        // again until it reports success or `to` leads.
        let mut last = String::new();
        super::wait_until(
            &format!("patronictl switchover to {to}"),
            Duration::from_secs(60),
            || {
                let Some(leader) = self.leader() else {
                    last = "no leader".into();
                    return false;
                };
                if leader == to {
                    return true;
                }
                let out = self.patronictl(&[
                    "switchover",
                    "--primary",
                    &leader,
                    "--candidate",
                    to,
                    "--force",
                ]);
                let done = out
                    .as_deref()
                    .is_ok_and(|o| o.contains("Successfully switched over"));
                last = format!("{out:?}");
                done
            },
        )
        .map_err(|e| format!("{e}; last answer: {last}"))
    }

    fn recovers_destroyed_member(&self) -> bool {
        true
    }

    fn automatic_failback(&self) -> bool {
        false
    }

    fn restore_topology(&mut self, timeout: Duration) -> Result<(), String> {
        super::wait_until("a back as leader with b and c streaming", timeout, || {
            let leader = self.leader();
            if leader.as_deref() == Some("a") && self.all_streaming("a") {
                return true;
            }
            if let Some(l) = leader.filter(|l| l != "a") {
                // a must stream from the leader before Patroni takes it as a candidate.
                if self.all_streaming(&l) {
                    let _ = self.switchover("a");
                }
            }
            false
        })
    }

    fn processes(&self) -> Vec<Proc> {
        let mut out: Vec<Proc> = ["a", "b", "c"]
            .iter()
            .map(|m| Proc {
                role: format!("patroni {m}"),
                pids: self.patroni_pids(m),
            })
            .collect();
        out.push(Proc {
            role: "etcd".into(),
            pids: self.etcd.as_ref().map(|c| c.id()).into_iter().collect(),
        });
        out
    }

    fn install_size(&self) -> (u64, String) {
        let venv = super::dir_size(std::path::Path::new(VENV));
        let etcd = std::fs::metadata("/usr/bin/etcd")
            .map(|m| m.len())
            .unwrap_or(0);
        (
            venv + etcd,
            "Python venv with patroni[etcd3] + psycopg2-binary, plus the etcd binary (Python itself not counted)".into(),
        )
    }

    fn version(&self) -> String {
        let p = std::process::Command::new(format!("{VENV}/bin/patroni"))
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let e = std::process::Command::new("etcd")
            .arg("--version")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default();
        format!("{p}; {e}")
    }

    fn config_note(&self) -> String {
        if self.fast {
            "recommended fast: ttl 5, loop_wait 1, retry_timeout 2 (ttl ≥ loop_wait + 2×retry_timeout), \
             synchronous_mode on, use_pg_rewind, basebackup checkpoint=fast; c nosync+nofailover; \
             clients use target_session_attrs=read-write over all members"
                .into()
        } else {
            "defaults: ttl 30, loop_wait 10, retry_timeout 10; synchronous_mode on, use_pg_rewind; \
             c nosync+nofailover; clients use target_session_attrs=read-write over all members"
                .into()
        }
    }

    fn diagnostics(&self) -> String {
        let mut out = String::new();
        for m in ["a", "b", "c"] {
            let log =
                std::fs::read_to_string(self.base().join(format!("{m}.log"))).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            out.push_str(&format!(
                "--- patroni {m} ---\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        out
    }
}

impl Drop for Patroni {
    fn drop(&mut self) {
        self.down();
    }
}
