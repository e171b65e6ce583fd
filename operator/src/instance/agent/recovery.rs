//! A standby's start: PostgreSQL replays WAL before it accepts connections, and nothing can be
//! asked over SQL until then. The agent waits as long as recovery moves (the WAL file the startup
//! process reads, what the receiver received). When it has not moved for as long as a running
//! standby may go without streaming and recovery *waits for* a WAL file (it has not got it; one
//! it is still replaying from is its own), the upstream is asked whether it still has that file:
//! if it does not, this member cannot recover from it, and the start gives up so that the repair
//! (rewind, then a new copy) follows. A slow or frozen disk (recovery stuck while replaying) or an
//! upstream that does not answer only makes the agent wait: neither proves anything about the
//! data.

use std::time::Duration;

use crate::lease::unix_now_ms;
use crate::member::Upstream;
use crate::postgres::{Conn, PgError, PostgresProcess, RecoveryTitles};

use crate::instance::converge::RecoveryWatch;

use super::{Agent, START_TIMEOUT, UPSTREAM_CHECK_TIMEOUT};

/// How often a stalled start asks the upstream about the WAL file it waits for.
const ASK_UPSTREAM_EVERY_MS: u64 = 5_000;
/// How long each attempt at a connection waits before the agent looks at recovery again.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// Why a server that was started does not accept connections.
pub(super) enum NotReady {
    /// It exited, refused the agent's password, or its recovery never moved.
    Failed(PgError),
    /// Recovery cannot go on from this upstream (the reason says why).
    Stalled(String),
}

impl Agent {
    /// Wait until the starting standby accepts connections, while its recovery moves.
    pub(super) async fn wait_recovered(
        &mut self,
        server: &mut PostgresProcess,
        upstream: &Upstream,
        patience_ms: u64,
    ) -> Result<Conn, NotReady> {
        let params = self.local_params();
        let mut watch = RecoveryWatch::new(unix_now_ms());
        let mut asked_ms = 0;
        loop {
            match server.wait_ready(&params, LOOK_EVERY).await {
                Ok(conn) => return Ok(conn),
                Err(PgError::Timeout { .. }) => {}
                Err(e) => return Err(NotReady::Failed(e)),
            }
            let titles: Vec<String> = crate::procfs::children(server.pid())
                .into_iter()
                .filter_map(crate::procfs::title)
                .collect();
            let seen = RecoveryTitles::parse(titles.iter().map(String::as_str));
            let now = unix_now_ms();
            let still_ms = watch.look(seen.segment, seen.received, now);
            let at = seen
                .file
                .clone()
                .unwrap_or_else(|| "its first WAL file".into());
            if still_ms < patience_ms {
                self.shared
                    .set_activity(format!("starting PostgreSQL: recovering {at}"));
                continue;
            }
            if u128::from(still_ms) >= START_TIMEOUT.as_millis() {
                return Err(NotReady::Failed(PgError::Timeout {
                    what: format!("recovery to move past {at}"),
                    after: START_TIMEOUT,
                }));
            }
            self.shared.set_activity(format!(
                "starting PostgreSQL: recovery has not moved for {} s, at {at}",
                still_ms / 1_000
            ));
            let Some(file) = RecoveryWatch::stalled_on(
                seen.file.as_deref(),
                seen.waiting,
                still_ms,
                patience_ms,
            ) else {
                continue;
            };
            if now.saturating_sub(asked_ms) < ASK_UPSTREAM_EVERY_MS {
                continue;
            }
            asked_ms = now;
            match self.upstream_has(upstream, file).await {
                Ok(false) => {
                    return Err(NotReady::Stalled(format!(
                        "recovery has not moved for {} s: it needs WAL file {file}, which {} no longer has",
                        still_ms / 1_000,
                        upstream.member
                    )))
                }
                Ok(true) => {}
                Err(why) => self.shared.set_activity(format!(
                    "starting PostgreSQL: recovery has not moved for {} s, at {at}; {} does not answer ({why})",
                    still_ms / 1_000,
                    upstream.member
                )),
            }
        }
    }

    /// Does the upstream's `pg_wal` hold the segment of `file`?
    async fn upstream_has(&self, upstream: &Upstream, file: &str) -> Result<bool, String> {
        let conn = self.probe_upstream(upstream).await?;
        tokio::time::timeout(UPSTREAM_CHECK_TIMEOUT, conn.has_wal_segment(file))
            .await
            .map_err(|_| super::facts::silent_upstream())?
            .map_err(|e| e.to_string())
    }
}
