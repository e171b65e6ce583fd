//! The status table shared by `pgreplica local status` and (later) `kubectl pgrc status`.

use crate::runtime::local::status_file::LocalStatus;

pub fn render(status: &LocalStatus) -> String {
    let mut out = format!(
        "cluster {}  phase {}  primary {}  timeline {}  ready {}{}\n",
        status.cluster,
        status.phase.as_deref().unwrap_or("-"),
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
    out.push_str(&format!(
        "{:<10} {:<8} {:<6} {:<12} {:<6} {:<9} {:<9} {:<9} {}\n",
        "MEMBER", "ROLE", "READY", "REPLICATION", "DELAY", "SYNC", "LAG", "TIMELINE", "LAST EVENT"
    ));
    for m in &status.members {
        out.push_str(&format!(
            "{:<10} {:<8} {:<6} {:<12} {:<6} {:<9} {:<9} {:<9} {}\n",
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
