//! pgreplica's local runtime: `pgreplica local up -f examples/lab.yaml --detach`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::wait_until;
use crate::bench::pg;
use crate::bench::procs;
use crate::bench::system::{Proc, System};
use crate::cluster::{binary, repo_file, LocalCluster};

#[derive(Default)]
pub struct Pgreplica {
    cluster: Option<LocalCluster>,
    ports: std::collections::BTreeMap<String, u16>,
    seen_losses: BTreeSet<String>,
}

impl Pgreplica {
    fn cluster(&self) -> &LocalCluster {
        self.cluster.as_ref().expect("cluster is up")
    }
    fn status(&self) -> Option<Value> {
        self.cluster.as_ref()?.status().ok()
    }
    fn losses(&self) -> BTreeSet<String> {
        self.status()
            .and_then(|s| {
                s["events"].as_array().map(|es| {
                    es.iter()
                        .filter(|e| e["reason"] == "PrimaryLost")
                        .map(|e| format!("{}{}", e["at"], e["message"]))
                        .collect()
                })
            })
            .unwrap_or_default()
    }
    fn agent_pids(&self, member: &str) -> Vec<u32> {
        let cfg = self
            .cluster()
            .dir
            .join("members")
            .join(member)
            .join("agent.json");
        procs::find(&["instance", "run", "--config", &cfg.display().to_string()])
    }
}

fn ready_condition(s: &Value) -> bool {
    s["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

impl System for Pgreplica {
    fn name(&self) -> String {
        "pgreplica".into()
    }

    fn up(&mut self) -> Result<(), String> {
        let cluster = LocalCluster::up(&repo_file("examples/lab.yaml"), Duration::from_secs(180))?;
        let mut last = Value::Null;
        wait_until("pgreplica Ready", Duration::from_secs(90), || {
            last = cluster.status().unwrap_or(Value::Null);
            ready_condition(&last) && last["readyMembers"] == "3/3"
        })
        .map_err(|e| format!("{e}\n{}", cluster.diagnostics()))?;
        for m in ["a", "b", "c"] {
            let port = cluster
                .member(&last, m)
                .and_then(|v| v["port"].as_u64())
                .unwrap_or(0) as u16;
            self.ports.insert(m.into(), port);
        }
        self.cluster = Some(cluster);
        super::psql(
            self.cluster().rw_port,
            &self.password(),
            "CREATE TABLE ledger (writer int, seq bigint, PRIMARY KEY (writer, seq))",
        )?;
        Ok(())
    }

    fn down(&mut self) {
        // LocalCluster's Drop runs `local down --purge`.
        self.cluster = None;
        self.seen_losses.clear();
    }

    fn write_conninfo(&self) -> String {
        pg::conninfo(self.cluster().rw_port, &self.password())
    }

    fn password(&self) -> String {
        self.cluster().password()
    }

    fn replication_login(&self) -> (String, String) {
        let pw = std::fs::read_to_string(self.cluster().dir.join("secrets/replication-password"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        ("replicator".into(), pw)
    }

    fn member_port(&self, member: &str) -> u16 {
        self.ports.get(member).copied().unwrap_or(0)
    }

    fn data_dir(&self, member: &str) -> PathBuf {
        self.status()
            .and_then(|s| {
                self.cluster()
                    .member(&s, member)
                    .and_then(|m| m["dataDir"].as_str().map(PathBuf::from))
            })
            .unwrap_or_default()
    }

    fn primary(&self) -> Option<String> {
        self.status()?["currentPrimary"].as_str().map(String::from)
    }

    fn mark_before_failure(&mut self) {
        self.seen_losses = self.losses();
    }

    fn noticed_loss(&self, _member: &str) -> bool {
        self.losses().difference(&self.seen_losses).next().is_some()
    }

    fn kill_member(&mut self, member: &str) -> Result<(), String> {
        let agents = self.agent_pids(member);
        if agents.is_empty() {
            return Err(format!("no agent process found for {member}"));
        }
        let postmaster = procs::postmaster_pid(&self.data_dir(member));
        for pid in agents.iter().chain(postmaster.iter()) {
            procs::kill9(*pid)?;
        }
        Ok(())
    }

    fn killer(&self, member: &str) -> Box<dyn Fn() + Send> {
        let cfg = self
            .cluster()
            .dir
            .join("members")
            .join(member)
            .join("agent.json");
        let data = self.data_dir(member);
        Box::new(move || {
            for pid in procs::find(&["instance", "run", "--config", &cfg.display().to_string()]) {
                let _ = procs::kill9(pid);
            }
            if let Some(pid) = procs::postmaster_pid(&data) {
                if procs::alive(pid) {
                    let _ = procs::kill9(pid);
                }
            }
        })
    }

    fn switchover(&mut self, to: &str) -> Result<(), String> {
        self.cluster().run(&["switchover", "--to", to]).map(|_| ())
    }

    fn recovers_destroyed_member(&self) -> bool {
        true
    }

    fn automatic_failback(&self) -> bool {
        true
    }

    fn restore_topology(&mut self, timeout: Duration) -> Result<(), String> {
        let cluster = self.cluster();
        cluster
            .wait_for("a primary with 3/3 ready", timeout, |s| {
                s["currentPrimary"] == "a" && ready_condition(s) && s["readyMembers"] == "3/3"
            })
            .map(|_| ())
    }

    fn processes(&self) -> Vec<Proc> {
        let mut out = Vec::new();
        let brain = std::fs::read_to_string(self.cluster().dir.join("brain.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        out.push(Proc {
            role: "brain".into(),
            pids: brain.into_iter().collect(),
        });
        for m in ["a", "b", "c"] {
            out.push(Proc {
                role: format!("agent {m}"),
                pids: self.agent_pids(m),
            });
        }
        out
    }

    fn install_size(&self) -> (u64, String) {
        let size = std::fs::metadata(binary()).map(|m| m.len()).unwrap_or(0);
        (
            size,
            "the `pgreplica` binary (brain, agent and CLI in one)".into(),
        )
    }

    fn version(&self) -> String {
        std::process::Command::new(binary())
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }

    fn config_note(&self) -> String {
        "examples/lab.yaml as shipped (failback Automatic, durability Preferred; local lease 4 s); \
         nothing tuned for the benchmark"
            .into()
    }

    fn diagnostics(&self) -> String {
        self.cluster
            .as_ref()
            .map(|c| c.diagnostics())
            .unwrap_or_default()
    }
}
