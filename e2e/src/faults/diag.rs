//! What a failing case prints: the brain's events, `local status`, and the tail of the brain's
//! and every member's log (without colour codes, and without the endpoint's per-connection
//! warnings, which would otherwise fill the brain's tail during any outage).

use std::path::Path;

use serde_json::Value;

use super::files;
use crate::cluster::LocalCluster;

const BRAIN_LINES: usize = 60;
const MEMBER_LINES: usize = 40;

pub fn report(cluster: &LocalCluster) -> String {
    let mut out = String::from("----- events in status.json -----\n");
    let status = files::status(&cluster.dir).unwrap_or(Value::Null);
    for e in status["events"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{} {} [{}] {}\n",
            e["at"].as_str().unwrap_or("?"),
            e["reason"].as_str().unwrap_or("?"),
            e["member"].as_str().unwrap_or("-"),
            e["message"].as_str().unwrap_or("")
        ));
    }
    out.push_str("----- local status -----\n");
    out.push_str(&cluster.run(&["status"]).unwrap_or_else(|e| e));
    let logs = cluster.dir.join("logs");
    out.push_str(&section(&logs.join("brain.log"), "brain", BRAIN_LINES));
    for m in cluster.member_names() {
        out.push_str(&section(&logs.join(format!("{m}.log")), &m, MEMBER_LINES));
    }
    out
}

fn section(path: &Path, name: &str, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("{}: {e}", path.display()));
    let kept: Vec<String> = text
        .lines()
        .map(strip_colours)
        .filter(|l| !l.contains("net::proxy::connection"))
        .collect();
    let from = kept.len().saturating_sub(lines);
    format!(
        "\n----- log of {name} (last {} lines, endpoint connection noise left out) -----\n{}\n",
        kept.len() - from,
        kept[from..].join("\n")
    )
}

/// Drop ANSI escape sequences (`ESC [ ... letter`).
fn strip_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
