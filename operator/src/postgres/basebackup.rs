//! Cloning a running server with `pg_basebackup`, with progress reports.

use std::collections::VecDeque;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::{debug, info};

use super::error::{PgError, PgResult};
use super::programs::{absolute, last_lines, Password, Programs, TAIL_LINES};
use super::run_as::create_private_dir;

/// What to clone from where.
#[derive(Debug, Clone)]
pub struct BasebackupOpts {
    pub host: String,
    pub port: u16,
    /// A role with the REPLICATION attribute.
    pub user: String,
    pub password: Password,
    /// The new data directory: missing or empty.
    pub target: PathBuf,
    /// Physical replication slot on the source to stream WAL through (it must exist).
    pub slot: Option<String>,
    /// Shown in the source's `pg_stat_replication` while the backup runs.
    pub application_name: Option<String>,
    /// Connect over TLS and verify the source (libpq's `verify-full`).
    pub tls: Option<super::PgTls>,
}

/// One progress report of a running backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done_kb: u64,
    pub total_kb: u64,
    pub percent: u32,
}

/// Parses one `pg_basebackup --progress` report: `123/4567 kB (2%), 0/1 tablespace`.
pub fn parse_progress(line: &str) -> Option<Progress> {
    let (counts, rest) = line.trim().split_once(" kB (")?;
    let (done, total) = counts.trim().split_once('/')?;
    let percent = rest.split_once("%)")?.0;
    Some(Progress {
        done_kb: done.trim().parse().ok()?,
        total_kb: total.trim().parse().ok()?,
        percent: percent.trim().parse().ok()?,
    })
}

impl Programs {
    /// `pg_basebackup -X stream --checkpoint=fast --progress --no-password` into `opts.target`,
    /// calling `on_progress` for every progress report. Dropping the future kills the program.
    /// On failure the target holds a partial copy: clone into a new directory and put it in
    /// place only after success.
    pub async fn basebackup(
        &self,
        opts: &BasebackupOpts,
        mut on_progress: impl FnMut(Progress),
    ) -> PgResult<()> {
        let target = absolute(&opts.target)?;
        create_private_dir(&target, self.run_as)?;
        let mut cmd = self.command("pg_basebackup");
        // Everything about the connection in one connection string: -h would override the name
        // TLS verifies with the address.
        let mut source = super::ConnParams::new(opts.host.clone(), opts.port, opts.user.clone())
            .with_tls(opts.tls.clone());
        source.application_name = opts.application_name.clone();
        cmd.arg("-d")
            .arg(source.conninfo(false)?)
            .arg("-D")
            .arg(&target)
            .args([
                "-X",
                "stream",
                "--checkpoint=fast",
                "--progress",
                "--no-password",
            ]);
        if let Some(slot) = &opts.slot {
            cmd.arg("-S").arg(slot);
        }
        opts.password.apply(&mut cmd);
        // without the environment: it may hold the password
        debug!(args = ?cmd.as_std().get_args().collect::<Vec<_>>(), "running pg_basebackup");
        let mut child = cmd.spawn().map_err(|source| PgError::Spawn {
            program: "pg_basebackup".into(),
            source,
        })?;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let (stdout_text, stderr_tail) =
            tokio::join!(read_all(stdout), read_reports(stderr, &mut on_progress));
        let status = child
            .wait()
            .await
            .map_err(|e| PgError::io("waiting for pg_basebackup", e))?;
        if !status.success() {
            let mut tail = stderr_tail;
            if tail.is_empty() {
                tail = last_lines(&stdout_text, TAIL_LINES);
            }
            return Err(PgError::ProgramFailed {
                program: format!("pg_basebackup from {}:{}", opts.host, opts.port),
                status,
                tail,
            });
        }
        info!(
            source = %format!("{}:{}", opts.host, opts.port),
            target = %target.display(),
            slot = opts.slot.as_deref().unwrap_or(""),
            "pg_basebackup done"
        );
        Ok(())
    }
}

async fn read_all(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let mut buf = Vec::new();
    if let Some(mut pipe) = pipe {
        // A read error ends the capture; the exit status tells whether the program failed.
        let _ = pipe.read_to_end(&mut buf).await;
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Reads stderr as it comes, splitting at `\r` and `\n`; progress lines go to `on_progress`,
/// the others are logged and the last ones returned.
async fn read_reports(
    pipe: Option<impl AsyncRead + Unpin>,
    on_progress: &mut impl FnMut(Progress),
) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut handle = |raw: &[u8], tail: &mut VecDeque<String>| {
        let line = String::from_utf8_lossy(raw);
        let line = line.trim();
        if line.is_empty() {
            return;
        }
        if let Some(p) = parse_progress(line) {
            on_progress(p);
            return;
        }
        debug!(line, "pg_basebackup");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    };
    loop {
        let n = match pipe.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n' || b == b'\r') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            handle(&line[..pos], &mut tail);
        }
    }
    handle(&pending, &mut tail);
    Vec::from(tail).join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_progress_reports() {
        let cases = [
            ("123/4567 kB (2%), 0/1 tablespace", Some((123, 4567, 2))),
            ("     0/30548 kB (0%), 0/1 tablespace", Some((0, 30548, 0))),
            (
                "30557/30557 kB (100%), 1/1 tablespace",
                Some((30557, 30557, 100)),
            ),
            (
                "22480/22480 kB (100%), 2/2 tablespaces",
                Some((22480, 22480, 100)),
            ),
            ("pg_basebackup: error: could not connect", None),
            ("waiting for checkpoint", None),
            ("", None),
        ];
        for (line, want) in cases {
            let got = parse_progress(line).map(|p| (p.done_kb, p.total_kb, p.percent));
            assert_eq!(got, want, "{line:?}");
        }
    }

    #[tokio::test]
    async fn splits_reports_on_cr_and_lf() {
        let text: &[u8] = b"  0/100 kB (0%), 0/1 tablespace\r50/100 kB (50%), 0/1 tablespace\r\
              100/100 kB (100%), 1/1 tablespace\npg_basebackup: something\nlast words";
        let mut seen = Vec::new();
        let tail = read_reports(Some(text), &mut |p: Progress| seen.push(p.percent)).await;
        assert_eq!(seen, [0, 50, 100]);
        assert_eq!(tail, "pg_basebackup: something\nlast words");
    }
}
