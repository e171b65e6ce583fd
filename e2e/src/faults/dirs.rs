//! Data directories that must stay where they are: remembered by inode, then checked; one that is
//! gone or replaced (moved aside for a re-clone, say) is reported with what lies beside it.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What happened to one directory: first seen gone or replaced, how, and how many checks saw it.
struct Touched {
    first: f64,
    seen: String,
    checks: usize,
}

pub struct Untouched {
    /// name → (path, inode when remembered)
    dirs: BTreeMap<String, (PathBuf, u64)>,
    origin: Instant,
    touched: BTreeMap<String, Touched>,
}

fn inode(path: &Path) -> std::io::Result<u64> {
    std::fs::metadata(path).map(|m| m.ino())
}

/// Names beside `dir` that start like it (`data.aside-…`, `data.clone`).
fn beside(dir: &Path) -> Vec<String> {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name().and_then(|n| n.to_str()))
    else {
        return Vec::new();
    };
    std::fs::read_dir(parent)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(name) && n != name)
                .collect()
        })
        .unwrap_or_default()
}

impl Untouched {
    /// Remember `dirs` (name, path) as they are now; times are reported relative to `origin`.
    pub fn remember(dirs: &[(String, PathBuf)], origin: Instant) -> Result<Untouched, String> {
        let dirs = dirs
            .iter()
            .map(|(name, path)| {
                inode(path)
                    .map(|i| (name.clone(), (path.clone(), i)))
                    .map_err(|e| format!("{}: {e}", path.display()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Untouched {
            dirs,
            origin,
            touched: BTreeMap::new(),
        })
    }

    /// Look once.
    pub fn check(&mut self) {
        for (name, (path, ino)) in &self.dirs {
            let seen = match inode(path) {
                Ok(now) if now == *ino => continue,
                Ok(now) => format!("replaced (inode {now})"),
                Err(e) => e.to_string(),
            };
            let first = self.origin.elapsed().as_secs_f64();
            self.touched
                .entry(name.clone())
                .or_insert_with(|| Touched {
                    first,
                    seen: format!("{seen}; beside it {:?}", beside(path)),
                    checks: 0,
                })
                .checks += 1;
        }
    }

    /// One failure per directory that was ever gone or replaced.
    pub fn failures(&self, checks: usize) -> Vec<String> {
        self.touched
            .iter()
            .map(|(name, t)| {
                format!(
                    "{name}/data was moved or removed during the hold: first at +{:.1}s ({}), \
                     gone or replaced at {} of {checks} checks",
                    t.first, t.seen, t.checks
                )
            })
            .collect()
    }
}
