//! kube-rs's own client, watcher and discovery against the test API server:
//! the behaviour controllers rely on, observed the way a controller sees it.

use std::time::Duration;

use arca_testcluster::ApiServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, conditions, wait::await_condition, watcher};
use kube::{Client, Config, CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A custom resource with a status subresource, like the ones Arca's
/// controller reconciles.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "test.arca.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus"
)]
struct WidgetSpec {
    size: u32,
    #[serde(default)]
    paused: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
struct WidgetStatus {
    observed: u32,
}

/// Bounds every wait: a broken server fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(30);

async fn cluster() -> (ApiServer, Client) {
    let server = ApiServer::start().await.unwrap();
    let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig()).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Widget::crd())
        .await
        .unwrap();
    let established = await_condition(
        crds,
        "widgets.test.arca.dev",
        conditions::is_crd_established(),
    );
    tokio::time::timeout(WAIT, established)
        .await
        .unwrap()
        .unwrap();
    (server, client)
}

fn widget(name: &str, size: u32) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            size,
            paused: false,
        },
    )
}

fn api_error_code(err: &kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn discovery_finds_built_in_and_custom_resources() {
    let (_server, client) = cluster().await;
    let discovery = kube::discovery::Discovery::new(client).run().await.unwrap();
    let kinds: Vec<String> = discovery
        .groups()
        .flat_map(|group| group.recommended_resources())
        .map(|(resource, _)| resource.kind)
        .collect();
    for kind in [
        "Widget",
        "Job",
        "Lease",
        "VolumeSnapshot",
        "ConfigMap",
        "PersistentVolumeClaim",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
}

#[tokio::test]
async fn the_watcher_sees_every_change_in_order() {
    let (_server, client) = cluster().await;
    let widgets: Api<Widget> = Api::namespaced(client, "default");
    let mut stream = watcher(widgets.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    widgets
        .create(&PostParams::default(), &widget("w", 1))
        .await
        .unwrap();
    for size in 2..=4 {
        widgets
            .patch(
                "w",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"size": size}})),
            )
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    while seen.last() != Some(&4) {
        let next = tokio::time::timeout(WAIT, stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(next.spec.size);
    }
    // The watcher may start after some writes (its initial list) but never
    // goes backwards or skips the final state.
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.last(), Some(&4));
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict() {
    let (_server, client) = cluster().await;
    let widgets: Api<Widget> = Api::namespaced(client, "default");
    let created = widgets
        .create(&PostParams::default(), &widget("w", 1))
        .await
        .unwrap();
    let mut fresh = created.clone();
    fresh.spec.size = 2;
    let updated = widgets
        .replace("w", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(updated.resource_version(), created.resource_version());
    let mut stale = created;
    stale.spec.size = 3;
    let err = widgets
        .replace("w", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(api_error_code(&err), 409);
    assert_eq!(widgets.get("w").await.unwrap().spec.size, 2);
    let err = widgets
        .create(&PostParams::default(), &widget("w", 9))
        .await
        .unwrap_err();
    assert_eq!(api_error_code(&err), 409, "AlreadyExists");
}

#[tokio::test]
async fn status_is_a_subresource_and_generation_counts_spec_changes() {
    let (_server, client) = cluster().await;
    let widgets: Api<Widget> = Api::namespaced(client, "default");
    let created = widgets
        .create(&PostParams::default(), &widget("w", 1))
        .await
        .unwrap();
    assert_eq!(created.meta().generation, Some(1));
    let with_status = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 99}, "status": {"observed": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(with_status.status, Some(WidgetStatus { observed: 1 }));
    assert_eq!(
        with_status.spec.size, 1,
        "a status write must not change the spec"
    );
    assert_eq!(with_status.meta().generation, Some(1));
    let with_spec = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}, "status": {"observed": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(with_spec.spec.size, 2);
    assert_eq!(
        with_spec.status,
        Some(WidgetStatus { observed: 1 }),
        "a main write must not change the status"
    );
    assert_eq!(with_spec.meta().generation, Some(2));
}

#[tokio::test]
async fn server_side_apply_removes_what_a_manager_stopped_applying() {
    let (_server, client) = cluster().await;
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    let apply = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"}, "data": data});
    let params = PatchParams::apply("arca-test").force();
    maps.patch(
        "m",
        &params,
        &Patch::Apply(apply(json!({"a": "1", "b": "2"}))),
    )
    .await
    .unwrap();
    maps.patch(
        "m",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"other": "x"}})),
    )
    .await
    .unwrap();
    let map = maps
        .patch("m", &params, &Patch::Apply(apply(json!({"a": "3"}))))
        .await
        .unwrap();
    let data = map.data.unwrap();
    assert_eq!(data.get("a").map(String::as_str), Some("3"));
    assert!(!data.contains_key("b"), "{data:?}");
    assert_eq!(
        data.get("other").map(String::as_str),
        Some("x"),
        "another writer's field stays"
    );
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_they_are_removed() {
    let (_server, client) = cluster().await;
    let widgets: Api<Widget> = Api::namespaced(client, "default");
    let mut w = widget("w", 1);
    w.meta_mut().finalizers = Some(vec!["test.arca.dev/cleanup".into()]);
    widgets.create(&PostParams::default(), &w).await.unwrap();
    widgets.delete("w", &DeleteParams::default()).await.unwrap();
    let deleting = widgets.get("w").await.unwrap();
    assert!(deleting.meta().deletion_timestamp.is_some());
    let err = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["test.arca.dev/cleanup", "new"]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        api_error_code(&err),
        422,
        "no new finalizers on an object being deleted"
    );
    widgets
        .patch::<Widget>(
            "w",
            &PatchParams::default(),
            &Patch::Json(
                serde_json::from_value(json!([
                    {"op": "test", "path": "/metadata/finalizers/0", "value": "test.arca.dev/cleanup"},
                    {"op": "remove", "path": "/metadata/finalizers/0"}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    let err = widgets.get("w").await.unwrap_err();
    assert_eq!(api_error_code(&err), 404);
}

#[tokio::test]
async fn dependents_are_collected_or_orphaned_with_their_owner() {
    let (_server, client) = cluster().await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    for (name, orphan) in [("collected", false), ("orphaned", true)] {
        let owner = widgets
            .create(&PostParams::default(), &widget(name, 1))
            .await
            .unwrap();
        let mut map = ConfigMap::default();
        map.metadata.name = Some(name.to_string());
        map.metadata.owner_references = Some(vec![owner.controller_owner_ref(&()).unwrap()]);
        maps.create(&PostParams::default(), &map).await.unwrap();
        let params = if orphan {
            DeleteParams::orphan()
        } else {
            DeleteParams::background()
        };
        widgets.delete(name, &params).await.unwrap();
    }
    assert_eq!(
        api_error_code(&maps.get("collected").await.unwrap_err()),
        404
    );
    let orphan = maps.get("orphaned").await.unwrap();
    assert!(
        orphan
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn a_watch_from_compacted_history_is_told_410_gone() {
    let (server, client) = cluster().await;
    let widgets: Api<Widget> = Api::namespaced(client, "default");
    let created = widgets
        .create(&PostParams::default(), &widget("w", 1))
        .await
        .unwrap();
    let old = created.resource_version().unwrap();
    widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .unwrap();
    // Before compaction the change is replayed from the old version...
    let mut replay = widgets
        .watch(&WatchParams::default(), &old)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(WAIT, replay.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Modified(w)) => assert_eq!(w.spec.size, 2),
        other => panic!("expected the modification, got {other:?}"),
    }
    // ...after it, the same request is answered with 410.
    server.compact();
    let mut expired = widgets
        .watch(&WatchParams::default(), &old)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(WAIT, expired.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Error(status)) => assert_eq!(status.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn lists_filter_by_label_and_namespaces_must_exist() {
    let (_server, client) = cluster().await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    for (name, app) in [("a", "db"), ("b", "web"), ("c", "db")] {
        let mut w = widget(name, 1);
        w.meta_mut().labels = Some([("app".to_string(), app.to_string())].into());
        widgets.create(&PostParams::default(), &w).await.unwrap();
    }
    let db = widgets
        .list(&ListParams::default().labels("app=db"))
        .await
        .unwrap();
    let names: Vec<String> = db.items.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["a", "c"]);
    let elsewhere: Api<Widget> = Api::namespaced(client, "missing");
    let err = elsewhere
        .create(&PostParams::default(), &widget("x", 1))
        .await
        .unwrap_err();
    assert_eq!(api_error_code(&err), 404);
}
