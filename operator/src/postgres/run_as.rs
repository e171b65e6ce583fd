//! Which user the PostgreSQL programs run as.
//!
//! PostgreSQL refuses to run as root. When pgreplica itself runs as root (CI, some containers),
//! every program is started as an unprivileged user and the directories we create are handed to it.

use std::path::Path;

use nix::unistd::{Gid, Uid, User};
use tracing::debug;

use super::error::{PgError, PgResult};

/// The user that runs when PostgreSQL cannot run as the current one (root).
pub const DEFAULT_USER: &str = "postgres";

/// A uid/gid pair that child programs switch to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// `None` when not root (programs run as the current user); when root, `user` or `postgres`.
    pub fn detect(user: Option<&str>) -> PgResult<Option<RunAs>> {
        if !Uid::effective().is_root() {
            if let Some(user) = user {
                debug!(user, "not root: running PostgreSQL as the current user");
            }
            return Ok(None);
        }
        let name = user.unwrap_or(DEFAULT_USER);
        let found = User::from_name(name).map_err(|source| PgError::UserLookup {
            user: name.to_string(),
            source,
        })?;
        let user = found.ok_or_else(|| PgError::NoRunAsUser {
            user: name.to_string(),
        })?;
        if user.uid.is_root() {
            return Err(PgError::RunAsRoot {
                user: name.to_string(),
            });
        }
        debug!(
            user = name,
            uid = user.uid.as_raw(),
            "running as root: PostgreSQL programs will run as this user"
        );
        Ok(Some(RunAs {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }))
    }
}

/// Gives `path` and everything under it (without following symlinks) to `run_as`.
pub fn chown_recursive(path: &Path, run_as: RunAs) -> PgResult<()> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| PgError::io(format!("reading {}", path.display()), e))?;
    std::os::unix::fs::lchown(path, Some(run_as.uid), Some(run_as.gid))
        .map_err(|e| PgError::io(format!("chown {}", path.display()), e))?;
    if meta.is_dir() {
        let entries = std::fs::read_dir(path)
            .map_err(|e| PgError::io(format!("listing {}", path.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| PgError::io(format!("listing {}", path.display()), e))?;
            chown_recursive(&entry.path(), run_as)?;
        }
    }
    Ok(())
}

/// Hands one path (not its contents) to `run_as`, if any.
pub fn chown_to(path: &Path, run_as: Option<RunAs>) -> PgResult<()> {
    if let Some(r) = run_as {
        nix::unistd::chown(path, Some(Uid::from_raw(r.uid)), Some(Gid::from_raw(r.gid)))
            .map_err(|e| PgError::io(format!("chown {}", path.display()), e.into()))?;
    }
    Ok(())
}

/// Creates `path` (and missing parents) with mode 0700, owned by `run_as` when given. Parents
/// that already exist are left alone; the directory itself is made private and handed over.
pub fn create_private_dir(path: &Path, run_as: Option<RunAs>) -> PgResult<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| PgError::io(format!("creating {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| PgError::io(format!("chmod 0700 {}", path.display()), e))?;
    chown_to(path, run_as)
}

/// Writes `contents` to `path` with mode 0600 (replacing it atomically), owned by `run_as`.
pub fn write_private_file(path: &Path, contents: &[u8], run_as: Option<RunAs>) -> PgResult<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.pgreplica-tmp"));
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| PgError::io(ctx("creating"), e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| PgError::io(ctx("writing"), e))?;
    drop(file);
    chown_to(&tmp, run_as)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        PgError::io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_matches_current_user() {
        let detected = RunAs::detect(None).unwrap();
        if Uid::effective().is_root() {
            let r = detected.expect("root must run PostgreSQL as another user");
            assert_ne!(r.uid, 0);
            let err = RunAs::detect(Some("no-such-user-pgreplica")).unwrap_err();
            assert!(err.to_string().contains("no-such-user-pgreplica"), "{err}");
            assert!(RunAs::detect(Some("root")).is_err());
        } else {
            assert_eq!(detected, None);
            assert_eq!(RunAs::detect(Some("whoever")).unwrap(), None);
        }
    }

    #[test]
    fn private_dir_and_file() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let run_as = RunAs::detect(None).unwrap();
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir(&dir, run_as).unwrap();
        let file = dir.join("secret");
        write_private_file(&file, b"x'y", run_as).unwrap();
        write_private_file(&file, b"second", run_as).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"second");
        for p in [&dir, &file] {
            let meta = std::fs::metadata(p).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            assert!(mode == 0o700 || mode == 0o600, "{}: {mode:o}", p.display());
            if let Some(r) = run_as {
                assert_eq!(meta.uid(), r.uid);
            }
        }
        if let Some(r) = run_as {
            chown_recursive(root.path(), r).unwrap();
            assert_eq!(std::fs::metadata(root.path()).unwrap().uid(), r.uid);
        }
    }
}
