//! What Linux says about a process (`/proc`): alive or not, its parent, its command line. Used to
//! fence and adopt processes by pid without ever signalling one whose pid was reused.

use std::path::Path;

/// `pid (comm) state ppid ...` — the command may hold spaces and parentheses.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(String::from).collect())
}

/// The process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    stat_fields(pid)
        .and_then(|f| f.first().cloned())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// The parent of `pid`.
pub fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Processes whose parent is `of`.
pub fn children(of: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| parent(*pid) == Some(of))
        .collect()
}

/// One of the process's arguments is exactly `path`.
pub fn mentions(pid: u32, path: &Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let wanted = path.as_os_str().as_encoded_bytes();
    raw.split(|b| *b == 0).any(|arg| arg == wanted)
}

/// The process's title or command line, arguments joined by spaces (PostgreSQL writes its
/// processes' titles there: `postgres: startup recovering …`).
pub fn title(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&raw).replace('\0', " ");
    Some(text.trim().to_string())
}

/// The first line of a pid file, as a pid.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_its_own_parents_child() {
        let me = std::process::id();
        assert!(alive(me));
        let parent = parent(me).expect("a parent");
        assert!(children(parent).contains(&me));
        let exe = std::fs::read_link("/proc/self/exe").expect("exe");
        let args: Vec<String> = std::env::args().collect();
        assert!(mentions(me, Path::new(&args[0])) || !exe.as_os_str().is_empty());
        assert!(!alive(u32::MAX));
    }
}
