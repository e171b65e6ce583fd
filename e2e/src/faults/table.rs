//! One row per case, printed and appended to `target/faults-table.md`, so a whole run leaves a
//! table.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const HEADER: &str = "| fault | acked | lost | two-writable time | non-primary acks | outage | recovery | verdict |\n\
                          |---|---:|---:|---:|---:|---:|---:|---|\n";

#[derive(Clone, Debug, Default)]
pub struct Row {
    pub fault: String,
    pub acked: Option<usize>,
    pub lost: Option<usize>,
    pub two_writable: Option<Duration>,
    pub non_primary_acks: Option<usize>,
    pub outage: Option<Duration>,
    pub recovery: Option<Duration>,
    /// `pass`, or `FAIL: ` and every failed requirement.
    pub verdict: String,
}

fn count(n: Option<usize>) -> String {
    n.map_or("-".into(), |n| n.to_string())
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.3} s", d.as_secs_f64()))
}

impl Row {
    pub fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            self.fault,
            count(self.acked),
            count(self.lost),
            secs(self.two_writable),
            count(self.non_primary_acks),
            secs(self.outage),
            secs(self.recovery),
            self.verdict.replace('|', "\\|").replace('\n', " "),
        )
    }
}

/// `target/faults-table.md` under the workspace's target directory.
pub fn path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("faults-table.md")
}

/// Print the row and append it to the table (with a header when the file is new).
pub fn record(row: &Row) {
    let line = row.markdown();
    print!("{HEADER}{line}");
    let path = path();
    let fresh = !path.exists();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| {
            if fresh {
                f.write_all(HEADER.as_bytes())?;
            }
            f.write_all(line.as_bytes())
        });
    if let Err(e) = written {
        println!("could not append to {}: {e}", path.display());
    }
}
