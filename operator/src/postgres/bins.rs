//! Finding the PostgreSQL server programs.

use std::path::{Path, PathBuf};

use tracing::debug;

use super::error::{PgError, PgResult};

/// Environment variable naming the directory of the server programs.
pub const BINDIR_ENV: &str = "PGREPLICA_PG_BINDIR";

/// The programs pgreplica runs; a usable directory holds all of them.
pub const REQUIRED: [&str; 5] = [
    "postgres",
    "initdb",
    "pg_basebackup",
    "pg_rewind",
    "pg_controldata",
];

/// Where the PostgreSQL server programs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bins {
    dir: PathBuf,
}

impl Bins {
    /// Finds the programs: `explicit` (from `--pg-bindir`), then `$PGREPLICA_PG_BINDIR`, then
    /// `pg_config --bindir`, then the highest `/usr/lib/postgresql/<version>/bin`, then `$PATH`.
    ///
    /// A directory named explicitly (argument or environment) must be complete: it is never
    /// silently replaced by another one.
    pub fn locate(explicit: Option<&Path>) -> PgResult<Bins> {
        if let Some(dir) = explicit {
            return Bins::in_dir(dir, "--pg-bindir");
        }
        if let Some(dir) = std::env::var_os(BINDIR_ENV).filter(|v| !v.is_empty()) {
            return Bins::in_dir(Path::new(&dir), BINDIR_ENV);
        }
        let mut tried = Vec::new();
        let mut candidates = Vec::new();
        match pg_config_bindir() {
            Some(dir) => candidates.push(dir),
            None => tried.push("pg_config --bindir (not available)".to_string()),
        }
        let versioned = versioned_dirs(Path::new("/usr/lib/postgresql"));
        if versioned.is_empty() {
            tried.push("/usr/lib/postgresql/<version>/bin (none)".to_string());
        }
        candidates.extend(versioned);
        for dir in candidates {
            if missing_in(&dir).is_empty() {
                debug!(dir = %dir.display(), "found PostgreSQL server programs");
                return Ok(Bins { dir });
            }
            tried.push(dir.display().to_string());
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                if dir.is_absolute() && missing_in(&dir).is_empty() {
                    debug!(dir = %dir.display(), "found PostgreSQL server programs on PATH");
                    return Ok(Bins { dir });
                }
            }
        }
        tried.push("$PATH".to_string());
        Err(PgError::BinsNotFound {
            needed: REQUIRED.join(", "),
            tried: tried.join(", "),
        })
    }

    /// Uses `dir`, which must hold every required program.
    pub fn in_dir(dir: &Path, origin: &'static str) -> PgResult<Bins> {
        let missing = missing_in(dir);
        if !missing.is_empty() {
            return Err(PgError::MissingPrograms {
                dir: dir.to_path_buf(),
                origin,
                missing: missing.join(", "),
            });
        }
        let dir = std::path::absolute(dir)
            .map_err(|e| PgError::io(format!("resolving {}", dir.display()), e))?;
        Ok(Bins { dir })
    }

    /// The directory holding the programs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Full path of one program in the directory.
    pub fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The major version (`15` for 15.18), from `postgres --version`.
    pub async fn major_version(&self) -> PgResult<u32> {
        let program = self.program("postgres");
        let out = tokio::process::Command::new(&program)
            .arg("--version")
            .env("LC_ALL", "C")
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| PgError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(PgError::ProgramFailed {
                program: "postgres --version".into(),
                status: out.status,
                tail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        parse_major_version(&text)
    }
}

/// `postgres (PostgreSQL) 15.18 (Debian 15.18-1.pgdg120+1)` → 15.
pub fn parse_major_version(text: &str) -> PgResult<u32> {
    let bad = || PgError::Parse {
        what: "postgres --version output".into(),
        detail: format!("{:?}", text.trim()),
    };
    let rest = text
        .split_once("(PostgreSQL)")
        .ok_or_else(bad)?
        .1
        .trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().map_err(|_| bad())
}

fn missing_in(dir: &Path) -> Vec<&'static str> {
    REQUIRED
        .iter()
        .copied()
        .filter(|name| !is_executable(&dir.join(name)))
        .collect()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn pg_config_bindir() -> Option<PathBuf> {
    let out = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `<root>/<version>/bin` for every numeric version, highest first.
fn versioned_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let key: Option<Vec<u32>> = name.split('.').map(|p| p.parse().ok()).collect();
            Some((key?, e.path().join("bin")))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, dir)| dir).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        let cases = [
            (
                "postgres (PostgreSQL) 15.18 (Debian 15.18-1.pgdg120+1)\n",
                15,
            ),
            ("postgres (PostgreSQL) 16.4\n", 16),
            ("postgres (PostgreSQL) 17beta1\n", 17),
        ];
        for (text, major) in cases {
            assert_eq!(parse_major_version(text).unwrap(), major, "{text}");
        }
        assert!(parse_major_version("something else").is_err());
    }

    #[test]
    fn versioned_dirs_highest_first() {
        let root = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "16", "notaversion", "10"] {
            std::fs::create_dir(root.path().join(v)).unwrap();
        }
        let dirs = versioned_dirs(root.path());
        let names: Vec<String> = dirs
            .iter()
            .map(|d| {
                d.parent()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into()
            })
            .collect();
        assert_eq!(names, ["16", "15", "10", "9.6"]);
    }

    #[test]
    fn explicit_dir_must_be_complete() {
        let dir = tempfile::tempdir().unwrap();
        let err = Bins::locate(Some(dir.path())).unwrap_err();
        let msg = err.to_string();
        for name in REQUIRED {
            assert!(msg.contains(name), "{msg}");
        }
        assert!(msg.contains("--pg-bindir"), "{msg}");
        assert!(msg.contains("postgresql-15"), "{msg}");
    }

    #[tokio::test]
    async fn finds_installed_programs() {
        let bins = Bins::locate(None).unwrap();
        for name in REQUIRED {
            assert!(bins.program(name).is_file(), "{name}");
        }
        let again = Bins::locate(Some(bins.dir())).unwrap();
        assert_eq!(again, bins);
        let major = bins.major_version().await.unwrap();
        assert!(major >= 13, "major version {major}");
    }
}
