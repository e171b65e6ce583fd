//! A small tmpfs mounted over one member's directory (a disk that fills up), unmounted again
//! whatever happens: on [`Tmpfs::unmount`], or on drop, after stopping whatever of the cluster
//! still holds files on it.

use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::procs;
use crate::cluster::binary;

pub struct Tmpfs {
    /// The mount point.
    pub dir: PathBuf,
    /// The cluster directory, to stop the cluster when the mount is busy.
    cluster: PathBuf,
    mounted: bool,
}

fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Bytes used by `dir` and everything under it (`du -sb`).
pub fn used(dir: &Path) -> Result<u64, String> {
    let out = run("du", &["-sb", &dir.display().to_string()])?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("du -sb {}: cannot read {out:?}", dir.display()))
}

/// Bytes still available on the filesystem of `dir` (`df`).
pub fn available(dir: &Path) -> Result<u64, String> {
    let out = run("df", &["--output=avail", "-B1", &dir.display().to_string()])?;
    out.lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| format!("df {}: cannot read {out:?}", dir.display()))
}

impl Tmpfs {
    /// Replace the (stopped) member directory `dir` by a tmpfs of `bytes` holding a copy of
    /// what it held, with the same owner and mode; the original is kept beside it as
    /// `<dir>.orig`.
    pub fn over(dir: &Path, bytes: u64, cluster: &Path) -> Result<Tmpfs, String> {
        let orig = dir.with_extension("orig");
        let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::rename(dir, &orig).map_err(|e| format!("move {} aside: {e}", dir.display()))?;
        std::fs::create_dir(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let size = format!("size={bytes}");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &size,
                "tmpfs",
                &dir.display().to_string(),
            ],
        )?;
        let fs = Tmpfs {
            dir: dir.to_path_buf(),
            cluster: cluster.to_path_buf(),
            mounted: true,
        };
        chown(dir, Some(meta.uid()), Some(meta.gid()))
            .and_then(|()| {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            })
            .map_err(|e| format!("owner and mode of {}: {e}", dir.display()))?;
        let from = format!("{}/.", orig.display());
        run("cp", &["-a", &from, &fs.dir.display().to_string()])?;
        Ok(fs)
    }

    /// `mount -o remount,size=BYTES`: the fault removed (or changed).
    pub fn resize(&self, bytes: u64) -> Result<(), String> {
        let opts = format!("remount,size={bytes}");
        run("mount", &["-o", &opts, &self.dir.display().to_string()]).map(|_| ())
    }

    /// Unmount (the cluster must no longer use it).
    pub fn unmount(mut self) -> Result<(), String> {
        self.mounted = false;
        run("umount", &[&self.dir.display().to_string()]).map(|_| ())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        let dir = self.dir.display().to_string();
        if run("umount", &[&dir]).is_ok() {
            return;
        }
        // busy: the cluster still runs from it; stop the cluster, then anything left by pid
        let _ = Command::new(binary())
            .args(["local", "down", "--dir"])
            .arg(&self.cluster)
            .env("PGREPLICA_LOG", "warn")
            .output();
        for note in procs::sweep(&self.cluster) {
            println!("tmpfs {dir}: {note}");
        }
        if let Err(e) = run("umount", &[&dir]) {
            println!("{e}; detaching it lazily");
            let _ = run("umount", &["-l", &dir]);
        }
    }
}
