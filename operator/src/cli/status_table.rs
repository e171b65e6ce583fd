//! The status table shared by `pgreplica local status` and (later) `kubectl pgrc status`.

use crate::runtime::local::status_file::LocalStatus;

pub fn render(status: &LocalStatus) -> String {
    let phase = status.phase.as_deref().unwrap_or("-");
    // a stopped cluster is not Healthy: say what it was when it stopped
    let phase = if status.running {
        phase.to_string()
    } else {
        format!("Stopped (was {phase})")
    };
    let mut out = format!(
        "cluster {}  phase {}  primary {}  timeline {}  ready {}{}\n",
        status.cluster,
        phase,
        status.current_primary.as_deref().unwrap_or("-"),
        status
            .timeline
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into()),
        status.ready_members.as_deref().unwrap_or("-"),
        if status.running {
            ""
        } else {
            "  (not running)"
        }
    );
    if let Some(preferred) = &status.preferred_primary {
        out.push_str(&format!(
            "preferred primary {preferred}  failback {}\n",
            status.failback.as_deref().unwrap_or("-")
        ));
    }
    out.push_str(&format!(
        "endpoints: rw {}  ro {}\n",
        status.endpoints.rw, status.endpoints.ro
    ));
    if let Some(w) = &status.waiting_for {
        out.push_str(&format!("waiting for: {w}\n"));
    }
    // member names are up to 20 characters: the column fits the longest
    let w = status
        .members
        .iter()
        .map(|m| m.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(10);
    out.push_str(&format!(
        "{:<w$} {:<8} {:<6} {:<12} {:<6} {:<9} {:<15} {:<9} {}\n",
        "MEMBER", "ROLE", "READY", "REPLICATION", "DELAY", "SYNC", "LAG", "TIMELINE", "LAST EVENT"
    ));
    for m in &status.members {
        out.push_str(&format!(
            "{:<w$} {:<8} {:<6} {:<12} {:<6} {:<9} {:<15} {:<9} {}\n",
            m.name,
            m.role,
            if m.ready { "yes" } else { "no" },
            m.replication,
            m.apply_delay.as_deref().unwrap_or("-"),
            m.sync_state.as_deref().unwrap_or("-"),
            lag(m.replay_lag_bytes, m.replay_lag_seconds),
            m.timeline
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            m.last_error
                .as_deref()
                .map(|e| format!("error: {}", one_line(e)))
                .unwrap_or_else(|| one_line(&m.activity)),
        ));
    }
    if let Some(f) = &status.last_failover {
        out.push_str(&format!(
            "last failover: {} → {} ({}) started {} finished {}\n",
            f.from,
            f.to,
            f.reason,
            f.started_at,
            f.finished_at.as_deref().unwrap_or("-")
        ));
    }
    let story: Vec<_> = status
        .events
        .iter()
        .filter(|e| STORY.contains(&e.reason.as_str()))
        .collect();
    if !story.is_empty() {
        out.push_str("recent handovers (all events: `pgreplica local events`):\n");
        for e in story.iter().skip(story.len().saturating_sub(STORY_LINES)) {
            out.push_str(&format!("  {}\n", event_line(e)));
        }
    }
    out
}

/// The events that tell how the primary moved.
const STORY: [&str; 6] = {
    use crate::plan::EventReason as E;
    [
        E::PrimaryLost.as_str(),
        E::FailoverStarted.as_str(),
        E::FailoverBlocked.as_str(),
        E::Promoted.as_str(),
        E::SwitchoverStarted.as_str(),
        E::FailbackStarted.as_str(),
    ]
};
const STORY_LINES: usize = 8;

/// One event as `local events` and the status table print it.
pub fn event_line(e: &crate::runtime::local::status_file::LocalEvent) -> String {
    format!(
        "{}  {:<18} {}{}",
        e.at,
        e.reason,
        e.member
            .as_deref()
            .map(|m| format!("[{m}] "))
            .unwrap_or_default(),
        one_line(&e.message)
    )
}

/// A standby's replay lag: bytes not replayed yet, and how old the last replayed commit is
/// (`3.1 MB 3.0s`; a delayed standby shows its delay in both).
pub fn lag(bytes: Option<u64>, seconds: Option<f64>) -> String {
    match (bytes, seconds) {
        (None, None) => "-".into(),
        (Some(b), None) => human_bytes(b),
        (None, Some(s)) => format!("{s:.1}s"),
        (Some(b), Some(s)) => format!("{} {s:.1}s", human_bytes(b)),
    }
}

/// `0 B`, `812 B`, `12.3 kB`, `3.1 MB`, `2.0 GB` (powers of 1000, as `pg_size_pretty` does not).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A table cell holds one line: the first, with a mark when more were cut.
pub fn one_line(text: &str) -> String {
    let mut lines = text.trim().lines();
    let first = lines.next().unwrap_or("").trim_end().to_string();
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{PgReplicaClusterStatus, Phase};
    use crate::runtime::local::status_file::{Endpoints, LocalMember};

    fn member(name: &str) -> LocalMember {
        LocalMember {
            name: name.into(),
            role: "standby".into(),
            ready: true,
            port: 5432,
            data_dir: "/d".into(),
            replication: "Sync".into(),
            apply_delay: None,
            sync_state: Some("sync".into()),
            replay_lag_seconds: None,
            replay_lag_bytes: None,
            frozen_at: None,
            timeline: Some(1),
            activity: "streaming".into(),
            last_event: None,
            last_error: None,
        }
    }

    /// The delayed member's lag was shown as its delay alone, never in bytes.
    #[test]
    fn lag_in_bytes_and_seconds() {
        let table = [
            (None, None, "-"),
            (Some(0), Some(0.0), "0 B 0.0s"),
            (Some(812), None, "812 B"),
            (Some(12_345), Some(3.04), "12.3 kB 3.0s"),
            (Some(3_100_000), Some(3.0), "3.1 MB 3.0s"),
            (Some(2_000_000_000), None, "2.0 GB"),
            (None, Some(1.25), "1.2s"),
        ];
        for (bytes, seconds, want) in table {
            assert_eq!(lag(bytes, seconds), want, "{bytes:?} {seconds:?}");
        }
    }

    /// After `down` the table said "phase Healthy"; and names longer than 10 characters pushed
    /// their row out of its columns.
    #[test]
    fn a_stopped_cluster_and_long_names() {
        let status = PgReplicaClusterStatus {
            phase: Some(Phase::Healthy),
            ..Default::default()
        };
        let endpoints = Endpoints {
            rw: "127.0.0.1:15432".into(),
            ro: "127.0.0.1:15433".into(),
        };
        let long = "a-board-of-twenty-ch";
        let mut table = LocalStatus::from_status(
            "lab".into(),
            status,
            endpoints,
            vec![member("a"), member(long)],
        );
        assert!(render(&table).contains("phase Healthy "));
        table.running = false;
        let text = render(&table);
        assert!(text.contains("phase Stopped (was Healthy)"), "{text}");
        let rows: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("MEMBER") || l.starts_with("a"))
            .collect();
        let role_at: Vec<Option<usize>> = rows
            .iter()
            .map(|l| l.find("ROLE").or_else(|| l.find("standby")))
            .collect();
        assert_eq!(role_at.len(), 3, "{text}");
        assert!(
            role_at.iter().all(|c| *c == role_at[0]),
            "columns do not line up: {text}"
        );
    }

    /// The newcomer's stage 2: status showed one instant (the loss, promotion and failback were
    /// gone seconds later), no preferred primary or failback mode, and a multi-line cause broke
    /// the table.
    #[test]
    fn the_header_the_story_and_one_line_causes() {
        use crate::runtime::local::status_file::LocalEvent;
        let endpoints = Endpoints {
            rw: "127.0.0.1:15432".into(),
            ro: "127.0.0.1:15433".into(),
        };
        let mut broken = member("a");
        broken.last_error = Some("initdb failed:\ncould not open file: Permission denied".into());
        let mut table = LocalStatus::from_status(
            "lab".into(),
            PgReplicaClusterStatus::default(),
            endpoints,
            vec![broken, member("b")],
        );
        table.preferred_primary = Some("a".into());
        table.failback = Some("Automatic".into());
        let event = |reason: &str, member: &str| LocalEvent {
            at: "2026-12-01T00:00:00Z".into(),
            reason: reason.into(),
            member: Some(member.into()),
            message: format!("{reason} of {member}\nsecond line"),
        };
        table.events = vec![
            event("MemberCreated", "a"),
            event("PrimaryLost", "a"),
            event("FailoverStarted", "b"),
            event("Promoted", "b"),
            event("FailbackStarted", "a"),
            event("Promoted", "a"),
        ];
        let text = render(&table);
        assert!(
            text.contains("preferred primary a  failback Automatic"),
            "{text}"
        );
        assert!(
            text.contains("error: initdb failed: …") && !text.contains("Permission denied"),
            "{text}"
        );
        let story: Vec<&str> = text.lines().filter(|l| l.starts_with("  2026")).collect();
        assert_eq!(story.len(), 5, "{text}");
        assert!(story[0].contains("PrimaryLost") && story[0].contains("[a] PrimaryLost of a …"));
        assert!(!text.contains("MemberCreated"), "{text}");
    }
}
