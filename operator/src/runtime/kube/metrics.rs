//! Operator metrics in the Prometheus text format: reconciles, errors, failovers, per-member lag.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    pub reconciles: AtomicU64,
    pub reconcile_errors: AtomicU64,
    pub failovers: AtomicU64,
    pub switchovers: AtomicU64,
    /// (namespace/cluster, member) → replay lag in seconds.
    lag: Mutex<BTreeMap<(String, String), f64>>,
    /// namespace/cluster → ready members.
    ready: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    pub fn set_lag(&self, cluster: &str, member: &str, seconds: Option<f64>) {
        let mut lag = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        match seconds {
            Some(s) => {
                lag.insert((cluster.to_string(), member.to_string()), s);
            }
            None => {
                lag.remove(&(cluster.to_string(), member.to_string()));
            }
        }
    }

    pub fn set_ready(&self, cluster: &str, ready: u64) {
        let mut map = self.ready.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(cluster.to_string(), ready);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            &mut out,
            "pgreplica_reconciles_total",
            "Reconciliations run.",
            self.reconciles.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "pgreplica_reconcile_errors_total",
            "Reconciliations that failed.",
            self.reconcile_errors.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "pgreplica_failovers_total",
            "Failovers started.",
            self.failovers.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "pgreplica_switchovers_total",
            "Switchovers and failbacks started.",
            self.switchovers.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP pgreplica_member_replay_lag_seconds Replay lag of a standby.\n# TYPE pgreplica_member_replay_lag_seconds gauge");
        for ((cluster, member), v) in self.lag.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "pgreplica_member_replay_lag_seconds{{cluster=\"{}\",member=\"{}\"}} {v}",
                escape(cluster),
                escape(member)
            );
        }
        let _ = writeln!(
            out,
            "# HELP pgreplica_ready_members Members ready.\n# TYPE pgreplica_ready_members gauge"
        );
        for (cluster, v) in self.ready.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "pgreplica_ready_members{{cluster=\"{}\"}} {v}",
                escape(cluster)
            );
        }
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_labelled_gauges() {
        let m = Metrics::default();
        m.reconciles.fetch_add(3, Ordering::Relaxed);
        m.set_lag("db/lab", "c", Some(3.1));
        m.set_lag("db/lab", "b", Some(0.0));
        m.set_lag("db/lab", "b", None);
        m.set_ready("db/lab", 3);
        let text = m.render();
        assert!(text.contains("pgreplica_reconciles_total 3\n"));
        assert!(text.contains(
            "pgreplica_member_replay_lag_seconds{cluster=\"db/lab\",member=\"c\"} 3.1\n"
        ));
        assert!(!text.contains("member=\"b\""));
        assert!(text.contains("pgreplica_ready_members{cluster=\"db/lab\"} 3\n"));
    }
}
