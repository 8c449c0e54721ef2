//! The generated CRDs: committed copies under `deploy/helm/arca/crds/` match the types (run with
//! `ARCA_BLESS=1` to rewrite them), the schemas are structural, and real manifests — the
//! seed's and VolSync's documented shapes — deserialize, round-trip and validate against them,
//! while invalid ones are rejected.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use arca_kube::api::{ReplicationDestination, ReplicationSource};
use arca_kube::{crd_file_name, crd_yaml, crds};
use serde_json::{Value, json};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn crd_dir() -> PathBuf {
    crate_dir().join("../../deploy/helm/arca/crds")
}

#[test]
fn committed_crds_match_the_types() {
    let dir = crd_dir();
    let bless = std::env::var_os("ARCA_BLESS").is_some_and(|v| v == "1");
    let mut expected_names = BTreeSet::new();
    let mut stale = Vec::new();
    for crd in crds() {
        let name = crd_file_name(&crd);
        let text = crd_yaml(&crd).unwrap();
        let path = dir.join(&name);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(name.clone());
        }
        expected_names.insert(name);
    }
    let present: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    assert!(
        stale.is_empty(),
        "deploy/helm/arca/crds is out of date for {stale:?}: run `ARCA_BLESS=1 cargo test -p arca-kube --test kube crds` and commit the result"
    );
    assert_eq!(
        present, expected_names,
        "deploy/helm/arca/crds holds files the types do not generate"
    );
}

#[test]
fn committed_crds_parse_as_crds() {
    for crd in crds() {
        let text = std::fs::read_to_string(crd_dir().join(crd_file_name(&crd))).unwrap();
        let parsed: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_norway::from_str(&text).unwrap();
        assert_eq!(parsed, crd);
        assert_eq!(parsed.spec.group, "volsync.backube");
        assert_eq!(parsed.spec.scope, "Namespaced");
        let version = &parsed.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version.subresources.as_ref().unwrap().status.is_some(),
            "status subresource"
        );
    }
}

fn schema_of(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref()
        .unwrap();
    serde_json::to_value(schema).unwrap()
}

fn validator(kind: &str) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .build(&schema_of(kind))
        .unwrap()
}

fn errors(kind: &str, manifest: &Value) -> Vec<String> {
    validator(kind)
        .iter_errors(manifest)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Kubernetes' structural-schema rules, as far as a generated schema can break them: every node
/// says its type (unless it preserves unknown fields or is int-or-string), no references, and
/// no type inside the logical junctors.
fn check_structural(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(object) = node.as_object() else {
        return;
    };
    for forbidden in ["$ref", "definitions", "$defs"] {
        if object.contains_key(forbidden) {
            problems.push(format!("{path}: {forbidden}"));
        }
    }
    let exempt = object.contains_key("x-kubernetes-preserve-unknown-fields")
        || object.contains_key("x-kubernetes-int-or-string");
    if !exempt && !object.contains_key("type") {
        problems.push(format!("{path}: no type"));
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for (i, branch) in object
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if branch.get("type").is_some() && !object.contains_key("x-kubernetes-int-or-string") {
                problems.push(format!("{path}.{junctor}[{i}]: type inside a junctor"));
            }
        }
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            check_structural(child, &format!("{path}.{name}"), problems);
        }
    }
    if let Some(items) = object.get("items") {
        check_structural(items, &format!("{path}[]"), problems);
    }
    if let Some(additional) = object.get("additionalProperties").filter(|a| a.is_object()) {
        check_structural(additional, &format!("{path}{{}}"), problems);
    }
}

#[test]
fn schemas_are_structural() {
    for kind in ["ReplicationSource", "ReplicationDestination"] {
        let mut problems = Vec::new();
        check_structural(&schema_of(kind), kind, &mut problems);
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

fn manifests() -> Vec<(String, Value)> {
    let dir = crate_dir().join("tests/data");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            out.push((
                file_name(&path),
                serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap(),
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 7, "test manifests missing: {out:?}");
    out
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn manifests_deserialize_round_trip_and_validate() {
    for (name, manifest) in manifests() {
        let kind = manifest["kind"].as_str().unwrap().to_owned();
        let round_tripped = match kind.as_str() {
            "ReplicationSource" => serde_json::to_value(
                serde_json::from_value::<ReplicationSource>(manifest.clone()).unwrap(),
            )
            .unwrap(),
            "ReplicationDestination" => serde_json::to_value(
                serde_json::from_value::<ReplicationDestination>(manifest.clone()).unwrap(),
            )
            .unwrap(),
            other => panic!("{name}: unexpected kind {other}"),
        };
        assert_eq!(round_tripped, manifest, "{name} changed in a round trip");
        let problems = errors(&kind, &manifest);
        assert!(problems.is_empty(), "{name}: {problems:#?}");
    }
}

#[test]
fn seed_manifests_mean_what_they_say() {
    let dir = crate_dir().join("tests/data");
    let source: ReplicationSource = serde_norway::from_str(
        &std::fs::read_to_string(dir.join("seed-replicationsource.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(source.spec.source_pvc.as_deref(), Some("example-app-data"));
    assert_eq!(
        source.spec.trigger.as_ref().unwrap().schedule.as_deref(),
        Some("0 2 * * *")
    );
    let restic = source.spec.restic.as_ref().unwrap();
    assert_eq!(restic.repository, "example-app-volsync-secret");
    assert_eq!(
        restic.copy_method,
        Some(arca_kube::api::CopyMethod::Snapshot)
    );
    assert_eq!(
        restic.volume_snapshot_class_name.as_deref(),
        Some("ceph-block")
    );
    assert_eq!(
        arca_kube::api::ResticRetainPolicy::forget_options(restic.retain.as_ref()),
        "--keep-daily 7 --keep-weekly 4 --keep-monthly 12"
    );

    let destination: ReplicationDestination = serde_norway::from_str(
        &std::fs::read_to_string(dir.join("seed-replicationdestination.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        destination.metadata.namespace.as_deref(),
        Some("disaster-recovery")
    );
    let restic = destination.spec.restic.as_ref().unwrap();
    assert_eq!(
        restic.destination_pvc.as_deref(),
        Some("example-app-dr-data")
    );
    assert_eq!(restic.capacity.as_ref().unwrap().0, "50Gi");
    assert_eq!(
        restic.access_modes.as_deref(),
        Some(&["ReadWriteOnce".to_owned()][..])
    );
}

fn seed_source() -> Value {
    serde_norway::from_str(
        &std::fs::read_to_string(crate_dir().join("tests/data/seed-replicationsource.yaml"))
            .unwrap(),
    )
    .unwrap()
}

/// A change that makes a valid manifest invalid.
type Mutation = fn(&mut Value);

#[test]
fn invalid_manifests_are_rejected() {
    let cases: Vec<(&str, Mutation)> = vec![
        ("a schedule that is not cron", |m| {
            m["spec"]["trigger"]["schedule"] = json!("every day")
        }),
        ("a cron with four fields", |m| {
            m["spec"]["trigger"]["schedule"] = json!("0 2 * *")
        }),
        ("an unknown copyMethod", |m| {
            m["spec"]["restic"]["copyMethod"] = json!("Rsync")
        }),
        ("no repository", |m| {
            m["spec"]["restic"]
                .as_object_mut()
                .unwrap()
                .remove("repository");
        }),
        ("empty accessModes", |m| {
            m["spec"]["restic"]["accessModes"] = json!([])
        }),
        ("a retention count that is text", |m| {
            m["spec"]["restic"]["retain"]["daily"] = json!("seven")
        }),
        ("an unknown data class", |m| {
            m["spec"]["arca"] = json!({"dataClass": "gold"})
        }),
        ("a jitter that is not a duration", |m| {
            m["spec"]["arca"] = json!({"jitter": "soon"})
        }),
        ("a hook without a command", |m| {
            m["spec"]["arca"] = json!({"hooks": {"preBackup": {"selector": {}, "command": []}}});
        }),
        ("paused as text", |m| m["spec"]["paused"] = json!("yes")),
    ];
    assert!(errors("ReplicationSource", &seed_source()).is_empty());
    for (what, mutate) in cases {
        let mut manifest = seed_source();
        mutate(&mut manifest);
        assert!(
            !errors("ReplicationSource", &manifest).is_empty(),
            "{what} was accepted"
        );
    }

    let mut destination = json!({
        "apiVersion": "volsync.backube/v1alpha1",
        "kind": "ReplicationDestination",
        "metadata": {"name": "d"},
        "spec": {"restic": {"repository": "r", "restoreAsOf": "yesterday"}}
    });
    assert!(
        !errors("ReplicationDestination", &destination).is_empty(),
        "restoreAsOf must be a date-time"
    );
    destination["spec"]["restic"]["restoreAsOf"] = json!("2024-01-01T00:00:00Z");
    assert!(errors("ReplicationDestination", &destination).is_empty());
    destination["spec"]["restic"]["previous"] = json!(-1);
    assert!(
        !errors("ReplicationDestination", &destination).is_empty(),
        "previous must not be negative"
    );
}

#[test]
fn volsync_schedule_forms_are_accepted() {
    for schedule in [
        "0 2 * * *",
        "*/5 * * * *",
        "0 */6 * * *",
        "0,30 1-5 * * 1",
        "@daily",
        "@hourly",
        "@annually",
    ] {
        let mut manifest = seed_source();
        manifest["spec"]["trigger"]["schedule"] = json!(schedule);
        assert!(
            errors("ReplicationSource", &manifest).is_empty(),
            "{schedule} rejected"
        );
    }
}
