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

use tracing::{debug, info, warn};

use super::{Lease, LeaseError, LeaseRecord};

/// How long one operation waits for the lock before reporting [`LeaseError::Busy`].
const LOCK_WAIT: Duration = Duration::from_secs(2);
const LOCK_POLL_MAX: Duration = Duration::from_millis(10);

/// A damaged record is taken over only after it was seen damaged for a whole lease duration,
/// with no gap longer than this between two looks (a gap may hide a repair by the holder).
const DAMAGE_LOOK_GAP_MS: u64 = 1_000;

/// A lease stored in a JSON file; any number of processes and tasks may share one path.
///
/// A record that cannot be parsed (a damaged file) is not a permanent outage: the holder that
/// still holds it by its own last renewal writes it again; a contender takes it once it saw the
/// damage for a whole lease duration (the previous holder's validity has then run out).
#[derive(Debug, Clone)]
pub struct FileLease {
    paths: Arc<Paths>,
    memory: Arc<std::sync::Mutex<Memory>>,
}

/// What this process remembers of the lease.
#[derive(Debug, Default)]
struct Memory {
    /// The record this process last wrote as its holder.
    mine: Option<LeaseRecord>,
    /// First and last look at a damaged record, in one unbroken run of looks.
    damaged: Option<(u64, u64)>,
}

/// What to do with a damaged record: the result, and the record to write instead (if any).
type DamageOutcome<R> = Result<(R, Option<LeaseRecord>), LeaseError>;

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
            memory: Arc::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.paths.record
    }

    /// Apply `change` to the stored record under the lock; `change` says whether to write back.
    /// A damaged record goes to `damaged` instead, with this process's memory of the lease.
    async fn update<R, F, D>(&self, change: F, damaged: D) -> Result<R, LeaseError>
    where
        F: FnOnce(&mut LeaseRecord) -> Result<(R, bool), LeaseError> + Send + 'static,
        D: FnOnce(&mut Memory, &LeaseError) -> DamageOutcome<R> + Send + 'static,
        R: Send + 'static,
    {
        let paths = Arc::clone(&self.paths);
        let memory = Arc::clone(&self.memory);
        tokio::task::spawn_blocking(move || {
            let lock = open_lock(&paths.lock)?;
            lock_exclusive(&lock, &paths.lock)?;
            let mut memory = memory.lock().unwrap_or_else(|e| e.into_inner());
            let result = match read_record(&paths.record) {
                Ok(mut record) => {
                    memory.damaged = None;
                    let (result, write) = change(&mut record)?;
                    if write {
                        write_record(&paths, &record)?;
                    }
                    memory.mine = record.holder.is_some().then_some(record);
                    result
                }
                Err(e @ LeaseError::Corrupt { .. }) => {
                    let (result, replace) = damaged(&mut memory, &e)?;
                    if let Some(record) = replace {
                        write_record(&paths, &record)?;
                        memory.damaged = None;
                        memory.mine = record.holder.is_some().then_some(record);
                    }
                    result
                }
                Err(e) => return Err(e),
            };
            // Dropping the file releases the lock, also on the error paths above.
            drop(lock);
            Ok(result)
        })
        .await?
    }
}

impl Memory {
    /// This process holds the lease by its own last write, whatever the file says now.
    fn still_mine(&self, who: &str, now_ms: u64) -> Option<LeaseRecord> {
        self.mine
            .clone()
            .filter(|r| r.is_held_by(who, now_ms))
            .map(|r| LeaseRecord {
                renewed_at_ms: r.renewed_at_ms.max(now_ms),
                ..r
            })
    }

    /// Has the record been seen damaged, without a gap, for at least `duration_ms`?
    fn damaged_for(&mut self, duration_ms: u64, now_ms: u64) -> bool {
        let (first, _) = match self.damaged {
            Some((first, last)) if now_ms.saturating_sub(last) <= DAMAGE_LOOK_GAP_MS => {
                (first, now_ms)
            }
            _ => (now_ms, now_ms),
        };
        self.damaged = Some((first, now_ms));
        now_ms.saturating_sub(first) >= duration_ms
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
        let who2 = who.clone();
        let path2 = path.clone();
        self.update(
            move |record| {
                let before = record.transitions;
                let held = record.acquire(&who, duration_ms, now_ms)?;
                if record.transitions != before {
                    info!(lease = %path.display(), holder = %who, term = record.transitions, duration_ms, "lease acquired");
                } else if !held {
                    debug!(lease = %path.display(), wanted_by = %who, holder = ?record.holder, "lease held by another member");
                }
                Ok((held, held))
            },
            move |memory, damage| {
                if who2.is_empty() {
                    return Err(LeaseError::EmptyHolder);
                }
                if let Some(mine) = memory.still_mine(&who2, now_ms) {
                    warn!(lease = %path2.display(), holder = %who2, %damage, "lease file damaged: written again by its holder");
                    return Ok((true, Some(mine)));
                }
                if !memory.damaged_for(duration_ms, now_ms) {
                    return Ok((false, None));
                }
                let term = memory.mine.as_ref().map_or(0, |r| r.transitions) + 1;
                warn!(lease = %path2.display(), holder = %who2, %damage, "lease file damaged for a whole lease duration: taken over and written again");
                let record = LeaseRecord {
                    holder: Some(who2.clone()),
                    renewed_at_ms: now_ms,
                    duration_ms,
                    transitions: term,
                };
                Ok((true, Some(record)))
            },
        )
        .await
    }

    async fn renew(&self, who: &str, now_ms: u64) -> Result<bool, LeaseError> {
        let who = who.to_string();
        let path = self.paths.record.clone();
        let who2 = who.clone();
        let path2 = path.clone();
        self.update(
            move |record| {
                let renewed = record.renew(&who, now_ms);
                if !renewed {
                    info!(lease = %path.display(), member = %who, holder = ?record.holder, "lease not renewed: not held by this member");
                }
                Ok((renewed, renewed))
            },
            move |memory, damage| match memory.still_mine(&who2, now_ms) {
                Some(mine) => {
                    warn!(lease = %path2.display(), holder = %who2, %damage, "lease file damaged: written again by its holder");
                    Ok((true, Some(mine)))
                }
                None => Ok((false, None)),
            },
        )
        .await
    }

    async fn release(&self, who: &str) -> Result<(), LeaseError> {
        let who = who.to_string();
        let path = self.paths.record.clone();
        let who2 = who.clone();
        self.update(
            move |record| {
                let released = record.release(&who);
                if released {
                    info!(lease = %path.display(), member = %who, "lease released");
                }
                Ok(((), released))
            },
            move |memory, _| {
                let free = memory
                    .still_mine(&who2, super::unix_now_ms())
                    .map(|r| LeaseRecord { holder: None, ..r });
                Ok(((), free))
            },
        )
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
        assert!(!lease.try_acquire("a", 3_000, 0).await.expect("no error"));
        // The damaged record was not replaced by a guess at the first look.
        assert_eq!(std::fs::read(lease.path()).expect("read"), b"not json");

        let nowhere = FileLease::new(dir.path().join("missing-dir").join("lease.json"));
        assert!(matches!(
            nowhere.try_acquire("a", 3_000, 0).await,
            Err(LeaseError::Io { .. })
        ));
    }

    /// Issue 10, defect 3: garbage in the lease file stopped all writes for good.
    #[tokio::test]
    async fn a_damaged_record_is_written_again_by_its_holder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let holder = lease_in(&dir);
        let other = lease_in(&dir);
        assert!(holder
            .try_acquire("a", 3_000, 1_000)
            .await
            .expect("acquire"));
        std::fs::write(holder.path(), b"\x00garbage").expect("write");
        assert!(
            holder.renew("a", 2_000).await.expect("renew"),
            "the holder keeps it"
        );
        let record = holder.read().await.expect("readable again");
        assert_eq!(record.holder.as_deref(), Some("a"));
        assert_eq!(record.renewed_at_ms, 2_000);
        // ...but not once its own validity ran out
        std::fs::write(holder.path(), b"garbage").expect("write");
        assert!(!holder.renew("a", 5_001).await.expect("renew"));
        assert!(!other.try_acquire("b", 3_000, 5_001).await.expect("acquire"));
    }

    #[tokio::test]
    async fn a_damaged_record_is_taken_over_after_a_whole_duration_of_unbroken_looks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let contender = lease_in(&dir);
        std::fs::write(contender.path(), b"garbage").expect("write");
        // looks 500 ms apart: taken at the first look a whole duration after the first
        for now in [10_000u64, 10_500, 11_000, 11_500, 12_000, 12_500] {
            assert!(
                !contender.try_acquire("b", 3_000, now).await.expect("look"),
                "{now}"
            );
        }
        assert!(contender
            .try_acquire("b", 3_000, 13_000)
            .await
            .expect("look"));
        let record = contender.read().await.expect("written again");
        assert_eq!(record.holder.as_deref(), Some("b"));
        // a gap between looks starts the count again: the holder may have repaired it meanwhile
        let dir = tempfile::tempdir().expect("tempdir");
        let contender = lease_in(&dir);
        std::fs::write(contender.path(), b"garbage").expect("write");
        assert!(!contender
            .try_acquire("b", 3_000, 10_000)
            .await
            .expect("look"));
        assert!(!contender
            .try_acquire("b", 3_000, 14_000)
            .await
            .expect("look after a gap"));
        assert!(!contender
            .try_acquire("b", 3_000, 16_500)
            .await
            .expect("look after a gap"));
        assert_eq!(std::fs::read(contender.path()).expect("read"), b"garbage");
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
