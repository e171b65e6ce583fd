//! Offline validation: the same rules as the CRD's CEL (see `rules.rs`), plus parse errors with
//! field paths and unknown-field detection, so a bad file is explained before it reaches a cluster.

use std::collections::HashSet;
use std::fmt;

use regex::Regex;

use super::duration::{parse_duration_ms, DurationError};
use super::rules::*;
use super::spec::{Durability, PgReplicaCluster, Replication, MAX_MEMBERS};

/// One problem, located by its field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Everything wrong with a document; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

/// A parsed, valid cluster plus advice that does not block it.
#[derive(Debug)]
pub struct Validated {
    pub cluster: PgReplicaCluster,
    pub warnings: Vec<String>,
}

/// Parse one YAML document and validate it. Unknown fields are errors (they are usually typos
/// that would otherwise be silently dropped by the API server).
pub fn parse_and_validate(yaml: &str) -> Result<Validated, ValidationErrors> {
    let cluster = parse(yaml)?;
    validate(&cluster)?;
    let warnings = warnings(&cluster);
    Ok(Validated { cluster, warnings })
}

fn parse(yaml: &str) -> Result<PgReplicaCluster, ValidationErrors> {
    let value: serde_yaml::Value = serde_yaml::from_str(yaml)
        .map_err(|e| ValidationErrors(vec![FieldError::new("(file)", format!("not YAML: {e}"))]))?;
    check_type_meta(&value)?;
    let mut unknown = Vec::new();
    let deserializer = value.clone();
    let tracked = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        deserializer,
        &mut |path: serde_ignored::Path<'_>| unknown.push(path.to_string()),
    ));
    let cluster: PgReplicaCluster = tracked.map_err(|e| {
        let path = normalize_path(&e.path().to_string());
        ValidationErrors(vec![FieldError::new(path, e.inner().to_string())])
    })?;
    let unknown: Vec<FieldError> = unknown
        .into_iter()
        .filter(|p| {
            let top = p.split('.').next().unwrap_or("");
            !matches!(top, "apiVersion" | "kind" | "metadata" | "status")
        })
        .map(|p| {
            FieldError::new(
                index_path(&p),
                "unknown field: check its spelling against `pgreplica crd` or remove it",
            )
        })
        .collect();
    if !unknown.is_empty() {
        return Err(ValidationErrors(unknown));
    }
    Ok(cluster)
}

fn check_type_meta(value: &serde_yaml::Value) -> Result<(), ValidationErrors> {
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let mut errors = Vec::new();
    if field("apiVersion") != "pgreplica.io/v1alpha1" {
        errors.push(FieldError::new(
            "apiVersion",
            "must be pgreplica.io/v1alpha1",
        ));
    }
    if field("kind") != "PgReplicaCluster" {
        errors.push(FieldError::new("kind", "must be PgReplicaCluster"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

/// serde_ignored writes list positions as `.2`; write them as `[2]` like every other path.
fn index_path(path: &str) -> String {
    let mut out = String::new();
    for segment in path.split('.') {
        if !segment.is_empty() && segment.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

/// serde paths look like `spec.members[2].applyDelay` already; `?` marks an unnamed position.
fn normalize_path(path: &str) -> String {
    if path == "." || path.is_empty() {
        "(document)".to_string()
    } else {
        path.replace('?', "")
    }
}

/// Validate an already-parsed cluster with exactly the rules the CRD's CEL enforces.
pub fn validate(cluster: &PgReplicaCluster) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    let spec = &cluster.spec;
    let dns_label = Regex::new(DNS_LABEL_PATTERN)
        .map_err(|e| ValidationErrors(vec![FieldError::new("(internal)", e.to_string())]))?;

    match cluster.metadata.name.as_deref() {
        None | Some("") => errors.push(FieldError::new(
            "metadata.name",
            "is required: name the cluster, such as lab",
        )),
        Some(name) => {
            if !dns_label.is_match(name) {
                errors.push(FieldError::new("metadata.name", MSG_CLUSTER_NAME));
            }
            if spec
                .members
                .iter()
                .any(|m| name.len() + 1 + m.name.len() > MAX_OBJECT_NAME)
            {
                errors.push(FieldError::new("metadata.name", MSG_NAME_LENGTH));
            }
        }
    }

    if spec.members.is_empty() {
        errors.push(FieldError::new("spec.members", MSG_MEMBERS_REQUIRED));
    }
    if spec.members.len() > MAX_MEMBERS {
        errors.push(FieldError::new("spec.members", MSG_TOO_MANY_MEMBERS));
    }
    let mut seen = HashSet::new();
    let mut duplicate = false;
    for (i, m) in spec.members.iter().enumerate() {
        let at = format!("spec.members[{i}]");
        if m.name.len() > MAX_MEMBER_NAME || !dns_label.is_match(&m.name) {
            errors.push(FieldError::new(format!("{at}.name"), MSG_MEMBER_NAME));
        }
        duplicate |= !seen.insert(m.name.as_str());
        if let Some(delay) = &m.apply_delay {
            match parse_duration_ms(delay) {
                Ok(_) => {}
                Err(DurationError::Syntax(_)) => errors.push(FieldError::new(
                    format!("{at}.applyDelay"),
                    MSG_DELAY_FORMAT,
                )),
                Err(e @ DurationError::TooLong(_)) => {
                    errors.push(FieldError::new(format!("{at}.applyDelay"), e.to_string()))
                }
            }
            if m.replication != Replication::Async {
                errors.push(FieldError::new(format!("{at}.applyDelay"), MSG_DELAY_ASYNC));
            }
        }
    }
    for (i, m) in spec.members.iter().enumerate() {
        if m.replay_paused && m.replication != Replication::Async {
            errors.push(FieldError::new(
                format!("spec.members[{i}].replayPaused"),
                MSG_PAUSE_ASYNC,
            ));
        }
    }
    if duplicate {
        errors.push(FieldError::new("spec.members", MSG_UNIQUE_NAMES));
    }
    if spec.member(&spec.primary).is_some_and(|m| m.replay_paused) {
        errors.push(FieldError::new("spec.primary", MSG_PRIMARY_PAUSED));
    }
    match spec.member(&spec.primary) {
        None => errors.push(FieldError::new("spec.primary", MSG_PRIMARY)),
        Some(m) if !m.is_promotable() || m.apply_delay.is_some() => {
            errors.push(FieldError::new("spec.primary", MSG_PRIMARY_PROMOTABLE))
        }
        Some(_) => {}
    }
    if spec.durability == Durability::Required
        && !spec
            .members
            .iter()
            .any(|m| m.replication == Replication::Sync && m.name != spec.primary)
    {
        errors.push(FieldError::new("spec.durability", MSG_DURABILITY));
    }
    if spec.postgres.image.to_ascii_lowercase().contains("alpine") {
        errors.push(FieldError::new("spec.postgres.image", MSG_ALPINE_IMAGE));
    }
    let app_name = regex::Regex::new(APP_NAME_PATTERN).ok();
    for (field, name) in [
        ("spec.application.user", &spec.application.user),
        ("spec.application.database", &spec.application.database),
    ] {
        let valid = app_name.as_ref().is_some_and(|r| r.is_match(name))
            && name.len() <= 63
            && !name.starts_with("pg_")
            && !RESERVED_APP_NAMES.contains(&name.as_str());
        if !valid {
            errors.push(FieldError::new(field, MSG_APP_NAME));
        }
    }
    for key in spec.postgres.parameters.keys() {
        let lower = key.to_ascii_lowercase();
        if let Some(owned) = OWNED_PARAMETERS.iter().find(|p| p.name == lower) {
            errors.push(FieldError::new("spec.postgres.parameters", owned.message()));
        }
    }

    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

/// Advice about valid specs that will not behave as the user may hope.
pub fn warnings(cluster: &PgReplicaCluster) -> Vec<String> {
    let spec = &cluster.spec;
    let mut out = Vec::new();
    let candidates = spec
        .members
        .iter()
        .filter(|m| {
            m.name != spec.primary && m.replication == Replication::Sync && m.is_promotable()
        })
        .count();
    if spec.members.len() > 1 && candidates == 0 {
        out.push(
            "no promotable Sync standby: if the primary is lost, no member can take over without risking lost commits (failover will be blocked)".to_string(),
        );
    }
    for (i, m) in spec.members.iter().enumerate() {
        if m.promotable == Some(true) && m.apply_delay_ms() > 0 {
            out.push(format!(
                "spec.members[{i}] ({}) is delayed and promotable: promoting it can lose up to {} of commits",
                m.name,
                m.apply_delay.as_deref().unwrap_or("0s")
            ));
        }
    }
    out
}

/// The lab in its shortest form (tests).
#[cfg(test)]
pub const TEST_LAB: &str = r#"
apiVersion: pgreplica.io/v1alpha1
kind: PgReplicaCluster
metadata: {name: lab}
spec:
  primary: a
  members:
    - {name: a, replication: Sync}
    - {name: b, replication: Sync}
    - {name: c, replication: Async, applyDelay: 3s}
"#;

/// A spec from `yaml` with each `(from, to)` replaced once (tests).
#[cfg(test)]
pub fn edited_spec(yaml: &str, edits: &[(&str, &str)]) -> super::PgReplicaClusterSpec {
    let mut yaml = yaml.to_string();
    for (from, to) in edits {
        assert!(yaml.contains(from), "edit {from} does not apply");
        yaml = yaml.replacen(from, to, 1);
    }
    parse_and_validate(&yaml)
        .expect("test spec is valid")
        .cluster
        .spec
}
