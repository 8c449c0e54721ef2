//! Change tracking: which fields of an object's spec changed since the controller last recorded
//! it, for an Event and for the repository's audit trail.
//!
//! The controller keeps what it recorded in the annotation [`RECORDED_SPEC_ANNOTATION`]: the
//! generation and a hash per tracked field (never the values: a spec names Secrets, and the audit
//! note must not carry more than field names). [`spec_changes`] compares the current spec with
//! it. The first sight of an object records it without reporting a change.
//!
//! The audit notes of changes not yet handed to a mover wait in the annotation
//! [`UNAUDITED_ANNOTATION`] ([`pending_with`]); [`attach_to_new_jobs`] puts them into the next
//! mover Job's environment ([`AUDIT_ENV`]), and the agent writes each as a `spec-change` record
//! into the repository's audit trail (the controller itself never opens a repository).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The annotation holding the recorded spec summary.
pub const RECORDED_SPEC_ANNOTATION: &str = "arca.dev/recorded-spec";

/// The annotation holding the audit notes not yet handed to a mover Job (a JSON array).
pub const UNAUDITED_ANNOTATION: &str = "arca.dev/unaudited-spec-changes";

/// The mover's environment variable carrying those notes (a JSON array of strings).
pub const AUDIT_ENV: &str = "ARCA_AUDIT_SPEC_CHANGES";

/// Spec sections whose fields are tracked one by one (`restic.retain`, `trigger.schedule`…);
/// any other top-level field is tracked whole.
const NESTED: [&str; 3] = ["restic", "trigger", "arca"];

#[derive(Serialize, Deserialize, Debug, Default, PartialEq, Eq)]
struct Recorded {
    generation: Option<i64>,
    fields: BTreeMap<String, String>,
}

/// The outcome of [`spec_changes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecChange {
    /// The tracked fields whose value changed, was added or was removed, sorted.
    pub changed: Vec<String>,
    /// The new value of [`RECORDED_SPEC_ANNOTATION`], when it must be written.
    pub record: Option<String>,
}

impl SpecChange {
    /// The audit note for the repository's trail (operation `spec-change`): JSON naming the
    /// object, its generation and the changed fields. `None` when nothing changed.
    pub fn audit_note(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        generation: Option<i64>,
    ) -> Option<String> {
        (!self.changed.is_empty()).then(|| {
            serde_json::json!({
                "kind": kind, "namespace": namespace, "name": name,
                "generation": generation, "changed": self.changed,
            })
            .to_string()
        })
    }
}

/// Compares `spec` (at `generation`) with the `recorded` annotation value (see the
/// [module docs](self)). An unreadable annotation is treated as absent.
pub fn spec_changes(spec: &Value, generation: Option<i64>, recorded: Option<&str>) -> SpecChange {
    let previous: Option<Recorded> = recorded.and_then(|r| serde_json::from_str(r).ok());
    if let Some(previous) = &previous
        && previous.generation == generation
        && generation.is_some()
    {
        return SpecChange {
            changed: Vec::new(),
            record: None,
        };
    }
    let current = Recorded {
        generation,
        fields: field_hashes(spec),
    };
    let changed = match &previous {
        None => Vec::new(),
        Some(previous) => {
            let mut names: Vec<String> = previous
                .fields
                .keys()
                .chain(current.fields.keys())
                .filter(|k| previous.fields.get(*k) != current.fields.get(*k))
                .cloned()
                .collect();
            names.sort();
            names.dedup();
            names
        }
    };
    SpecChange {
        changed,
        record: Some(serde_json::to_string(&current).expect("a map of strings serialises")),
    }
}

/// The pending notes (the value of [`UNAUDITED_ANNOTATION`]) with `note` added; an unreadable
/// value is started afresh.
pub fn pending_with(pending: Option<&str>, note: String) -> String {
    let mut notes: Vec<String> = pending
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or_default();
    notes.push(note);
    serde_json::to_string(&notes).expect("a list of strings serialises")
}

/// Puts `pending` (the value of [`UNAUDITED_ANNOTATION`]) into the environment of every mover
/// Job `decision` creates (one not among `owned`'s Jobs: an existing Job's template cannot
/// change). Returns whether one did, so the controller clears the annotation after carrying the
/// decision out.
pub fn attach_to_new_jobs<S>(
    decision: &mut crate::Decision<S>,
    owned: &crate::reconcile::OwnedObserved,
    pending: &str,
) -> bool {
    let mut attached = false;
    for action in &mut decision.actions {
        let crate::Action::Apply(crate::reconcile::Object::Job(job)) = action else {
            continue;
        };
        let name = job.metadata.name.as_deref().unwrap_or_default();
        if owned.jobs.iter().any(|j| j.name == name) {
            continue;
        }
        let containers = job
            .spec
            .iter_mut()
            .flat_map(|spec| spec.template.spec.iter_mut())
            .flat_map(|pod| pod.containers.iter_mut());
        for container in containers {
            container
                .env
                .get_or_insert_with(Vec::new)
                .push(k8s_openapi::api::core::v1::EnvVar {
                    name: AUDIT_ENV.to_owned(),
                    value: Some(pending.to_owned()),
                    value_from: None,
                });
            attached = true;
        }
    }
    attached
}

fn field_hashes(spec: &Value) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let Some(object) = spec.as_object() else {
        return fields;
    };
    for (key, value) in object {
        match value.as_object() {
            Some(inner) if NESTED.contains(&key.as_str()) => {
                for (sub, value) in inner {
                    fields.insert(format!("{key}.{sub}"), hash(value));
                }
            }
            _ => {
                fields.insert(key.clone(), hash(value));
            }
        }
    }
    fields
}

/// FNV-1a of the value's JSON (serde_json's maps are sorted, so the text is canonical).
fn hash(value: &Value) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in value.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Value {
        json!({"sourcePVC": "data", "paused": false,
            "trigger": {"schedule": "0 2 * * *"},
            "restic": {"repository": "secret", "retain": {"daily": 7}, "copyMethod": "Snapshot"}})
    }

    #[test]
    fn changes_are_reported_by_field() {
        let first = spec_changes(&spec(), Some(1), None);
        assert!(first.changed.is_empty(), "first sight is no change");
        let record = first.record.unwrap();
        assert!(!record.contains("secret"), "values are never recorded");

        let same = spec_changes(&spec(), Some(1), Some(&record));
        assert_eq!(same.record, None);

        let mut changed = spec();
        changed["trigger"]["schedule"] = json!("0 3 * * *");
        changed["restic"]["retain"] = json!({"daily": 14});
        changed["paused"] = json!(true);
        changed["restic"]
            .as_object_mut()
            .unwrap()
            .remove("copyMethod");
        changed["restic"]["cacheCapacity"] = json!("2Gi");
        let change = spec_changes(&changed, Some(2), Some(&record));
        assert_eq!(
            change.changed,
            [
                "paused",
                "restic.cacheCapacity",
                "restic.copyMethod",
                "restic.retain",
                "trigger.schedule"
            ]
        );
        let note = change
            .audit_note("ReplicationSource", "app", "backup", Some(2))
            .unwrap();
        let note: Value = serde_json::from_str(&note).unwrap();
        assert_eq!(note["changed"][4], "trigger.schedule");
        assert_eq!(note["generation"], 2);

        // A new generation with an equal spec (a change reverted) records but reports nothing.
        let reverted = spec_changes(&spec(), Some(3), Some(&record));
        assert!(reverted.changed.is_empty());
        assert!(reverted.record.is_some());
        assert_eq!(reverted.audit_note("k", "n", "m", Some(3)), None);
    }

    #[test]
    fn an_unreadable_record_counts_as_none() {
        let change = spec_changes(&spec(), Some(4), Some("{not json"));
        assert!(change.changed.is_empty());
        assert!(change.record.is_some());
    }

    #[test]
    fn pending_notes_go_to_new_jobs_only() {
        use crate::reconcile::{JobObserved, JobPhase, Object, OwnedObserved};
        let pending = pending_with(None, "{\"changed\":[\"paused\"]}".to_owned());
        let pending = pending_with(Some(&pending), "second".to_owned());
        let notes: Vec<String> = serde_json::from_str(&pending).unwrap();
        assert_eq!(notes, ["{\"changed\":[\"paused\"]}", "second"]);
        assert_eq!(pending_with(Some("{not json"), "n".to_owned()), r#"["n"]"#);

        let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(json!({
            "metadata": {"name": "volsync-src-app"},
            "spec": {"template": {"spec": {"containers": [{"name": "mover"}]}}}}))
        .unwrap();
        let mut decision = crate::Decision {
            actions: vec![crate::Action::Apply(Object::Job(Box::new(job)))],
            status: (),
            events: Vec::new(),
            requeue: crate::reconcile::Requeue::AwaitChange,
            report: None,
            out_of_sync: false,
        };
        let mut running = OwnedObserved::default();
        running.jobs.push(JobObserved {
            name: "volsync-src-app".to_owned(),
            phase: JobPhase::Active,
            parallelism: 1,
            actions: Vec::new(),
            finished_at: None,
            result: None,
            logs: None,
            progress: None,
        });
        assert!(!attach_to_new_jobs(&mut decision, &running, &pending));
        assert!(attach_to_new_jobs(
            &mut decision,
            &OwnedObserved::default(),
            &pending
        ));
        let crate::Action::Apply(Object::Job(job)) = &decision.actions[0] else {
            unreachable!()
        };
        let env = job
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .env
            .clone()
            .unwrap();
        assert_eq!(env[0].name, AUDIT_ENV);
        assert_eq!(env[0].value.as_deref(), Some(pending.as_str()));
    }

    proptest::proptest! {
        /// Changing one tracked field reports exactly that field.
        #[test]
        fn one_field_changed_is_reported_alone(
            field in proptest::sample::select(vec!["sourcePVC", "paused", "trigger.schedule", "restic.repository", "restic.retain"]),
            value in "[a-z]{1,8}",
        ) {
            let before = spec();
            let record = spec_changes(&before, Some(1), None).record.unwrap();
            let mut after = before.clone();
            match field.split_once('.') {
                Some((outer, inner)) => after[outer][inner] = json!(format!("new-{value}")),
                None => after[field] = json!(format!("new-{value}")),
            }
            let change = spec_changes(&after, Some(2), Some(&record));
            proptest::prop_assert_eq!(change.changed, vec![field.to_owned()]);
        }
    }
}
