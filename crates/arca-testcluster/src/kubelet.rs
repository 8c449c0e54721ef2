//! A stand-in for the kubelet and the storage drivers, so that Jobs the
//! controller creates really run.
//!
//! - A PersistentVolumeClaim is bound to a directory of its own (copied from
//!   its `dataSource`, a VolumeSnapshot or another claim, when it has one).
//! - A VolumeSnapshot becomes a copy of its source claim's directory and is
//!   `readyToUse`.
//! - A Job gets a Pod whose container runs as a local process: the command is
//!   looked up among the programs the test registered (the real
//!   `arca-agent`, say), environment values come from the container's `env`
//!   and `envFrom` (Secrets and ConfigMaps resolved), and every literal `env`
//!   value of the pod spec that names a path under a volume mount is
//!   rewritten to the directory backing that volume — the stand-in cannot give a process its
//!   own mount namespace, so the program must take its paths from the
//!   environment, as the mover contract does. The termination message file
//!   becomes the Pod's `terminated.message`; the Job completes, or fails once
//!   its `backoffLimit` is spent (a new Pod per retry) or at once on an exit
//!   code a `podFailurePolicy` `FailJob` rule lists. A Job with
//!   `parallelism: 0` runs nothing; deleting a Job kills its process.
//! - Any other Pod (an application's) is marked `Running` without running
//!   anything; `pods/exec` (see `exec.rs`) runs commands in its context.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::process::Command;
use tokio::sync::broadcast::error::RecvError;

use crate::registry::ResourceKey;
use crate::store::{Part, PatchKind, Store};
use crate::{Error, Result};

/// Where the stand-in keeps volumes and which programs containers may run.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    /// Root of the claim, snapshot and pod directories.
    pub root: PathBuf,
    /// Container command (its first word, e.g. `arca-agent`) → local program.
    pub programs: BTreeMap<String, PathBuf>,
    /// Extra environment for every container process (e.g. the S3
    /// endpoint's test credentials are not needed: they come from Secrets).
    pub extra_env: BTreeMap<String, String>,
}

/// Runs the stand-in until the returned task is aborted.
pub fn start_kubelet(store: Arc<Store>, config: KubeletConfig) -> tokio::task::JoinHandle<()> {
    store.set_kubelet(config.clone());
    tokio::spawn(async move {
        let mut events = store.subscribe();
        // Objects created before the subscription are handled first.
        for object in store.dump() {
            handle(&store, &config, &object).await;
        }
        loop {
            match events.recv().await {
                Ok(event) if event.kind != "DELETED" => {
                    handle(&store, &config, &event.object).await;
                }
                Ok(event) => release(&config, &event.object).await,
                Err(RecvError::Lagged(_)) => {
                    for object in store.dump() {
                        handle(&store, &config, &object).await;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    })
}

fn pvcs() -> ResourceKey {
    ResourceKey::new("", "v1", "persistentvolumeclaims")
}

fn snapshots() -> ResourceKey {
    ResourceKey::new("snapshot.storage.k8s.io", "v1", "volumesnapshots")
}

fn jobs() -> ResourceKey {
    ResourceKey::new("batch", "v1", "jobs")
}

fn pods() -> ResourceKey {
    ResourceKey::new("", "v1", "pods")
}

async fn handle(store: &Arc<Store>, config: &KubeletConfig, object: &Value) {
    let outcome = match (object["apiVersion"].as_str(), object["kind"].as_str()) {
        (Some("v1"), Some("PersistentVolumeClaim")) => bind_claim(store, config, object).await,
        (Some("snapshot.storage.k8s.io/v1"), Some("VolumeSnapshot")) => {
            take_snapshot(store, config, object).await
        }
        (Some("v1"), Some("Pod")) => start_pod(store, object),
        (Some("batch/v1"), Some("Job")) => {
            // The event's copy may be older than what this stand-in wrote since.
            let (namespace, name) = meta(object);
            match store.get(&jobs(), Some(&namespace), &name) {
                Ok(current) => run_job(store, config, &current),
                Err(_) => Ok(()),
            }
        }
        _ => Ok(()),
    };
    if let Err(err) = outcome {
        tracing::warn!(
            "kubelet stand-in: {} {}: {err}",
            object["kind"].as_str().unwrap_or_default(),
            object["metadata"]["name"].as_str().unwrap_or_default()
        );
    }
}

/// Frees the directory behind a deleted claim or snapshot, as a storage
/// driver with the `Delete` reclaim policy does: a later object of the same
/// name (the controller reuses its temporary names every sync) starts empty.
async fn release(config: &KubeletConfig, object: &Value) {
    let (namespace, name) = meta(object);
    let dir = match (object["apiVersion"].as_str(), object["kind"].as_str()) {
        (Some("v1"), Some("PersistentVolumeClaim")) => claim_dir(&config.root, &namespace, &name),
        (Some("snapshot.storage.k8s.io/v1"), Some("VolumeSnapshot")) => {
            snapshot_dir(&config.root, &namespace, &name)
        }
        _ => return,
    };
    if let Err(err) = tokio::fs::remove_dir_all(&dir).await
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("kubelet stand-in: removing {}: {err}", dir.display());
    }
}

fn meta(object: &Value) -> (String, String) {
    (
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

/// The directory backing a claim.
pub fn claim_dir(root: &Path, namespace: &str, name: &str) -> PathBuf {
    root.join("volumes").join(namespace).join(name)
}

fn snapshot_dir(root: &Path, namespace: &str, name: &str) -> PathBuf {
    root.join("snapshots").join(namespace).join(name)
}

async fn bind_claim(store: &Store, config: &KubeletConfig, claim: &Value) -> Result<()> {
    if claim["status"]["phase"].as_str() == Some("Bound")
        || !claim["metadata"]["deletionTimestamp"].is_null()
    {
        return Ok(());
    }
    let (namespace, name) = meta(claim);
    let dir = claim_dir(&config.root, &namespace, &name);
    let source = &claim["spec"]["dataSource"];
    let from = match (source["kind"].as_str(), source["name"].as_str()) {
        (Some("VolumeSnapshot"), Some(snapshot)) => {
            Some(snapshot_dir(&config.root, &namespace, snapshot))
        }
        (Some("PersistentVolumeClaim"), Some(other)) => {
            Some(claim_dir(&config.root, &namespace, other))
        }
        _ => None,
    };
    match from {
        Some(from) if !from.is_dir() => return Ok(()), // bound once its source exists
        Some(from) => copy_tree(&from, &dir).await?,
        None => tokio::fs::create_dir_all(&dir).await?,
    }
    let capacity = claim["spec"]["resources"]["requests"]["storage"].clone();
    let status = json!({"status": {"phase": "Bound", "accessModes": claim["spec"]["accessModes"].clone(),
        "capacity": {"storage": capacity}}});
    store.patch(
        &pvcs(),
        Some(&namespace),
        &name,
        PatchKind::Merge,
        status,
        Part::Status,
        None,
    )?;
    Ok(())
}

async fn take_snapshot(store: &Store, config: &KubeletConfig, snapshot: &Value) -> Result<()> {
    if snapshot["status"]["readyToUse"] == Value::Bool(true) {
        return Ok(());
    }
    let (namespace, name) = meta(snapshot);
    let Some(claim) = snapshot["spec"]["source"]["persistentVolumeClaimName"].as_str() else {
        return Ok(());
    };
    let from = claim_dir(&config.root, &namespace, claim);
    if !from.is_dir() {
        return Ok(());
    }
    copy_tree(&from, &snapshot_dir(&config.root, &namespace, &name)).await?;
    let size = store
        .get(&pvcs(), Some(&namespace), claim)
        .map(|c| c["status"]["capacity"]["storage"].clone())
        .unwrap_or(Value::Null);
    let status = json!({"status": {"readyToUse": true, "restoreSize": size,
        "creationTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}});
    store.patch(
        &snapshots(),
        Some(&namespace),
        &name,
        PatchKind::Merge,
        status,
        Part::Status,
        None,
    )?;
    Ok(())
}

/// A Pod that no Job of this stand-in runs (an application's) is taken as
/// running at once: its containers run nothing here, but `pods/exec` runs
/// commands in its context (its volumes and environment).
fn start_pod(store: &Store, pod: &Value) -> Result<()> {
    let from_job = pod["metadata"]["labels"]["job-name"].is_string();
    if from_job
        || !pod["status"]["phase"].is_null()
        || !pod["metadata"]["deletionTimestamp"].is_null()
    {
        return Ok(());
    }
    let (namespace, name) = meta(pod);
    store.patch(
        &pods(),
        Some(&namespace),
        &name,
        PatchKind::Merge,
        json!({"status": {"phase": "Running", "startTime": now()}}),
        Part::Status,
        None,
    )?;
    Ok(())
}

/// Starts a Pod for a Job that needs one: not finished, not paused, and no
/// Pod of it running.
fn run_job(store: &Arc<Store>, config: &KubeletConfig, job: &Value) -> Result<()> {
    let (namespace, name) = meta(job);
    let finished = job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            matches!(c["type"].as_str(), Some("Complete" | "Failed")) && c["status"] == "True"
        });
    let paused = job["spec"]["parallelism"].as_i64() == Some(0);
    let active = job["status"]["active"].as_i64().unwrap_or(0);
    if finished || paused || active > 0 || !job["metadata"]["deletionTimestamp"].is_null() {
        return Ok(());
    }
    let attempt = job["status"]["failed"].as_i64().unwrap_or(0);
    let pod_name = format!("{name}-{attempt}");
    let container = job["spec"]["template"]["spec"]["containers"][0].clone();
    let pod = json!({
        "metadata": {"name": pod_name, "namespace": namespace,
            "labels": {"job-name": name, "batch.kubernetes.io/job-name": name},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                "uid": job["metadata"]["uid"].clone(), "controller": true, "blockOwnerDeletion": true}]},
        "spec": job["spec"]["template"]["spec"].clone(),
        "status": {"phase": "Running"}
    });
    store.create(&pods(), Some(&namespace), pod)?;
    store.patch(
        &jobs(),
        Some(&namespace),
        &name,
        PatchKind::Merge,
        json!({"status": {"active": 1, "startTime": now()}}),
        Part::Status,
        None,
    )?;
    let store = Arc::clone(store);
    let config = config.clone();
    let job = job.clone();
    tokio::spawn(async move {
        let outcome = run_container(&store, &config, &job, &pod_name, &container).await;
        if let Err(err) = finish(&store, &job, &pod_name, outcome) {
            tracing::warn!("kubelet stand-in: job {name}: {err}");
        }
    });
    Ok(())
}

/// How a container ended: exit code and termination message.
struct Terminated {
    exit_code: i32,
    message: String,
}

async fn run_container(
    store: &Store,
    config: &KubeletConfig,
    job: &Value,
    pod_name: &str,
    container: &Value,
) -> Result<Terminated> {
    let (namespace, _) = meta(job);
    let command: Vec<String> = container["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(container["args"].as_array().into_iter().flatten())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Error::Invalid("the container has no command".into()))?;
    let program = config
        .programs
        .get(program)
        .ok_or_else(|| Error::Invalid(format!("no program registered for {program:?}")))?;
    let pod_dir = pod_dir(config, &namespace, pod_name);
    let termination_path = container["terminationMessagePath"]
        .as_str()
        .unwrap_or("/dev/termination-log")
        .to_string();
    let termination_file = pod_dir.join("termination-log");
    let context = ContainerContext::new(
        store,
        config,
        &namespace,
        pod_name,
        &job["spec"]["template"]["spec"],
        container,
        vec![(termination_path, termination_file.clone())],
    )
    .await?;

    let mut child = Command::new(program);
    child
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(&config.extra_env)
        .envs(&context.env)
        .env("ARCA_RESULT_PATH", &termination_file)
        .env(
            "TMPDIR",
            context.volume_dirs.get("tempdir").unwrap_or(&pod_dir),
        )
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(pod_dir.join("stdout.log"))?)
        .stderr(std::fs::File::create(pod_dir.join("stderr.log"))?)
        .kill_on_drop(true);
    let mut child = child.spawn()?;
    let status = tokio::select! {
        status = child.wait() => status?,
        () = job_deleted(store, job) => {
            child.kill().await?;
            return Err(Error::NotFound("the Job was deleted while it ran".into()));
        }
    };
    let message = tokio::fs::read_to_string(&termination_file)
        .await
        .unwrap_or_default();
    Ok(Terminated {
        exit_code: status.code().unwrap_or(137),
        message,
    })
}

/// Where the stand-in keeps a pod's own files (logs, Secret volumes, scratch).
pub(crate) fn pod_dir(config: &KubeletConfig, namespace: &str, pod_name: &str) -> PathBuf {
    config.root.join("pods").join(namespace).join(pod_name)
}

/// A container's view of its pod, on the host: the directory behind each
/// volume and mount, and the environment the container gets.
pub(crate) struct ContainerContext {
    /// Volume name → host directory.
    pub(crate) volume_dirs: BTreeMap<String, PathBuf>,
    /// Mount path → host directory, longest first so nested mounts win.
    pub(crate) mounts: Vec<(String, PathBuf)>,
    /// The container's environment (`env` and `envFrom` resolved; literal
    /// values naming paths under a mount rewritten to the host directory).
    pub(crate) env: BTreeMap<String, String>,
}

impl ContainerContext {
    /// Prepares the pod's volumes (a claim's directory, Secret and ConfigMap
    /// items written out, a scratch directory otherwise) and resolves the
    /// container's mounts and environment; `extra_mounts` are further
    /// path → host file pairs (a Job's termination message file).
    pub(crate) async fn new(
        store: &Store,
        config: &KubeletConfig,
        namespace: &str,
        pod_name: &str,
        pod_spec: &Value,
        container: &Value,
        extra_mounts: Vec<(String, PathBuf)>,
    ) -> Result<ContainerContext> {
        let pod_dir = pod_dir(config, namespace, pod_name);
        tokio::fs::create_dir_all(&pod_dir).await?;
        let mut volume_dirs = BTreeMap::new();
        for volume in pod_spec["volumes"].as_array().into_iter().flatten() {
            let volume_name = volume["name"].as_str().unwrap_or_default().to_string();
            let dir = if let Some(claim) = volume["persistentVolumeClaim"]["claimName"].as_str() {
                claim_dir(&config.root, namespace, claim)
            } else if let Some(secret) = volume["secret"]["secretName"].as_str() {
                let dir = pod_dir.join("volumes").join(&volume_name);
                write_items(
                    store,
                    namespace,
                    "secrets",
                    secret,
                    &volume["secret"]["items"],
                    &dir,
                )
                .await?;
                dir
            } else if let Some(map) = volume["configMap"]["name"].as_str() {
                let dir = pod_dir.join("volumes").join(&volume_name);
                write_items(
                    store,
                    namespace,
                    "configmaps",
                    map,
                    &volume["configMap"]["items"],
                    &dir,
                )
                .await?;
                dir
            } else {
                pod_dir.join("volumes").join(&volume_name)
            };
            tokio::fs::create_dir_all(&dir).await?;
            volume_dirs.insert(volume_name, dir);
        }
        let mut mounts: Vec<(String, PathBuf)> = container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| {
                let dir = volume_dirs.get(m["name"].as_str()?)?;
                Some((
                    m["mountPath"].as_str()?.trim_end_matches('/').to_string(),
                    dir.clone(),
                ))
            })
            .collect();
        mounts.extend(extra_mounts);
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        let mut context = ContainerContext {
            volume_dirs,
            mounts,
            env: BTreeMap::new(),
        };
        context.env = context.environment(store, namespace, pod_name, container)?;
        Ok(context)
    }

    /// `value` with a leading mount path replaced by the directory behind it.
    pub(crate) fn translate(&self, value: &str) -> String {
        for (path, dir) in &self.mounts {
            if value == path {
                return dir.to_string_lossy().into_owned();
            }
            if let Some(rest) = value.strip_prefix(&format!("{path}/")) {
                return dir.join(rest).to_string_lossy().into_owned();
            }
        }
        value.to_string()
    }

    fn environment(
        &self,
        store: &Store,
        namespace: &str,
        pod_name: &str,
        container: &Value,
    ) -> Result<BTreeMap<String, String>> {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for from in container["envFrom"].as_array().into_iter().flatten() {
            let (plural, name) = if let Some(name) = from["secretRef"]["name"].as_str() {
                ("secrets", name)
            } else if let Some(name) = from["configMapRef"]["name"].as_str() {
                ("configmaps", name)
            } else {
                continue;
            };
            let prefix = from["prefix"].as_str().unwrap_or_default();
            for (key, value) in read_data(store, namespace, plural, name)? {
                env.insert(format!("{prefix}{key}"), value);
            }
        }
        for var in container["env"].as_array().into_iter().flatten() {
            let name = var["name"].as_str().unwrap_or_default().to_string();
            if let Some(value) = var["value"].as_str() {
                // Only the pod spec's own values name paths inside the
                // container; Secrets and ConfigMaps hold outside configuration.
                env.insert(name, self.translate(value));
                continue;
            }
            let source = &var["valueFrom"];
            let (plural, reference) = if source["secretKeyRef"].is_object() {
                ("secrets", &source["secretKeyRef"])
            } else if source["configMapKeyRef"].is_object() {
                ("configmaps", &source["configMapKeyRef"])
            } else if let Some(path) = source["fieldRef"]["fieldPath"].as_str() {
                let value = match path {
                    "metadata.name" => pod_name.to_string(),
                    "metadata.namespace" => namespace.to_string(),
                    _ => String::new(),
                };
                env.insert(name, value);
                continue;
            } else {
                continue;
            };
            let data = read_data(
                store,
                namespace,
                plural,
                reference["name"].as_str().unwrap_or_default(),
            )?;
            let key = reference["key"].as_str().unwrap_or_default();
            match data.get(key) {
                Some(value) => {
                    env.insert(name, value.clone());
                }
                None if reference["optional"] == Value::Bool(true) => {}
                None => {
                    return Err(Error::Invalid(format!(
                        "CreateContainerConfigError: key {key} not found"
                    )));
                }
            }
        }
        Ok(env)
    }
}

/// Resolves when the Job is gone or being deleted.
async fn job_deleted(store: &Store, job: &Value) {
    let (namespace, name) = meta(job);
    let uid = job["metadata"]["uid"].clone();
    let mut events = store.subscribe();
    loop {
        match store.get(&jobs(), Some(&namespace), &name) {
            Ok(current)
                if current["metadata"]["uid"] == uid
                    && current["metadata"]["deletionTimestamp"].is_null() => {}
            _ => return,
        }
        if let Err(RecvError::Closed) = events.recv().await {
            return;
        }
    }
}

/// Records how the Pod ended and moves the Job on: complete, failed for
/// good, or one more failure to retry.
fn finish(store: &Store, job: &Value, pod_name: &str, outcome: Result<Terminated>) -> Result<()> {
    let (namespace, name) = meta(job);
    let terminated = match outcome {
        Ok(terminated) => terminated,
        Err(Error::NotFound(_)) => return Ok(()),
        Err(err) => Terminated {
            exit_code: 128,
            message: err.to_string(),
        },
    };
    let succeeded = terminated.exit_code == 0;
    let state = json!({"terminated": {"exitCode": terminated.exit_code, "message": terminated.message,
        "reason": if succeeded { "Completed" } else { "Error" }, "finishedAt": now()}});
    store.patch(&pods(), Some(&namespace), pod_name, PatchKind::Merge,
        json!({"status": {"phase": if succeeded { "Succeeded" } else { "Failed" },
            "containerStatuses": [{"name": "mover", "ready": false, "restartCount": 0, "state": state}]}}),
        Part::Status, None)?;
    let current = store.get(&jobs(), Some(&namespace), &name)?;
    let failed = current["status"]["failed"].as_i64().unwrap_or(0) + i64::from(!succeeded);
    let backoff_limit = current["spec"]["backoffLimit"].as_i64().unwrap_or(6);
    let mut status = json!({"active": 0, "failed": failed, "succeeded": i64::from(succeeded)});
    if succeeded {
        status["completionTime"] = json!(now());
        status["conditions"] =
            json!([{"type": "Complete", "status": "True", "lastTransitionTime": now()}]);
    } else if fails_job_at_once(&current, terminated.exit_code) {
        status["conditions"] = json!([{"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
            "lastTransitionTime": now()}]);
    } else if failed > backoff_limit {
        status["conditions"] = json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
            "lastTransitionTime": now()}]);
    }
    store.patch(
        &jobs(),
        Some(&namespace),
        &name,
        PatchKind::Merge,
        json!({"status": status}),
        Part::Status,
        None,
    )?;
    Ok(())
}

/// Whether the Job's `podFailurePolicy` has a `FailJob` rule whose `onExitCodes` (`In`) holds
/// `exit_code` (the only rule form the stand-in knows).
fn fails_job_at_once(job: &Value, exit_code: i32) -> bool {
    job["spec"]["podFailurePolicy"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|rule| {
            let codes = &rule["onExitCodes"];
            rule["action"] == "FailJob"
                && codes["operator"] == "In"
                && codes["values"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|c| c.as_i64() == Some(i64::from(exit_code))))
        })
}

fn read_data(
    store: &Store,
    namespace: &str,
    plural: &str,
    name: &str,
) -> Result<BTreeMap<String, String>> {
    let object = store.get(&ResourceKey::new("", "v1", plural), Some(namespace), name)?;
    let mut data = BTreeMap::new();
    for (key, value) in object["data"].as_object().into_iter().flatten() {
        let text = value.as_str().unwrap_or_default();
        let value = if plural == "secrets" {
            decode_base64(text)?
        } else {
            text.to_string()
        };
        data.insert(key.clone(), value);
    }
    for (key, value) in object["stringData"].as_object().into_iter().flatten() {
        data.insert(key.clone(), value.as_str().unwrap_or_default().to_string());
    }
    Ok(data)
}

async fn write_items(
    store: &Store,
    namespace: &str,
    plural: &str,
    name: &str,
    items: &Value,
    dir: &Path,
) -> Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let data = read_data(store, namespace, plural, name)?;
    let wanted: Vec<(String, String)> = match items.as_array() {
        Some(items) => items
            .iter()
            .filter_map(|i| {
                Some((
                    i["key"].as_str()?.to_string(),
                    i["path"].as_str()?.to_string(),
                ))
            })
            .collect(),
        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    for (key, path) in wanted {
        if let Some(value) = data.get(&key) {
            tokio::fs::write(dir.join(path), value).await?;
        }
    }
    Ok(())
}

/// A Secret's `data` value: standard base64 of UTF-8 text.
fn decode_base64(text: &str) -> Result<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| Error::Invalid("a Secret's data is not base64".into()))?;
    String::from_utf8(bytes).map_err(|_| Error::Invalid("a Secret's value is not UTF-8".into()))
}

/// `cp -a`: a snapshot or clone keeps modes, times and links.
/// Makes `to` a copy of `from`, replacing whatever `to` held (`cp -a` into an
/// existing directory would nest the copy inside it instead).
async fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    match tokio::fs::remove_dir_all(to).await {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err.into()),
        _ => {}
    }
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .await?;
    if !status.success() {
        return Err(Error::Invalid(format!("copying {} failed", from.display())));
    }
    Ok(())
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_data_decodes_like_kubernetes() {
        assert_eq!(decode_base64("cGFzc3dvcmQ=").unwrap(), "password");
        assert_eq!(
            decode_base64("L3JlcG9zaXRvcnkvYXBw").unwrap(),
            "/repository/app"
        );
        assert!(decode_base64("not*base64").is_err());
    }
}
