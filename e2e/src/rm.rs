//! `rm -rf` as a person runs it against a live PostgreSQL data directory.

use std::path::Path;
use std::time::{Duration, Instant};

/// Delete `dir` and everything in it. PostgreSQL keeps creating files (WAL, statistics) while the
/// tree is deleted, so one pass can end in "Directory not empty"; like a person, delete again
/// until the directory is gone (for at most 5 s; the agent stops PostgreSQL within about 100 ms).
pub fn rm_rf(dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.kind() == std::io::ErrorKind::DirectoryNotEmpty
                    && Instant::now() < deadline => {}
            Err(e) => return Err(format!("rm -rf {}: {e}", dir.display())),
        }
    }
}
