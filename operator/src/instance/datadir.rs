//! Looking at a data directory: is it there, is it PostgreSQL, is it the same one that was
//! started (a deleted or replaced directory is noticed by its identity, not by PostgreSQL).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::converge::DataState;

/// Identity of the files a running server depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    dir: (u64, u64),
    control: (u64, u64),
}

pub fn identity(data: &Path) -> Option<Identity> {
    let dir = std::fs::metadata(data).ok()?;
    let control = std::fs::metadata(data.join("global/pg_control")).ok()?;
    Some(Identity {
        dir: (dir.dev(), dir.ino()),
        control: (control.dev(), control.ino()),
    })
}

/// Entries of a data directory that exist for as long as a server runs on it.
const ALWAYS_PRESENT: [&str; 4] = ["PG_VERSION", "base", "global", "pg_wal"];

/// Why the directory no longer is the one the server was started on, if it is not.
pub fn loss_reason(data: &Path, started: Identity) -> Option<String> {
    if !data.exists() {
        return Some(format!("data directory {} was deleted", data.display()));
    }
    // rm -rf takes a while on a real directory and reaches pg_control at a random point:
    // whatever a running server always has going missing first is already the loss.
    for entry in ALWAYS_PRESENT {
        let path = data.join(entry);
        if std::fs::symlink_metadata(&path).is_err() {
            return Some(format!("{} is gone", path.display()));
        }
    }
    let control = data.join("global/pg_control");
    match identity(data) {
        None if !control.exists() => Some(format!("{} is gone", control.display())),
        None => Some(format!("{} cannot be read", control.display())),
        Some(now) if now.dir != started.dir => Some(format!(
            "data directory {} was replaced by another directory",
            data.display()
        )),
        Some(now) if now.control != started.control => Some(format!(
            "{} was replaced while PostgreSQL ran",
            control.display()
        )),
        Some(_) => None,
    }
}

/// What is on disk, for the converge decision.
pub fn inspect(data: &Path) -> DataState {
    if !data.exists() {
        return DataState::Missing;
    }
    let empty = std::fs::read_dir(data)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if empty {
        return DataState::Missing;
    }
    for required in ["PG_VERSION", "global/pg_control", "postgresql.conf"] {
        if !data.join(required).exists() {
            return DataState::Invalid(format!("{required} is missing"));
        }
    }
    DataState::Present {
        standby_signal: data.join("standby.signal").exists(),
    }
}

/// The pid of a postmaster that still runs on `data` (from `postmaster.pid`, checked against the
/// process's command line, so a reused pid is not mistaken for it).
pub fn live_postmaster(data: &Path) -> Option<u32> {
    let pid = crate::procfs::read_pid(&data.join("postmaster.pid"))?;
    let data = std::path::absolute(data).ok()?;
    (crate::procfs::alive(pid) && crate::procfs::mentions(pid, &data)).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_and_identity() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        assert_eq!(inspect(&data), DataState::Missing);
        std::fs::create_dir_all(&data).expect("mkdir");
        assert_eq!(
            inspect(&data),
            DataState::Missing,
            "empty dir counts as missing"
        );
        std::fs::create_dir_all(data.join("global")).expect("mkdir");
        std::fs::write(data.join("PG_VERSION"), "15\n").expect("write");
        assert_eq!(
            inspect(&data),
            DataState::Invalid("global/pg_control is missing".into())
        );
        std::fs::write(data.join("global/pg_control"), b"x").expect("write");
        std::fs::write(data.join("postgresql.conf"), b"").expect("write");
        for dir in ["base", "pg_wal"] {
            std::fs::create_dir_all(data.join(dir)).expect("mkdir");
        }
        assert_eq!(
            inspect(&data),
            DataState::Present {
                standby_signal: false
            }
        );
        std::fs::write(data.join("standby.signal"), b"").expect("write");
        assert_eq!(
            inspect(&data),
            DataState::Present {
                standby_signal: true
            }
        );

        let id = identity(&data).expect("identity");
        assert_eq!(loss_reason(&data, id), None);
        // replaced pg_control (new inode)
        std::fs::remove_file(data.join("global/pg_control")).expect("rm");
        assert!(loss_reason(&data, id).expect("lost").contains("is gone"));
        std::fs::write(data.join("global/pg_control"), b"y").expect("write");
        let id = identity(&data).expect("identity");
        // replaced by rename: both files exist at once, so the inode must differ
        std::fs::write(data.join("global/pg_control.new"), b"z").expect("write");
        std::fs::rename(
            data.join("global/pg_control.new"),
            data.join("global/pg_control"),
        )
        .expect("mv");
        assert!(loss_reason(&data, id)
            .expect("lost")
            .contains("was replaced"));
        // rm -rf in progress: the first of the always-present entries to go is the loss
        let id = identity(&data).expect("identity");
        std::fs::remove_dir_all(data.join("base")).expect("rm -rf base");
        assert!(loss_reason(&data, id)
            .expect("lost")
            .ends_with("base is gone"));
        std::fs::remove_dir_all(&data).expect("rm -rf");
        assert!(loss_reason(&data, id)
            .expect("lost")
            .contains("was deleted"));
    }
}
