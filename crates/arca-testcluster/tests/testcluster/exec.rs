//! `pods/exec` through kube-rs's own client (`Api::<Pod>::exec`, the `ws`
//! feature): the WebSocket upgrade, stdout and stderr on their channels, the
//! exit status, the pod's volumes, and the errors the real server gives.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use arca_testcluster::{ApiServer, KubeletConfig, claim_dir, start_kubelet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, AttachParams, AttachedProcess, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use tokio::io::AsyncReadExt;

/// Bounds every wait: a broken server fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(30);

struct Cluster {
    _server: ApiServer,
    _root: tempfile::TempDir,
    root: PathBuf,
    client: Client,
    kubelet: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kubelet.abort();
    }
}

/// A server with the kubelet stand-in, a bound claim `data` and a running
/// application pod `app-0` mounting it at `/data`.
async fn cluster() -> Cluster {
    let server = ApiServer::start().await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let kubelet = start_kubelet(
        std::sync::Arc::clone(server.store()),
        KubeletConfig {
            root: root.path().to_path_buf(),
            programs: BTreeMap::new(),
            extra_env: BTreeMap::new(),
        },
    );
    let kubeconfig = Kubeconfig::from_yaml(&server.kubeconfig()).unwrap();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    claims
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "app-0", "labels": {"app": "db"}},
            "spec": {"containers": [
                {"name": "db", "image": "db", "env": [{"name": "GREETING", "value": "hello"}],
                 "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                {"name": "sidecar", "image": "sidecar"}],
             "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let running = kube::runtime::wait::await_condition(pods, "app-0", |pod: Option<&Pod>| {
        pod.and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.as_deref())
            == Some("Running")
    });
    tokio::time::timeout(WAIT, running).await.unwrap().unwrap();
    Cluster {
        root: root.path().to_path_buf(),
        _root: root,
        _server: server,
        client,
        kubelet,
    }
}

/// Everything the command printed, and its status.
async fn output(
    mut process: AttachedProcess,
) -> (
    String,
    String,
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Status,
) {
    let mut stdout = process.stdout().unwrap();
    let mut stderr = process.stderr().unwrap();
    let status = process.take_status().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    let read = async {
        tokio::try_join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        )
        .unwrap();
        status.await.expect("a status on channel 3")
    };
    let status = tokio::time::timeout(WAIT, read).await.unwrap();
    (out, err, status)
}

#[tokio::test]
async fn exec_streams_output_and_the_exit_status_in_the_pods_volumes() {
    let cluster = cluster().await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let script = r#"echo "$GREETING out"; echo "to err" >&2; echo quiesced > "$1"; exit 0"#;
    let process = pods
        .exec(
            "app-0",
            ["sh", "-c", script, "sh", "/data/marker"],
            &AttachParams::default().stderr(true),
        )
        .await
        .unwrap();
    let (out, err, status) = output(process).await;
    assert_eq!(out, "hello out\n");
    assert_eq!(err, "to err\n");
    assert_eq!(status.status.as_deref(), Some("Success"));
    let marker = claim_dir(&cluster.root, "default", "data").join("marker");
    assert_eq!(std::fs::read_to_string(marker).unwrap(), "quiesced\n");

    // A failing command: its exit code in the status, as the kubelet reports it.
    let process = pods
        .exec(
            "app-0",
            ["sh", "-c", "echo failing >&2; exit 3"],
            &AttachParams::default().stderr(true).container("sidecar"),
        )
        .await
        .unwrap();
    let (_, err, status) = output(process).await;
    assert_eq!(err, "failing\n");
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"));
    let cause = &status.details.unwrap().causes.unwrap()[0];
    assert_eq!(
        (cause.reason.as_deref(), cause.message.as_deref()),
        (Some("ExitCode"), Some("3"))
    );

    // A program that does not exist fails in the status, not the upgrade.
    let process = pods
        .exec(
            "app-0",
            ["/nonexistent/program"],
            &AttachParams::default().stderr(true),
        )
        .await
        .unwrap();
    let (_, _, status) = output(process).await;
    assert_eq!(status.status.as_deref(), Some("Failure"));
    assert!(
        status
            .message
            .unwrap_or_default()
            .contains("/nonexistent/program"),
        "the message names the program"
    );
}

#[tokio::test]
async fn exec_refuses_what_the_real_server_refuses() {
    let cluster = cluster().await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let code = |result: Result<AttachedProcess, kube::Error>| match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        Err(other) => panic!("expected an API error, got {other:?}"),
        Ok(_) => panic!("expected an error"),
    };
    let params = AttachParams::default().stderr(true);
    let (status, _) = code(pods.exec("missing", ["true"], &params).await);
    assert_eq!(status, 404);
    let (status, message) = code(
        pods.exec(
            "app-0",
            ["true"],
            &AttachParams::default().stderr(true).container("nope"),
        )
        .await,
    );
    assert_eq!(status, 400);
    assert!(message.contains("container nope is not valid"), "{message}");
}

#[tokio::test]
async fn a_client_that_gives_up_kills_the_command() {
    let cluster = cluster().await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let process = pods
        .exec(
            "app-0",
            [
                "sh",
                "-c",
                r#"echo $$ > "$1"; exec sleep 30"#,
                "sh",
                "/data/pid",
            ],
            &AttachParams::default().stderr(true),
        )
        .await
        .unwrap();
    let pid_file = claim_dir(&cluster.root, "default", "data").join("pid");
    let pid = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(text) = std::fs::read_to_string(&pid_file)
                && text.ends_with('\n')
            {
                return text.trim().to_string();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    drop(process);
    let gone = tokio::time::timeout(WAIT, async {
        while std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the command {pid} still runs");
}
