//! The controller's hands: fetch what arca-kube's decisions look at, call
//! them, and carry the decision out (actions in order, then the status, the
//! events and the metrics). Every choice is the decision's; this module only
//! talks to the API server.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arca_kube::api::{CustomCaSpec, ReplicationDestination, ReplicationSource, VolumeSnapshot};
use arca_kube::reconcile::{
    EventType, JobObserved, OWNER_LABEL, Object, ObjectKind, OwnedObserved, PvcObserved, Requeue,
    SecretObserved, SyncOutcome, mover_account_name,
};
use arca_kube::{Action, ControllerConfig, Decision, DestinationObserved, SourceObserved};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action as Requeued;
use kube::runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::metrics::{Metrics, ObjectLabels, StatusLabels};
use crate::shards::Shards;
use arca_kube::queue::{Slot, SlotQueue, node_of_claim};
use arca_sched::{Limits, RunningItem, WorkItem};

/// The field manager of everything the controller applies.
const FIELD_MANAGER: &str = "arca-controller";

/// What every reconcile shares.
pub struct Context {
    /// The API server.
    pub client: Client,
    /// What the decisions are configured with (the mover image, ...).
    pub config: ControllerConfig,
    /// What `/metrics` serves.
    pub metrics: Metrics,
    /// Publishes the decisions' Events.
    pub recorder: Recorder,
    /// Consecutive failed mover runs per object (`volsync_repository_connection_failures`).
    pub failures: Mutex<HashMap<String, i64>>,
    /// `--max-concurrent-jobs` and `--max-jobs-per-node`.
    pub limits: Limits,
    /// Backups that are due and wait for a mover slot.
    pub queue: Mutex<SlotQueue>,
    /// The shards this replica reconciles.
    pub shards: Shards,
}

impl Context {
    /// A context with fresh metrics, no failures and an empty queue; Events are published as
    /// `reporter`.
    pub fn new(
        client: Client,
        config: ControllerConfig,
        reporter: Reporter,
        limits: Limits,
        shards: Shards,
    ) -> Context {
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics: Metrics::new(),
            failures: Mutex::new(HashMap::new()),
            limits,
            queue: Mutex::new(SlotQueue::new(SLOT_FORGET)),
            shards,
        }
    }
}

/// How soon a backup waiting for a mover slot asks again.
const SLOT_RETRY: jiff::SignedDuration = jiff::SignedDuration::from_secs(10);
/// A waiting backup that has not asked for this long is dropped from the queue.
const SLOT_FORGET: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// Why a reconcile stopped; the object is retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The API server refused or failed a request (a 409 on a stale write among them).
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The object cannot be reconciled as it is.
    #[error("{0}")]
    Invalid(String),
}

type Result<T, E = ReconcileError> = std::result::Result<T, E>;

/// Reconciles one ReplicationSource: observe, decide, carry out.
pub async fn reconcile_source(
    source: Arc<ReplicationSource>,
    context: Arc<Context>,
) -> Result<Requeued> {
    let namespace = namespace_of(&*source)?;
    let name = source.name_any();
    let key = format!("{namespace}/{name}");
    let now = jiff::Timestamp::now();
    if !context.shards.owns(&namespace, &name, now) {
        lock(&context.queue).remove(&key);
        return Ok(Requeued::await_change());
    }
    let (source, audit_notes) =
        crate::changes::track(&context, source, "ReplicationSource").await?;
    let client = &context.client;
    let restic = source.spec.restic.as_ref();
    let observed = SourceObserved {
        source: (*source).clone(),
        source_pvc: pvc(client, &namespace, source.spec.source_pvc.as_deref()).await?,
        repository_secret: secret(client, &namespace, restic.map(|r| r.repository.as_str()))
            .await?,
        replica_secrets: replica_secrets(client, &namespace, &source).await?,
        custom_ca_found: custom_ca_found(
            client,
            &namespace,
            restic.and_then(|r| r.custom_ca.as_ref()),
        )
        .await?,
        owned: owned(client, &namespace, &*source, true).await?,
    };
    let mut decision = arca_kube::reconcile_source(&observed, now, &context.config);
    if decision.touches_other_objects() && !is_current(client, &namespace, &*source).await? {
        return Ok(stale_decision_retry(&key));
    }
    let mut waiting_for_slot = false;
    if arca_kube::reconcile::starts_sync(&observed, &decision) {
        let item = WorkItem {
            key: key.clone(),
            node: source_node(client, &namespace, source.spec.source_pvc.as_deref()).await?,
            class: data_class_of(&source).into(),
            due: source
                .status
                .as_ref()
                .and_then(|s| s.next_sync_time.as_ref())
                .map_or(now, |t| t.0.min(now)),
        };
        let running = running_movers(client).await?;
        let slot = lock(&context.queue).claim(item, &running, context.limits, now);
        if slot == Slot::Waiting {
            decision = arca_kube::reconcile::hold_for_slot(&observed, decision, now, SLOT_RETRY);
            waiting_for_slot = true;
        }
    } else {
        lock(&context.queue).remove(&key);
    }
    let labels = labels(
        &*source,
        "source",
        restic.map(|r| r.repository.clone()),
        data_class_source(&source),
    );
    let audit_attached = audit_notes.as_deref().is_some_and(|notes| {
        arca_kube::changes::attach_to_new_jobs(&mut decision, &observed.owned, notes)
    });
    let mut hooks = crate::hooks::SourceHooks::new(&context, &observed, now);
    let carried_out = decision.clone();
    let Some(requeued) = carry_out(
        &context,
        &*source,
        &namespace,
        decision,
        |object, status| {
            object.status = Some(status);
        },
        &mut hooks,
    )
    .await?
    else {
        return Ok(stale_decision_retry(&key));
    };
    record_metrics(
        &context,
        &labels,
        &carried_out,
        &observed.owned,
        Some(waiting_for_slot),
    );
    context.metrics.dr.record(&labels, &carried_out.status);
    if audit_attached && !hooks.stopped {
        crate::changes::clear_pending(&context, &*source).await?;
    }
    Ok(requeued)
}

/// A namespaced kind the controller reads, applies and patches as JSON.
pub(crate) trait NamespacedObject:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + Debug
{
}

impl<K> NamespacedObject for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug
{
}

/// Reconciles one ReplicationDestination: observe, decide, carry out.
pub async fn reconcile_destination(
    destination: Arc<ReplicationDestination>,
    context: Arc<Context>,
) -> Result<Requeued> {
    let namespace = namespace_of(&*destination)?;
    let key = format!("{namespace}/{}", destination.name_any());
    if !context
        .shards
        .owns(&namespace, &destination.name_any(), jiff::Timestamp::now())
    {
        return Ok(Requeued::await_change());
    }
    let (destination, audit_notes) =
        crate::changes::track(&context, destination, "ReplicationDestination").await?;
    let client = &context.client;
    let restic = destination.spec.restic.as_ref();
    let observed = DestinationObserved {
        destination: (*destination).clone(),
        destination_pvc: pvc(
            client,
            &namespace,
            restic.and_then(|r| r.destination_pvc.as_deref()),
        )
        .await?,
        repository_secret: secret(client, &namespace, restic.map(|r| r.repository.as_str()))
            .await?,
        custom_ca_found: custom_ca_found(
            client,
            &namespace,
            restic.and_then(|r| r.custom_ca.as_ref()),
        )
        .await?,
        owned: owned(client, &namespace, &*destination, false).await?,
    };
    let mut decision =
        arca_kube::reconcile_destination(&observed, jiff::Timestamp::now(), &context.config);
    if decision.touches_other_objects() && !is_current(client, &namespace, &*destination).await? {
        return Ok(stale_decision_retry(&key));
    }
    let audit_attached = audit_notes.as_deref().is_some_and(|notes| {
        arca_kube::changes::attach_to_new_jobs(&mut decision, &observed.owned, notes)
    });
    let labels = labels(
        &*destination,
        "destination",
        restic.map(|r| r.repository.clone()),
        "important",
    );
    let carried_out = decision.clone();
    let Some(requeued) = carry_out(
        &context,
        &*destination,
        &namespace,
        decision,
        |object, status| {
            object.status = Some(status);
        },
        &mut crate::hooks::NoHooks,
    )
    .await?
    else {
        return Ok(stale_decision_retry(&key));
    };
    record_metrics(&context, &labels, &carried_out, &observed.owned, None);
    if audit_attached {
        crate::changes::clear_pending(&context, &*destination).await?;
    }
    Ok(requeued)
}

/// How soon an object whose decision was taken on a stale copy is reconciled again. The watch
/// delivers the newer version anyway; this is the bound if its event is slow.
const STALE_RETRY: Duration = Duration::from_secs(1);

/// How often a status write refused as stale is tried again on the current version, as long
/// as nobody else changed the status meanwhile (see [`write_status`]).
const STATUS_WRITE_ATTEMPTS: usize = 3;

/// Whether `object` (as the reconcile got it, from the controller's watch cache) is the API
/// server's current version: read fresh, past the cache, and compared by resourceVersion.
///
/// A decision that touches other objects (starts or deletes a Job, ...) is carried out only if
/// this holds. The cache can lag behind the last status write: a reconcile right after a sync
/// finished can still see the object syncing with its Job gone, and would start the sync over
/// (docs/ARCHITECTURE.md, "no Job is created from a stale decision"). Checking before acting is
/// enough because the controller is the only writer of the status and one object's reconciles
/// never overlap: once this GET shows the version decided on, no status write can come between
/// it and the actions, and whatever else changes meanwhile (spec, metadata) is handled by
/// [`write_status`].
async fn is_current<K: NamespacedObject>(
    client: &Client,
    namespace: &str,
    object: &K,
) -> Result<bool> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let fresh = api.get_opt(&object.name_any()).await?;
    Ok(fresh.is_some_and(|fresh| fresh.resource_version() == object.resource_version()))
}

/// The requeue of a reconcile that carried nothing out because its object was stale.
fn stale_decision_retry(key: &str) -> Requeued {
    tracing::debug!("{key}: decided on a stale copy; nothing done, looking again");
    Requeued::requeue(STALE_RETRY)
}

/// How long to wait after a failed reconcile.
pub fn retry_after_error<K>(
    _object: Arc<K>,
    error: &ReconcileError,
    _context: Arc<Context>,
) -> Requeued {
    tracing::warn!("reconcile failed: {error}");
    Requeued::requeue(Duration::from_secs(15))
}

fn namespace_of<K: Resource>(object: &K) -> Result<String> {
    object
        .meta()
        .namespace
        .clone()
        .ok_or_else(|| ReconcileError::Invalid("the object has no namespace".into()))
}

fn data_class_of(source: &ReplicationSource) -> arca_kube::api::DataClass {
    source
        .spec
        .arca
        .as_ref()
        .and_then(|a| a.data_class)
        .unwrap_or_default()
}

fn data_class_source(source: &ReplicationSource) -> &'static str {
    data_class_of(source).as_str()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The node of a source's volume, for the per-node limit (`arca_kube::queue::node_of_claim`).
async fn source_node(
    client: &Client,
    namespace: &str,
    claim: Option<&str>,
) -> Result<Option<String>> {
    let Some(claim) = claim else { return Ok(None) };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let Some(claim) = claims.get_opt(claim).await? else {
        return Ok(None);
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pods = pods.list(&ListParams::default()).await?.items;
    Ok(node_of_claim(&claim, &pods))
}

/// The operator's mover Jobs that have not finished, cluster-wide, with the node their pod
/// runs on.
async fn running_movers(client: &Client) -> Result<Vec<RunningItem>> {
    let jobs: Api<Job> = Api::all(client.clone());
    let selector = format!(
        "{}={}",
        arca_kube::reconcile::CREATED_BY_LABEL,
        arca_kube::reconcile::CREATED_BY_VALUE
    );
    let mut running = Vec::new();
    for job in jobs
        .list(&ListParams::default().labels(&selector))
        .await?
        .items
    {
        let finished = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            });
        if finished {
            continue;
        }
        let namespace = job.namespace().unwrap_or_default();
        let owner = job
            .owner_references()
            .first()
            .map(|o| format!("{}:{}", o.kind, o.name))
            .unwrap_or_else(|| job.name_any());
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let node = pods
            .list(&ListParams::default().labels(&format!("job-name={}", job.name_any())))
            .await?
            .items
            .into_iter()
            .find_map(|p| p.spec.and_then(|s| s.node_name));
        // Sources are queued by `namespace/name`; a running backup has the same key.
        let key = match owner.strip_prefix("ReplicationSource:") {
            Some(name) => format!("{namespace}/{name}"),
            None => format!("{namespace}/{owner}"),
        };
        running.push(RunningItem { key, node });
    }
    Ok(running)
}

fn labels<K: Resource>(
    object: &K,
    role: &'static str,
    repository: Option<String>,
    data_class: &'static str,
) -> ObjectLabels {
    let meta = object.meta();
    let name = meta.name.clone().unwrap_or_default();
    ObjectLabels {
        app: meta
            .labels
            .as_ref()
            .and_then(|l| l.get("app.kubernetes.io/name").cloned())
            .unwrap_or_else(|| name.clone()),
        obj_name: name,
        obj_namespace: meta.namespace.clone().unwrap_or_default(),
        role,
        method: "restic",
        repository: repository.unwrap_or_default(),
        data_class,
    }
}

async fn pvc(client: &Client, namespace: &str, name: Option<&str>) -> Result<Option<PvcObserved>> {
    let Some(name) = name else { return Ok(None) };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    Ok(api.get_opt(name).await?.as_ref().map(PvcObserved::from_pvc))
}

async fn secret(
    client: &Client,
    namespace: &str,
    name: Option<&str>,
) -> Result<Option<SecretObserved>> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .get_opt(name)
        .await?
        .as_ref()
        .map(SecretObserved::from_secret))
}

/// The key names of the replication targets' Secrets that exist.
async fn replica_secrets(
    client: &Client,
    namespace: &str,
    source: &ReplicationSource,
) -> Result<Vec<SecretObserved>> {
    let targets = source
        .spec
        .arca
        .iter()
        .flat_map(|a| a.replication.iter().flatten());
    let mut found = Vec::new();
    for target in targets {
        found.extend(secret(client, namespace, Some(&target.repository)).await?);
    }
    Ok(found)
}

async fn custom_ca_found(
    client: &Client,
    namespace: &str,
    ca: Option<&CustomCaSpec>,
) -> Result<bool> {
    let Some(ca) = ca.filter(|ca| ca.is_configured()) else {
        return Ok(true);
    };
    let key = ca.key.clone().unwrap_or_default();
    if let Some(name) = ca.secret_name.as_deref().filter(|n| !n.is_empty()) {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        return Ok(api
            .get_opt(name)
            .await?
            .is_some_and(|s| SecretObserved::from_secret(&s).keys.contains(&key)));
    }
    let name = ca.config_map_name.clone().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .get_opt(&name)
        .await?
        .is_some_and(|m| m.data.is_some_and(|d| d.contains_key(&key))))
}

/// What the operator made for the object: found by its owner label, the
/// mover's RBAC objects by name.
async fn owned<K: Resource>(
    client: &Client,
    namespace: &str,
    object: &K,
    source: bool,
) -> Result<OwnedObserved> {
    let uid = object.meta().uid.clone().unwrap_or_default();
    let name = object.meta().name.clone().unwrap_or_default();
    let by_owner = ListParams::default().labels(&format!("{OWNER_LABEL}={uid}"));
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut observed_jobs = Vec::new();
    for job in jobs.list(&by_owner).await?.items {
        let job_name = job.name_any();
        let job_pods = pods
            .list(&ListParams::default().labels(&format!("job-name={job_name}")))
            .await?
            .items;
        observed_jobs.push(JobObserved::from_job(&job, &job_pods));
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let snapshots: Api<VolumeSnapshot> = Api::namespaced(client.clone(), namespace);
    let account = mover_account_name(source, &name);
    let present = |found: bool| -> BTreeSet<String> {
        if found {
            BTreeSet::from([account.clone()])
        } else {
            BTreeSet::new()
        }
    };
    let service_accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let roles: Api<Role> = Api::namespaced(client.clone(), namespace);
    let role_bindings: Api<RoleBinding> = Api::namespaced(client.clone(), namespace);
    Ok(OwnedObserved {
        jobs: observed_jobs,
        pvcs: pvcs
            .list(&by_owner)
            .await?
            .items
            .iter()
            .map(PvcObserved::from_pvc)
            .collect(),
        snapshots: match snapshots.list(&by_owner).await {
            Ok(list) => list
                .items
                .iter()
                .map(arca_kube::reconcile::SnapshotObserved::from_snapshot)
                .collect(),
            // No CSI snapshot support in this cluster: nothing of that kind exists.
            Err(kube::Error::Api(status)) if status.is_not_found() => Vec::new(),
            Err(err) => return Err(err.into()),
        },
        service_accounts: present(service_accounts.get_opt(&account).await?.is_some()),
        roles: present(roles.get_opt(&account).await?.is_some()),
        role_bindings: present(role_bindings.get_opt(&account).await?.is_some()),
    })
}

/// Publishes what a carried-out decision means for the metrics. Only after it was carried out:
/// a decision whose status write was refused (taken on a stale copy) is decided again, so its
/// figures would be stale and its finished sync counted twice.
fn record_metrics<S>(
    context: &Context,
    labels: &ObjectLabels,
    decision: &Decision<S>,
    owned: &OwnedObserved,
    waiting_for_slot: Option<bool>,
) {
    let source = waiting_for_slot.is_some();
    let metrics = &context.metrics;
    metrics
        .out_of_sync
        .get_or_create(labels)
        .set(i64::from(decision.out_of_sync));
    let starts_job = decision
        .actions
        .iter()
        .any(|a| matches!(a, Action::Apply(Object::Job(job)) if !owned.jobs.iter().any(|j| Some(&j.name) == job.metadata.name.as_ref()) && !is_dr_job(job)));
    if source && starts_job {
        metrics.backup_jobs.get_or_create(labels).inc();
    }
    if source {
        let running = owned
            .jobs
            .iter()
            .any(|j| j.phase == arca_kube::reconcile::JobPhase::Active);
        metrics.pending_backups.get_or_create(labels).set(i64::from(
            waiting_for_slot == Some(true) || (decision.out_of_sync && !running),
        ));
    }
    let Some(report) = decision.report else {
        return;
    };
    let seconds = report.duration.as_secs_f64().max(0.0);
    metrics.sync_duration.get_or_create(labels).observe(seconds);
    if report.missed_interval {
        metrics.missed_intervals.get_or_create(labels).inc();
    }
    let key = format!(
        "{}/{}/{}",
        labels.role, labels.obj_namespace, labels.obj_name
    );
    let mut failures = context.failures.lock().unwrap_or_else(|p| p.into_inner());
    let count = failures.entry(key).or_default();
    let succeeded = report.outcome == SyncOutcome::Succeeded;
    *count = if succeeded { 0 } else { *count + 1 };
    metrics
        .connection_failures
        .get_or_create(labels)
        .set(*count);
    if source {
        let status = if succeeded { "success" } else { "failed" };
        let with_status = StatusLabels {
            obj_name: labels.obj_name.clone(),
            obj_namespace: labels.obj_namespace.clone(),
            role: labels.role,
            method: labels.method,
            app: labels.app.clone(),
            repository: labels.repository.clone(),
            data_class: labels.data_class,
            status,
        };
        metrics
            .backup_jobs_completed
            .get_or_create(&with_status)
            .inc();
        metrics
            .backup_duration
            .get_or_create(labels)
            .observe(seconds);
        if succeeded {
            let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
            metrics.last_backup.get_or_create(labels).set(now);
        }
    }
}

/// Whether a Job is a DR Job (drill, scheduled replication, report: not a backup, for the
/// backup counters).
fn is_dr_job(job: &Job) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.args.as_ref())
        .is_some_and(|args| arca_kube::reconcile::is_dr_job(args))
}

/// Carries a decision out: actions in order, then the status (replaced
/// through the status subresource with the object's resourceVersion, so a
/// stale decision is refused; see [`write_status`]), events, and the requeue.
/// `None` when the status write found the decision stale: nothing more is done
/// (no events), and the caller decides again. A decision that touches other
/// objects must have been checked with [`is_current`] first.
async fn carry_out<K, S>(
    context: &Context,
    object: &K,
    namespace: &str,
    decision: Decision<S>,
    set_status: impl FnOnce(&mut K, S),
    hooks: &mut impl crate::hooks::HookRunner<S>,
) -> Result<Option<Requeued>>
where
    K: NamespacedObject,
    S: Serialize,
{
    let client = &context.client;
    let name = object.name_any();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut removed_finalizer = false;
    // A finalizer patch moves the object's resourceVersion on: the status write carries the
    // patched one, else it would always be refused as stale.
    let mut resource_version = object.resource_version();
    let mut decision = decision;
    let mut next = 0;
    while let Some(action) = decision.actions.get(next).cloned() {
        next += 1;
        match &action {
            Action::AddFinalizer | Action::RemoveFinalizer => {
                let mut finalizers = object.finalizers().to_vec();
                finalizers.retain(|f| f != arca_kube::reconcile::FINALIZER);
                if matches!(action, Action::AddFinalizer) {
                    finalizers.push(arca_kube::reconcile::FINALIZER.to_string());
                } else {
                    removed_finalizer = true;
                }
                let patch = json!({"metadata": {"finalizers": finalizers,
                    "resourceVersion": resource_version}});
                let patched = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
                resource_version = patched.resource_version();
            }
            Action::Apply(owned) => apply(client, namespace, owned).await?,
            Action::Delete { kind, name } => {
                delete(client, namespace, *kind, Some(name), None).await?
            }
            Action::DeleteAllOf {
                kind,
                label_selector,
            } => {
                delete(client, namespace, *kind, None, Some(label_selector)).await?;
            }
            Action::SetJobParallelism { name, parallelism } => {
                let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
                jobs.patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"parallelism": parallelism}})),
                )
                .await?;
            }
            Action::RunHook(phase) => {
                // A hook that fails under `failurePolicy: Fail` replaces what is left.
                if let Some(stopped) = hooks.run(*phase, &decision).await? {
                    decision = stopped;
                    next = 0;
                }
            }
        }
    }
    if !removed_finalizer {
        let mut updated = object.clone();
        set_status(&mut updated, decision.status);
        if serde_json::to_value(&updated).ok() != serde_json::to_value(object).ok() {
            updated.meta_mut().resource_version = resource_version;
            if write_status(&api, object, updated).await? == StatusWrite::Superseded {
                return Ok(None);
            }
        }
    }
    for event in &decision.events {
        publish(
            context,
            object,
            event.type_,
            event.reason,
            event.action,
            event.note.clone(),
        )
        .await;
    }
    Ok(Some(match decision.requeue {
        Requeue::After(after) => {
            Requeued::requeue(after.unsigned_abs().max(Duration::from_secs(1)))
        }
        Requeue::AwaitChange => Requeued::await_change(),
    }))
}

/// How a status write ended.
#[derive(Debug, PartialEq, Eq)]
enum StatusWrite {
    Written,
    /// Refused because the status had changed since the decision was taken: the decision was
    /// made on a stale copy (the watch cache lagging behind the last write), and is made again.
    Superseded,
}

/// Replaces the status of `object` with that of `updated` (which carries the resourceVersion
/// the decision was taken on). When the API server refuses it as stale but the current object's
/// status is still the one the decision started from, only the spec or metadata changed
/// meanwhile (a user's edit, an annotation): the decision is still right about the status, and
/// its actions may already be done (a finished Job deleted), so the status is written again on
/// the current version rather than lost. A changed status means the decision itself was stale:
/// it is not written over the newer one ([`StatusWrite::Superseded`]).
async fn write_status<K: NamespacedObject>(
    api: &Api<K>,
    object: &K,
    mut updated: K,
) -> Result<StatusWrite> {
    let name = object.name_any();
    let decided_on = status_of(object);
    let mut attempts = 1;
    loop {
        let refused = match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => return Ok(StatusWrite::Written),
            Err(kube::Error::Api(status)) if status.code == 409 => kube::Error::Api(status),
            Err(err) => return Err(err.into()),
        };
        if attempts == STATUS_WRITE_ATTEMPTS {
            return Err(refused.into());
        }
        attempts += 1;
        let current = api.get(&name).await?;
        if status_of(&current) != decided_on {
            return Ok(StatusWrite::Superseded);
        }
        updated.meta_mut().resource_version = current.resource_version();
    }
}

/// An object's status as JSON (`Null` when it has none).
fn status_of<K: Serialize>(object: &K) -> serde_json::Value {
    serde_json::to_value(object)
        .ok()
        .and_then(|value| value.get("status").cloned())
        .unwrap_or_default()
}

pub(crate) async fn publish<K: Resource<DynamicType = ()>>(
    context: &Context,
    object: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_: match type_ {
            EventType::Normal => KubeEventType::Normal,
            EventType::Warning => KubeEventType::Warning,
        },
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(err) = context
        .recorder
        .publish(&event, &object.object_ref(&()))
        .await
    {
        tracing::warn!("publishing an event: {err}");
    }
}

/// Server-side applies `object` in `namespace` as the controller's field manager.
pub(crate) async fn apply(client: &Client, namespace: &str, object: &Object) -> Result<()> {
    async fn apply_one<K>(client: &Client, namespace: &str, object: &K) -> Result<()>
    where
        K: NamespacedObject,
    {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        let name = object.meta().name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(object),
        )
        .await?;
        Ok(())
    }
    match object {
        Object::Job(job) => apply_one(client, namespace, job.as_ref()).await,
        Object::PersistentVolumeClaim(pvc) => apply_one(client, namespace, pvc.as_ref()).await,
        Object::VolumeSnapshot(snapshot) => apply_one(client, namespace, snapshot.as_ref()).await,
        Object::ServiceAccount(account) => apply_one(client, namespace, account.as_ref()).await,
        Object::Role(role) => apply_one(client, namespace, role.as_ref()).await,
        Object::RoleBinding(binding) => apply_one(client, namespace, binding.as_ref()).await,
        Object::ConfigMap(map) => apply_one(client, namespace, map.as_ref()).await,
    }
}

/// Deletes one object by name, or every object matching a selector; absent
/// is fine. Jobs go with their pods.
async fn delete(
    client: &Client,
    namespace: &str,
    kind: ObjectKind,
    name: Option<&str>,
    selector: Option<&str>,
) -> Result<()> {
    async fn delete_in<K>(api: Api<K>, name: Option<&str>, selector: Option<&str>) -> Result<()>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        let names = match (name, selector) {
            (Some(name), _) => vec![name.to_string()],
            (None, Some(selector)) => api
                .list(&ListParams::default().labels(selector))
                .await?
                .items
                .iter()
                .map(ResourceExt::name_any)
                .collect(),
            (None, None) => Vec::new(),
        };
        for name in names {
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }
    let client = client.clone();
    match kind {
        ObjectKind::Job => {
            delete_in(Api::<Job>::namespaced(client, namespace), name, selector).await
        }
        ObjectKind::PersistentVolumeClaim => {
            let api = Api::<PersistentVolumeClaim>::namespaced(client, namespace);
            delete_in(api, name, selector).await
        }
        ObjectKind::VolumeSnapshot => {
            let api = Api::<VolumeSnapshot>::namespaced(client, namespace);
            delete_in(api, name, selector).await
        }
    }
}
