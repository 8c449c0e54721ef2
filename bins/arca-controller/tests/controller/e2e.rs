//! The real `arca-controller` binary against the in-memory API server, with
//! the kubelet stand-in running the real `arca-agent` for each Job: a
//! ReplicationSource backs a volume up into a local repository, a
//! ReplicationDestination restores it into a new volume, byte for byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arca_testcluster::{ApiServer, KubeletConfig, ResourceKey, claim_dir, start_kubelet};
use serde_json::{Value, json};

/// Bounds every wait; a broken controller fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(120);

/// A workspace binary next to this test's own executable (`cargo test
/// --workspace`, as `cargo xtask test` runs it, builds every binary first).
fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p {name}; cargo xtask test does)",
        path.display()
    );
    path
}

/// Kills the controller when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the real controller against `kubeconfig`, logging to `log`, with `extra` arguments.
fn controller(kubeconfig: &Path, log: &Path, extra: &[&str]) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_arca-controller"))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "--metrics-address",
                "127.0.0.1:0",
                "--health-address",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("ARCA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn key(group: &str, version: &str, plural: &str) -> ResourceKey {
    ResourceKey::new(group, version, plural)
}

fn write_tree(root: &Path) {
    std::fs::create_dir_all(root.join("db")).unwrap();
    std::fs::write(root.join("db/pages"), vec![7u8; 300_000]).unwrap();
    std::fs::write(root.join("config.yaml"), b"replicas: 3\n").unwrap();
    std::fs::create_dir_all(root.join("lost+found")).unwrap();
}

fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_backs_up_and_a_destination_restores_through_the_real_controller_and_agent() {
    let server = ApiServer::start().await.unwrap();
    let store = Arc::clone(server.store());
    // Not under /tmp: the kubelet stand-in maps environment values under a
    // container's mount paths (the mover mounts a scratch volume at /tmp) to
    // the volume's directory, and the repository path must stay as it is.
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let kubelet = start_kubelet(
        Arc::clone(&store),
        KubeletConfig {
            root: work.path().join("cluster"),
            programs: BTreeMap::from([("arca-agent".to_string(), workspace_binary("arca-agent"))]),
            extra_env: BTreeMap::new(),
        },
    );
    for crd in arca_kube::crds() {
        store
            .create(
                &key("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
                None,
                serde_json::to_value(crd).unwrap(),
            )
            .unwrap();
    }
    let ns = Some("app");
    store
        .create(
            &key("", "v1", "namespaces"),
            None,
            json!({"metadata": {"name": "app"}}),
        )
        .unwrap();
    let repository = work.path().join("repository");
    let encode = |text: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(text)
    };
    store
        .create(
            &key("", "v1", "secrets"),
            ns,
            json!({"metadata": {"name": "example-app-volsync-secret"},
            "data": {"RESTIC_REPOSITORY": encode(&repository.to_string_lossy()),
                     "RESTIC_PASSWORD": encode("correct horse battery staple")}}),
        )
        .unwrap();
    let pvcs = key("", "v1", "persistentvolumeclaims");
    store
        .create(&pvcs, ns, json!({"metadata": {"name": "example-app-data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
        .unwrap();
    store
        .wait_until(
            &pvcs,
            ns,
            "example-app-data",
            |c| c["status"]["phase"] == "Bound",
            WAIT,
        )
        .await
        .unwrap();
    let source_dir = claim_dir(&work.path().join("cluster"), "app", "example-app-data");
    write_tree(&source_dir);

    let kubeconfig = work.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    let _controller = controller(&kubeconfig, &work.path().join("controller.log"), &[]);

    // The seed's ReplicationSource, with a manual trigger so the test need not wait for 2 AM.
    let sources = key("volsync.backube", "v1alpha1", "replicationsources");
    store
        .create(
            &sources,
            ns,
            json!({
            "apiVersion": "volsync.backube/v1alpha1", "kind": "ReplicationSource",
            "metadata": {"name": "example-app-backup"},
            "spec": {"sourcePVC": "example-app-data", "trigger": {"manual": "first"},
                "restic": {"repository": "example-app-volsync-secret",
                    "retain": {"daily": 7, "weekly": 4, "monthly": 12},
                    "copyMethod": "Snapshot", "volumeSnapshotClassName": "ceph-block"}}}),
        )
        .unwrap();
    let log = || std::fs::read_to_string(work.path().join("controller.log")).unwrap_or_default();
    let synced = store
        .wait_until(
            &sources,
            ns,
            "example-app-backup",
            |s| s["status"]["lastManualSync"] == "first",
            WAIT,
        )
        .await;
    let Some(source) = synced else {
        panic!(
            "the backup never completed:\n{:#}\ncontroller log:\n{}",
            store
                .get(&sources, ns, "example-app-backup")
                .unwrap_or(Value::Null),
            log()
        );
    };
    assert_eq!(
        source["status"]["latestMoverStatus"]["result"], "Successful",
        "{source:#}"
    );
    assert!(source["status"]["lastSyncTime"].is_string(), "{source:#}");
    let agent_log = || {
        let pods = work.path().join("cluster/pods/app");
        let mut text = String::new();
        for pod in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
            text += &format!(
                "{}:\n{}\n",
                pod.path().display(),
                std::fs::read_to_string(pod.path().join("stderr.log")).unwrap_or_default()
            );
        }
        text
    };
    assert!(
        repository.join("config").exists(),
        "the agent did not initialise the repository:\n{source:#}\n{}",
        agent_log()
    );

    // A destination restores the newest snapshot into a volume it provisions.
    let destinations = key("volsync.backube", "v1alpha1", "replicationdestinations");
    store
        .create(&destinations, ns, json!({
            "apiVersion": "volsync.backube/v1alpha1", "kind": "ReplicationDestination",
            "metadata": {"name": "example-app-dr"},
            "spec": {"trigger": {"manual": "restore-1"},
                "restic": {"repository": "example-app-volsync-secret", "destinationPVC": "example-app-dr-data",
                    "copyMethod": "Direct", "capacity": "1Gi", "accessModes": ["ReadWriteOnce"]}}}))
        .unwrap();
    store
        .create(&pvcs, ns, json!({"metadata": {"name": "example-app-dr-data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
        .unwrap();
    let restored = store
        .wait_until(
            &destinations,
            ns,
            "example-app-dr",
            |d| d["status"]["lastManualSync"] == "restore-1",
            WAIT,
        )
        .await;
    let Some(destination) = restored else {
        panic!(
            "the restore never completed:\n{:#}\ncontroller log:\n{}",
            store
                .get(&destinations, ns, "example-app-dr")
                .unwrap_or(Value::Null),
            log()
        );
    };
    assert_eq!(
        destination["status"]["latestMoverStatus"]["result"], "Successful",
        "{destination:#}"
    );
    let mut expected = read_tree(&source_dir);
    expected.retain(|path, _| !path.starts_with("lost+found"));
    let restored_dir = claim_dir(&work.path().join("cluster"), "app", "example-app-dr-data");
    assert_eq!(read_tree(&restored_dir), expected);
    kubelet.abort();
}

/// Two replicas share the objects through shard Leases (half each), a due backup with no free
/// mover slot waits visibly without a Job, and when one replica dies the other takes its shards
/// over within about a lease period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_shards_through_leases_and_a_backup_waits_for_a_mover_slot() {
    let server = ApiServer::start().await.unwrap();
    let store = Arc::clone(server.store());
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for crd in arca_kube::crds() {
        store
            .create(
                &key("apiextensions.k8s.io", "v1", "customresourcedefinitions"),
                None,
                serde_json::to_value(crd).unwrap(),
            )
            .unwrap();
    }
    for namespace in ["app", "arca-system"] {
        store
            .create(
                &key("", "v1", "namespaces"),
                None,
                json!({"metadata": {"name": namespace}}),
            )
            .unwrap();
    }
    let kubeconfig = work.path().join("kubeconfig");
    std::fs::write(&kubeconfig, server.kubeconfig()).unwrap();
    // No mover may run at all: every due backup must wait for a slot.
    let replica = |identity: &str| {
        controller(
            &kubeconfig,
            &work.path().join(format!("{identity}.log")),
            &[
                "--lease-namespace",
                "arca-system",
                "--identity",
                identity,
                "--lease-shards",
                "4",
                "--lease-duration-seconds",
                "2",
                "--max-concurrent-jobs",
                "0",
            ],
        )
    };
    let replica_a = replica("replica-a");
    let _replica_b = replica("replica-b");
    let logs = || {
        ["replica-a", "replica-b"]
            .iter()
            .map(|r| {
                std::fs::read_to_string(work.path().join(format!("{r}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let leases = key("coordination.k8s.io", "v1", "leases");
    // The shard Leases' holders (the namespace also holds each replica's member Lease).
    let holders = |all: &[Value]| -> Vec<String> {
        all.iter()
            .filter(|l| {
                l["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("arca-controller-shard-"))
            })
            .map(|l| {
                l["spec"]["holderIdentity"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    };
    let split = store
        .wait_until_all(
            &leases,
            Some("arca-system"),
            |all| {
                let h = holders(all);
                h.len() == 4
                    && h.iter().filter(|h| *h == "replica-a").count() == 2
                    && h.iter().filter(|h| *h == "replica-b").count() == 2
            },
            WAIT,
        )
        .await;
    assert!(
        split.is_some(),
        "the shards were never split 2/2:\n{}",
        logs()
    );

    let sources = key("volsync.backube", "v1alpha1", "replicationsources");
    store
        .create(
            &sources,
            Some("app"),
            json!({
            "apiVersion": "volsync.backube/v1alpha1", "kind": "ReplicationSource",
            "metadata": {"name": "waits"},
            "spec": {"sourcePVC": "data", "trigger": {"manual": "now"},
                "restic": {"repository": "secret", "copyMethod": "Direct"}}}),
        )
        .unwrap();
    let waiting = store
        .wait_until(
            &sources,
            Some("app"),
            "waits",
            |s| {
                s["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["reason"] == "WaitingForSlot"))
            },
            WAIT,
        )
        .await;
    let Some(waiting) = waiting else {
        panic!("the source never waited for a slot:\n{}", logs());
    };
    assert!(
        waiting["status"]["lastSyncStartTime"].is_null(),
        "{waiting:#}"
    );
    let jobs = key("batch", "v1", "jobs");
    let no_jobs = store
        .wait_until_all(&jobs, Some("app"), |all| all.is_empty(), WAIT)
        .await;
    assert!(no_jobs.is_some(), "a Job was made without a slot");

    // Replica a dies: b holds all four shards once a's leases expire.
    drop(replica_a);
    let taken_over = store
        .wait_until_all(
            &leases,
            Some("arca-system"),
            |all| {
                let h = holders(all);
                h.len() == 4 && h.iter().all(|h| h == "replica-b")
            },
            WAIT,
        )
        .await;
    assert!(
        taken_over.is_some(),
        "replica-b never took over:\n{}",
        logs()
    );
    for lease in taken_over
        .unwrap()
        .iter()
        .filter(|l| l["metadata"]["name"] != "arca-controller-member-replica-a")
    {
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 2, "{lease:#}");
        assert!(lease["spec"]["renewTime"].is_string(), "{lease:#}");
    }
}
