//! The controller's HTTP layer, request by request (kube's tower-test pattern): the reconcile
//! functions and the shard Lease rounds run against a client whose service is a
//! `tower_test::mock` pair, and a script answers each request after asserting its method, path,
//! query and the body fields that matter. A request the script does not expect fails the test,
//! and so does a scripted request that never comes (the script is checked to the end once the
//! controller's client is gone).

use std::time::Duration;

use arca_controller::shards::{self, LeaseConfig, Shards};
use http::{Request, Response};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::client::Body;
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
