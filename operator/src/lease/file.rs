//! The lease of the local runtime: a JSON file beside a lock file.
//!
//! Every read-modify-write holds an exclusive lock on `<path>.lock` and replaces the record
//! atomically (write `<path>.tmp`, fsync, rename, fsync the directory), so readers never see half a
//! record and take no lock. A missing file is a free lease. The blocking file work runs on tokio's
//! blocking pool, and the lock is polled with a bound rather than waited on: a blocked thread could
//! not be cancelled, and a holder must be able to give up and fence in time.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use super::{Lease, LeaseError, LeaseRecord};

/// How long one operation waits for the lock before reporting [`LeaseError::Busy`].
const LOCK_WAIT: Duration = Duration::from_secs(2);
const LOCK_POLL_MAX: Duration = Duration::from_millis(10);

/// A lease stored in a JSON file; any number of processes and tasks may share one path.
#[derive(Debug, Clone)]
pub struct FileLease {
    paths: Arc<Paths>,
}

#[derive(Debug)]
struct Paths {
    record: PathBuf,
    lock: PathBuf,
    temp: PathBuf,
}

impl FileLease {
    /// A lease at `path`; the lock and temporary files live beside it. Nothing is created until
    /// the first change.
    pub fn new(path: impl Into<PathBuf>) -> FileLease {
        let record = path.into();
        let lock = with_suffix(&record, ".lock");
        let temp = with_suffix(&record, ".tmp");
        FileLease {
            paths: Arc::new(Paths { record, lock, temp }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.paths.record
    }

    /// Apply `change` to the stored record under the lock; `change` says whether to write back.
    async fn update<R, F>(&self, change: F) -> Result<R, LeaseError>
    where
        F: FnOnce(&mut LeaseRecord) -> Result<(R, bool), LeaseError> + Send + 'static,
        R: Send + 'static,
    {
        let paths = Arc::clone(&self.paths);
        tokio::task::spawn_blocking(move || {
            let lock = open_lock(&paths.lock)?;
            lock_exclusive(&lock, &paths.lock)?;
            let mut record = read_record(&paths.record)?;
            let (result, write) = change(&mut record)?;
            if write {
                write_record(&paths, &record)?;
            }
            // Dropping the file releases the lock, also on the error paths above.
            drop(lock);
            Ok(result)
        })
        .await?
    }
}

impl Lease for FileLease {
    async fn read(&self) -> Result<LeaseRecord, LeaseError> {
        let paths = Arc::clone(&self.paths);
        tokio::task::spawn_blocking(move || read_record(&paths.record)).await?
    }

    async fn try_acquire(
        &self,
        who: &str,
        duration_ms: u64,
        now_ms: u64,
    ) -> Result<bool, LeaseError> {
        let who = who.to_string();
        let path = self.paths.record.clone();
        self.update(move |record| {
            let before = record.transitions;
            let held = record.acquire(&who, duration_ms, now_ms)?;
            if record.transitions != before {
                info!(lease = %path.display(), holder = %who, term = record.transitions, duration_ms, "lease acquired");
            } else if !held {
                debug!(lease = %path.display(), wanted_by = %who, holder = ?record.holder, "lease held by another member");
            }
            Ok((held, held))
        })
        .await
    }

    async fn renew(&self, who: &str, now_ms: u64) -> Result<bool, LeaseError> {
        let who = who.to_string();
        let path = self.paths.record.clone();
        self.update(move |record| {
            let renewed = record.renew(&who, now_ms);
            if !renewed {
                info!(lease = %path.display(), member = %who, holder = ?record.holder, "lease not renewed: not held by this member");
            }
            Ok((renewed, renewed))
        })
        .await
    }

    async fn release(&self, who: &str) -> Result<(), LeaseError> {
        let who = who.to_string();
        let path = self.paths.record.clone();
        self.update(move |record| {
            let released = record.release(&who);
            if released {
                info!(lease = %path.display(), member = %who, "lease released");
            }
            Ok(((), released))
        })
        .await
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LeaseError {
    let path = path.to_path_buf();
    move |source| LeaseError::Io {
        action,
        path,
        source,
    }
}

fn open_lock(path: &Path) -> Result<File, LeaseError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_error("open", path))
}

fn lock_exclusive(lock: &File, path: &Path) -> Result<(), LeaseError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) => {
                let waited = started.elapsed();
                if waited >= LOCK_WAIT {
                    return Err(LeaseError::Busy {
                        path: path.to_path_buf(),
                        waited,
                    });
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(LOCK_POLL_MAX);
            }
            Err(TryLockError::Error(source)) => return Err(io_error("lock", path)(source)),
        }
    }
}

fn read_record(path: &Path) -> Result<LeaseRecord, LeaseError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| LeaseError::Corrupt {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(LeaseRecord::default()),
        Err(e) => Err(io_error("read", path)(e)),
    }
}

fn write_record(paths: &Paths, record: &LeaseRecord) -> Result<(), LeaseError> {
    let mut bytes = serde_json::to_vec_pretty(record).map_err(LeaseError::Encode)?;
    bytes.push(b'\n');
    let mut temp = File::create(&paths.temp).map_err(io_error("create", &paths.temp))?;
    temp.write_all(&bytes)
        .and_then(|()| temp.sync_all())
        .map_err(io_error("write", &paths.temp))?;
    drop(temp);
    std::fs::rename(&paths.temp, &paths.record).map_err(io_error("replace", &paths.record))?;
    let dir = match paths.record.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync", dir))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use super::*;

    fn lease_in(dir: &tempfile::TempDir) -> FileLease {
        FileLease::new(dir.path().join("lease.json"))
    }

    #[tokio::test]
    async fn missing_file_is_a_free_lease_that_can_be_acquired() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lease = lease_in(&dir);
        let before = lease.read().await.expect("read");
        assert_eq!(before, LeaseRecord::default());
        assert!(before.free(0));
        assert!(!lease.path().exists(), "reading creates nothing");

        assert!(lease.try_acquire("a", 3_000, 1_000).await.expect("acquire"));
        let after = lease.read().await.expect("read");
        assert!(after.is_held_by("a", 1_000));
        assert_eq!(
            (after.renewed_at_ms, after.duration_ms, after.transitions),
            (1_000, 3_000, 1)
        );
        // Another handle on the same path sees the same record.
        assert_eq!(lease_in(&dir).read().await.expect("read"), after);
    }

    #[tokio::test]
    async fn second_holder_is_refused_while_valid_and_wins_after_expiry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lease = lease_in(&dir);
        assert!(lease.try_acquire("a", 3_000, 1_000).await.expect("acquire"));
        assert!(!lease.try_acquire("b", 3_000, 3_999).await.expect("acquire"));
        assert!(lease.read().await.expect("read").is_held_by("a", 3_999));

        // Time is an input: at renewal + duration the lease has expired.
        assert!(lease.try_acquire("b", 3_000, 4_000).await.expect("acquire"));
        let record = lease.read().await.expect("read");
        assert!(record.is_held_by("b", 4_000));
        assert_eq!(record.transitions, 2);
    }

    #[tokio::test]
    async fn renew_by_holder_extends_and_by_others_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lease = lease_in(&dir);
        assert!(lease.try_acquire("a", 3_000, 1_000).await.expect("acquire"));
        assert!(lease.renew("a", 3_500).await.expect("renew"));
        // Valid until 6_500 now, not 4_000.
        assert!(!lease.try_acquire("b", 3_000, 5_000).await.expect("acquire"));
        assert!(!lease.renew("b", 5_000).await.expect("renew"));
        assert!(lease.read().await.expect("read").is_held_by("a", 6_499));
        // Expired: renewing is refused, the holder has to acquire again.
        assert!(!lease.renew("a", 6_500).await.expect("renew"));
    }

    #[tokio::test]
    async fn release_only_by_the_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lease = lease_in(&dir);
        assert!(lease.try_acquire("a", 3_000, 1_000).await.expect("acquire"));
        lease.release("b").await.expect("release by another");
        assert!(lease.read().await.expect("read").is_held_by("a", 1_500));
        lease.release("a").await.expect("release");
        let record = lease.read().await.expect("read");
        assert!(record.free(1_500));
        // Free at once, long before the old term would have expired.
        assert!(lease.try_acquire("b", 3_000, 1_500).await.expect("acquire"));
    }

    #[tokio::test]
    async fn leaves_only_the_record_and_the_lock_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lease = lease_in(&dir);
        assert!(lease.try_acquire("a", 3_000, 1_000).await.expect("acquire"));
        assert!(lease.renew("a", 2_000).await.expect("renew"));
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["lease.json", "lease.json.lock"]);
    }

    #[tokio::test]
    async fn corrupt_and_unreachable_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lease = lease_in(&dir);
        std::fs::write(lease.path(), b"not json").expect("write");
        assert!(matches!(
            lease.read().await,
            Err(LeaseError::Corrupt { .. })
        ));
        assert!(matches!(
            lease.try_acquire("a", 3_000, 0).await,
            Err(LeaseError::Corrupt { .. })
        ));
        // The corrupt record was not replaced by a guess.
        assert_eq!(std::fs::read(lease.path()).expect("read"), b"not json");

        let nowhere = FileLease::new(dir.path().join("missing-dir").join("lease.json"));
        assert!(matches!(
            nowhere.try_acquire("a", 3_000, 0).await,
            Err(LeaseError::Io { .. })
        ));
    }

    #[tokio::test]
    async fn invalid_arguments_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lease = lease_in(&dir);
        assert!(matches!(
            lease.try_acquire("", 3_000, 0).await,
            Err(LeaseError::EmptyHolder)
        ));
        assert!(matches!(
            lease.try_acquire("a", 0, 0).await,
            Err(LeaseError::ZeroDuration)
        ));
        assert!(!lease.path().exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_acquire_has_exactly_one_winner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let contenders = 16;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..contenders {
            // Each contender has its own handle, as separate processes would.
            let lease = lease_in(&dir);
            tasks.spawn(async move {
                let who = format!("m{i}");
                let won = lease
                    .try_acquire(&who, 60_000, 1_000)
                    .await
                    .expect("acquire");
                (who, won)
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (who, won) = joined.expect("task");
            if won {
                winners.push(who);
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let record = lease_in(&dir).read().await.expect("read");
        assert_eq!(record.holder.as_ref(), winners.first());
        assert_eq!(record.transitions, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn contenders_hold_the_lease_one_at_a_time_and_lose_no_update() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inside = Arc::new(AtomicBool::new(false));
        let wins = Arc::new(AtomicU64::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..6 {
            let lease = lease_in(&dir);
            let inside = Arc::clone(&inside);
            let wins = Arc::clone(&wins);
            tasks.spawn(async move {
                let who = format!("m{i}");
                for _ in 0..15 {
                    if lease
                        .try_acquire(&who, 60_000, 1_000)
                        .await
                        .expect("acquire")
                    {
                        assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                        wins.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        inside.store(false, Ordering::SeqCst);
                        lease.release(&who).await.expect("release");
                    }
                }
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined.expect("task");
        }
        let record = lease_in(&dir).read().await.expect("read");
        // Each win took a free lease, so the term counter saw every one of them.
        assert_eq!(record.transitions, wins.load(Ordering::SeqCst));
        assert!(record.transitions > 0);
        assert_eq!(record.holder, None);
    }
}
