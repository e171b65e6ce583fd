//! Where `tracing`'s lines go: stderr, until a command sends them to a log file.
//!
//! A foreground `pgreplica local up` shows a person the cluster's story (progress lines on
//! stdout) and keeps its log where `pgreplica local logs` reads it; only warnings and errors
//! that are not already part of that story reach the terminal too.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The target of the lines a foreground `up` prints itself, as progress lines.
pub const STORY_TARGET: &str = "pgreplica::story";

fn file() -> &'static Mutex<Option<File>> {
    static FILE: OnceLock<Mutex<Option<File>>> = OnceLock::new();
    FILE.get_or_init(|| Mutex::new(None))
}

/// From now on, log lines are appended to `path`; warnings and errors outside the story also go
/// to stderr.
pub fn to_file(path: &Path) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    *file().lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    Ok(())
}

/// Whether a line of this level and target also goes to the terminal once logs go to a file.
pub fn tee_to_terminal(level: &Level, target: &str) -> bool {
    *level <= Level::WARN && target != STORY_TARGET
}

/// The `MakeWriter` of the subscriber: stderr, or the file with the terminal's share.
#[derive(Clone, Copy, Default)]
pub struct Sink;

pub struct SinkWriter {
    terminal: bool,
}

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut guard = file().lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(f) => {
                // a log file that cannot be written loses the line, not the process
                let _ = f.write_all(buf);
                if self.terminal {
                    let _ = std::io::stderr().write_all(buf);
                }
            }
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = SinkWriter;

    fn make_writer(&'a self) -> SinkWriter {
        SinkWriter { terminal: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SinkWriter {
        SinkWriter {
            terminal: tee_to_terminal(meta.level(), meta.target()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_problems_outside_the_story_reach_the_terminal() {
        let table = [
            (Level::ERROR, "pgreplica::brain::tick", true),
            (Level::WARN, "pgreplica::runtime::local::members", true),
            (Level::INFO, "pgreplica::brain::tick", false),
            (Level::DEBUG, "pgreplica::brain::tick", false),
            (Level::WARN, "pgreplica::story", false),
            (Level::ERROR, "pgreplica::story", false),
        ];
        for (level, target, want) in table {
            assert_eq!(tee_to_terminal(&level, target), want, "{level} {target}");
        }
    }
}
