//! One fault case: its cluster, its stage lines, and its cleanup (stopped processes continued,
//! `down`, anything of the cluster still running killed by pid, then `down --purge`).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::procs::{self, Frozen};
use super::{files, Spec};
use crate::cluster::LocalCluster;
use crate::report::Stages;

pub struct Case {
    pub name: &'static str,
    pub spec: Spec,
    pub cluster: LocalCluster,
    pub password: String,
    stages: Mutex<Stages>,
    /// Every pid this case stopped, continued again on drop whatever happened.
    frozen: Mutex<Vec<u32>>,
}

impl Case {
    /// `pgreplica local up -f SPEC --detach` in a fresh directory.
    pub fn up(name: &'static str, spec: Spec) -> Case {
        let stages = Stages::default();
        let cluster =
            tokio::task::block_in_place(|| LocalCluster::up(&spec.file, Duration::from_secs(180)))
                .unwrap_or_else(|e| {
                    panic!("{name}: local up -f {} failed: {e}", spec.file.display())
                });
        let password = cluster.password();
        let case = Case {
            name,
            spec,
            cluster,
            password,
            stages: Mutex::new(stages),
            frozen: Mutex::new(Vec::new()),
        };
        case.say(format!(
            "{name}: cluster up from {} in {}",
            case.spec.file.display(),
            case.dir().display()
        ));
        case
    }

    pub fn dir(&self) -> &Path {
        &self.cluster.dir
    }

    pub fn say(&self, line: impl AsRef<str>) {
        if let Ok(mut s) = self.stages.lock() {
            s.say(line);
        }
    }

    /// `status.json` now.
    pub fn status(&self) -> Result<Value, String> {
        files::status(self.dir()).ok_or_else(|| "status.json is missing or unreadable".into())
    }

    pub fn primary(&self) -> Result<String, String> {
        files::current_primary(&self.status()?).ok_or_else(|| "no primary of record".into())
    }

    pub fn port(&self, member: &str) -> Result<u16, String> {
        files::postgres_ports(self.dir())
            .get(member)
            .copied()
            .ok_or_else(|| format!("no PostgreSQL port for {member}"))
    }

    /// SIGSTOP `pids` until the guard is thawed or dropped (and in any case when the case ends).
    pub fn freeze(&self, pids: &[u32]) -> Result<Frozen, String> {
        if let Ok(mut f) = self.frozen.lock() {
            f.extend_from_slice(pids);
        }
        Frozen::stop(pids)
    }

    /// Continue `pids` too when the case ends (stopped through [`Frozen::also`]).
    pub fn remember_frozen(&self, pids: &[u32]) {
        if let Ok(mut f) = self.frozen.lock() {
            f.extend_from_slice(pids);
        }
    }

    /// Print the cluster's events, status and logs, then panic with `why`.
    pub fn fail(&self, why: &str) -> ! {
        println!(
            "{}",
            tokio::task::block_in_place(|| super::diag::report(&self.cluster))
        );
        panic!("{}: {why}", self.name);
    }

    /// `up -f SPEC --detach` again on this cluster's directory (ports are kept by `state.json`).
    pub fn up_again(&self, timeout: Duration) -> Result<String, String> {
        let file = self.spec.file.display().to_string();
        let secs = timeout.as_secs().to_string();
        tokio::task::block_in_place(|| {
            self.cluster
                .run(&["up", "-f", &file, "--detach", "--timeout-seconds", &secs])
        })
    }
}

/// `result.or_fail(&case)`: the value, or the case fails with the error (diagnostics printed).
pub trait OrFail<T> {
    fn or_fail(self, case: &Case) -> T;
}

impl<T> OrFail<T> for Result<T, String> {
    fn or_fail(self, case: &Case) -> T {
        self.unwrap_or_else(|e| case.fail(&e))
    }
}

/// One line about a status: phase, primary, ready members, what it waits for, per-member roles.
pub fn summary(s: &Value) -> String {
    let members: Vec<String> = s["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{}={}{}",
                m["name"].as_str().unwrap_or("?"),
                m["role"].as_str().unwrap_or("?"),
                if m["ready"] == true { "" } else { "!" }
            )
        })
        .collect();
    format!(
        "phase={} primary={} target={} ready={} waitingFor={} running={} updatedAt={} [{}]",
        s["phase"],
        s["currentPrimary"],
        s["targetPrimary"],
        s["readyMembers"],
        s["waitingFor"],
        s["running"],
        s["updatedAt"],
        members.join(" ")
    )
}

impl Drop for Case {
    fn drop(&mut self) {
        let frozen = self.frozen.lock().map(|f| f.clone()).unwrap_or_default();
        for pid in frozen {
            let _ = procs::signal(pid, nix::sys::signal::Signal::SIGCONT);
        }
        let _ = self.cluster.run(&["down"]);
        for note in procs::sweep(self.dir()) {
            println!("{}: {note}", self.name);
        }
        // the cluster's own drop purges the directory
    }
}
