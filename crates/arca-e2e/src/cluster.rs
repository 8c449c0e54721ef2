//! The cluster `cargo xtask e2e` drives: the in-memory API server with the
//! kubelet stand-in (the default), or a real cluster named by a kubeconfig.
//!
//! Both are reached the same way, through kube-rs's client built from a
//! kubeconfig file, so the scenario's code path differs only in where the API
//! server is and in how it reads and writes a volume's files (a directory of
//! the kubelet stand-in, or a short-lived Pod on a real cluster).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use arca_testcluster::{ApiServer, KubeletConfig, claim_dir, start_kubelet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, LogParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use kube::{Client, Config};
use serde_json::{Value, json};

/// Bounds every wait: a broken controller fails the run instead of hanging it.
pub(crate) const WAIT: Duration = Duration::from_secs(120);
/// How often a wait looks again at the object it waits for.
const POLL: Duration = Duration::from_millis(100);
/// The field manager of everything the harness applies.
const FIELD_MANAGER: &str = "arca-e2e";

/// A file tree by relative path: the SHA-256 (hex) of each regular file's
/// content. Two volumes with equal digests hold the same bytes.
pub(crate) type Digest = BTreeMap<String, String>;

/// The API server's pieces the harness starts when it runs its own cluster.
struct LocalCluster {
    /// Dropping it stops the server.
    server: ApiServer,
    kubelet: tokio::task::JoinHandle<()>,
    /// Where the kubelet stand-in keeps volumes, snapshots and pod logs.
    root: PathBuf,
}

/// A cluster the harness talks to through its API.
pub(crate) struct Cluster {
    client: Client,
    kubeconfig: PathBuf,
    local: Option<LocalCluster>,
}

impl Cluster {
    /// Starts an in-memory API server and the kubelet stand-in under `dir`,
    /// running Jobs' `arca-agent` as `agent`, and installs the chart's CRDs.
    /// The kubelet stand-in is left out when `agent` is `None` (Jobs are
    /// created but never run).
    pub(crate) async fn start_local(
        dir: &Path,
        agent: Option<&Path>,
        crds_dir: &Path,
    ) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(dir)?;
        let server = ApiServer::start().await?;
        let root = dir.join("cluster");
        let kubelet = match agent {
            Some(agent) => start_kubelet(
                Arc::clone(server.store()),
                KubeletConfig {
                    root: root.clone(),
                    programs: BTreeMap::from([("arca-agent".to_string(), agent.to_path_buf())]),
                    extra_env: BTreeMap::new(),
                },
            ),
            None => tokio::spawn(async {}),
        };
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, server.kubeconfig())?;
        let cluster = Cluster {
            client: client(&kubeconfig).await?,
            kubeconfig,
            local: Some(LocalCluster {
                server,
                kubelet,
                root,
            }),
        };
        for crd in yaml_documents_in(crds_dir)? {
            cluster.apply(&crd, None).await?;
        }
        Ok(cluster)
    }

    /// A real cluster: everything (CRDs, the agent's image, storage) is the
    /// cluster's own.
    pub(crate) async fn connect(kubeconfig: &Path) -> anyhow::Result<Cluster> {
        Ok(Cluster {
            client: client(kubeconfig).await?,
            kubeconfig: kubeconfig.to_path_buf(),
            local: None,
        })
    }

    /// The kubeconfig file a controller process is given.
    pub(crate) fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Whether this is the harness's own in-memory cluster.
    pub(crate) fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// The in-memory server's objects, directly (no HTTP): for the scale run,
    /// which must not load the controller's API server with its own polling.
    pub(crate) fn local_store(&self) -> Option<&Arc<arca_testcluster::Store>> {
        self.local.as_ref().map(|l| l.server.store())
    }

    async fn api(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> anyhow::Result<Api<DynamicObject>> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .with_context(|| format!("discovering {api_version} {kind}"))?;
        Ok(match (capabilities.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(self.client.clone(), ns, &resource)
            }
            _ => Api::all_with(self.client.clone(), &resource),
        })
    }

    /// Server-side applies `object` (as `kubectl apply --server-side
    /// --force-conflicts` does), in `namespace` unless it names its own.
    pub(crate) async fn apply(
        &self,
        object: &Value,
        namespace: Option<&str>,
    ) -> anyhow::Result<Value> {
        let (api_version, kind, name) = identity(object)?;
        let namespace = object["metadata"]["namespace"].as_str().or(namespace);
        let api = self.api(&api_version, &kind, namespace).await?;
        let mut object = object.clone();
        if let (Some(ns), true) = (namespace, object["metadata"]["namespace"].is_null()) {
            object["metadata"]["namespace"] = json!(ns);
        }
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .with_context(|| format!("applying {kind} {name}"))?;
        Ok(serde_json::to_value(applied)?)
    }

    /// Creates `object` unless one of its name exists already.
    pub(crate) async fn create_if_missing(
        &self,
        object: &Value,
        namespace: Option<&str>,
    ) -> anyhow::Result<()> {
        let (api_version, kind, name) = identity(object)?;
        let api = self.api(&api_version, &kind, namespace).await?;
        if api.get_opt(&name).await?.is_none() {
            let object: DynamicObject = serde_json::from_value(object.clone())?;
            api.create(&PostParams::default(), &object)
                .await
                .with_context(|| format!("creating {kind} {name}"))?;
        }
        Ok(())
    }

    /// The object, or `None` when there is none of that name.
    pub(crate) async fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> anyhow::Result<Option<Value>> {
        let api = self.api(api_version, kind, namespace).await?;
        let object = api
            .get_opt(name)
            .await
            .with_context(|| format!("reading {kind} {name}"))?;
        Ok(object.map(serde_json::to_value).transpose()?)
    }

    /// Every object of a kind in `namespace` (all namespaces with `None`).
    pub(crate) async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
    ) -> anyhow::Result<Vec<Value>> {
        let api = self.api(api_version, kind, namespace).await?;
        let list = api
            .list(&Default::default())
            .await
            .with_context(|| format!("listing {kind}"))?;
        list.items
            .into_iter()
            .map(|o| Ok(serde_json::to_value(o)?))
            .collect()
    }

    /// A JSON merge patch of the object's spec or metadata (as `kubectl patch --type merge`);
    /// returns the patched object.
    pub(crate) async fn merge_patch(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        patch: &Value,
    ) -> anyhow::Result<Value> {
        let api = self.api(api_version, kind, namespace).await?;
        let patched = api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .with_context(|| format!("patching {kind} {name}"))?;
        Ok(serde_json::to_value(patched)?)
    }

    /// Waits (up to [`WAIT`]) until the object exists and `done` holds for it.
    pub(crate) async fn wait_for(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let object = self.get(api_version, kind, namespace, name).await?;
            match object {
                Some(object) if done(&object) => return Ok(object),
                object if tokio::time::Instant::now() >= deadline => bail!(
                    "{kind} {name}: {what} did not happen within {WAIT:?}; it is now:\n{:#}",
                    object.unwrap_or(Value::Null)
                ),
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Replaces a volume's files with `files` (the claim must be bound).
    pub(crate) async fn write_volume(
        &self,
        namespace: &str,
        claim: &str,
        files: &BTreeMap<String, Vec<u8>>,
    ) -> anyhow::Result<()> {
        match &self.local {
            Some(local) => {
                let dir = claim_dir(&local.root, namespace, claim);
                empty_dir(&dir)?;
                for (path, content) in files {
                    let path = dir.join(path);
                    std::fs::create_dir_all(path.parent().expect("a file in the volume"))?;
                    std::fs::write(&path, content)?;
                }
                Ok(())
            }
            None => {
                // Small trees only: the files travel base64-encoded in the Pod's command.
                use base64::Engine as _;
                let mut script = String::from(
                    "set -e; cd /data; find . -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} +;",
                );
                for (path, content) in files {
                    let encoded = base64::engine::general_purpose::STANDARD.encode(content);
                    script += &format!(
                        " mkdir -p \"$(dirname '{path}')\"; echo '{encoded}' | base64 -d > '{path}';"
                    );
                }
                self.run_pod(namespace, claim, "write", &script)
                    .await
                    .map(|_| ())
            }
        }
    }

    /// The SHA-256 of every regular file in a volume, `lost+found` left out.
    pub(crate) async fn volume_digest(
        &self,
        namespace: &str,
        claim: &str,
    ) -> anyhow::Result<Digest> {
        match &self.local {
            Some(local) => digest_dir(&claim_dir(&local.root, namespace, claim)),
            None => {
                let output = self
                    .run_pod(namespace, claim, "digest", "cd /data && find . -path ./lost+found -prune -o -type f -exec sha256sum {} +")
                    .await?;
                Ok(parse_sha256sum(&output))
            }
        }
    }

    /// Runs `script` in a busybox Pod with the claim at `/data` and returns its log.
    async fn run_pod(
        &self,
        namespace: &str,
        claim: &str,
        purpose: &str,
        script: &str,
    ) -> anyhow::Result<String> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let name = format!(
            "arca-e2e-{purpose}-{}",
            jiff::Timestamp::now().as_millisecond()
        );
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"restartPolicy": "Never",
                "containers": [{"name": "files", "image": "busybox:1.36", "command": ["sh", "-c", script],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
        let finished = self
            .wait_for(
                "v1",
                "Pod",
                Some(namespace),
                &name,
                "the file pod finishing",
                |p| matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")),
            )
            .await?;
        let log = pods.logs(&name, &LogParams::default()).await?;
        pods.delete(&name, &Default::default()).await?;
        if finished["status"]["phase"] != "Succeeded" {
            bail!("the pod that {purpose}s volume {claim} failed:\n{log}");
        }
        Ok(log)
    }

    /// The kubelet stand-in's pod logs (the agent's stderr), for error messages.
    pub(crate) fn agent_logs(&self) -> String {
        let Some(local) = &self.local else {
            return String::from("(pod logs: see the cluster)");
        };
        let mut text = String::new();
        let pods = local.root.join("pods");
        for namespace in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
            for pod in std::fs::read_dir(namespace.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let log =
                    std::fs::read_to_string(pod.path().join("stderr.log")).unwrap_or_default();
                text += &format!("--- {}\n{}\n", pod.path().display(), tail(&log, 20));
            }
        }
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(local) = &self.local {
            local.kubelet.abort();
        }
    }
}

async fn client(kubeconfig: &Path) -> anyhow::Result<Client> {
    let kubeconfig_doc = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig_doc, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("using {}", kubeconfig.display()))?;
    Ok(Client::try_from(config)?)
}

/// `apiVersion`, `kind` and `metadata.name` of a manifest.
pub(crate) fn identity(object: &Value) -> anyhow::Result<(String, String, String)> {
    let field = |value: &Value, what: &str| {
        value
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("a manifest without {what}: {object}"))
    };
    Ok((
        field(&object["apiVersion"], "apiVersion")?,
        field(&object["kind"], "kind")?,
        field(&object["metadata"]["name"], "metadata.name")?,
    ))
}

/// Every YAML document of every `*.yaml`/`*.yml` file in `dir`, in file-name order.
pub(crate) fn yaml_documents_in(dir: &Path) -> anyhow::Result<Vec<Value>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")));
    files.sort();
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        for document in serde_norway::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document)
                .with_context(|| format!("parsing {}", file.display()))?;
            if !value.is_null() {
                documents.push(value);
            }
        }
    }
    Ok(documents)
}

fn empty_dir(dir: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if entry.file_name() == "lost+found" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The digest of the regular files under `root` (`lost+found` at the top left out).
pub(crate) fn digest_dir(root: &Path) -> anyhow::Result<Digest> {
    let mut digest = Digest::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let relative = path.strip_prefix(root)?.to_string_lossy().into_owned();
            if relative == "lost+found" {
                continue;
            }
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else {
                digest.insert(relative, sha256_hex(&std::fs::read(&path)?));
            }
        }
    }
    Ok(digest)
}

/// The digest of an in-memory tree, to compare with a volume's.
pub(crate) fn digest_files(files: &BTreeMap<String, Vec<u8>>) -> Digest {
    files
        .iter()
        .map(|(path, content)| (path.clone(), sha256_hex(content)))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `sha256sum`'s output (`HEX  ./path` per line) as a digest.
fn parse_sha256sum(output: &str) -> Digest {
    output
        .lines()
        .filter_map(|line| line.split_once("  "))
        .map(|(hex, path)| (path.trim_start_matches("./").to_string(), hex.to_string()))
        .collect()
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A running `arca-controller` process; killed (SIGKILL) when dropped.
pub(crate) struct ControllerProcess {
    child: Child,
    metrics_port: u16,
    log: PathBuf,
}

impl ControllerProcess {
    /// Starts the controller binary against the cluster's API server and
    /// waits until its readiness endpoint answers 200.
    pub(crate) fn start(
        binary: &Path,
        cluster: &Cluster,
        agent_image: &str,
        log: &Path,
        extra_args: &[String],
    ) -> anyhow::Result<ControllerProcess> {
        let metrics_port = free_port()?;
        let health_port = free_port()?;
        let child = Command::new(binary)
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(["--metrics-address", &format!("127.0.0.1:{metrics_port}")])
            .args(["--health-address", &format!("127.0.0.1:{health_port}")])
            .args(["--agent-image", agent_image])
            .args(extra_args)
            .env("ARCA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut controller = ControllerProcess {
            child,
            metrics_port,
            log: log.to_path_buf(),
        };
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if matches!(http_get(health_port, "/readyz"), Ok((200, _))) {
                return Ok(controller);
            }
            if let Some(status) = controller.child.try_wait()? {
                bail!(
                    "arca-controller exited with {status}:\n{}",
                    controller.log_tail()
                );
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "arca-controller was not ready within {WAIT:?}:\n{}",
                    controller.log_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The text `/metrics` serves once `check` accepts it. The controller
    /// records a source's metrics just after it writes the status a scenario
    /// waits for, so a scrape right after that status may come first; after
    /// [`WAIT`], `check`'s error on the last text is the result.
    pub(crate) fn metrics_once(
        &self,
        check: impl Fn(&str) -> anyhow::Result<()>,
    ) -> anyhow::Result<String> {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let text = self.metrics()?;
            match check(&text) {
                Ok(()) => return Ok(text),
                Err(error) if std::time::Instant::now() >= deadline => {
                    return Err(error.context(format!("for {WAIT:?}")));
                }
                Err(_) => std::thread::sleep(POLL),
            }
        }
    }

    /// The text `/metrics` serves now.
    pub(crate) fn metrics(&self) -> anyhow::Result<String> {
        match http_get(self.metrics_port, "/metrics")? {
            (200, body) => Ok(body),
            (status, body) => bail!("/metrics answered {status}: {body}"),
        }
    }

    /// Kills the process with SIGKILL (no shutdown, no lease released) and reaps it.
    pub(crate) fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// The process id (for /proc).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The end of the controller's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 30)
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on 127.0.0.1: the status and the body.
fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("a truncated HTTP answer"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("a chunked answer from port {port} (not expected from the controller)");
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status in {head:?}"))?;
    Ok((status, body.to_string()))
}

/// A port nobody listens on right now (the OS picks it).
fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256sum_output_parses_into_the_same_digest_as_the_files() {
        let files = BTreeMap::from([
            ("a/b".to_string(), b"hello".to_vec()),
            ("c".to_string(), Vec::new()),
        ]);
        let digest = digest_files(&files);
        let output: String = digest
            .iter()
            .map(|(path, hex)| format!("{hex}  ./{path}\n"))
            .collect();
        assert_eq!(parse_sha256sum(&output), digest);
        assert_eq!(
            digest["a/b"],
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn a_directory_digest_leaves_out_lost_and_found_only() {
        let dir = std::env::temp_dir().join(format!("arca-e2e-digest-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lost+found")).unwrap();
        std::fs::create_dir_all(dir.join("x/y")).unwrap();
        std::fs::write(dir.join("lost+found/junk"), b"j").unwrap();
        std::fs::write(dir.join("x/y/z"), b"z").unwrap();
        std::fs::write(dir.join(".arca-restore-incomplete"), b"id").unwrap();
        let digest = digest_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            digest.keys().cloned().collect::<Vec<_>>(),
            vec![".arca-restore-incomplete".to_string(), "x/y/z".to_string()]
        );
    }
}
