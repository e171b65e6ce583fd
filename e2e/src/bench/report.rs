//! docs/benchmarks.md and docs/benchmarks.json from the samples of every system.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::scenarios::Samples;

#[derive(Serialize, Clone, Debug)]
pub struct SystemResult {
    pub name: String,
    pub version: String,
    pub config: String,
    pub install_bytes: u64,
    pub install_note: String,
    pub runs_ok: usize,
    pub samples: Samples,
}

#[derive(Serialize, Clone, Debug)]
pub struct Report {
    pub command: String,
    pub runs: usize,
    pub started_at: String,
    pub duration_s: f64,
    pub machine: BTreeMap<String, String>,
    pub postgres: String,
    pub systems: Vec<SystemResult>,
    pub medians: BTreeMap<String, BTreeMap<String, f64>>,
}

pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

fn minmax(v: &[f64]) -> (f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

pub fn machine() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    m.insert("cpu".into(), model);
    m.insert(
        "cores".into(),
        std::thread::available_parallelism()
            .map(|n| n.to_string())
            .unwrap_or_default(),
    );
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .nth(1)
        .and_then(|k| k.parse::<u64>().ok())
        .map(|k| format!("{:.1} GiB", k as f64 / 1048576.0))
        .unwrap_or_default();
    m.insert("memory".into(), mem);
    m.insert(
        "kernel".into(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
    );
    m.insert("arch".into(), std::env::consts::ARCH.into());
    m.insert(
        "os".into(),
        std::fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("PRETTY_NAME="))
            .map(|l| {
                l.trim_start_matches("PRETTY_NAME=")
                    .trim_matches('"')
                    .to_string()
            })
            .unwrap_or_default(),
    );
    m
}

/// (metric key, label, unit, lower is better?)
const ROWS: &[(&str, &str, &str, bool)] = &[
    (
        "data-loss.detected_s",
        "loss detected (system status)",
        "s",
        true,
    ),
    (
        "data-loss.promoted_s",
        "new primary promoted (pg_is_in_recovery false)",
        "s",
        true,
    ),
    (
        "data-loss.first_commit_s",
        "first commit acked via write endpoint after promotion",
        "s",
        true,
    ),
    (
        "data-loss.outage_s",
        "write outage (longest gap without acks)",
        "s",
        true,
    ),
    (
        "data-loss.lost_commits",
        "acknowledged commits lost",
        "",
        true,
    ),
    (
        "data-loss.acked_commits",
        "acknowledged commits during scenario",
        "",
        false,
    ),
    (
        "member-loss.detected_s",
        "loss detected (system status)",
        "s",
        true,
    ),
    ("member-loss.promoted_s", "new primary promoted", "s", true),
    (
        "member-loss.first_commit_s",
        "first commit acked after promotion",
        "s",
        true,
    ),
    (
        "member-loss.outage_s",
        "write outage (longest gap)",
        "s",
        true,
    ),
    (
        "member-loss.lost_commits",
        "acknowledged commits lost",
        "",
        true,
    ),
    (
        "failback.outage_s",
        "failback to a after recovery: write outage",
        "s",
        true,
    ),
    (
        "failback.lost_commits",
        "acked commits lost through failover + failback",
        "",
        true,
    ),
    (
        "failback.switchover_outage_s",
        "planned switchover a→b: write outage",
        "s",
        true,
    ),
    (
        "failback.switchover_total_s",
        "planned switchover a→b: request to first commit on b",
        "s",
        true,
    ),
    (
        "failback.switchover_lost_commits",
        "switchover: acknowledged commits lost",
        "",
        true,
    ),
    (
        "recovery.small.db_mib",
        "small: database size",
        "MiB",
        false,
    ),
    (
        "recovery.small.streaming_s",
        "small: failure → destroyed member streaming again",
        "s",
        true,
    ),
    (
        "recovery.small.bare_basebackup_s",
        "small: bare pg_basebackup of the same data",
        "s",
        true,
    ),
    (
        "recovery.small.ratio",
        "small: recovery / bare pg_basebackup",
        "×",
        true,
    ),
    (
        "recovery.large.db_mib",
        "large: database size",
        "MiB",
        false,
    ),
    (
        "recovery.large.streaming_s",
        "large: failure → destroyed member streaming again",
        "s",
        true,
    ),
    (
        "recovery.large.bare_basebackup_s",
        "large: bare pg_basebackup of the same data",
        "s",
        true,
    ),
    (
        "recovery.large.ratio",
        "large: recovery / bare pg_basebackup",
        "×",
        true,
    ),
    (
        "recovery.large.lost_commits",
        "large: acknowledged commits lost",
        "",
        true,
    ),
    (
        "apply-delay.replay_lag_s",
        "c's replay lag under steady writes (declared 3 s)",
        "s",
        false,
    ),
    (
        "apply-delay.error_pct",
        "deviation from the declared delay",
        "%",
        false,
    ),
    (
        "sync-cost.tps_sync",
        "pgbench -N TPS, commits wait for the sync standby",
        "tps",
        false,
    ),
    (
        "sync-cost.tps_local",
        "pgbench -N TPS, same primary, synchronous_commit=local",
        "tps",
        false,
    ),
    ("sync-cost.ratio", "sync / local", "×", false),
    ("setup.up_s", "cluster up (fresh, until ready)", "s", true),
];

const GROUPS: &[(&str, &str)] = &[
    (
        "data-loss",
        "1. Failover on data loss (rm -rf of the primary's PGDATA under 4 writers)",
    ),
    (
        "member-loss",
        "2. Failover on member loss (manager + postgres of the primary SIGKILLed)",
    ),
    (
        "process-crash",
        "2b. Primary's manager + postgres crash, restarted at once by a supervisor",
    ),
    ("failback", "3. Failback and switchover"),
    (
        "recovery",
        "4. Recovery of the destroyed member vs a bare pg_basebackup",
    ),
    ("apply-delay", "5. Apply-delay accuracy"),
    ("sync-cost", "6. Sync commit cost"),
    ("footprint", "7. Footprint (VmRSS, MiB)"),
    ("setup", "Setup"),
];

fn fmt(v: f64, unit: &str) -> String {
    match unit {
        "" | "tps" | "MiB" => format!("{v:.0}"),
        "%" => format!("{v:+.1}"),
        "mib" => format!("{v:.1}"),
        _ => {
            if v.abs() < 10.0 {
                format!("{v:.2}")
            } else {
                format!("{v:.1}")
            }
        }
    }
}

fn cell(s: &SystemResult, key: &str, unit: &str) -> String {
    match s.samples.metrics.get(key) {
        Some(v) if !v.is_empty() => {
            let med = median(v).unwrap_or(f64::NAN);
            let (lo, hi) = minmax(v);
            if v.len() == 1 || (lo - hi).abs() < f64::EPSILON {
                fmt(med, unit)
            } else {
                format!(
                    "**{}** ({}–{})",
                    fmt(med, unit),
                    fmt(lo, unit),
                    fmt(hi, unit)
                )
            }
        }
        _ => match s.samples.notes.get(key) {
            Some(n) => format!(
                "n/a ({})",
                n.lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .replace('|', "/")
            ),
            None => "—".into(),
        },
    }
}

fn ratio(ours: &SystemResult, peer: &SystemResult, key: &str) -> String {
    let (Some(a), Some(b)) = (
        ours.samples.metrics.get(key).and_then(|v| median(v)),
        peer.samples.metrics.get(key).and_then(|v| median(v)),
    ) else {
        return "—".into();
    };
    if a.abs() < 1e-9 {
        return "—".into();
    }
    format!("{:.1}×", b / a)
}

/// Every metric key present, in table order (known rows first, then footprint keys).
fn keys_of(group: &str, systems: &[SystemResult]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (key, label, unit, _) in ROWS {
        if key.starts_with(&format!("{group}.")) {
            out.push((key.to_string(), label.to_string(), unit.to_string()));
        }
    }
    if group == "footprint" {
        let mut extra: Vec<String> = systems
            .iter()
            .flat_map(|s| {
                s.samples
                    .metrics
                    .keys()
                    .chain(s.samples.notes.keys())
                    .cloned()
            })
            .filter(|k| k.starts_with("footprint."))
            .collect();
        extra.sort();
        extra.dedup();
        for k in extra {
            let label = k
                .trim_start_matches("footprint.")
                .replace("idle_rss_mib.", "idle: ")
                .replace("failover_rss_mib.", "peak during data-loss failover: ");
            out.push((k, label, "MiB1".into()));
        }
    }
    out
}

pub fn markdown(r: &Report) -> String {
    let mut md = String::new();
    let ours = r.systems.iter().find(|s| s.name == "pgreplica");
    let peers: Vec<&SystemResult> = r.systems.iter().filter(|s| s.name != "pgreplica").collect();
    let _ = writeln!(md, "# Benchmarks: pgreplica vs Patroni vs pgpool-II\n");
    let _ = writeln!(
        md,
        "Generated by `{}` ({} run(s) per system, started {}, took {:.0} min). Medians in **bold** with \
         (min–max) over the runs; ratios are peer median / pgreplica median (above 1× means pgreplica \
         is faster or smaller). Raw samples: `docs/benchmarks.json`.\n",
        r.command,
        r.runs,
        r.started_at,
        r.duration_s / 60.0
    );
    let _ = writeln!(md, "## Machine and versions\n");
    for (k, v) in &r.machine {
        let _ = writeln!(md, "- {k}: {v}");
    }
    let _ = writeln!(md, "- PostgreSQL: {}", r.postgres);
    let _ = writeln!(
        md,
        "- Network: loopback only; every member, client and manager on this one machine.\n"
    );
    let _ = writeln!(md, "## Systems and their configuration\n");
    let _ = writeln!(
        md,
        "| system | version | configuration | runs completed |\n|---|---|---|---|"
    );
    for s in &r.systems {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {}/{} |",
            s.name, s.version, s.config, s.runs_ok, r.runs
        );
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "{}", SUMMARY_MARK);
    let _ = writeln!(md, "{}", summary(r));
    for (group, title) in GROUPS {
        let keys = keys_of(group, &r.systems);
        if keys.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## {title}\n");
        let mut header = "| metric |".to_string();
        let mut sep = "|---|".to_string();
        for s in &r.systems {
            header.push_str(&format!(" {} |", s.name));
            sep.push_str("---|");
        }
        if ours.is_some() {
            for p in &peers {
                header.push_str(&format!(" {} / pgreplica |", p.name));
                sep.push_str("---|");
            }
        }
        let _ = writeln!(md, "{header}\n{sep}");
        for (key, label, unit) in keys {
            let unit_show = if unit == "MiB1" { "mib" } else { &unit };
            let mut row = if unit.is_empty() || unit == "MiB1" {
                format!("| {label} |")
            } else {
                format!("| {label} ({unit}) |")
            };
            for s in &r.systems {
                row.push_str(&format!(" {} |", cell(s, &key, unit_show)));
            }
            if let Some(o) = ours {
                for p in &peers {
                    row.push_str(&format!(" {} |", ratio(o, p, &key)));
                }
            }
            let _ = writeln!(md, "{row}");
        }
        let _ = writeln!(md);
        if let Some(n) = GROUP_NOTES.iter().find(|(g, _)| g == group) {
            let _ = writeln!(md, "{}\n", n.1);
        }
    }
    let _ = writeln!(
        md,
        "## Install size\n\n| system | bytes | what |\n|---|---|---|"
    );
    for s in &r.systems {
        let _ = writeln!(
            md,
            "| {} | {:.1} MiB | {} |",
            s.name,
            s.install_bytes as f64 / 1048576.0,
            s.install_note
        );
    }
    let _ = writeln!(md);
    let errs: Vec<String> = r
        .systems
        .iter()
        .flat_map(|s| {
            s.samples
                .errors
                .iter()
                .map(move |e| format!("- {}: {}", s.name, e.lines().next().unwrap_or("")))
        })
        .collect();
    if let Ok(notes) = std::fs::read_to_string(crate::cluster::repo_file("e2e/bench/notes.md")) {
        let _ = writeln!(md, "{}\n", notes.trim_end());
    }
    if !errs.is_empty() {
        let _ = writeln!(md, "## Errors during the runs\n\n{}\n", errs.join("\n"));
    }
    md
}

pub const SUMMARY_MARK: &str = "## Summary (medians)\n";

const GROUP_NOTES: &[(&str, &str)] = &[
    ("data-loss", "Detection is read from each system's own status (pgreplica: a `PrimaryLost` event; Patroni: the old leader gone from `/cluster`; pgpool: node 0 `down` in `SHOW pool_nodes`); promotion is when a survivor answers `pg_is_in_recovery() = false`; the outage is the longest stretch in which none of the 4 writers (single-row autocommit INSERTs through the write endpoint, reconnecting after errors) got an acknowledgement. Lost commits: acknowledged rows missing on the new primary."),
    ("member-loss", "The primary's manager (pgreplica agent / Patroni; pgpool has none per member) and its postmaster are SIGKILLed together and kept dead (anything that restarts them, such as pgreplica's local supervisor, is killed again every 20 ms) until a survivor is writable, as a node dying. Afterwards the member is allowed back."),
    ("process-crash", "Same kill, but the member's manager is restarted at once (pgreplica: its own local supervisor, as a kubelet would; Patroni: restarted by the harness right after the kill, as systemd/kubelet would). Whoever becomes writable first counts. pgpool-II: nothing supervises a member, so n/a."),
    ("failback", "Failback: after the destroyed member streams again, the primary moves back to a — automatically for pgreplica (`failback: Automatic`), by `patronictl switchover` for Patroni, not possible without a human for pgpool. Switchover: a planned move a→b under the 4 writers (`pgreplica local switchover --to b`, `patronictl switchover --candidate b`)."),
    ("recovery", "Time from the failure (rm -rf of the primary's PGDATA) until that member shows up as `streaming` in `pg_stat_replication` of the primary, against a bare `pg_basebackup -X stream --checkpoint=fast` of the same data from the same primary right after. Data from `pgbench -i -s N`."),
    ("apply-delay", "Median of `now() - pg_last_xact_replay_timestamp()` on c sampled every 200 ms for 8 s under 2 steady writers; the commit timestamp is the primary's, so this is the full delay a reader of c sees."),
    ("sync-cost", "`pgbench -N -c 4 -j 2 -T 8` on the primary; the second run uses `PGOPTIONS=-c synchronous_commit=local` on the same primary, which removes the wait for the synchronous standby (the WAL still streams). The ratio is the price of synchronous replication itself."),
    ("footprint", "VmRSS from /proc/<pid>/status of the management processes only (PostgreSQL excluded: it is the same for all). pgpool: the sum over its parent and all pre-forked children (shared pages counted in each)."),
];

fn med(s: &SystemResult, key: &str) -> Option<f64> {
    s.samples.metrics.get(key).and_then(|v| median(v))
}

/// The short table the closing note copies.
pub fn summary(r: &Report) -> String {
    let rows: &[(&str, &str, &str)] = &[
        (
            "data-loss.outage_s",
            "data-loss failover: write outage",
            "s",
        ),
        (
            "data-loss.lost_commits",
            "data-loss failover: acked commits lost",
            "",
        ),
        (
            "member-loss.outage_s",
            "member-loss failover: write outage",
            "s",
        ),
        (
            "member-loss.lost_commits",
            "member-loss: acked commits lost",
            "",
        ),
        (
            "failback.outage_s",
            "failback to preferred member: write outage",
            "s",
        ),
        (
            "failback.switchover_outage_s",
            "planned switchover: write outage",
            "s",
        ),
        (
            "recovery.small.streaming_s",
            "recovery of destroyed member (small)",
            "s",
        ),
        (
            "recovery.small.ratio",
            "  … / bare pg_basebackup (small)",
            "×",
        ),
        (
            "recovery.large.streaming_s",
            "recovery of destroyed member (large)",
            "s",
        ),
        (
            "recovery.large.ratio",
            "  … / bare pg_basebackup (large)",
            "×",
        ),
        (
            "apply-delay.replay_lag_s",
            "c's replay lag (declared 3 s)",
            "s",
        ),
        ("sync-cost.ratio", "TPS sync / local", "×"),
    ];
    let mut md = String::new();
    let mut header = "| metric |".to_string();
    let mut sep = "|---|".to_string();
    for s in &r.systems {
        header.push_str(&format!(" {} |", s.name));
        sep.push_str("---|");
    }
    let _ = writeln!(md, "{header}\n{sep}");
    for (key, label, unit) in rows {
        let mut row = if unit.is_empty() {
            format!("| {label} |")
        } else {
            format!("| {label} ({unit}) |")
        };
        for s in &r.systems {
            let v = match med(s, key) {
                Some(v) => fmt(v, unit),
                None if s.samples.notes.contains_key(*key) => "n/a".into(),
                None => "—".into(),
            };
            row.push_str(&format!(" {v} |"));
        }
        let _ = writeln!(md, "{row}");
    }
    // Footprint: manager RSS idle (sum of all management processes) and the largest single one.
    let mut row_total = "| management RSS idle, all processes (MiB) |".to_string();
    let mut row_max = "| largest single manager process idle (MiB) |".to_string();
    let mut row_size = "| install size besides PostgreSQL (MiB) |".to_string();
    for s in &r.systems {
        let idle: Vec<(String, f64)> = s
            .samples
            .metrics
            .iter()
            .filter(|(k, _)| k.starts_with("footprint.idle_rss_mib."))
            .filter_map(|(k, v)| median(v).map(|m| (k.clone(), m)))
            .collect();
        let total: f64 = idle.iter().map(|(_, m)| m).sum();
        let max = idle
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(k, m)| {
                format!(
                    "{m:.1} ({})",
                    k.trim_start_matches("footprint.idle_rss_mib.")
                )
            })
            .unwrap_or_else(|| "—".into());
        row_total.push_str(&format!(" {total:.1} |"));
        row_max.push_str(&format!(" {max} |"));
        row_size.push_str(&format!(" {:.1} |", s.install_bytes as f64 / 1048576.0));
    }
    let _ = writeln!(md, "{row_total}\n{row_max}\n{row_size}");
    md
}

pub fn medians(systems: &[SystemResult]) -> BTreeMap<String, BTreeMap<String, f64>> {
    systems
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                s.samples
                    .metrics
                    .iter()
                    .filter_map(|(k, v)| median(v).map(|m| (k.clone(), m)))
                    .collect(),
            )
        })
        .collect()
}
