//! Checks before anything starts, each with the fix in its message: as root, PostgreSQL runs as
//! an unprivileged user, which must be able to walk to the state directory (a `mktemp -d` or
//! `/root` is closed to it; initdb then failed every 0.2 s for 300 s with the cause only in
//! `local status`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::postgres::RunAs;

use super::error::LocalError;

/// May a user (uid, gid) enter a directory with this mode and owner? Supplementary groups are
/// not looked at: a directory open to the user only through one is reported, with the fix.
pub fn can_traverse(mode: u32, owner: (u32, u32), user: (u32, u32)) -> bool {
    if user.0 == 0 {
        return true;
    }
    if owner.0 == user.0 {
        return mode & 0o100 != 0;
    }
    if owner.1 == user.1 {
        return mode & 0o010 != 0;
    }
    mode & 0o001 != 0
}

/// The first existing directory on the way to `dir` that `run_as` cannot enter.
pub fn closed_ancestor(dir: &Path, run_as: RunAs) -> Option<(PathBuf, u32)> {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut ancestors: Vec<&Path> = absolute.ancestors().collect();
    ancestors.reverse();
    ancestors.into_iter().find_map(|a| {
        let meta = std::fs::metadata(a).ok()?;
        let mode = meta.mode() & 0o7777;
        (meta.is_dir() && !can_traverse(mode, (meta.uid(), meta.gid()), (run_as.uid, run_as.gid)))
            .then(|| (a.to_path_buf(), mode))
    })
}

/// Refuse to start when PostgreSQL could not reach its data directory.
pub fn state_dir_reachable(dir: &Path, run_as: Option<RunAs>) -> Result<(), LocalError> {
    let Some(run_as) = run_as else {
        return Ok(());
    };
    match closed_ancestor(dir, run_as) {
        None => Ok(()),
        Some((closed, mode)) => {
            let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(run_as.uid))
                .ok()
                .flatten()
                .map_or_else(|| format!("uid {}", run_as.uid), |u| u.name);
            Err(LocalError::Refused(format!(
                "PostgreSQL runs as {user} here (pgreplica runs as root), and {user} cannot enter {} (mode {mode:o}) on the way to {}: pass --dir with a directory it can reach (such as /var/tmp/pgreplica), or open the way with `chmod o+x {}`",
                closed.display(),
                dir.display(),
                closed.display()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_enter() {
        let pg = (999, 999);
        // (mode, owner, user, may enter)
        let table = [
            (0o700, (0, 0), pg, false),
            (0o755, (0, 0), pg, true),
            (0o711, (0, 0), pg, true),
            (0o750, (0, 999), pg, true),
            (0o700, (999, 999), pg, true),
            (0o070, (999, 0), pg, false),
            (0o700, (0, 0), (0, 0), true),
        ];
        for (mode, owner, user, want) in table {
            assert_eq!(
                can_traverse(mode, owner, user),
                want,
                "{mode:o} {owner:?} {user:?}"
            );
        }
    }

    #[test]
    fn a_closed_directory_on_the_way_is_named() {
        let base = tempfile::tempdir().expect("tempdir");
        let closed = base.path().join("closed");
        let state = closed.join("inner").join("state");
        std::fs::create_dir_all(&state).expect("mkdir");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        // a user that owns none of it: only the "other" bits count
        let stranger = RunAs {
            uid: 54_321,
            gid: 54_321,
        };
        let found = closed_ancestor(&state, stranger);
        // the temp dir's own ancestors (/tmp) are open; the first closed one is ours
        assert_eq!(found, Some((closed.clone(), 0o700)));
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o711)).expect("chmod");
        assert_eq!(closed_ancestor(&state, stranger), None);
    }
}
