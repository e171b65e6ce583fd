//! Table tests of every validation rule, run through both the Rust validator and the CRD's CEL
//! rules (evaluated client-side by kube-cel), plus the examples and the CRD drift check.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::crd::{crd_yaml, schema};
use super::rules::*;
use super::validate::parse_and_validate;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Errors from the CRD's CEL rules, formatted `path: message` like the Rust validator's.
fn cel_errors(yaml: &str) -> Vec<String> {
    let object: Value = serde_yaml::from_str(yaml).expect("test YAML parses");
    let schema = schema().expect("schema builds");
    match kube_cel::validate(&schema, &object, None) {
        Ok(()) => vec![],
        Err(errors) => errors
            .iter()
            // kube-cel writes root-level paths with a leading dot; the API server does not.
            .map(|e| format!("{}: {}", e.field_path.trim_start_matches('.'), e.message))
            .collect(),
    }
}

fn rust_errors(yaml: &str) -> Vec<String> {
    match parse_and_validate(yaml) {
        Ok(_) => vec![],
        Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
    }
}

const BASE: &str = r#"
apiVersion: pgreplica.io/v1alpha1
kind: PgReplicaCluster
metadata: {name: lab}
spec:
  primary: a
  durability: Preferred
  postgres: {parameters: {max_connections: "100"}}
  members:
    - {name: a, replication: Sync}
    - {name: b, replication: Sync}
    - {name: c, replication: Async, applyDelay: 3s}
"#;

/// Each case edits BASE textually and names the one error both validators must report
/// (or none).
#[test]
fn every_rule_in_rust_and_cel() {
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        ("base is valid", "", "", None),
        ("delay in ms", "applyDelay: 3s", "applyDelay: 500ms", None),
        (
            "delay in minutes",
            "applyDelay: 3s",
            "applyDelay: 1min",
            None,
        ),
        (
            "required with sync standby",
            "durability: Preferred",
            "durability: Required",
            None,
        ),
        ("dashes in names", "{name: b,", "{name: rpi-1,", None),
        (
            "negative delay",
            "applyDelay: 3s",
            "applyDelay: -3s",
            Some(&format!("spec.members[2].applyDelay: {MSG_DELAY_FORMAT}")),
        ),
        (
            "delay without unit",
            "applyDelay: 3s",
            "applyDelay: \"3\"",
            Some(&format!("spec.members[2].applyDelay: {MSG_DELAY_FORMAT}")),
        ),
        (
            "fractional delay",
            "applyDelay: 3s",
            "applyDelay: 1.5s",
            Some(&format!("spec.members[2].applyDelay: {MSG_DELAY_FORMAT}")),
        ),
        (
            "delay on sync member",
            "{name: b, replication: Sync}",
            "{name: b, replication: Sync, applyDelay: 1s}",
            Some(&format!("spec.members[1].applyDelay: {MSG_DELAY_ASYNC}")),
        ),
        (
            "paused sync member",
            "{name: b, replication: Sync}",
            "{name: b, replication: Sync, replayPaused: true}",
            Some(&format!("spec.members[1].replayPaused: {MSG_PAUSE_ASYNC}")),
        ),
        (
            "paused delayed member",
            "applyDelay: 3s",
            "applyDelay: 3s, replayPaused: true",
            None,
        ),
        (
            "paused primary",
            "    - {name: a, replication: Sync}",
            "    - {name: a, replication: Async, promotable: true, replayPaused: true}",
            Some(&format!("spec.primary: {MSG_PRIMARY_PAUSED}")),
        ),
        (
            "primary not a member",
            "primary: a",
            "primary: x",
            Some(&format!("spec.primary: {MSG_PRIMARY}")),
        ),
        (
            "primary delayed",
            "primary: a",
            "primary: c",
            Some(&format!("spec.primary: {MSG_PRIMARY_PROMOTABLE}")),
        ),
        (
            "primary not promotable",
            "{name: a, replication: Sync}",
            "{name: a, replication: Sync, promotable: false}",
            Some(&format!("spec.primary: {MSG_PRIMARY_PROMOTABLE}")),
        ),
        (
            "async primary made promotable",
            "    - {name: a, replication: Sync}",
            "    - {name: a, replication: Async, promotable: true}",
            None,
        ),
        (
            "duplicate names",
            "{name: c,",
            "{name: b,",
            Some(&format!("spec.members: {MSG_UNIQUE_NAMES}")),
        ),
        (
            "upper-case name",
            "{name: b,",
            "{name: B,",
            Some(&format!("spec.members[1].name: {MSG_MEMBER_NAME}")),
        ),
        (
            "name ends with dash",
            "{name: b,",
            "{name: b-,",
            Some(&format!("spec.members[1].name: {MSG_MEMBER_NAME}")),
        ),
        (
            "underscore in name",
            "{name: b,",
            "{name: b_1,",
            Some(&format!("spec.members[1].name: {MSG_MEMBER_NAME}")),
        ),
        (
            "cluster name with dots",
            "name: lab}",
            "name: lab.example}",
            Some(&format!("metadata.name: {MSG_CLUSTER_NAME}")),
        ),
        (
            "cluster and member too long",
            "name: lab}",
            "name: a-cluster-name-of-sixty-two-characters-xxxxxxxxxxxxxxxxxxxxxxx}",
            Some(&format!("metadata.name: {MSG_NAME_LENGTH}")),
        ),
    ];
    for (what, from, to, want) in cases {
        let yaml = BASE.replacen(from, to, 1);
        assert!(
            from.is_empty() || yaml != BASE,
            "{what}: edit did not apply"
        );
        let rust = rust_errors(&yaml);
        let cel = cel_errors(&yaml);
        match want {
            None => {
                assert!(rust.is_empty(), "{what}: rust rejected: {rust:?}");
                assert!(cel.is_empty(), "{what}: CEL rejected: {cel:?}");
            }
            Some(want) => {
                assert_eq!(rust, vec![want.to_string()], "{what}: rust");
                assert_eq!(cel, vec![want.to_string()], "{what}: CEL");
            }
        }
    }
}

#[test]
fn durability_required_needs_a_sync_standby() {
    let yaml = BASE
        .replace("durability: Preferred", "durability: Required")
        .replace(
            "{name: b, replication: Sync}",
            "{name: b, replication: Async}",
        );
    let want = format!("spec.durability: {MSG_DURABILITY}");
    assert_eq!(rust_errors(&yaml), vec![want.clone()]);
    assert_eq!(cel_errors(&yaml), vec![want]);
}

#[test]
fn alpine_images_are_refused_by_name() {
    for image in [
        "postgres:15-alpine",
        "postgres:16-ALPINE3.20",
        "registry.lan/alpine/postgres:15",
    ] {
        let yaml = BASE.replace(
            "postgres: {parameters",
            &format!("postgres: {{image: \"{image}\", parameters"),
        );
        let want = format!("spec.postgres.image: {MSG_ALPINE_IMAGE}");
        assert_eq!(rust_errors(&yaml), vec![want.clone()], "{image}");
        assert_eq!(cel_errors(&yaml), vec![want], "{image}");
    }
    let debian = BASE.replace(
        "postgres: {parameters",
        "postgres: {image: \"postgres:15-bookworm\", parameters",
    );
    assert!(rust_errors(&debian).is_empty());
    assert!(cel_errors(&debian).is_empty());
}

#[test]
fn every_owned_parameter_is_refused_in_any_case() {
    for owned in OWNED_PARAMETERS {
        for key in [owned.name.to_string(), owned.name.to_ascii_uppercase()] {
            let yaml = BASE.replace("max_connections", &key);
            let want = format!("spec.postgres.parameters: {}", owned.message());
            assert_eq!(rust_errors(&yaml), vec![want.clone()], "{key}");
            assert_eq!(cel_errors(&yaml), vec![want], "{key}");
        }
    }
}

#[test]
fn parse_errors_name_the_field() {
    let yaml = BASE.replace(
        "{name: b, replication: Sync}",
        "{name: b, replication: sync}",
    );
    assert_eq!(
        rust_errors(&yaml),
        vec!["spec.members[1].replication: unknown variant `sync`, expected `Sync` or `Async`"]
    );
    let yaml = BASE.replace("durability: Preferred", "durabilty: Preferred");
    assert_eq!(
        rust_errors(&yaml),
        vec!["spec.durabilty: unknown field: check its spelling against `pgreplica crd` or remove it"]
    );
    let yaml = BASE.replace("kind: PgReplicaCluster", "kind: Cluster");
    assert_eq!(rust_errors(&yaml), vec!["kind: must be PgReplicaCluster"]);
    let yaml = BASE.replace("  members:", "  members: []\n  unused:");
    assert!(rust_errors(&yaml)
        .iter()
        .any(|e| e.starts_with("spec.unused: unknown field")));
    let yaml = "apiVersion: pgreplica.io/v1alpha1\nkind: PgReplicaCluster\nmetadata: {name: x}\nspec: {primary: a, members: []}\n";
    let errors = rust_errors(yaml);
    assert!(
        errors.contains(&format!("spec.members: {MSG_MEMBERS_REQUIRED}")),
        "{errors:?}"
    );
}

#[test]
fn the_examples_are_valid_everywhere() {
    let mut seen = 0;
    for entry in std::fs::read_dir(repo_root().join("examples")).expect("examples/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let yaml = std::fs::read_to_string(&path).expect("example readable");
        assert!(
            rust_errors(&yaml).is_empty(),
            "{}: {:?}",
            path.display(),
            rust_errors(&yaml)
        );
        assert!(
            cel_errors(&yaml).is_empty(),
            "{}: {:?}",
            path.display(),
            cel_errors(&yaml)
        );
        seen += 1;
    }
    assert!(seen >= 3, "expected lab, minimal and a large example");
}

/// Each file in examples/invalid says on its first line the error it must produce; a second
/// line `# checked-by: rust` marks errors only the offline parser can see (unknown fields, enum
/// spelling), which the API server reports with its own schema messages.
#[test]
fn the_invalid_examples_fail_with_their_messages() {
    let mut seen = 0;
    for entry in
        std::fs::read_dir(repo_root().join("examples/invalid")).expect("examples/invalid exists")
    {
        let path = entry.expect("dir entry").path();
        let yaml = std::fs::read_to_string(&path).expect("readable");
        let expect = yaml
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", path.display()));
        let rust = rust_errors(&yaml);
        assert_eq!(rust, vec![expect.to_string()], "{}", path.display());
        if !yaml.contains("# checked-by: rust") {
            assert_eq!(
                cel_errors(&yaml),
                vec![expect.to_string()],
                "{}",
                path.display()
            );
        }
        seen += 1;
    }
    assert!(seen >= 8);
}

#[test]
fn committed_crd_matches_the_code() {
    let path = repo_root().join("crds/pgreplicacluster.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = crd_yaml().expect("CRD renders");
    assert!(
        committed == generated,
        "crds/pgreplicacluster.yaml is stale: run `cargo run -p pgreplica -- crd > crds/pgreplicacluster.yaml`"
    );
}

#[test]
fn crd_shape() {
    let crd = super::crd::crd().expect("CRD builds");
    assert_eq!(crd.spec.names.short_names, Some(vec!["pgrc".to_string()]));
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert!(version
        .subresources
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .is_some());
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.as_str(), c.priority.unwrap_or(0)))
        .collect();
    for want in [
        ("Primary", 0),
        ("Ready", 0),
        ("Phase", 0),
        ("Age", 0),
        ("Topology", 1),
    ] {
        assert!(columns.contains(&want), "{want:?} missing from {columns:?}");
    }
    let schema = schema().expect("schema");
    let conditions = schema
        .pointer("/properties/status/properties/conditions")
        .expect("conditions in schema");
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"][0], "type");
}
