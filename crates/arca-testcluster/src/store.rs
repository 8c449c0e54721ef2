//! The objects, their resource versions and the event history watches read.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::patch;
use crate::registry::{Registry, ResourceInfo, ResourceKey};
use crate::selector::{FieldSelector, LabelSelector};
use crate::{Error, Result};

/// Events kept for watches to resume from; older ones answer `410 Gone`.
const HISTORY: usize = 10_000;

/// One change, as a watch delivers it.
#[derive(Debug, Clone)]
pub(crate) struct WatchEvent {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub(crate) kind: &'static str,
    /// Group and plural of the object's resource.
    pub(crate) resource: (String, String),
    /// The object's namespace (empty when cluster-scoped).
    pub(crate) namespace: String,
    /// The resource version the change created.
    pub(crate) revision: u64,
    /// The object after the change (before it, for `DELETED`).
    pub(crate) object: Value,
}

/// Where an object is stored: group, plural, namespace, name (one stored
/// version per resource).
type ObjectKey = (String, String, String, String);

#[derive(Debug)]
struct Stored {
    object: Value,
    /// Per field manager, what it applied last (server-side apply), for the
    /// object and for its status subresource.
    applied: BTreeMap<(String, bool), Value>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    objects: BTreeMap<ObjectKey, Stored>,
    revision: u64,
    history: VecDeque<Arc<WatchEvent>>,
    /// Watches may resume from this version or later.
    oldest: u64,
    uids: u64,
}

/// How a write reaches an object: the whole object, or its status
/// subresource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Main,
    Status,
}

/// The patch formats clients send, by their content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Json,
    /// Server-side apply; always forced (see the crate docs).
    Apply,
}

/// What a watch starts with: the events to replay, then the live ones.
pub(crate) struct WatchStart {
    pub(crate) backlog: Vec<Arc<WatchEvent>>,
    pub(crate) live: broadcast::Receiver<Arc<WatchEvent>>,
}

/// The whole state of the test cluster.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    /// The kubelet stand-in's settings once it runs: `pods/exec` runs
    /// commands in its notion of a pod.
    kubelet: std::sync::OnceLock<crate::KubeletConfig>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// An empty cluster with the built-in resources and the namespaces
    /// `default`, `kube-system` and `kube-public`.
    pub fn new() -> Store {
        let (events, _) = broadcast::channel(4096);
        let store = Store {
            inner: Mutex::new(Inner {
                registry: Registry::with_built_ins(),
                objects: BTreeMap::new(),
                revision: 1,
                history: VecDeque::new(),
                oldest: 1,
                uids: 0,
            }),
            events,
            kubelet: std::sync::OnceLock::new(),
        };
        let namespaces = ResourceKey::new("", "v1", "namespaces");
        for name in ["default", "kube-system", "kube-public"] {
            store
                .create(&namespaces, None, json!({"metadata": {"name": name}}))
                .expect("a fresh store takes its namespaces");
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug in a test; the state is
        // still the last committed one, so go on.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the kubelet stand-in's settings (the first one started wins).
    pub(crate) fn set_kubelet(&self, config: crate::KubeletConfig) {
        let _ = self.kubelet.set(config);
    }

    /// The kubelet stand-in's settings, if one runs.
    pub(crate) fn kubelet(&self) -> Option<&crate::KubeletConfig> {
        self.kubelet.get()
    }

    /// Every change from now on (the kubelet stand-in follows them).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        self.events.subscribe()
    }

    /// Waits until the object exists and `done` holds for it, woken by every
    /// change in the store; `None` if `timeout` passes first.
    pub async fn wait_until(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
        name: &str,
        done: impl Fn(&Value) -> bool,
        timeout: std::time::Duration,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribed before the first look, so no change between the look and
        // the wait is missed.
        let mut changes = self.subscribe();
        loop {
            if let Ok(object) = self.get(key, namespace, name)
                && done(&object)
            {
                return Some(object);
            }
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Waits until `done` holds for every object of a resource in
    /// `namespace` (all namespaces with `None`), woken by every change in the
    /// store; `None` if `timeout` passes first. The objects are read in
    /// process, so a test that waits for many objects does not load the HTTP
    /// server its controller uses.
    pub async fn wait_until_all(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
        done: impl Fn(&[Value]) -> bool,
        timeout: std::time::Duration,
    ) -> Option<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.subscribe();
        let everything = (
            LabelSelector::parse("").ok()?,
            FieldSelector::parse("").ok()?,
        );
        loop {
            if let Ok((objects, _)) = self.list(key, namespace, &everything.0, &everything.1)
                && done(&objects)
            {
                return Some(objects);
            }
            match tokio::time::timeout_at(deadline, changes.recv()).await {
                Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                Ok(_) => {
                    // One look for a burst of changes, not one per change:
                    // listing many objects after each would be quadratic.
                    while changes.try_recv().is_ok() {}
                }
            }
        }
    }

    /// The current resource version.
    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    pub(crate) fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.oldest = inner.revision;
    }

    pub(crate) fn discovery_groups(&self) -> Value {
        self.lock().registry.group_list()
    }

    pub(crate) fn discovery_resources(&self, group: &str, version: &str) -> Option<Value> {
        self.lock().registry.resource_list(group, version)
    }

    pub(crate) fn resource(&self, key: &ResourceKey) -> Option<ResourceInfo> {
        self.lock().registry.get(key).cloned()
    }

    /// One object.
    pub fn get(&self, key: &ResourceKey, namespace: Option<&str>, name: &str) -> Result<Value> {
        let inner = self.lock();
        let info = resource_info(&inner, key)?;
        let id = object_key(key, &info, namespace, name)?;
        inner
            .objects
            .get(&id)
            .map(|stored| stored.object.clone())
            .ok_or_else(|| not_found(key, name))
    }

    /// The objects of a resource (in one namespace, or all), filtered, and
    /// the resource version of the list.
    pub(crate) fn list(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Result<(Vec<Value>, u64)> {
        let inner = self.lock();
        resource_info(&inner, key)?;
        let items = inner
            .objects
            .iter()
            .filter(|((group, plural, ns, _), _)| {
                *group == key.group && *plural == key.plural && namespace.is_none_or(|n| n == ns)
            })
            .map(|(_, stored)| &stored.object)
            .filter(|object| {
                labels.matches(&object["metadata"]["labels"]) && fields.matches(object)
            })
            .cloned()
            .collect();
        Ok((items, inner.revision))
    }

    /// Every object of every resource, for a test's final report.
    pub fn dump(&self) -> Vec<Value> {
        self.lock()
            .objects
            .values()
            .map(|s| s.object.clone())
            .collect()
    }

    /// Starts a watch after `from` (`None`: replay the current objects as
    /// `ADDED` first, as a watch from version 0 does).
    pub(crate) fn watch(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
        from: Option<u64>,
    ) -> Result<WatchStart> {
        let inner = self.lock();
        resource_info(&inner, key)?;
        // Subscribed under the lock: nothing committed after the backlog is
        // computed can be missed.
        let live = self.events.subscribe();
        let wanted = |event: &WatchEvent| {
            event.resource.0 == key.group
                && event.resource.1 == key.plural
                && namespace.is_none_or(|n| n == event.namespace)
        };
        let backlog = match from {
            Some(from) if from < inner.oldest => {
                return Err(Error::Expired {
                    requested: from,
                    oldest: inner.oldest,
                });
            }
            Some(from) => inner
                .history
                .iter()
                .filter(|event| event.revision > from && wanted(event))
                .cloned()
                .collect(),
            None => inner
                .objects
                .iter()
                .filter(|((group, plural, ns, _), _)| {
                    *group == key.group
                        && *plural == key.plural
                        && namespace.is_none_or(|n| n == ns)
                })
                .map(|((group, plural, ns, _), stored)| {
                    Arc::new(WatchEvent {
                        kind: "ADDED",
                        resource: (group.clone(), plural.clone()),
                        namespace: ns.clone(),
                        revision: revision_of(&stored.object),
                        object: stored.object.clone(),
                    })
                })
                .collect(),
        };
        Ok(WatchStart { backlog, live })
    }

    /// Creates an object (`generateName` honoured).
    pub fn create(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
        mut body: Value,
    ) -> Result<Value> {
        let mut inner = self.lock();
        let info = resource_info(&inner, key)?;
        if !body.is_object() {
            return Err(Error::BadRequest("the body must be a JSON object".into()));
        }
        let metadata = body["metadata"].as_object().cloned().unwrap_or_default();
        let name = match (
            metadata.get("name").and_then(Value::as_str),
            metadata.get("generateName").and_then(Value::as_str),
        ) {
            (Some(name), _) if !name.is_empty() => name.to_string(),
            (_, Some(prefix)) => {
                inner.uids += 1;
                format!("{prefix}{:05x}", inner.uids & 0xf_ffff)
            }
            _ => return Err(Error::Invalid("metadata.name: Required value".into())),
        };
        if let Some(ns) = namespace {
            if let Some(body_ns) = metadata.get("namespace").and_then(Value::as_str)
                && body_ns != ns
            {
                return Err(Error::BadRequest(format!(
                    "the namespace of the object ({body_ns}) does not match the namespace on the request ({ns})"
                )));
            }
            let namespaces = ResourceKey::new("", "v1", "namespaces");
            if !inner
                .objects
                .contains_key(&object_key(&namespaces, &namespace_info(), None, ns)?)
            {
                return Err(Error::NotFound(format!("namespaces \"{ns}\" not found")));
            }
        }
        let id = object_key(key, &info, namespace, &name)?;
        if inner.objects.contains_key(&id) {
            return Err(Error::AlreadyExists(format!("{} \"{name}\"", key.plural)));
        }
        inner.uids += 1;
        let uid = format!("00000000-0000-4000-8000-{:012x}", inner.uids);
        body["apiVersion"] = json!(key.api_version());
        body["kind"] = json!(info.kind);
        let meta = body["metadata"]
            .as_object_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        let mut meta = Value::Object(meta);
        meta["name"] = json!(name);
        if let Some(ns) = namespace {
            meta["namespace"] = json!(ns);
        }
        meta["uid"] = json!(uid);
        meta["creationTimestamp"] = json!(now());
        meta["generation"] = json!(1);
        if let Some(map) = meta.as_object_mut() {
            map.remove("resourceVersion");
            map.remove("deletionTimestamp");
        }
        body["metadata"] = meta;
        if let Some(schema) = &info.schema {
            patch::default_and_prune(&mut body, schema, true);
        }
        if key.plural == "customresourcedefinitions" {
            inner.registry.register_crd(&body);
            body["status"] = crd_status(&body);
        }
        Ok(commit(
            &mut inner,
            &self.events,
            id,
            body,
            BTreeMap::new(),
            "ADDED",
        ))
    }

    /// Replaces an object (or its status), refusing a stale
    /// `resourceVersion`.
    pub(crate) fn update(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
        name: &str,
        body: Value,
        part: Part,
    ) -> Result<Value> {
        let mut inner = self.lock();
        let info = resource_info(&inner, key)?;
        let id = object_key(key, &info, namespace, name)?;
        let stored = inner.objects.get(&id).ok_or_else(|| not_found(key, name))?;
        if let Some(expected) = body["metadata"]["resourceVersion"].as_str()
            && expected
                != stored.object["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
        {
            return Err(Error::Conflict(format!(
                "{}.{} \"{name}\"",
                key.plural, key.group
            )));
        }
        let current = stored.object.clone();
        let applied = stored.applied.clone();
        let next = merge_write(&info, &current, body, part)?;
        finish_write(
            &mut inner,
            &self.events,
            key,
            &info,
            id,
            current,
            next,
            applied,
        )
    }

    /// Patches an object (or its status); a server-side apply creates it if
    /// it does not exist.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
        name: &str,
        kind: PatchKind,
        body: Value,
        part: Part,
        field_manager: Option<&str>,
    ) -> Result<Value> {
        let mut inner = self.lock();
        let info = resource_info(&inner, key)?;
        let id = object_key(key, &info, namespace, name)?;
        let Some(stored) = inner.objects.get(&id) else {
            if matches!(kind, PatchKind::Apply) && part == Part::Main {
                let manager = field_manager
                    .ok_or_else(|| {
                        Error::BadRequest("fieldManager is required for apply patch".into())
                    })?
                    .to_string();
                drop(inner);
                let created = self.create(key, namespace, body.clone())?;
                let mut inner = self.lock();
                if let Some(stored) = inner.objects.get_mut(&id) {
                    stored.applied.insert((manager, false), body);
                }
                return Ok(created);
            }
            return Err(not_found(key, name));
        };
        let current = stored.object.clone();
        let mut applied = stored.applied.clone();
        let mut patched = current.clone();
        match kind {
            PatchKind::Merge => patch::merge_patch(&mut patched, &body),
            PatchKind::Json => patch::json_patch(&mut patched, &body)?,
            PatchKind::Apply => {
                let manager = field_manager.ok_or_else(|| {
                    Error::BadRequest("fieldManager is required for apply patch".into())
                })?;
                let slot = (manager.to_string(), part == Part::Status);
                patch::apply(&mut patched, applied.get(&slot), &body);
                applied.insert(slot, body.clone());
            }
        }
        if let Some(expected) = body["metadata"]["resourceVersion"].as_str()
            && expected
                != current["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
        {
            return Err(Error::Conflict(format!(
                "{}.{} \"{name}\"",
                key.plural, key.group
            )));
        }
        let next = merge_write(&info, &current, patched, part)?;
        finish_write(
            &mut inner,
            &self.events,
            key,
            &info,
            id,
            current,
            next,
            applied,
        )
    }

    /// Deletes an object: with finalizers it only gets a `deletionTimestamp`;
    /// without, it goes, and so do its dependents (or they are orphaned).
    pub fn delete(
        &self,
        key: &ResourceKey,
        namespace: Option<&str>,
        name: &str,
        orphan: bool,
    ) -> Result<Value> {
        let mut inner = self.lock();
        let info = resource_info(&inner, key)?;
        let id = object_key(key, &info, namespace, name)?;
        let stored = inner.objects.get(&id).ok_or_else(|| not_found(key, name))?;
        let mut object = stored.object.clone();
        let applied = stored.applied.clone();
        let has_finalizers = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if object["metadata"]["deletionTimestamp"].is_null() {
                object["metadata"]["deletionTimestamp"] = json!(now());
                object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                return Ok(commit(
                    &mut inner,
                    &self.events,
                    id,
                    object,
                    applied,
                    "MODIFIED",
                ));
            }
            return Ok(object);
        }
        Ok(remove(&mut inner, &self.events, id, orphan))
    }
}

/// The object a write leaves: for the status subresource only `.status`
/// changes; for the object itself everything but `.status` (where the
/// resource has a status subresource) and the server-owned metadata.
fn merge_write(info: &ResourceInfo, current: &Value, mut next: Value, part: Part) -> Result<Value> {
    if !next.is_object() {
        return Err(Error::BadRequest("the body must be a JSON object".into()));
    }
    match part {
        Part::Status => {
            let mut result = current.clone();
            result["status"] = next["status"].take();
            Ok(result)
        }
        Part::Main => {
            if info.status_subresource {
                next["status"] = current["status"].clone();
                if next["status"].is_null()
                    && let Some(map) = next.as_object_mut()
                {
                    map.remove("status");
                }
            }
            for field in [
                "uid",
                "creationTimestamp",
                "namespace",
                "name",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                next["metadata"][field] = current["metadata"][field].clone();
                if next["metadata"][field].is_null()
                    && let Some(map) = next["metadata"].as_object_mut()
                {
                    map.remove(field);
                }
            }
            next["apiVersion"] = current["apiVersion"].clone();
            next["kind"] = current["kind"].clone();
            Ok(next)
        }
    }
}

/// Validates and commits a write: finalizers cannot be added to an object
/// being deleted, `generation` counts changes outside metadata and status,
/// and an object being deleted whose last finalizer went is removed.
#[allow(clippy::too_many_arguments)]
fn finish_write(
    inner: &mut Inner,
    events: &broadcast::Sender<Arc<WatchEvent>>,
    key: &ResourceKey,
    info: &ResourceInfo,
    id: ObjectKey,
    current: Value,
    mut next: Value,
    applied: BTreeMap<(String, bool), Value>,
) -> Result<Value> {
    if let Some(schema) = &info.schema {
        patch::default_and_prune(&mut next, schema, true);
    }
    let finalizers = |object: &Value| -> Vec<String> {
        object["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(str::to_string))
            .collect()
    };
    let deleting = !current["metadata"]["deletionTimestamp"].is_null();
    if deleting {
        let before = finalizers(&current);
        if finalizers(&next).iter().any(|f| !before.contains(f)) {
            return Err(Error::Invalid(
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted".into(),
            ));
        }
    }
    let spec_of = |object: &Value| {
        let mut object = object.clone();
        if let Some(map) = object.as_object_mut() {
            map.remove("metadata");
            map.remove("status");
        }
        object
    };
    let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
    next["metadata"]["generation"] = json!(if spec_of(&next) == spec_of(&current) {
        generation
    } else {
        generation + 1
    });
    next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    if next == current {
        return Ok(current);
    }
    if key.plural == "customresourcedefinitions" {
        inner.registry.register_crd(&next);
    }
    if deleting && finalizers(&next).is_empty() {
        commit(inner, events, id.clone(), next, applied, "MODIFIED");
        return Ok(remove(inner, events, id, false));
    }
    Ok(commit(inner, events, id, next, applied, "MODIFIED"))
}

/// Stores an object under a new resource version and tells the watches.
fn commit(
    inner: &mut Inner,
    events: &broadcast::Sender<Arc<WatchEvent>>,
    id: ObjectKey,
    mut object: Value,
    applied: BTreeMap<(String, bool), Value>,
    kind: &'static str,
) -> Value {
    inner.revision += 1;
    object["metadata"]["resourceVersion"] = json!(inner.revision.to_string());
    let event = Arc::new(WatchEvent {
        kind,
        resource: (id.0.clone(), id.1.clone()),
        namespace: id.2.clone(),
        revision: inner.revision,
        object: object.clone(),
    });
    inner.objects.insert(
        id,
        Stored {
            object: object.clone(),
            applied,
        },
    );
    record(inner, events, event);
    object
}

fn record(inner: &mut Inner, events: &broadcast::Sender<Arc<WatchEvent>>, event: Arc<WatchEvent>) {
    inner.history.push_back(Arc::clone(&event));
    while inner.history.len() > HISTORY {
        if let Some(dropped) = inner.history.pop_front() {
            inner.oldest = dropped.revision;
        }
    }
    // No receivers is fine: nobody watches.
    let _ = events.send(event);
}

/// Removes an object for good, then collects its dependents.
fn remove(
    inner: &mut Inner,
    events: &broadcast::Sender<Arc<WatchEvent>>,
    id: ObjectKey,
    orphan: bool,
) -> Value {
    let Some(stored) = inner.objects.remove(&id) else {
        return Value::Null;
    };
    inner.revision += 1;
    let mut object = stored.object;
    object["metadata"]["resourceVersion"] = json!(inner.revision.to_string());
    let event = Arc::new(WatchEvent {
        kind: "DELETED",
        resource: (id.0.clone(), id.1.clone()),
        namespace: id.2.clone(),
        revision: inner.revision,
        object: object.clone(),
    });
    record(inner, events, event);
    if id.0 == "apiextensions.k8s.io" && id.1 == "customresourcedefinitions" {
        inner.registry.unregister_crd(&object);
        let group = object["spec"]["group"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let plural = object["spec"]["names"]["plural"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let instances: Vec<ObjectKey> = inner
            .objects
            .keys()
            .filter(|k| k.0 == group && k.1 == plural)
            .cloned()
            .collect();
        for instance in instances {
            remove(inner, events, instance, false);
        }
    }
    collect_dependents(
        inner,
        events,
        object["metadata"]["uid"].as_str().unwrap_or_default(),
        orphan,
    );
    object
}

/// The garbage collector: dependents whose every owner is gone are deleted
/// (through finalizers like any deletion); with `orphan`, the owner
/// reference is removed instead.
fn collect_dependents(
    inner: &mut Inner,
    events: &broadcast::Sender<Arc<WatchEvent>>,
    uid: &str,
    orphan: bool,
) {
    if uid.is_empty() {
        return;
    }
    let owned_by = |object: &Value| {
        object["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|refs| refs.iter().any(|r| r["uid"].as_str() == Some(uid)))
    };
    let dependents: Vec<ObjectKey> = inner
        .objects
        .iter()
        .filter(|(_, stored)| owned_by(&stored.object))
        .map(|(id, _)| id.clone())
        .collect();
    let live_uids: std::collections::HashSet<String> = inner
        .objects
        .values()
        .filter_map(|s| s.object["metadata"]["uid"].as_str().map(str::to_string))
        .collect();
    for id in dependents {
        let Some(stored) = inner.objects.get(&id) else {
            continue;
        };
        let mut object = stored.object.clone();
        let applied = stored.applied.clone();
        let remaining: Vec<Value> = object["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["uid"].as_str() != Some(uid))
            .cloned()
            .collect();
        let other_owner_alive = remaining
            .iter()
            .any(|r| r["uid"].as_str().is_some_and(|u| live_uids.contains(u)));
        if orphan || other_owner_alive {
            object["metadata"]["ownerReferences"] = Value::Array(remaining);
            commit(inner, events, id, object, applied, "MODIFIED");
        } else if object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            if object["metadata"]["deletionTimestamp"].is_null() {
                object["metadata"]["deletionTimestamp"] = json!(now());
                commit(inner, events, id, object, applied, "MODIFIED");
            }
        } else {
            remove(inner, events, id, false);
        }
    }
}

fn crd_status(crd: &Value) -> Value {
    let time = now();
    json!({
        "acceptedNames": crd["spec"]["names"].clone(),
        "storedVersions": crd["spec"]["versions"].as_array().into_iter().flatten()
            .filter(|v| v["storage"] == Value::Bool(true)).map(|v| v["name"].clone()).collect::<Vec<_>>(),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": time},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": time}
        ]
    })
}

fn resource_info(inner: &Inner, key: &ResourceKey) -> Result<ResourceInfo> {
    inner.registry.get(key).cloned().ok_or_else(|| {
        Error::NotFound(format!(
            "the server could not find the requested resource ({})",
            key.plural
        ))
    })
}

fn namespace_info() -> ResourceInfo {
    ResourceInfo {
        kind: "Namespace".into(),
        singular: "namespace".into(),
        namespaced: false,
        status_subresource: true,
        schema: None,
    }
}

fn object_key(
    key: &ResourceKey,
    info: &ResourceInfo,
    namespace: Option<&str>,
    name: &str,
) -> Result<ObjectKey> {
    let namespace = match (info.namespaced, namespace) {
        (true, Some(ns)) => ns.to_string(),
        (true, None) => {
            return Err(Error::BadRequest(format!(
                "{} is namespaced: the request must name a namespace",
                key.plural
            )));
        }
        (false, _) => String::new(),
    };
    Ok((
        key.group.clone(),
        key.plural.clone(),
        namespace,
        name.to_string(),
    ))
}

fn not_found(key: &ResourceKey, name: &str) -> Error {
    let resource = if key.group.is_empty() {
        key.plural.clone()
    } else {
        format!("{}.{}", key.plural, key.group)
    };
    Error::NotFound(format!("{resource} \"{name}\" not found"))
}

fn revision_of(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
