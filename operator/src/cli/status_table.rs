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
        "{:<w$} {:<8} {:<6} {:<12} {:<6} {:<9} {:<9} {:<9} {}\n",
        "MEMBER", "ROLE", "READY", "REPLICATION", "DELAY", "SYNC", "LAG", "TIMELINE", "LAST EVENT"
    ));
    for m in &status.members {
        out.push_str(&format!(
            "{:<w$} {:<8} {:<6} {:<12} {:<6} {:<9} {:<9} {:<9} {}\n",
            m.name,
            m.role,
            if m.ready { "yes" } else { "no" },
            m.replication,
            m.apply_delay.as_deref().unwrap_or("-"),
            m.sync_state.as_deref().unwrap_or("-"),
            m.replay_lag_seconds
                .map(|l| format!("{l:.1}s"))
                .unwrap_or_else(|| "-".into()),
            m.timeline
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            m.last_error
                .as_deref()
                .map(|e| format!("error: {e}"))
                .unwrap_or_else(|| m.activity.clone()),
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
    out
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
            timeline: Some(1),
            activity: "streaming".into(),
            last_event: None,
            last_error: None,
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
}
