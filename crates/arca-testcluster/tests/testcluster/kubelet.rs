//! The kubelet stand-in: claims, snapshots and Jobs as local directories and
//! processes, driven through the store the way a controller's writes would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arca_testcluster::{KubeletConfig, ResourceKey, Store, claim_dir, start_kubelet};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

fn key(group: &str, plural: &str) -> ResourceKey {
    ResourceKey::new(group, "v1", plural)
}

/// Waits for the stand-in's own tasks to bring the object where `done`
/// says, failing after [`WAIT`].
async fn until(
    store: &Store,
    resource: &ResourceKey,
    name: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    match store
        .wait_until(resource, Some("app"), name, done, WAIT)
        .await
    {
        Some(object) => object,
        None => panic!(
            "{name} never got there: {:?}",
            store.get(resource, Some("app"), name)
        ),
    }
}

fn setup() -> (Arc<Store>, tempfile::TempDir, KubeletConfig) {
    let store = Arc::new(Store::new());
    store
        .create(
            &key("", "namespaces"),
            None,
            json!({"metadata": {"name": "app"}}),
        )
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let config = KubeletConfig {
        root: root.path().to_path_buf(),
        programs: BTreeMap::from([("sh".to_string(), PathBuf::from("/bin/sh"))]),
        extra_env: BTreeMap::new(),
    };
    (store, root, config)
}

fn claim(name: &str, data_source: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}}, "dataSource": data_source}})
}

#[tokio::test]
async fn claims_bind_to_directories_and_snapshots_copy_them() {
    let (store, root, config) = setup();
    let kubelet = start_kubelet(Arc::clone(&store), config);
    let pvcs = key("", "persistentvolumeclaims");
    store
        .create(&pvcs, Some("app"), claim("data", Value::Null))
        .unwrap();
    until(&store, &pvcs, "data", |c| c["status"]["phase"] == "Bound").await;
    std::fs::write(claim_dir(root.path(), "app", "data").join("file"), b"v1").unwrap();

    let snapshots = ResourceKey::new("snapshot.storage.k8s.io", "v1", "volumesnapshots");
    store
        .create(
            &snapshots,
            Some("app"),
            json!({"metadata": {"name": "snap"},
            "spec": {"source": {"persistentVolumeClaimName": "data"}}}),
        )
        .unwrap();
    until(&store, &snapshots, "snap", |s| {
        s["status"]["readyToUse"] == true
    })
    .await;
    // A change after the snapshot must not reach the copy made from it.
    std::fs::write(claim_dir(root.path(), "app", "data").join("file"), b"v2").unwrap();
    store
        .create(
            &pvcs,
            Some("app"),
            claim(
                "copy",
                json!({"kind": "VolumeSnapshot", "name": "snap",
            "apiGroup": "snapshot.storage.k8s.io"}),
            ),
        )
        .unwrap();
    until(&store, &pvcs, "copy", |c| c["status"]["phase"] == "Bound").await;
    assert_eq!(
        std::fs::read(claim_dir(root.path(), "app", "copy").join("file")).unwrap(),
        b"v1"
    );
    kubelet.abort();
}

/// The controller names its temporary snapshot and claim the same every
/// sync: once deleted, a new one of the same name holds only the new copy.
#[tokio::test]
async fn a_snapshot_and_a_claim_made_again_under_a_deleted_ones_name_hold_only_the_new_copy() {
    let (store, root, config) = setup();
    let kubelet = start_kubelet(Arc::clone(&store), config);
    let pvcs = key("", "persistentvolumeclaims");
    let snapshots = ResourceKey::new("snapshot.storage.k8s.io", "v1", "volumesnapshots");
    store
        .create(&pvcs, Some("app"), claim("data", Value::Null))
        .unwrap();
    until(&store, &pvcs, "data", |c| c["status"]["phase"] == "Bound").await;
    let data = claim_dir(root.path(), "app", "data");
    for version in ["v1", "v2"] {
        std::fs::write(data.join("file"), version).unwrap();
        store
            .create(
                &snapshots,
                Some("app"),
                json!({"metadata": {"name": "snap"},
                "spec": {"source": {"persistentVolumeClaimName": "data"}}}),
            )
            .unwrap();
        until(&store, &snapshots, "snap", |s| {
            s["status"]["readyToUse"] == true
        })
        .await;
        let from_snapshot = json!({"kind": "VolumeSnapshot", "name": "snap",
            "apiGroup": "snapshot.storage.k8s.io"});
        store
            .create(&pvcs, Some("app"), claim("copy", from_snapshot))
            .unwrap();
        until(&store, &pvcs, "copy", |c| c["status"]["phase"] == "Bound").await;
        let copy = claim_dir(root.path(), "app", "copy");
        let mut names: Vec<String> = std::fs::read_dir(&copy)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["file"], "{version}");
        assert_eq!(
            std::fs::read(copy.join("file")).unwrap(),
            version.as_bytes()
        );
        store.delete(&pvcs, Some("app"), "copy", false).unwrap();
        store
            .delete(&snapshots, Some("app"), "snap", false)
            .unwrap();
    }
    kubelet.abort();
}

#[tokio::test]
async fn jobs_run_with_their_environment_volumes_and_secrets_and_retry_until_the_backoff_limit() {
    let (store, root, config) = setup();
    let kubelet = start_kubelet(Arc::clone(&store), config);
    let pvcs = key("", "persistentvolumeclaims");
    store
        .create(&pvcs, Some("app"), claim("data", Value::Null))
        .unwrap();
    until(&store, &pvcs, "data", |c| c["status"]["phase"] == "Bound").await;
    store
        .create(&key("", "secrets"), Some("app"), json!({"metadata": {"name": "repo"},
            // "/repository/app" and "hunter2"
            "data": {"RESTIC_REPOSITORY": "L3JlcG9zaXRvcnkvYXBw", "RESTIC_PASSWORD": "aHVudGVyMg=="}}))
        .unwrap();
    let job = |name: &str, script: &str, backoff: i64| {
        json!({"metadata": {"name": name}, "spec": {"backoffLimit": backoff, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "mover", "image": "test", "command": ["sh"], "args": ["-c", script],
                "env": [{"name": "DATA_DIR", "value": "/data"},
                        {"name": "RESTIC_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "repo", "key": "RESTIC_PASSWORD"}}}],
                "envFrom": [{"secretRef": {"name": "repo"}},
                            {"secretRef": {"name": "repo"}, "prefix": "ARCA_REPLICA_0_"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "terminationMessagePath": "/dev/termination-log"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}}})
    };
    let jobs = ResourceKey::new("batch", "v1", "jobs");
    let pods = key("", "pods");
    store
        .create(&jobs, Some("app"), job("ok", r#"printf '%s %s %s' "$RESTIC_REPOSITORY" "$RESTIC_PASSWORD" "$ARCA_REPLICA_0_RESTIC_REPOSITORY" > "$DATA_DIR/seen" && echo done > "$ARCA_RESULT_PATH""#, 0))
        .unwrap();
    until(&store, &jobs, "ok", |j| j["status"]["succeeded"] == 1).await;
    assert_eq!(
        std::fs::read_to_string(claim_dir(root.path(), "app", "data").join("seen")).unwrap(),
        "/repository/app hunter2 /repository/app",
        "a prefixed envFrom names every key with its prefix"
    );
    let pod = store.get(&pods, Some("app"), "ok-0").unwrap();
    assert_eq!(
        pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"],
        "done\n"
    );

    store
        .create(
            &jobs,
            Some("app"),
            job("bad", "echo nope > \"$ARCA_RESULT_PATH\"; exit 3", 1),
        )
        .unwrap();
    let failed = until(&store, &jobs, "bad", |j| {
        j["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Failed"))
    })
    .await;
    assert_eq!(
        failed["status"]["failed"], 2,
        "backoffLimit 1 allows one retry"
    );
    for attempt in ["bad-0", "bad-1"] {
        let pod = store.get(&pods, Some("app"), attempt).unwrap();
        assert_eq!(
            pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
            3
        );
    }

    // A pod failure policy that lists the exit code fails the Job without a retry.
    let mut final_exit = job("final", "exit 3", 5);
    final_exit["spec"]["podFailurePolicy"] = json!({"rules": [{"action": "FailJob",
        "onExitCodes": {"containerName": "mover", "operator": "In", "values": [3]}}]});
    store.create(&jobs, Some("app"), final_exit).unwrap();
    let failed = until(&store, &jobs, "final", |j| {
        j["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Failed"))
    })
    .await;
    assert_eq!(failed["status"]["failed"], 1, "no retry");
    assert_eq!(
        failed["status"]["conditions"][0]["reason"],
        "PodFailurePolicy"
    );
    kubelet.abort();
}
