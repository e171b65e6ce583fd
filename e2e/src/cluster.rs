//! A cluster run by `pgreplica local` in a temporary directory, torn down on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `pgreplica` binary: `$PGREPLICA_BIN`, else the workspace's target directory.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("PGREPLICA_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    for profile in ["debug", "release"] {
        let candidate = target.join(profile).join("pgreplica");
        if candidate.exists() {
            return candidate;
        }
    }
    panic!(
        "pgreplica binary not found under {}: run `cargo build -p pgreplica` or set PGREPLICA_BIN",
        target.display()
    );
}

pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// A loopback port free now, below the kernel's ephemeral range (as `pgreplica` picks its own):
/// the endpoints bind it again after a restart, when an outgoing connection could otherwise hold it.
pub fn free_port() -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let span = low.saturating_sub(20_000).max(1);
    use std::hash::{BuildHasher, Hasher};
    // a new random start at every call (each RandomState has its own keys)
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let start = (random % u64::from(span)) as u16;
    (0..span)
        .map(|i| 20_000 + (start + i) % span)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .or_else(|| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .ok()
        })
        .expect("a free port")
}

pub struct LocalCluster {
    pub dir: PathBuf,
    pub rw_port: u16,
    pub ro_port: u16,
    _tmp: tempfile::TempDir,
    up: bool,
}

impl LocalCluster {
    /// `pgreplica local up -f FILE --detach` in a fresh directory.
    pub fn up(file: &Path, timeout: Duration) -> Result<LocalCluster, String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        // PostgreSQL runs as an unprivileged user when tests run as root: let it walk in.
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let dir = tmp.path().join("state");
        let mut cluster = LocalCluster {
            dir,
            rw_port: free_port(),
            ro_port: free_port(),
            _tmp: tmp,
            up: true,
        };
        let out = cluster.run(&[
            "up",
            "-f",
            &file.display().to_string(),
            "--rw-port",
            &cluster.rw_port.to_string(),
            "--ro-port",
            &cluster.ro_port.to_string(),
            "--detach",
            "--timeout-seconds",
            &timeout.as_secs().to_string(),
        ]);
        match out {
            Ok(_) => Ok(cluster),
            Err(e) => {
                let diag = cluster.diagnostics();
                cluster.up = true;
                Err(format!("{e}\n{diag}"))
            }
        }
    }

    /// Run `pgreplica local <args> --dir DIR`: its exit code, stdout and stderr.
    pub fn run_raw(&self, args: &[&str]) -> Result<(Option<i32>, String, String), String> {
        let out = Command::new(binary())
            .arg("local")
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .env("PGREPLICA_LOG", "info")
            .output()
            .map_err(|e| format!("cannot run pgreplica: {e}"))?;
        Ok((
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        ))
    }

    /// Run `pgreplica local <args> --dir DIR`; stdout on success.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        match self.run_raw(args)? {
            (Some(0), stdout, _) => Ok(stdout),
            (code, stdout, stderr) => Err(format!(
                "pgreplica local {} failed ({code:?}):\n{stdout}{stderr}",
                args.join(" "),
            )),
        }
    }

    /// `status -o json`, also of a cluster that is not running (which exits 3 after printing it).
    pub fn status(&self) -> Result<Value, String> {
        let (code, stdout, stderr) = self.run_raw(&["status", "-o", "json"])?;
        match code {
            Some(0) | Some(3) => {
                serde_json::from_str(&stdout).map_err(|e| format!("status is not JSON: {e}"))
            }
            _ => Err(format!(
                "pgreplica local status failed ({code:?}):\n{stdout}{stderr}"
            )),
        }
    }

    pub fn password(&self) -> String {
        std::fs::read_to_string(self.dir.join("secrets/superuser-password"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// A member's field from status, such as its port or data directory.
    pub fn member(&self, status: &Value, name: &str) -> Option<Value> {
        status["members"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == name)
            .cloned()
    }

    /// Poll status until `cond` holds or the deadline passes.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&Value) -> bool,
    ) -> Result<(Value, Instant), String> {
        let mut last = Value::Null;
        crate::poll::until_blocking(timeout, || match self.status() {
            Ok(s) if cond(&s) => Some((s, Instant::now())),
            Ok(s) => {
                last = s;
                None
            }
            Err(_) => None,
        })
        .ok_or_else(|| {
            format!("timed out after {timeout:?} waiting for {what}; last status:\n{last:#}")
        })
    }

    /// The members this cluster has ports for (`state.json`), in name order; a, b, c when the
    /// file cannot be read.
    pub fn member_names(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("state.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|s| {
                s["members"]
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
            })
            .unwrap_or_else(|| ["a", "b", "c"].map(String::from).to_vec())
    }

    /// A member's directory: its agent configuration and `data/`.
    pub fn member_dir(&self, member: &str) -> PathBuf {
        self.dir.join("members").join(member)
    }

    /// A member's PostgreSQL data directory.
    pub fn data_dir(&self, member: &str) -> PathBuf {
        self.member_dir(member).join("data")
    }

    /// Every member's status and log tail, for failures.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.run(&["status"]).unwrap_or_else(|e| e));
        let names = std::iter::once("brain".to_string()).chain(self.member_names());
        for name in names {
            let mut args = vec!["logs", "-n", "40"];
            if name != "brain" {
                args.insert(1, &name);
            }
            out.push_str(&format!("\n----- log of {name} -----\n"));
            out.push_str(&self.run(&args).unwrap_or_else(|e| e));
        }
        out
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // PGREPLICA_E2E_KEEP=1 keeps the state directory (logs, data) for a post-mortem.
        let keep = std::env::var_os("PGREPLICA_E2E_KEEP").is_some();
        if self.up {
            let _ = self.run(if keep {
                &["down"]
            } else {
                &["down", "--purge"]
            });
        }
        if keep {
            self._tmp.disable_cleanup(true);
            eprintln!("PGREPLICA_E2E_KEEP: kept {}", self.dir.display());
        }
    }
}
