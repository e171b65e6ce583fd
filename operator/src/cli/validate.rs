//! `pgreplica validate -f FILE`: explain every problem in a cluster file, offline.

use std::path::PathBuf;

use super::CliError;
use crate::api::validate::parse_and_validate;
use crate::api::{PgReplicaCluster, Replication};

pub fn run(files: &[PathBuf]) -> Result<(), CliError> {
    let mut invalid = 0;
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::Read {
            path: path.clone(),
            source,
        })?;
        match parse_and_validate(&text) {
            Ok(valid) => {
                println!("{}: valid", path.display());
                print!("{}", describe(&valid.cluster));
                for w in &valid.warnings {
                    println!("  warning: {w}");
                }
            }
            Err(errors) => {
                invalid += 1;
                eprintln!("{}: invalid", path.display());
                for e in &errors.0 {
                    eprintln!("  {e}");
                }
            }
        }
    }
    if invalid > 0 {
        return Err(CliError::Invalid(invalid, files.len()));
    }
    Ok(())
}

/// A short human summary of the declared topology.
pub fn describe(cluster: &PgReplicaCluster) -> String {
    let spec = &cluster.spec;
    let mut out = format!(
        "  cluster {} — preferred primary {}, failback {:?}, durability {:?}\n",
        cluster.metadata.name.as_deref().unwrap_or("?"),
        spec.primary,
        spec.failback,
        spec.durability
    );
    out.push_str(&format!(
        "  {:<10} {:<8} {:<11} {:<10} {}\n",
        "MEMBER", "MODE", "APPLY-DELAY", "PROMOTABLE", "NODE"
    ));
    for m in &spec.members {
        let mode = match m.replication {
            Replication::Sync => "Sync",
            Replication::Async => "Async",
        };
        let node = m
            .node_selector
            .as_ref()
            .map(|s| {
                s.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "  {:<10} {:<8} {:<11} {:<10} {}\n",
            m.name,
            mode,
            m.apply_delay.as_deref().unwrap_or("-"),
            if m.is_promotable() { "yes" } else { "no" },
            node
        ));
    }
    out
}
