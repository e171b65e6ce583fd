//! What the local runtime keeps under its directory, read directly (much cheaper than running
//! `pgreplica local status`): `status.json`, `state.json`, `lease.json`, `brain.pid`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::Spec;

pub fn status_file(dir: &Path) -> PathBuf {
    dir.join("status.json")
}

pub fn lease_file(dir: &Path) -> PathBuf {
    dir.join("lease.json")
}

pub fn brain_pid_file(dir: &Path) -> PathBuf {
    dir.join("brain.pid")
}

/// `status.json` as the brain last wrote it.
pub fn status(dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(status_file(dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Member → PostgreSQL port, from `state.json` (kept by `up`, stable across restarts).
pub fn postgres_ports(dir: &Path) -> BTreeMap<String, u16> {
    let state: Value = std::fs::read_to_string(dir.join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    state["members"]
        .as_object()
        .map(|ms| {
            ms.iter()
                .filter_map(|(name, p)| {
                    let port = u16::try_from(p["postgres"].as_u64()?).ok()?;
                    Some((name.clone(), port))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The members status lists (those of the spec the brain runs with).
pub fn declared_members(status: &Value) -> Option<std::collections::BTreeSet<String>> {
    let names: std::collections::BTreeSet<String> = status["status"]["members"]
        .as_array()?
        .iter()
        .filter_map(|m| m["name"].as_str().map(String::from))
        .collect();
    (!names.is_empty()).then_some(names)
}

pub fn current_primary(status: &Value) -> Option<String> {
    status["currentPrimary"].as_str().map(String::from)
}

/// `(status, message)` of the condition of `type_`.
pub fn condition(status: &Value, type_: &str) -> Option<(String, String)> {
    status["conditions"].as_array()?.iter().find_map(|c| {
        (c["type"] == type_).then(|| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
    })
}

/// Members with `field == value` in the status' member rows.
pub fn members_where(status: &Value, field: &str, value: &str) -> Vec<String> {
    status["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter(|m| m[field] == value)
                .filter_map(|m| m["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Standbys that are ready (streaming from the primary), by status.
pub fn streaming_standbys(status: &Value) -> Vec<String> {
    status["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter(|m| m["role"] == "standby" && m["ready"] == true)
                .filter_map(|m| m["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The status' events as (reason, member, message).
pub fn events(status: &Value) -> Vec<(String, String, String)> {
    status["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (text("reason"), text("member"), text("message"))
        })
        .collect()
}

pub fn updated_at(status: &Value) -> Option<SystemTime> {
    status["updatedAt"].as_str().and_then(parse_rfc3339)
}

/// Written by a live brain within `within` (a killed brain leaves its last status behind,
/// `running: true` and all).
pub fn fresh(status: &Value, within: Duration) -> bool {
    updated_at(status).is_some_and(|t| {
        SystemTime::now()
            .duration_since(t)
            .map_or(true, |age| age <= within)
    })
}

/// How old a status may be and still count as the brain's current view (it writes every 200 ms,
/// after asking every agent with an 800 ms timeout).
pub const FRESH: Duration = Duration::from_secs(3);

/// Healthy and nothing more to do: phase Healthy, Ready, written just now by a running brain, and
/// with automatic failback the preferred member is the primary again.
pub fn settled(status: &Value, spec: &Spec) -> bool {
    status["running"] == true
        && status["phase"] == "Healthy"
        && condition(status, "Ready").is_some_and(|(s, _)| s == "True")
        && fresh(status, FRESH)
        && (!spec.failback_automatic || current_primary(status).as_deref() == Some(spec.preferred))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (what the brain writes) as a time.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (t.next()??, t.next()??, t.next()??);
    let nanos = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32)
    };
    let secs = days_from_civil(y, mo, da) * 86_400 + h * 3_600 + mi * 60 + s;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_brains_timestamps() {
        let t = parse_rfc3339("2024-03-01T12:34:56.5Z").expect("parses");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).expect("after epoch"),
            Duration::new(1_709_296_496, 500_000_000)
        );
        let t = parse_rfc3339("1970-01-01T00:00:01Z").expect("parses");
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1));
        assert!(parse_rfc3339("2024-03-01 12:34:56").is_none());
    }
}
