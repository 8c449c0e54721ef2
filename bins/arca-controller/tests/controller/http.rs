//! The controller's HTTP layer, request by request (kube's tower-test pattern): the reconcile
//! functions and the shard Lease rounds run against a client whose service is a
//! `tower_test::mock` pair, and a script answers each request after asserting its method, path,
//! query and the body fields that matter. A request the script does not expect fails the test,
//! and so does a scripted request that never comes (the script is checked to the end once the
//! controller's client is gone).

use std::sync::Arc;
use std::time::Duration;

use arca_controller::reconcile::{self, Context, ReconcileError};
use arca_controller::shards::{self, LeaseConfig, Shards};
use arca_kube::ControllerConfig;
use arca_kube::api::{ReplicationDestination, ReplicationSource};
use arca_kube::changes::{AUDIT_ENV, RECORDED_SPEC_ANNOTATION, UNAUDITED_ANNOTATION, spec_changes};
use http::{Request, Response};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::client::Body;
use kube::runtime::events::Reporter;
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_test::mock;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

/// How long the script waits for a request the controller has not sent yet. Never reached in a
/// passing test: the controller's requests are awaited one after the other.
const DEADLINE: Duration = Duration::from_secs(10);

/// One expected request and the answer to it.
struct Exchange {
    method: &'static str,
    uri: String,
    check: Box<dyn FnOnce(&Value) + Send>,
    status: u16,
    answer: Value,
}

fn expect(method: &'static str, uri: impl Into<String>) -> Exchange {
    Exchange {
        method,
        uri: uri.into(),
        check: Box::new(|_| {}),
        status: 200,
        answer: Value::Null,
    }
}

impl Exchange {
    /// Asserts on the request's JSON body.
    fn body(mut self, check: impl FnOnce(&Value) + Send + 'static) -> Exchange {
        self.check = Box::new(check);
        self
    }

    fn answer(mut self, status: u16, answer: Value) -> Exchange {
        self.status = status;
        self.answer = answer;
        self
    }
}

/// A `Status` as the API server sends it with an error code.
fn failure(code: u16, reason: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
        "reason": reason, "message": message, "code": code})
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "100"}, "items": items})
}

/// Answers `script` in order; once it is done, the client must go away without another request.
fn serve(mut handle: Handle, script: Vec<Exchange>) -> JoinHandle<()> {
    tokio::spawn(async move {
        for (index, exchange) in script.into_iter().enumerate() {
            let expected = format!("{} {}", exchange.method, exchange.uri);
            let (request, respond) = tokio::time::timeout(DEADLINE, handle.next_request())
                .await
                .unwrap_or_else(|_| panic!("request {index} never came: {expected}"))
                .unwrap_or_else(|| {
                    panic!("the controller stopped before request {index}: {expected}")
                });
            let got = format!("{} {}", request.method(), request.uri());
            assert_eq!(got, expected, "request {index}");
            let bytes = request.into_body().collect_bytes().await.expect("a body");
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("a JSON body")
            };
            (exchange.check)(&body);
            respond.send_response(
                Response::builder()
                    .status(exchange.status)
                    .body(Body::from(serde_json::to_vec(&exchange.answer).unwrap()))
                    .unwrap(),
            );
        }
        if let Ok(Some((request, _))) = tokio::time::timeout(DEADLINE, handle.next_request()).await
        {
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
    })
}

/// Runs `script` against a client, runs `body` with it, drops the client and waits for the script.
async fn scripted<T, F>(script: Vec<Exchange>, body: impl FnOnce(Client) -> F) -> T
where
    F: std::future::Future<Output = T>,
{
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let verifier = serve(handle, script);
    let client = Client::new(service, "default");
    let result = body(client).await;
    verifier.await.expect("every request as scripted");
    result
}

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/arca-system/leases";

fn lease_config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "arca-system".into(),
        identity: identity.into(),
        shards: 2,
        duration: jiff::SignedDuration::from_secs(15),
    }
}

/// A Lease as listed: `holder` renewed it `renewed_ago` seconds ago.
fn lease(name: &str, label: &str, version: &str, holder: Option<&str>, renewed_ago: i64) -> Value {
    let renewed = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(renewed_ago);
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "arca-system", "resourceVersion": version,
            "labels": {"app.kubernetes.io/component": label}},
        "spec": {"holderIdentity": holder, "renewTime": MicroTime(renewed),
            "leaseDurationSeconds": 15, "leaseTransitions": 3}})
}

fn member(identity: &str, version: &str) -> Value {
    lease(
        &format!("arca-controller-member-{identity}"),
        "arca-controller-member",
        version,
        Some(identity),
        1,
    )
}

fn shard(index: u32, version: &str, holder: Option<&str>, renewed_ago: i64) -> Value {
    lease(
        &format!("arca-controller-shard-{index}"),
        "arca-controller-shard",
        version,
        holder,
        renewed_ago,
    )
}

/// The start of every round: this replica's member Lease applied, the members and the shard
/// Leases listed.
fn round_start(identity: &str, members: Vec<Value>, shard_leases: Vec<Value>) -> Vec<Exchange> {
    let me = identity.to_string();
    vec![
        expect(
            "PATCH",
            format!("{LEASES}/arca-controller-member-{identity}?&force=true&fieldManager=arca-controller"),
        )
        .body(move |body| {
            assert_eq!(body["spec"]["holderIdentity"], me.as_str());
            assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
            assert_eq!(body["metadata"]["labels"]["app.kubernetes.io/component"], "arca-controller-member");
        })
        .answer(200, member(identity, "50")),
        expect(
            "GET",
            format!("{LEASES}?&labelSelector=app.kubernetes.io%2Fcomponent%3Darca-controller-member"),
        )
        .answer(200, list("LeaseList", members)),
        expect(
            "GET",
            format!("{LEASES}?&labelSelector=app.kubernetes.io%2Fcomponent%3Darca-controller-shard"),
        )
        .answer(200, list("LeaseList", shard_leases)),
    ]
}

/// An object name whose shard (of two) is `wanted`.
fn object_in_shard(wanted: u32) -> String {
    (0..)
        .map(|i| format!("app-{i}"))
        .find(|name| arca_kube::lease::shard_of("apps", name, 2) == wanted)
        .unwrap()
}

#[tokio::test]
async fn a_free_shard_is_acquired_guarded_by_its_resource_version_then_renewed() {
    let shards = Shards::leased(2);
    // Two live members, shard 1 held by the other one: a fair share is one shard, so shard 0
    // (free) is taken, with the resourceVersion it was listed with.
    let mut script = round_start(
        "replica-a",
        vec![member("replica-a", "50"), member("replica-b", "51")],
        vec![
            shard(0, "10", None, 60),
            shard(1, "11", Some("replica-b"), 2),
        ],
    );
    script.push(
        expect("PUT", format!("{LEASES}/arca-controller-shard-0?"))
            .body(|body| {
                assert_eq!(body["metadata"]["resourceVersion"], "10");
                assert_eq!(body["spec"]["holderIdentity"], "replica-a");
                assert_eq!(body["spec"]["leaseTransitions"], 4);
                assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
                assert!(body["spec"]["acquireTime"].is_string());
            })
            .answer(200, shard(0, "12", Some("replica-a"), 0)),
    );
    // The next round renews it, guarded by the version the acquire returned, and leaves the
    // other replica's shard alone.
    script.extend(round_start(
        "replica-a",
        vec![member("replica-a", "52"), member("replica-b", "53")],
        vec![
            shard(0, "12", Some("replica-a"), 4),
            shard(1, "11", Some("replica-b"), 4),
        ],
    ));
    script.push(
        expect("PUT", format!("{LEASES}/arca-controller-shard-0?"))
            .body(|body| {
                assert_eq!(body["metadata"]["resourceVersion"], "12");
                assert_eq!(body["spec"]["holderIdentity"], "replica-a");
                assert_eq!(
                    body["spec"]["leaseTransitions"], 3,
                    "a renewal is no transition"
                );
            })
            .answer(200, shard(0, "13", Some("replica-a"), 0)),
    );
    let (first, second) = scripted(script, |client| {
        let shards = &shards;
        async move {
            let api: Api<Lease> = Api::namespaced(client, "arca-system");
            let config = lease_config("replica-a");
            let first = shards::round(&api, &config, shards).await.unwrap();
            let second = shards::round(&api, &config, shards).await.unwrap();
            (first, second)
        }
    })
    .await;
    assert!(
        first,
        "the acquire is a gained shard (every object is woken)"
    );
    assert!(!second, "a renewal gains nothing");
    let now = jiff::Timestamp::now();
    assert!(shards.owns("apps", &object_in_shard(0), now));
    assert!(!shards.owns("apps", &object_in_shard(1), now));
}

#[tokio::test]
async fn a_lost_race_for_a_shard_is_a_409_and_the_shard_stays_someone_elses() {
    let shards = Shards::leased(2);
    // Shard 1's Lease does not exist yet: it is created free, but another replica was faster.
    let mut script = round_start(
        "replica-a",
        vec![member("replica-a", "50")],
        vec![shard(0, "10", Some("replica-b"), 60)],
    );
    script.push(
        expect("POST", format!("{LEASES}?"))
            .body(|body| {
                assert_eq!(body["metadata"]["name"], "arca-controller-shard-1");
                assert!(body["spec"]["holderIdentity"].is_null(), "created free");
            })
            .answer(
                409,
                failure(
                    409,
                    "AlreadyExists",
                    "leases \"arca-controller-shard-1\" already exists",
                ),
            ),
    );
    // Shard 0's holder expired: this replica tries to take it, but the write is stale.
    script.push(
        expect("PUT", format!("{LEASES}/arca-controller-shard-0?"))
            .body(|body| {
                assert_eq!(body["metadata"]["resourceVersion"], "10");
                assert_eq!(body["spec"]["holderIdentity"], "replica-a");
            })
            .answer(
                409,
                failure(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again"),
            ),
    );
    let gained = scripted(script, |client| {
        let shards = &shards;
        async move {
            let api: Api<Lease> = Api::namespaced(client, "arca-system");
            shards::round(&api, &lease_config("replica-a"), shards).await
        }
    })
    .await
    .expect("a lost race is no error");
    assert!(!gained);
    let now = jiff::Timestamp::now();
    assert!(!shards.owns("apps", &object_in_shard(0), now));
    assert!(!shards.owns("apps", &object_in_shard(1), now));
}

fn context(client: Client) -> Arc<Context> {
    Arc::new(Context::new(
        client,
        ControllerConfig::default(),
        Reporter {
            controller: "arca-controller".into(),
            instance: Some("replica-a".into()),
        },
        arca_sched::Limits {
            global: 10,
            per_node: 2,
        },
        Shards::all(),
    ))
}

/// Runs one reconcile of `source` against `script`; the client goes when it returns.
async fn reconcile_source(
    source: Value,
    script: Vec<Exchange>,
) -> Result<kube::runtime::controller::Action, ReconcileError> {
    let source: ReplicationSource = serde_json::from_value(source).expect("a ReplicationSource");
    // Boxed: a reconcile's future is large (clippy's large_futures).
    scripted(script, |client| {
        Box::pin(reconcile::reconcile_source(
            Arc::new(source),
            context(client),
        ))
    })
    .await
}

const SOURCES: &str = "/apis/volsync.backube/v1alpha1/namespaces/apps/replicationsources";
const OWNED: &str = "labelSelector=arca.dev%2Fowner-uid%3Duid-1";
const APPLY: &str = "force=true&fieldManager=arca-controller";
/// VolSync's cleanup label, minus what a user marked to keep.
const CLEANUP: &str =
    "labelSelector=volsync.backube%2Fcleanup%3Duid-1%2C%21volsync.backube%2Fdo-not-delete";

/// A source whose spec the controller has recorded already (no change to report).
fn source(finalizers: &[&str], trigger: Value) -> Value {
    let object = json!({"apiVersion": "volsync.backube/v1alpha1", "kind": "ReplicationSource",
        "metadata": {"name": "app", "namespace": "apps", "uid": "uid-1", "resourceVersion": "5",
            "generation": 1, "finalizers": finalizers},
        "spec": {"sourcePVC": "data", "trigger": trigger,
            "restic": {"repository": "restic-secret", "copyMethod": "Direct"}}});
    recorded_as::<ReplicationSource>(object)
}

/// `object` (a `K`) with the change-tracking annotation recording its current spec and
/// generation, as the controller serialises it.
fn recorded_as<K: serde::de::DeserializeOwned + serde::Serialize + kube::Resource>(
    mut object: Value,
) -> Value {
    let typed: K = serde_json::from_value(object.clone()).unwrap();
    let spec = serde_json::to_value(&typed).unwrap()["spec"].take();
    let record = spec_changes(&spec, typed.meta().generation, None)
        .record
        .unwrap();
    object["metadata"]["annotations"] = json!({RECORDED_SPEC_ANNOTATION: record});
    object
}

/// The fresh read of the source (past the controller's cache) before a decision that touches
/// other objects is carried out, answered `current`.
fn fresh_read(current: Value) -> Exchange {
    expect("GET", format!("{SOURCES}/app")).answer(200, current)
}

fn not_found() -> Value {
    failure(404, "NotFound", "not found")
}

/// What a source's reconcile reads, in order: its volume, the repository Secret (key names
/// only matter), what it owns (by owner label; the mover's RBAC objects by name), then for the
/// mover queue the volume's node (the claim and the namespace's pods) and the running movers.
fn source_reads(jobs: Vec<Value>, job_pods: Vec<Exchange>) -> Vec<Exchange> {
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "apps"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
            "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}});
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "restic-secret", "namespace": "apps"},
        "data": {"RESTIC_REPOSITORY": "czM6Ly94", "RESTIC_PASSWORD": "eA=="}});
    let mut reads = vec![
        expect("GET", "/api/v1/namespaces/apps/persistentvolumeclaims/data")
            .answer(200, claim.clone()),
        expect("GET", "/api/v1/namespaces/apps/secrets/restic-secret").answer(200, secret),
        expect(
            "GET",
            format!("/apis/batch/v1/namespaces/apps/jobs?&{OWNED}"),
        )
        .answer(200, list("JobList", jobs)),
    ];
    reads.extend(job_pods);
    reads.extend([
        expect(
            "GET",
            format!("/api/v1/namespaces/apps/persistentvolumeclaims?&{OWNED}"),
        )
        .answer(200, list("PersistentVolumeClaimList", vec![])),
        expect(
            "GET",
            format!("/apis/snapshot.storage.k8s.io/v1/namespaces/apps/volumesnapshots?&{OWNED}"),
        )
        .answer(200, list("VolumeSnapshotList", vec![])),
        expect(
            "GET",
            "/api/v1/namespaces/apps/serviceaccounts/volsync-src-app",
        )
        .answer(404, not_found()),
        expect(
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/apps/roles/volsync-src-app",
        )
        .answer(404, not_found()),
        expect(
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings/volsync-src-app",
        )
        .answer(404, not_found()),
    ]);
    reads
}

/// The reads of the mover queue before a sync starts: the volume's node, the running movers.
fn queue_reads() -> Vec<Exchange> {
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "apps"}, "status": {"phase": "Bound"}});
    vec![
        expect("GET", "/api/v1/namespaces/apps/persistentvolumeclaims/data").answer(200, claim),
        expect("GET", "/api/v1/namespaces/apps/pods?").answer(200, list("PodList", vec![])),
        expect(
            "GET",
            "/apis/batch/v1/jobs?&labelSelector=app.kubernetes.io%2Fcreated-by%3Darca",
        )
        .answer(200, list("JobList", vec![])),
    ]
}

/// Asserts an applied object is owned by the source (so garbage collection removes it) and
/// labelled for cleanup.
fn assert_owned(body: &Value, kind: &str, name: &str) {
    assert_eq!(body["kind"], kind);
    assert_eq!(body["metadata"]["name"], name);
    assert_eq!(body["metadata"]["namespace"], "apps");
    assert_eq!(body["metadata"]["labels"]["arca.dev/owner-uid"], "uid-1");
    let owner = &body["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "ReplicationSource");
    assert_eq!(owner["uid"], "uid-1");
    assert_eq!(owner["controller"], true);
}

/// A new source with a manual trigger, up to its status write (answered `status_answer`); the
/// fresh read before its actions finds `current`.
fn new_source_script(current: Value, status: u16, status_answer: Value) -> Vec<Exchange> {
    let mut script = source_reads(vec![], vec![]);
    script.push(fresh_read(current));
    script.extend(queue_reads());
    let mut patched = source(&["arca.dev/cleanup"], json!({"manual": "once"}));
    patched["metadata"]["resourceVersion"] = json!("6");
    script.extend([
        expect("PATCH", format!("{SOURCES}/app?"))
            .body(|body| {
                assert_eq!(body["metadata"]["finalizers"], json!(["arca.dev/cleanup"]));
                assert_eq!(body["metadata"]["resourceVersion"], "5", "guarded by the object's version");
            })
            .answer(200, patched),
        expect("PATCH", format!("/api/v1/namespaces/apps/persistentvolumeclaims/volsync-src-app-cache?&{APPLY}"))
            .body(|body| {
                assert_owned(body, "PersistentVolumeClaim", "volsync-src-app-cache");
                assert_eq!(body["spec"]["storageClassName"], "standard");
            })
            .answer(200, json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "volsync-src-app-cache"}})),
        expect("PATCH", format!("/api/v1/namespaces/apps/serviceaccounts/volsync-src-app?&{APPLY}"))
            .body(|body| {
                assert_owned(body, "ServiceAccount", "volsync-src-app");
                assert_eq!(body["automountServiceAccountToken"], false);
            })
            .answer(200, json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "volsync-src-app"}})),
        expect("PATCH", format!("/apis/rbac.authorization.k8s.io/v1/namespaces/apps/roles/volsync-src-app?&{APPLY}"))
            .body(|body| {
                assert_owned(body, "Role", "volsync-src-app");
                assert_eq!(body["rules"], json!([]), "the mover needs no API access");
            })
            .answer(200, json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "volsync-src-app"}})),
        expect("PATCH", format!("/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings/volsync-src-app?&{APPLY}"))
            .body(|body| {
                assert_owned(body, "RoleBinding", "volsync-src-app");
                assert_eq!(body["subjects"][0]["name"], "volsync-src-app");
            })
            .answer(200, json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "volsync-src-app"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "volsync-src-app"}})),
        expect("PATCH", format!("/apis/batch/v1/namespaces/apps/jobs/volsync-src-app?&{APPLY}"))
            .body(|body| {
                assert_owned(body, "Job", "volsync-src-app");
                let pod = &body["spec"]["template"]["spec"];
                assert_eq!(pod["serviceAccountName"], "volsync-src-app");
                let container = &pod["containers"][0];
                assert_eq!(container["command"], json!(["arca-agent"]));
                assert_eq!(container["args"], json!(["backup"]));
                assert_eq!(container["securityContext"]["runAsNonRoot"], true);
                let env = container["env"].as_array().unwrap();
                let repository = env.iter().find(|e| e["name"] == "RESTIC_REPOSITORY").unwrap();
                assert_eq!(
                    repository["valueFrom"]["secretKeyRef"],
                    json!({"name": "restic-secret", "key": "RESTIC_REPOSITORY", "optional": false}),
                    "the repository comes from the Secret, never copied into the Job"
                );
                assert_eq!(pod["volumes"][0]["persistentVolumeClaim"], json!({"claimName": "data", "readOnly": true}));
            })
            .answer(200, json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "volsync-src-app"}})),
        expect("PUT", format!("{SOURCES}/app/status?"))
            .body(|body| {
                assert_eq!(body["metadata"]["resourceVersion"], "6", "the version the finalizer patch returned");
                let status = &body["status"];
                assert!(status["lastSyncStartTime"].is_string(), "syncing");
                assert_eq!(status["conditions"][0]["type"], "Synchronizing");
                assert_eq!(status["conditions"][0]["status"], "True");
                assert_eq!(status["conditions"][0]["reason"], "SyncInProgress");
            })
            .answer(status, status_answer),
    ]);
    script
}

#[tokio::test]
async fn a_new_source_with_a_manual_trigger_gets_the_finalizer_then_its_mover_then_a_syncing_status()
 {
    let object = source(&[], json!({"manual": "once"}));
    let mut script = new_source_script(object.clone(), 200, object.clone());
    script.push(
        expect("POST", "/apis/events.k8s.io/v1/namespaces/apps/events?")
            .body(|body| {
                assert_eq!(body["reason"], "TransferStarted");
                assert_eq!(body["regarding"]["uid"], "uid-1");
                assert_eq!(body["reportingController"], "arca-controller");
            })
            .answer(201, json!({})),
    );
    let requeue = reconcile_source(object, script).await.expect("reconciled");
    assert_eq!(
        requeue,
        kube::runtime::controller::Action::requeue(Duration::from_secs(60))
    );
}

#[tokio::test]
async fn a_changed_spec_is_recorded_as_an_event_and_its_audit_note_rides_the_next_mover() {
    // Recorded at generation 1 with a schedule; now generation 2 with a manual trigger.
    let mut object = source(&[], json!({"schedule": "0 2 * * *"}));
    object["spec"]["trigger"] = json!({"manual": "once"});
    object["metadata"]["generation"] = json!(2);
    object["metadata"]["resourceVersion"] = json!("4");
    let mut patched = object.clone();
    patched["metadata"]["resourceVersion"] = json!("5");
    let mut script = vec![
        expect("PATCH", format!("{SOURCES}/app?"))
            .body(|body| {
                let meta = &body["metadata"];
                assert_eq!(
                    meta["resourceVersion"], "4",
                    "guarded by the object's version"
                );
                let note: Vec<String> = serde_json::from_str(
                    meta["annotations"][UNAUDITED_ANNOTATION].as_str().unwrap(),
                )
                .unwrap();
                let note: Value = serde_json::from_str(&note[0]).unwrap();
                assert_eq!(
                    note["changed"],
                    json!(["trigger.manual", "trigger.schedule"])
                );
                assert_eq!(note["generation"], 2);
                assert!(
                    !meta["annotations"][RECORDED_SPEC_ANNOTATION]
                        .as_str()
                        .unwrap()
                        .contains("0 2 * * *"),
                    "hashes, never values"
                );
            })
            .answer(200, patched.clone()),
        expect("POST", "/apis/events.k8s.io/v1/namespaces/apps/events?")
            .body(|body| {
                assert_eq!(body["reason"], "SpecChanged");
                assert_eq!(
                    body["note"],
                    "spec changed (generation 2): trigger.manual, trigger.schedule"
                );
            })
            .answer(201, json!({})),
    ];
    let mut mover = new_source_script(patched.clone(), 200, patched);
    let job = mover
        .iter_mut()
        .find(|e| e.uri.contains("/jobs/volsync-src-app"))
        .unwrap();
    job.check = Box::new(|body| {
        let env = body["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        let notes = env
            .iter()
            .find(|e| e["name"] == AUDIT_ENV)
            .expect("the audit notes");
        assert!(
            notes["value"]
                .as_str()
                .unwrap()
                .contains("trigger.schedule")
        );
    });
    script.extend(mover);
    script.extend([
        expect("POST", "/apis/events.k8s.io/v1/namespaces/apps/events?")
            .body(|body| assert_eq!(body["reason"], "TransferStarted"))
            .answer(201, json!({})),
        // The Job carries the notes: they are no longer pending.
        expect("PATCH", format!("{SOURCES}/app?"))
            .body(|body| {
                assert_eq!(
                    body["metadata"]["annotations"][UNAUDITED_ANNOTATION],
                    Value::Null
                )
            })
            .answer(200, object.clone()),
    ]);
    reconcile_source(object, script).await.expect("reconciled");
}

/// The API server's answer to a stale write.
fn conflict() -> Value {
    failure(
        409,
        "Conflict",
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

#[tokio::test]
async fn a_status_write_refused_because_the_status_changed_is_decided_again_at_once_quietly() {
    let object = source(&[], json!({"manual": "once"}));
    let mut script = new_source_script(object.clone(), 409, conflict());
    // The status changed meanwhile (the decision was taken on a stale copy): the decision's is
    // not written over it, no Event is published, and the object is decided again in a second
    // rather than failing with a warning and waiting out the error backoff.
    let mut current = object.clone();
    current["metadata"]["resourceVersion"] = json!("7");
    current["status"] = json!({"lastSyncStartTime": "2026-12-06T17:00:00Z"});
    script.push(expect("GET", format!("{SOURCES}/app")).answer(200, current));
    let requeued = reconcile_source(object, script)
        .await
        .expect("a superseded decision is no error");
    assert_eq!(
        requeued,
        kube::runtime::controller::Action::requeue(Duration::from_secs(1))
    );
}

#[tokio::test]
async fn a_deleted_source_cleans_up_then_drops_its_finalizer_and_writes_no_status() {
    let mut object = source(&["arca.dev/cleanup"], json!({"manual": "once"}));
    object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let mut script = source_reads(vec![], vec![]);
    script.push(fresh_read(object.clone()));
    script.extend([
        expect("GET", format!("/api/v1/namespaces/apps/persistentvolumeclaims?&{CLEANUP}"))
            .answer(200, list("PersistentVolumeClaimList", vec![json!({"apiVersion": "v1",
                "kind": "PersistentVolumeClaim", "metadata": {"name": "volsync-src-app-snap", "namespace": "apps"}})])),
        expect("DELETE", "/api/v1/namespaces/apps/persistentvolumeclaims/volsync-src-app-snap?")
            .body(|body| assert_eq!(body["propagationPolicy"], "Background"))
            // Gone meanwhile: absent is fine.
            .answer(404, not_found()),
        expect("GET", format!("/apis/snapshot.storage.k8s.io/v1/namespaces/apps/volumesnapshots?&{CLEANUP}"))
            .answer(200, list("VolumeSnapshotList", vec![])),
        expect("PATCH", format!("{SOURCES}/app?"))
            .body(|body| {
                assert_eq!(body["metadata"]["finalizers"], json!([]));
                assert_eq!(body["metadata"]["resourceVersion"], "5");
            })
            .answer(200, object.clone()),
    ]);
    let requeue = reconcile_source(object, script).await.expect("cleaned up");
    assert_eq!(requeue, kube::runtime::controller::Action::await_change());
}

/// A source syncing since 17:00 for the manual trigger `once`, at resourceVersion 5.
fn syncing_source() -> Value {
    let mut object = source(&["arca.dev/cleanup"], json!({"manual": "once"}));
    object["status"] = json!({"lastSyncStartTime": "2026-12-06T17:00:00Z",
        "conditions": [{"type": "Synchronizing", "status": "True", "reason": "SyncInProgress",
            "message": "Synchronization in-progress", "lastTransitionTime": "2026-12-06T17:00:00Z"}]});
    object
}

/// `object` as it is once its manual sync `once` finished and was recorded (resourceVersion 6).
fn synced(mut object: Value) -> Value {
    object["metadata"]["resourceVersion"] = json!("6");
    object["status"] = json!({"lastSyncTime": "2026-12-06T17:05:00Z", "lastSyncDuration": "5m0s",
        "lastManualSync": "once", "latestMoverStatus": {"result": "Successful", "logs": "snapshot 5f1e2d3c saved"},
        "conditions": [{"type": "Synchronizing", "status": "False", "reason": "WaitingForManual",
            "message": "waiting for a new spec.trigger.manual", "lastTransitionTime": "2026-12-06T17:05:00Z"}]});
    object
}

/// A finished mover of the syncing source, up to the status write: its reads, the fresh read
/// (finding the object unchanged), its Job deleted, the sync's temporaries cleaned up.
fn finished_mover_script(object: &Value) -> Vec<Exchange> {
    let job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "volsync-src-app", "namespace": "apps",
            "labels": {"arca.dev/owner-uid": "uid-1"}},
        "spec": {"template": {"spec": {"containers": [{"name": "restic", "image": "arca-agent:latest"}]}}},
        "status": {"completionTime": "2026-12-06T17:05:00Z", "conditions": [{"type": "Complete",
            "status": "True", "lastTransitionTime": "2026-12-06T17:05:00Z"}]}});
    // The agent's result document, as its pod's termination message.
    let result = json!({"version": 1, "outcome": "success", "duration_seconds": 300.0,
        "actions": [{"action": "backup", "snapshot_id": "5f1e2d3c", "bytes_added": 1024}]});
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "volsync-src-app-x", "namespace": "apps", "labels": {"job-name": "volsync-src-app"}},
        "spec": {"containers": [{"name": "restic", "image": "arca-agent:latest"}]},
        "status": {"containerStatuses": [{"name": "restic", "image": "arca-agent:latest", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0,
                "finishedAt": "2026-12-06T17:05:00Z", "message": result.to_string()}}}]}});
    let mut script = source_reads(
        vec![job],
        vec![
            expect(
                "GET",
                "/api/v1/namespaces/apps/pods?&labelSelector=job-name%3Dvolsync-src-app",
            )
            .answer(200, list("PodList", vec![pod])),
        ],
    );
    script.push(fresh_read(object.clone()));
    script.extend([
        expect(
            "DELETE",
            "/apis/batch/v1/namespaces/apps/jobs/volsync-src-app?",
        )
        .body(|body| assert_eq!(body["propagationPolicy"], "Background", "with its pods"))
        .answer(
            200,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "metadata": {}}),
        ),
        // The sync's temporary objects (none left here) go by the cleanup label.
        expect(
            "GET",
            format!("/api/v1/namespaces/apps/persistentvolumeclaims?&{CLEANUP}"),
        )
        .answer(200, list("PersistentVolumeClaimList", vec![])),
        expect(
            "GET",
            format!("/apis/snapshot.storage.k8s.io/v1/namespaces/apps/volumesnapshots?&{CLEANUP}"),
        )
        .answer(200, list("VolumeSnapshotList", vec![])),
    ]);
    script
}

/// The status write recording the finished sync, with `resource_version`, answered `status`.
fn finished_status_write(resource_version: &'static str, status: u16, answer: Value) -> Exchange {
    expect("PUT", format!("{SOURCES}/app/status?"))
        .body(move |body| {
            assert_eq!(body["metadata"]["resourceVersion"], resource_version);
            let status = &body["status"];
            assert_eq!(status["latestMoverStatus"]["result"], "Successful");
            assert!(status["lastSyncTime"].is_string());
            assert!(status["lastSyncStartTime"].is_null(), "no longer syncing");
            assert_eq!(status["lastManualSync"], "once", "the manual handshake");
            assert_eq!(status["arca"]["lastSnapshotID"], "5f1e2d3c");
            assert_eq!(status["conditions"][0]["status"], "False");
        })
        .answer(status, answer)
}

fn sync_completed_event() -> Exchange {
    expect("POST", "/apis/events.k8s.io/v1/namespaces/apps/events?")
        .body(|body| {
            assert_eq!(body["type"], "Normal");
            assert_eq!(body["reason"], "SyncCompleted");
            assert_eq!(body["regarding"]["name"], "app");
        })
        .answer(201, json!({}))
}

#[tokio::test]
async fn a_finished_mover_is_recorded_in_the_status_and_its_job_deleted() {
    let object = syncing_source();
    let mut script = finished_mover_script(&object);
    script.extend([
        finished_status_write("5", 200, synced(object.clone())),
        sync_completed_event(),
    ]);
    reconcile_source(object, script).await.expect("recorded");
}

#[tokio::test]
async fn a_finished_sync_is_recorded_even_if_the_metadata_changed_after_its_job_was_deleted() {
    // A user annotated the source between the fresh read and the status write: the write is
    // refused, but the status is still the one decided on, so the result (whose Job is gone
    // already) is written on the current version instead of being lost, which would start
    // the sync over.
    let object = syncing_source();
    let mut annotated = object.clone();
    annotated["metadata"]["resourceVersion"] = json!("9");
    annotated["metadata"]["annotations"]["example.com/owner"] = json!("team-a");
    let mut script = finished_mover_script(&object);
    script.extend([
        finished_status_write("5", 409, conflict()),
        expect("GET", format!("{SOURCES}/app")).answer(200, annotated),
        finished_status_write("9", 200, synced(object.clone())),
        sync_completed_event(),
    ]);
    reconcile_source(object, script).await.expect("recorded");
}

#[tokio::test]
async fn a_decision_on_a_stale_copy_starts_no_job_and_looks_again() {
    // The race: the controller's cache still has the source syncing (before the status write
    // that recorded the finished sync reached it), and the finished Job is gone. Decided on
    // that copy, the sync would be prepared anew: a second mover Job for the same trigger.
    // The fresh read finds the sync recorded at a newer resourceVersion: nothing is carried out
    // (no Job applied, no status written, no Event) and the source is looked at again soon.
    let stale = syncing_source();
    let mut script = source_reads(vec![], vec![]);
    script.push(fresh_read(synced(stale.clone())));
    let requeue = reconcile_source(stale, script)
        .await
        .expect("nothing to do yet");
    assert_eq!(
        requeue,
        kube::runtime::controller::Action::requeue(Duration::from_secs(1))
    );
}

const DESTINATIONS: &str = "/apis/volsync.backube/v1alpha1/namespaces/dr/replicationdestinations";

/// A ReplicationDestination restoring into the existing claim `restored`, syncing since 17:00.
fn syncing_destination() -> Value {
    let object = json!({"apiVersion": "volsync.backube/v1alpha1", "kind": "ReplicationDestination",
        "metadata": {"name": "app-dr", "namespace": "dr", "uid": "uid-2", "resourceVersion": "8",
            "generation": 1, "finalizers": ["arca.dev/cleanup"]},
        "spec": {"trigger": {"manual": "restore-1"},
            "restic": {"repository": "restic-secret", "destinationPVC": "restored"}},
        "status": {"lastSyncStartTime": "2026-12-06T17:00:00Z",
            "conditions": [{"type": "Synchronizing", "status": "True", "reason": "SyncInProgress",
                "message": "Synchronization in-progress", "lastTransitionTime": "2026-12-06T17:00:00Z"}]}});
    recorded_as::<ReplicationDestination>(object)
}

#[tokio::test]
async fn a_finished_restore_sets_latest_image_to_the_restored_claim_and_deletes_its_job() {
    let object = syncing_destination();
    let owned = "labelSelector=arca.dev%2Fowner-uid%3Duid-2";
    let cleanup =
        "labelSelector=volsync.backube%2Fcleanup%3Duid-2%2C%21volsync.backube%2Fdo-not-delete";
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "restored", "namespace": "dr"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}});
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "restic-secret", "namespace": "dr"},
        "data": {"RESTIC_REPOSITORY": "czM6Ly94", "RESTIC_PASSWORD": "eA=="}});
    let job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "volsync-dst-app-dr", "namespace": "dr", "labels": {"arca.dev/owner-uid": "uid-2"}},
        "spec": {"template": {"spec": {"containers": [{"name": "restic", "image": "arca-agent:latest",
            "args": ["restore"]}]}}},
        "status": {"completionTime": "2026-12-06T17:03:00Z", "conditions": [{"type": "Complete",
            "status": "True", "lastTransitionTime": "2026-12-06T17:03:00Z"}]}});
    // The agent's result document: the whole snapshot is on the volume.
    let result = json!({"version": 1, "outcome": "success", "duration_seconds": 180.0,
        "actions": [{"action": "restore", "outcome": "restored", "snapshot_id": "5f1e2d3c",
            "files": 12, "dirs": 2, "bytes_restored": 4096, "bytes_read": 5000, "deleted": 0}]});
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "volsync-dst-app-dr-x", "namespace": "dr", "labels": {"job-name": "volsync-dst-app-dr"}},
        "spec": {"containers": [{"name": "restic", "image": "arca-agent:latest"}]},
        "status": {"containerStatuses": [{"name": "restic", "image": "arca-agent:latest", "imageID": "",
            "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 0,
                "finishedAt": "2026-12-06T17:03:00Z", "message": result.to_string()}}}]}});
    let script = vec![
        expect(
            "GET",
            "/api/v1/namespaces/dr/persistentvolumeclaims/restored",
        )
        .answer(200, claim),
        expect("GET", "/api/v1/namespaces/dr/secrets/restic-secret").answer(200, secret),
        expect("GET", format!("/apis/batch/v1/namespaces/dr/jobs?&{owned}"))
            .answer(200, list("JobList", vec![job])),
        expect(
            "GET",
            "/api/v1/namespaces/dr/pods?&labelSelector=job-name%3Dvolsync-dst-app-dr",
        )
        .answer(200, list("PodList", vec![pod])),
        expect(
            "GET",
            format!("/api/v1/namespaces/dr/persistentvolumeclaims?&{owned}"),
        )
        .answer(200, list("PersistentVolumeClaimList", vec![])),
        expect(
            "GET",
            format!("/apis/snapshot.storage.k8s.io/v1/namespaces/dr/volumesnapshots?&{owned}"),
        )
        .answer(200, list("VolumeSnapshotList", vec![])),
        expect(
            "GET",
            "/api/v1/namespaces/dr/serviceaccounts/volsync-dst-app-dr",
        )
        .answer(404, not_found()),
        expect(
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/dr/roles/volsync-dst-app-dr",
        )
        .answer(404, not_found()),
        expect(
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/dr/rolebindings/volsync-dst-app-dr",
        )
        .answer(404, not_found()),
        // Read fresh before the Job goes: the decision was taken on the current version.
        expect("GET", format!("{DESTINATIONS}/app-dr")).answer(200, object.clone()),
        expect(
            "DELETE",
            "/apis/batch/v1/namespaces/dr/jobs/volsync-dst-app-dr?",
        )
        .body(|body| assert_eq!(body["propagationPolicy"], "Background", "with its pods"))
        .answer(
            200,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "metadata": {}}),
        ),
        expect(
            "GET",
            format!("/api/v1/namespaces/dr/persistentvolumeclaims?&{cleanup}"),
        )
        .answer(200, list("PersistentVolumeClaimList", vec![])),
        expect(
            "GET",
            format!("/apis/snapshot.storage.k8s.io/v1/namespaces/dr/volumesnapshots?&{cleanup}"),
        )
        .answer(200, list("VolumeSnapshotList", vec![])),
        expect("PUT", format!("{DESTINATIONS}/app-dr/status?"))
            .body(|body| {
                assert_eq!(body["metadata"]["resourceVersion"], "8");
                let status = &body["status"];
                assert_eq!(status["latestMoverStatus"]["result"], "Successful");
                assert_eq!(
                    status["latestImage"],
                    json!({"kind": "PersistentVolumeClaim", "name": "restored"})
                );
                assert_eq!(
                    status["lastManualSync"], "restore-1",
                    "the manual handshake"
                );
                assert!(status["lastSyncTime"].is_string());
                assert!(status["lastSyncStartTime"].is_null(), "no longer syncing");
                assert_eq!(status["arca"]["lastSnapshotID"], "5f1e2d3c");
                assert_eq!(status["arca"]["filesRestored"], 12);
                assert_eq!(status["conditions"][0]["status"], "False");
            })
            .answer(200, object.clone()),
        expect("POST", "/apis/events.k8s.io/v1/namespaces/dr/events?")
            .body(|body| {
                assert_eq!(body["type"], "Normal");
                assert_eq!(body["reason"], "SyncCompleted");
                assert_eq!(body["regarding"]["kind"], "ReplicationDestination");
            })
            .answer(201, json!({})),
    ];
    let destination: ReplicationDestination = serde_json::from_value(object).unwrap();
    let requeue = scripted(script, |client| {
        Box::pin(reconcile::reconcile_destination(
            Arc::new(destination),
            context(client),
        ))
    })
    .await
    .expect("recorded");
    assert_eq!(requeue, kube::runtime::controller::Action::await_change());
}
