//! Running the PostgreSQL programs: the common command setup, `initdb` and `pg_rewind`.
//! `pg_basebackup`, `pg_controldata` and the server itself have their own files.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use tokio::process::Command;
use tracing::{debug, info};

use super::bins::Bins;
use super::error::{PgError, PgResult};
use super::query::{connect, ConnParams};
use super::run_as::{create_private_dir, RunAs};

/// How many lines of a failed program's output an error keeps.
pub(crate) const TAIL_LINES: usize = 20;

/// The server programs and the user they run as.
#[derive(Debug, Clone)]
pub struct Programs {
    pub bins: Bins,
    pub run_as: Option<RunAs>,
}

/// How a program that connects to a server gets its password. Never on the command line.
#[derive(Clone, Default)]
pub enum Password {
    /// No password (trust or peer authentication).
    #[default]
    None,
    /// Passed in the `PGPASSWORD` environment variable of the child.
    Env(String),
    /// A password file (`~/.pgpass` format, mode 0600, readable by the run-as user) named by
    /// `PGPASSFILE`; see [`super::quote::pgpass_line`].
    File(PathBuf),
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Password::None => f.write_str("None"),
            Password::Env(_) => f.write_str("Env(<redacted>)"),
            Password::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

impl Password {
    pub(crate) fn apply(&self, cmd: &mut Command) {
        match self {
            Password::None => {}
            Password::Env(pw) => {
                cmd.env("PGPASSWORD", pw);
            }
            Password::File(path) => {
                cmd.env("PGPASSFILE", path);
            }
        }
    }
}

/// What `pg_rewind` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewindOutcome {
    /// The target had not diverged from the source; nothing was changed.
    NotNeeded,
    /// The target was rewound to the point where the source's timeline forked.
    Rewound,
}

impl Programs {
    pub fn new(bins: Bins, run_as: Option<RunAs>) -> Programs {
        Programs { bins, run_as }
    }

    /// Finds the programs and the user to run them as (see [`Bins::locate`], [`RunAs::detect`]).
    pub fn detect(bindir: Option<&Path>, user: Option<&str>) -> PgResult<Programs> {
        Ok(Programs::new(Bins::locate(bindir)?, RunAs::detect(user)?))
    }

    /// A command for one of the programs: run as the run-as user, `LC_ALL=C` (messages we parse
    /// are untranslated), no inherited `PG*` variables (we pass everything explicitly), output
    /// piped, killed when the future owning it is dropped.
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bins.program(program));
        cmd.env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, _) in std::env::vars_os() {
            let inherited_libpq = key
                .to_str()
                .is_some_and(|k| k.starts_with("PG") && !k.starts_with("PGREPLICA_"));
            if inherited_libpq {
                cmd.env_remove(key);
            }
        }
        if let Some(r) = self.run_as {
            // The caller's working directory may be closed to the run-as user, and so may the
            // caller's home: libpq looks there for a client certificate (~/.postgresql) and
            // fails on a directory it may not read, so HOME is the run-as user's own.
            let home = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(r.uid))
                .ok()
                .flatten()
                .map_or_else(|| std::path::PathBuf::from("/"), |u| u.dir);
            cmd.uid(r.uid).gid(r.gid).current_dir("/").env("HOME", home);
        }
        cmd
    }

    /// `initdb` with data checksums, scram-sha-256 authentication, UTF8 and the C locale; the
    /// superuser's password is read from `pwfile` (which the run-as user must be able to read).
    /// Without `-N`: the new cluster is synced to disk.
    pub async fn initdb(&self, data: &Path, superuser: &str, pwfile: &Path) -> PgResult<()> {
        let data = absolute(data)?;
        let pwfile = absolute(pwfile)?;
        create_private_dir(&data, self.run_as)?;
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(&data)
            .arg("--data-checksums")
            .arg("--auth=scram-sha-256")
            .arg(arg_with("--username=", superuser.as_ref()))
            .arg(arg_with("--pwfile=", pwfile.as_os_str()))
            .arg("--encoding=UTF8")
            .arg("--locale=C");
        run(cmd, "initdb").await?;
        info!(data = %data.display(), "initdb done");
        Ok(())
    }

    /// `pg_rewind` of the cleanly stopped cluster in `data` from the running server `source`
    /// (a superuser, or a role with `pg_checkpoint` and the grants pg_rewind documents).
    ///
    /// Runs `CHECKPOINT` on the source first: pg_rewind (up to PostgreSQL 15) takes the source's
    /// timeline from its control file, which a just-promoted server updates only at its next
    /// checkpoint; without it pg_rewind says "no rewind required" for a diverged target.
    /// The password goes through `PGPASSWORD`, never the command line.
    pub async fn rewind(&self, data: &Path, source: &ConnParams) -> PgResult<RewindOutcome> {
        let data = absolute(data)?;
        connect(source).await?.batch("CHECKPOINT").await?;
        let mut cmd = self.command("pg_rewind");
        cmd.arg(arg_with("--target-pgdata=", data.as_os_str()))
            .arg(arg_with(
                "--source-server=",
                source.conninfo(false)?.as_ref(),
            ));
        if let Some(pw) = &source.password {
            Password::Env(pw.clone()).apply(&mut cmd);
        }
        let out = run(cmd, "pg_rewind").await?;
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let outcome = if text.contains("no rewind required") {
            RewindOutcome::NotNeeded
        } else {
            RewindOutcome::Rewound
        };
        info!(data = %data.display(), source = %source.target(), ?outcome, "pg_rewind done");
        Ok(outcome)
    }
}

pub(crate) fn absolute(path: &Path) -> PgResult<PathBuf> {
    std::path::absolute(path).map_err(|e| PgError::io(format!("resolving {}", path.display()), e))
}

fn arg_with(prefix: &str, value: &OsStr) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from(prefix);
    s.push(value);
    s
}

/// Runs a command to the end (logged without its environment, which may hold a password) with its output captured; a failure carries the last output lines.
pub(crate) async fn run(mut cmd: Command, program: &str) -> PgResult<Output> {
    debug!(program, args = ?cmd.as_std().get_args().collect::<Vec<_>>(), "running");
    let out = cmd.output().await.map_err(|source| PgError::Spawn {
        program: program.to_string(),
        source,
    })?;
    if !out.status.success() {
        return Err(PgError::ProgramFailed {
            program: program.to_string(),
            status: out.status,
            tail: output_tail(&out),
        });
    }
    Ok(out)
}

/// The last lines of stderr, or of stdout when stderr is empty.
pub(crate) fn output_tail(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = if stderr.trim().is_empty() {
        String::from_utf8_lossy(&out.stdout)
    } else {
        stderr
    };
    last_lines(&text, TAIL_LINES)
}

pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .split(['\n', '\r'])
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_keep_the_end() {
        let text = "a\r\nb\n\nc\rd\n";
        assert_eq!(last_lines(text, 2), "c\nd");
        assert_eq!(last_lines(text, 10), "a\nb\nc\nd");
        assert_eq!(last_lines("", 3), "");
    }

    #[test]
    fn password_debug_is_redacted() {
        let shown = format!("{:?}", Password::Env("hunter2".into()));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn failure_names_program_and_output() {
        let programs = Programs::detect(None, None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        // An empty directory is not a cluster: pg_controldata fails and says why.
        let mut cmd = programs.command("pg_controldata");
        cmd.arg("-D").arg(dir.path().join("missing"));
        let err = run(cmd, "pg_controldata").await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("pg_controldata failed"), "{msg}");
        assert!(msg.contains("could not open"), "{msg}");
    }
}
