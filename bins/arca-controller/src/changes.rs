//! Change tracking's hands: record what `arca_kube::changes` finds changed in an object's spec
//! (the annotations, a `SpecChanged` Event) and clear the notes once a mover Job carries them.

use std::sync::Arc;

use arca_kube::changes::{
    RECORDED_SPEC_ANNOTATION, UNAUDITED_ANNOTATION, pending_with, spec_changes,
};
use arca_kube::reconcile::EventType;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::reconcile::{Context, NamespacedObject, ReconcileError, publish};

/// Compares the object's spec with what was recorded; when it must, writes the new record (and
/// the change's audit note among the pending ones) as annotations, guarded by the object's
/// resourceVersion, and publishes a `SpecChanged` Event naming the changed fields (never their
/// values). Returns the object as it now is (its new resourceVersion) and the pending audit
/// notes.
pub(crate) async fn track<K>(
    context: &Context,
    object: Arc<K>,
    kind: &str,
) -> Result<(Arc<K>, Option<String>), ReconcileError>
where
    K: NamespacedObject,
{
    let annotations = object.annotations();
    let pending = annotations.get(UNAUDITED_ANNOTATION).cloned();
    if object.meta().deletion_timestamp.is_some() {
        return Ok((object, pending));
    }
    let spec =
        serde_json::to_value(&*object).map_err(|err| {
            ReconcileError::Invalid(format!("the object does not serialise: {err}"))
        })?["spec"]
            .take();
    let generation = object.meta().generation;
    let change = spec_changes(
        &spec,
        generation,
        annotations
            .get(RECORDED_SPEC_ANNOTATION)
            .map(String::as_str),
    );
    let Some(record) = change.record.clone() else {
        return Ok((object, pending));
    };
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let note = change.audit_note(kind, &namespace, &name, generation);
    let pending = match note {
        Some(note) => Some(pending_with(pending.as_deref(), note)),
        None => pending,
    };
    let api: Api<K> = Api::namespaced(context.client.clone(), &namespace);
    let patch = json!({"metadata": {
        "resourceVersion": object.resource_version(),
        "annotations": {RECORDED_SPEC_ANNOTATION: record, UNAUDITED_ANNOTATION: pending},
    }});
    let patched = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    if !change.changed.is_empty() {
        publish(
            context,
            &*object,
            EventType::Normal,
            "SpecChanged",
            "RecordSpecChange",
            format!(
                "spec changed (generation {}): {}",
                generation.unwrap_or_default(),
                change.changed.join(", ")
            ),
        )
        .await;
    }
    Ok((Arc::new(patched), pending))
}

/// Removes the pending audit notes once a mover Job carries them (only this controller writes
/// the annotation, and one object's reconciles never overlap).
pub(crate) async fn clear_pending<K>(context: &Context, object: &K) -> Result<(), ReconcileError>
where
    K: NamespacedObject,
{
    let api: Api<K> = Api::namespaced(
        context.client.clone(),
        &object.namespace().unwrap_or_default(),
    );
    let patch = json!({"metadata": {"annotations": {UNAUDITED_ANNOTATION: null}}});
    api.patch(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await?;
    Ok(())
}
