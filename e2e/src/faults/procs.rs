//! The processes of one cluster, found honestly (pid files and `/proc/*/cmdline` under this
//! cluster's directory), signalled by pid, and swept when a case ends.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::files::brain_pid_file;
use crate::bench::procs::{alive, find};

/// The paths by which a process can name this cluster's directory.
fn spellings(dir: &Path) -> Vec<String> {
    let mut out = vec![dir.display().to_string()];
    if let Ok(real) = std::fs::canonicalize(dir) {
        let real = real.display().to_string();
        if !out.contains(&real) {
            out.push(real);
        }
    }
    out
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The agent of `member`: `pgreplica instance run --config <dir>/members/<member>/agent.json`.
pub fn agent_pid(dir: &Path, member: &str) -> Result<u32, String> {
    let mut pids: Vec<u32> = spellings(dir)
        .iter()
        .flat_map(|d| {
            let config = PathBuf::from(d)
                .join("members")
                .join(member)
                .join("agent.json");
            find(&["instance", "run", "--config", &config.display().to_string()])
        })
        .filter(|p| alive(*p))
        .collect();
    pids.sort();
    pids.dedup();
    match pids.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "no running agent of {member} under {}",
            dir.display()
        )),
        many => Err(format!("several agents of {member}: {many:?}")),
    }
}

/// The postmaster of `member`: first line of `postmaster.pid`, alive, and its command line names
/// this data directory (a stale file or a reused pid is not it).
pub fn postmaster_pid(dir: &Path, member: &str) -> Result<u32, String> {
    let data = dir.join("members").join(member).join("data");
    let pid = crate::bench::procs::postmaster_pid(&data)
        .ok_or_else(|| format!("no postmaster.pid in {}", data.display()))?;
    if !alive(pid) {
        return Err(format!("postmaster {pid} of {member} is not running"));
    }
    let args = cmdline(pid).join(" ");
    let ours = spellings(dir)
        .iter()
        .any(|d| args.contains(&format!("{d}/members/{member}/data")));
    if !ours {
        return Err(format!(
            "pid {pid} from {member}'s postmaster.pid is not its postmaster: {args}"
        ));
    }
    Ok(pid)
}

/// The brain: `brain.pid`, alive, and running `local brain --dir <dir>`.
pub fn brain_pid(dir: &Path) -> Result<u32, String> {
    let path = brain_pid_file(dir);
    let pid: u32 = std::fs::read_to_string(&path)
        .map_err(|e| format!("read {}: {e}", path.display()))?
        .trim()
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let args = cmdline(pid);
    let brain = args.windows(2).any(|w| w == ["local", "brain"])
        && spellings(dir).iter().any(|d| args.contains(d));
    if !alive(pid) || !brain {
        return Err(format!(
            "pid {pid} in brain.pid is not this cluster's brain"
        ));
    }
    Ok(pid)
}

pub fn signal(pid: u32, sig: Signal) -> Result<(), String> {
    let raw = i32::try_from(pid).map_err(|e| format!("pid {pid}: {e}"))?;
    kill(Pid::from_raw(raw), sig).map_err(|e| format!("kill -{sig} {pid}: {e}"))
}

/// Wait until `pid` is gone (or a zombie).
pub async fn until_gone(pid: u32, timeout: Duration) -> Result<(), String> {
    crate::poll::until(timeout, || async { (!alive(pid)).then_some(()) })
        .await
        .ok_or_else(|| format!("pid {pid} still runs after {timeout:?}"))
}

/// Pids stopped with SIGSTOP; SIGCONT on [`Frozen::thaw`] or drop (a failing case must not leave
/// a stopped process behind).
pub struct Frozen {
    pids: Vec<u32>,
}

impl Frozen {
    /// SIGSTOP every pid.
    pub fn stop(pids: &[u32]) -> Result<Frozen, String> {
        let frozen = Frozen {
            pids: pids.to_vec(),
        };
        for pid in pids {
            signal(*pid, Signal::SIGSTOP)?;
        }
        Ok(frozen)
    }

    /// Also SIGSTOP `pids`, skipping the ones that are already gone (a backend that just ended);
    /// the ones stopped.
    pub fn also(&mut self, pids: &[u32]) -> Result<Vec<u32>, String> {
        let mut stopped = Vec::new();
        for pid in pids {
            let raw = i32::try_from(*pid).map_err(|e| format!("pid {pid}: {e}"))?;
            match kill(Pid::from_raw(raw), Signal::SIGSTOP) {
                Ok(()) => {
                    self.pids.push(*pid);
                    stopped.push(*pid);
                }
                Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => return Err(format!("kill -SIGSTOP {pid}: {e}")),
            }
        }
        Ok(stopped)
    }

    /// SIGCONT every pid; the pids that no longer exist (something killed them during the hold).
    pub fn thaw(mut self) -> Result<Vec<u32>, String> {
        let mut gone = Vec::new();
        for pid in std::mem::take(&mut self.pids) {
            if !alive(pid) {
                gone.push(pid);
                continue;
            }
            let raw = i32::try_from(pid).map_err(|e| format!("pid {pid}: {e}"))?;
            match kill(Pid::from_raw(raw), Signal::SIGCONT) {
                Ok(()) => {}
                Err(nix::errno::Errno::ESRCH) => gone.push(pid),
                Err(e) => return Err(format!("kill -SIGCONT {pid}: {e}")),
            }
        }
        Ok(gone)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = signal(*pid, Signal::SIGCONT);
        }
    }
}

/// The children of `parent` (a postmaster's: startup, WAL receiver, checkpointer, backends; each
/// leads a process group of its own, so signalling the postmaster's group does not reach them).
pub fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| stat_field(*p, 1) == Some(parent))
        .collect();
    pids.sort();
    pids
}

/// The process group of `pid`.
pub fn pgrp(pid: u32) -> Option<u32> {
    stat_field(pid, 2)
}

/// Field `3 + n` of `/proc/<pid>/stat` (counted after the command name, which may hold spaces
/// and parens): `n = 1` the parent, `n = 2` the process group.
fn stat_field(pid: u32, n: usize) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n)?.parse().ok()
}

/// Pids whose command line names `dir` or a path under it: the brain (`--dir DIR`), agents
/// (`--config DIR/members/m/agent.json`), postmasters (`-D DIR/members/m/data`).
pub fn of_cluster(dir: &Path) -> Vec<u32> {
    let names = spellings(dir);
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| *p != me)
        .filter(|p| {
            cmdline(*p).iter().any(|arg| {
                names
                    .iter()
                    .any(|d| arg == d || arg.starts_with(&format!("{d}/")))
            })
        })
        .collect();
    pids.sort();
    pids
}

/// After `down`: kill whatever still runs from this cluster's directory (agents that outlived
/// their brain, a postmaster whose agent is gone). Only pids whose command line names `dir`.
pub fn sweep(dir: &Path) -> Vec<String> {
    let pids: Vec<u32> = of_cluster(dir).into_iter().filter(|p| alive(*p)).collect();
    let mut notes = Vec::new();
    for pid in &pids {
        let args = cmdline(*pid);
        // a postmaster: immediate shutdown takes its backends with it
        let sig = if args.iter().any(|a| a == "-D") {
            Signal::SIGQUIT
        } else {
            Signal::SIGKILL
        };
        let _ = signal(*pid, Signal::SIGCONT);
        let _ = signal(*pid, sig);
        notes.push(format!("left behind, sent {sig}: {pid} {}", args.join(" ")));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for pid in pids {
        let left = deadline.saturating_duration_since(Instant::now());
        if crate::poll::until_blocking(left, || (!alive(pid)).then_some(())).is_none() {
            let _ = signal(pid, Signal::SIGKILL);
        }
    }
    notes
}
