//! `arca-e2e`, the operator's end-to-end driver that `cargo xtask e2e` runs:
//! the real `arca-controller` and `arca-agent` binaries, unmodified, against
//! a cluster — by default the in-memory API server of
//! `arca-testcluster` with its kubelet stand-in and a local S3 server (moto),
//! or a real cluster with `--kubeconfig`.
//!
//! The default scenario applies the seed's two manifests (deploy/examples/)
//! and drives them with VolSync's manual triggers:
//!
//! 1. every ReplicationSource backs its volume up, the volume changes, and it
//!    backs up again; the status fields and the metrics are checked;
//! 2. every ReplicationDestination (the seed's is in another namespace, as a
//!    DR cluster's would be) restores the latest snapshot, the one as of a
//!    time between the two backups (`restoreAsOf`) and the one before the
//!    latest (`previous: 1`), each compared byte for byte with what the
//!    source held then;
//! 3. replication and drills: a source whose backups are copied to a second
//!    repository, restored from that replica by a ReplicationDestination in
//!    another namespace (the DR site), and a recovery drill of the primary
//!    triggered by hand, their status and metrics checked (in-memory cluster
//!    only: the replica is a path of the harness's S3 server);
//! 4. complete cluster loss: a fresh cluster with nothing but the repository
//!    Secrets restores every application's volume (own cluster only);
//! 5. hooks (own cluster only): a source whose pre-backup hook writes a
//!    marker into the application's volume through `pods/exec` (the restore
//!    holds it; the post-backup hook's marker, written after the snapshot,
//!    it does not), then a failing pre-backup hook stops a sync;
//! 6. controller fail-over: two replicas share the work through Leases; the
//!    one holding the source's shard is SIGKILLed while its mover Job runs,
//!    and the other must take the shard over and finish the sync (pending,
//!    and said so, while the controller binary has no `--lease-namespace`).
//!
//! `--scale N` instead loads N ReplicationSources and measures the
//! controller's memory and how fast it brings them to a steady state.

//!
//! Test tooling, not a product binary: it expects `arca-controller` and
//! `arca-agent` beside its own executable (`cargo test --workspace` builds all
//! three into the same directory) and a local S3 server started by xtask
//! (`--s3`). It is a binary of its own, not part of xtask, so that
//! xtask stays small: built alone, the kube client stack it needs would be
//! compiled a second time with features other than the test build's.

// A terminal program: printing progress is its whole interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cluster;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};
use serde_json::{Value, json};

use crate::cluster::{
    Cluster, ControllerProcess, Digest, digest_files, identity, yaml_documents_in,
};

const USAGE: &str = "\
usage: arca-e2e --work DIR [--s3 URL] [--manifests DIR] [--kubeconfig FILE] [--agent-image IMAGE] [--keep]
       arca-e2e --work DIR --scale N
(`cargo xtask e2e` runs it with --work and, for the in-memory cluster, --s3)

  --work DIR          the run's scratch directory (emptied first)
  --s3 URL            a bucket on the local S3 server for the repositories of the Secrets the
                      harness creates (http://127.0.0.1:PORT/BUCKET; needed without --kubeconfig)

  --manifests DIR     the manifests to apply (default: deploy/examples, the seed's two);
                      Secrets they name but do not hold are created for the local S3 server
  --kubeconfig FILE   run against a real cluster instead of the in-memory one (the CRDs,
                      the Secrets and the agent image must be there already)
  --agent-image IMG   the mover image the controller puts in Jobs (default arca/arca-agent:0.1.0)
  --keep              keep the work directory for inspection
  --scale N           load N ReplicationSources into the in-memory cluster and report the
                      controller's peak memory and reconcile throughput
";

const API_VOLSYNC: &str = "volsync.backube/v1alpha1";
const SOURCE: &str = "ReplicationSource";
const DESTINATION: &str = "ReplicationDestination";
/// The namespace of manifests that name none (the kubeconfig's default).
const DEFAULT_NAMESPACE: &str = "default";
/// The repository password of the Secrets the harness creates (a test value).
const TEST_PASSWORD: &str = "arca-e2e-test-password";

#[derive(Debug)]
struct Options {
    work: PathBuf,
    s3_bucket: Option<String>,
    manifests: PathBuf,
    kubeconfig: Option<PathBuf>,
    agent_image: String,
    keep: bool,
    scale: Option<usize>,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut work = None;
    let mut options = Options {
        work: PathBuf::new(),
        s3_bucket: None,
        manifests: project_root().join("deploy/examples"),
        kubeconfig: None,
        agent_image: "arca/arca-agent:0.1.0".into(),
        keep: false,
        scale: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--work" => work = Some(PathBuf::from(value()?)),
            "--s3" => options.s3_bucket = Some(value()?.trim_end_matches('/').to_owned()),
            "--manifests" => options.manifests = PathBuf::from(value()?),
            "--kubeconfig" => options.kubeconfig = Some(PathBuf::from(value()?)),
            "--agent-image" => options.agent_image = value()?.clone(),
            "--keep" => options.keep = true,
            "--scale" => options.scale = Some(value()?.parse().context("--scale takes a count")?),
            "--help" | "-h" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other:?}\n\n{USAGE}"),
        }
    }
    if options.scale.is_some() && options.kubeconfig.is_some() {
        bail!("--scale runs on the in-memory cluster only");
    }
    if options.scale.is_none() && options.kubeconfig.is_none() && options.s3_bucket.is_none() {
        bail!("the in-memory cluster needs --s3 URL (a bucket on a local S3 server)\n\n{USAGE}");
    }
    options.work = work.with_context(|| format!("--work DIR is required\n\n{USAGE}"))?;
    Ok(options)
}

/// The workspace root, for the manifests and CRDs under deploy/.
fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory of the binaries under test: this driver's own (see the crate docs).
fn binaries_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the driver's own path")?;
    let dir = exe.parent().context("the driver's path has no parent")?;
    for binary in ["arca-controller", "arca-agent"] {
        ensure!(
            dir.join(binary).exists(),
            "{} is missing beside the driver: build the workspace's binaries first (cargo xtask e2e does)",
            dir.join(binary).display()
        );
    }
    Ok(dir.to_path_buf())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args).and_then(|options| run(&options)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("arca-e2e: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> anyhow::Result<()> {
    let binaries = binaries_dir()?;
    let work = options.work.clone();
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        match options.scale {
            Some(count) => scale(&binaries, &work, count).await,
            None => scenario(options, &binaries, &work).await,
        }
    });
    if options.keep || result.is_err() {
        println!("work directory kept: {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

/// One application of the manifests: the sources and destinations that
/// share its repository.
#[derive(Debug, Default)]
struct App {
    sources: Vec<Value>,
    destinations: Vec<Value>,
}

/// The application an object belongs to: its repository Secret's name
/// without the seed's suffixes (`example-app-volsync-secret` and
/// `example-app-dr-secret` are both `example-app`).
fn app_of(object: &Value) -> String {
    let secret = object["spec"]["restic"]["repository"]
        .as_str()
        .unwrap_or_default();
    ["-volsync-secret", "-dr-secret", "-secret"]
        .iter()
        .find_map(|suffix| secret.strip_suffix(suffix))
        .unwrap_or(secret)
        .to_string()
}

fn namespace_of(object: &Value) -> String {
    object["metadata"]["namespace"]
        .as_str()
        .unwrap_or(DEFAULT_NAMESPACE)
        .to_string()
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The files of an application's volume at a version of the scenario: a
/// database-like file that changes in place, a config that changes, and a
/// log that is replaced (so a restore of the older version must also remove
/// a file).
fn volume_content(app: &str, version: u32) -> BTreeMap<String, Vec<u8>> {
    let mut state = app.bytes().fold(0x9e37_79b9_7f4a_7c15_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut pages: Vec<u8> = (0..1 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut files = BTreeMap::new();
    if version > 1 {
        pages[200_000..265_536].fill(version as u8);
        files.insert(
            format!("logs/backup-{version}.log"),
            format!("version {version}\n").into_bytes(),
        );
    } else {
        files.insert("logs/first.log".into(), b"first\n".to_vec());
    }
    files.insert("db/pages".into(), pages);
    files.insert(
        "config.yaml".into(),
        format!("app: {app}\nversion: {version}\n").into_bytes(),
    );
    files.insert("empty".into(), Vec::new());
    files
}

/// What each step saw, printed at the end.
#[derive(Default)]
struct Summary {
    lines: Vec<String>,
}

impl Summary {
    fn passed(&mut self, line: String) {
        println!("  ok: {line}");
        self.lines.push(format!("ok       {line}"));
    }

    fn pending(&mut self, line: String) {
        println!("  PENDING: {line}");
        self.lines.push(format!("PENDING  {line}"));
    }
}

async fn scenario(options: &Options, binaries: &Path, work: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let manifests = yaml_documents_in(&options.manifests)?;
    let mut apps: BTreeMap<String, App> = BTreeMap::new();
    let mut others = Vec::new();
    for manifest in manifests {
        let (api_version, kind, _) = identity(&manifest)?;
        match (api_version.as_str(), kind.as_str()) {
            (API_VOLSYNC, SOURCE) => apps
                .entry(app_of(&manifest))
                .or_default()
                .sources
                .push(manifest),
            (API_VOLSYNC, DESTINATION) => apps
                .entry(app_of(&manifest))
                .or_default()
                .destinations
                .push(manifest),
            _ => others.push(manifest),
        }
    }
    ensure!(
        apps.values().any(|a| !a.sources.is_empty()),
        "{} holds no ReplicationSource to drive",
        options.manifests.display()
    );

    let crds = project_root().join("deploy/helm/arca/crds");
    let cluster = match &options.kubeconfig {
        Some(kubeconfig) => Cluster::connect(kubeconfig).await?,
        None => {
            Cluster::start_local(
                &work.join("primary"),
                Some(&binaries.join("arca-agent")),
                &crds,
            )
            .await?
        }
    };
    let controller_binary = binaries.join("arca-controller");
    let controller = ControllerProcess::start(
        &controller_binary,
        &cluster,
        &options.agent_image,
        &work.join("controller.log"),
        // The cluster-wide compliance report, gathered often enough to be waited for.
        &[
            "--report-namespace".to_owned(),
            DEFAULT_NAMESPACE.to_owned(),
            "--report-interval-seconds".to_owned(),
            "2".to_owned(),
        ],
    )?;
    let mut summary = Summary::default();
    let s3_bucket = options.s3_bucket.as_deref();

    println!("\n==> setup: namespaces, Secrets, volumes");
    for manifest in &others {
        cluster.apply(manifest, Some(DEFAULT_NAMESPACE)).await?;
    }
    for (app, objects) in &apps {
        for object in objects.sources.iter().chain(&objects.destinations) {
            prepare(&cluster, object, app, s3_bucket).await?;
        }
    }

    println!("\n==> backups: two manual syncs per source, the volume changed in between");
    let mut snapshots: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    for (app, objects) in &apps {
        for source in &objects.sources {
            let (namespace, name) = (namespace_of(source), name_of(source));
            let claim = source["spec"]["sourcePVC"]
                .as_str()
                .context("a source without sourcePVC")?;
            cluster
                .write_volume(&namespace, claim, &volume_content(app, 1))
                .await?;
            cluster.apply(source, Some(&namespace)).await?;
            let first = sync(
                &cluster,
                &controller,
                SOURCE,
                &namespace,
                &name,
                "e2e-backup-1",
            )
            .await?;
            let first_id = check_source_status(&first)?;
            // Between the two snapshots' times: what `restoreAsOf` selects the first by.
            let as_of = jiff::Timestamp::now().to_string();
            cluster
                .write_volume(&namespace, claim, &volume_content(app, 2))
                .await?;
            let second = sync(
                &cluster,
                &controller,
                SOURCE,
                &namespace,
                &name,
                "e2e-backup-2",
            )
            .await?;
            let second_id = check_source_status(&second)?;
            ensure!(
                first_id != second_id,
                "{name}: the second backup reported the first's snapshot {first_id}"
            );
            controller.metrics_once(|metrics| check_backup_metrics(metrics, &second, 2))?;
            summary.passed(format!(
                "{namespace}/{name}: backups {first_id} and {second_id}; status and metrics (jobs 2, completed success 2, duration count 2, last backup time) agree"
            ));
            snapshots.insert(app.clone(), (first_id, second_id, as_of));
        }
    }

    println!("\n==> restores: latest, restoreAsOf, previous");
    for (app, objects) in &apps {
        let Some((first_id, second_id, as_of)) = snapshots.get(app) else {
            continue;
        };
        for destination in &objects.destinations {
            let (namespace, name) = (namespace_of(destination), name_of(destination));
            cluster.apply(destination, Some(&namespace)).await?;
            // VolSync's semantics: without enableFileDeletion a restore
            // keeps the files the snapshot lacks (restoring the first
            // backup over the second leaves the second's new log), with it
            // the volume becomes exactly the snapshot.
            let (first, second) = (volume_content(app, 1), volume_content(app, 2));
            let mut merged = first.clone();
            merged.extend(
                second
                    .iter()
                    .filter(|(path, _)| !first.contains_key(*path))
                    .map(|(p, c)| (p.clone(), c.clone())),
            );
            let cases = [
                (
                    "latest",
                    json!({"restoreAsOf": null, "previous": null}),
                    second_id,
                    &second,
                ),
                (
                    "restoreAsOf",
                    json!({"restoreAsOf": as_of, "previous": null}),
                    first_id,
                    &merged,
                ),
                (
                    "previous",
                    json!({"restoreAsOf": null, "previous": 1, "enableFileDeletion": true}),
                    first_id,
                    &first,
                ),
            ];
            for (case, selection, snapshot, expected) in cases {
                cluster
                    .merge_patch(
                        API_VOLSYNC,
                        DESTINATION,
                        Some(&namespace),
                        &name,
                        &json!({"spec": {"restic": selection}}),
                    )
                    .await?;
                let restored = sync(
                    &cluster,
                    &controller,
                    DESTINATION,
                    &namespace,
                    &name,
                    &format!("e2e-restore-{case}"),
                )
                .await?;
                let claim = check_destination_status(&restored, snapshot)?;
                compare(
                    &cluster,
                    &namespace,
                    &claim,
                    expected,
                    &format!("{name} ({case})"),
                )
                .await?;
                summary.passed(format!("{namespace}/{name}: restore {case} = snapshot {snapshot}, byte for byte into {claim}"));
            }
        }
    }

    match s3_bucket {
        Some(bucket) => {
            println!(
                "\n==> replication to a second repository, a restore from it in another namespace, a recovery drill"
            );
            replication_and_drill(&cluster, &controller, bucket, &mut summary).await?;
        }
        None => summary.pending(
            "replication and drills need the harness's S3 server for the second repository (in-memory cluster only)".into(),
        ),
    }

    if cluster.is_local() {
        println!("\n==> complete cluster loss: a fresh cluster with only the repository Secrets");
        cluster_loss(&apps, binaries, work, options, s3_bucket, &mut summary).await?;
    } else {
        summary.pending(
            "complete cluster loss needs a second, empty cluster (own cluster only)".into(),
        );
    }

    if let Some(bucket) = s3_bucket.filter(|_| cluster.is_local()) {
        println!(
            "\n==> hooks: pre/post-backup commands in the application's pod, and a failing one"
        );
        hooks(&cluster, &controller, bucket, &mut summary).await?;
    }

    println!("\n==> objects");
    for kind in [SOURCE, DESTINATION] {
        for object in cluster.list(API_VOLSYNC, kind, None).await? {
            println!(
                "{kind} {}/{}:\n{:#}",
                namespace_of(&object),
                name_of(&object),
                object["status"]
            );
        }
    }
    println!("\n==> metrics");
    for line in controller
        .metrics()?
        .lines()
        .filter(|l| l.starts_with("volsync_"))
    {
        println!("{line}");
    }
    drop(controller);

    println!("\n==> fail-over: two replicas sharing the work, the busy one SIGKILLed mid-sync");
    failover(
        &cluster,
        &apps,
        &controller_binary,
        work,
        options,
        &mut summary,
    )
    .await?;

    println!("\n==> summary ({:.1} s)", started.elapsed().as_secs_f64());
    for line in &summary.lines {
        println!("{line}");
    }
    Ok(())
}

/// Pre- and post-backup hooks run through `pods/exec` in the application's
/// pod (the kubelet stand-in's): the pre hook writes a marker into the
/// volume before the snapshot (so the restored volume holds it), the post
/// hook one after it (so it does not); then a pre hook that exits 7 under
/// `failurePolicy: Fail` stops the next sync before any snapshot or Job,
/// with the exit code and the hook's stderr in the status.
async fn hooks(
    cluster: &Cluster,
    controller: &ControllerProcess,
    s3_bucket: &str,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    const NAMESPACE: &str = "hooks";
    const APP: &str = "hooks-app";
    let claim = format!("{APP}-data");
    let marker_script = r#"echo "$2" > "$1""#;
    let source = json!({"apiVersion": API_VOLSYNC, "kind": SOURCE,
        "metadata": {"name": format!("{APP}-backup"), "namespace": NAMESPACE},
        "spec": {"sourcePVC": claim, "trigger": {"manual": "e2e-hooks-1"},
            "restic": {"repository": format!("{APP}-secret"), "copyMethod": "Snapshot"},
            "arca": {"hooks": {
                "preBackup": {"selector": {"matchLabels": {"app": APP}}, "container": "app",
                    "command": ["sh", "-c", marker_script, "sh", "/data/pre-hook-marker", "quiesced"],
                    "timeout": "20s"},
                "postBackup": {"selector": {"matchLabels": {"app": APP}},
                    "command": ["sh", "-c", marker_script, "sh", "/data/post-hook-marker", "thawed"],
                    "failurePolicy": "Continue"}}}}});
    let destination = json!({"apiVersion": API_VOLSYNC, "kind": DESTINATION,
        "metadata": {"name": format!("{APP}-restore"), "namespace": NAMESPACE},
        "spec": {"trigger": {"manual": "e2e-hooks-restore"},
            "restic": {"repository": format!("{APP}-secret"), "destinationPVC": format!("{APP}-restored")}}});
    for object in [&source, &destination] {
        prepare(cluster, object, APP, Some(s3_bucket)).await?;
    }
    let files = volume_content(APP, 1);
    cluster.write_volume(NAMESPACE, &claim, &files).await?;
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{APP}-0"), "namespace": NAMESPACE, "labels": {"app": APP}},
        "spec": {"containers": [{"name": "app", "image": "example/app",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}});
    cluster.apply(&pod, Some(NAMESPACE)).await?;
    cluster
        .wait_for(
            "v1",
            "Pod",
            Some(NAMESPACE),
            &format!("{APP}-0"),
            "running",
            |p| p["status"]["phase"] == "Running",
        )
        .await?;

    cluster.apply(&source, Some(NAMESPACE)).await?;
    let name = format!("{APP}-backup");
    let backed_up = sync(cluster, controller, SOURCE, NAMESPACE, &name, "e2e-hooks-1").await?;
    let snapshot = check_source_status(&backed_up)?;
    cluster.apply(&destination, Some(NAMESPACE)).await?;
    let restored = sync(
        cluster,
        controller,
        DESTINATION,
        NAMESPACE,
        &format!("{APP}-restore"),
        "e2e-hooks-restore",
    )
    .await?;
    let restored_claim = check_destination_status(&restored, &snapshot)?;
    let mut expected = files.clone();
    expected.insert("pre-hook-marker".into(), b"quiesced\n".to_vec());
    compare(
        cluster,
        NAMESPACE,
        &restored_claim,
        &expected,
        "the hooked backup",
    )
    .await?;
    let live = cluster.volume_digest(NAMESPACE, &claim).await?;
    ensure!(
        live.get("post-hook-marker")
            == digest_files(&BTreeMap::from([(
                "post-hook-marker".to_string(),
                b"thawed\n".to_vec()
            )]))
            .get("post-hook-marker"),
        "the post-backup hook did not run in the application's volume: {live:?}"
    );
    summary.passed(format!(
        "{NAMESPACE}/{name}: the pre-backup hook's marker is in snapshot {snapshot} (restored byte for byte), the post-backup hook's only in the live volume"
    ));

    cluster
        .merge_patch(
            API_VOLSYNC,
            SOURCE,
            Some(NAMESPACE),
            &name,
            &json!({"spec": {"arca": {"hooks": {"preBackup": {
                "command": ["sh", "-c", "echo cannot quiesce >&2; exit 7"], "failurePolicy": "Fail"}}},
                "trigger": {"manual": "e2e-hooks-2"}}}),
        )
        .await?;
    let stopped = cluster
        .wait_for(
            API_VOLSYNC,
            SOURCE,
            Some(NAMESPACE),
            &name,
            "the failed pre-backup hook",
            |s| s["status"]["latestMoverStatus"]["result"] == "Failed",
        )
        .await?;
    let status = &stopped["status"];
    let condition = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Synchronizing"))
        .context("no Synchronizing condition")?;
    let message = condition["message"].as_str().unwrap_or_default();
    ensure!(
        condition["reason"] == "Error"
            && message.contains("pre-backup hook failed")
            && message.contains("exit code 7: cannot quiesce"),
        "the failed hook's condition does not say what failed:\n{status:#}"
    );
    ensure!(
        status["lastManualSync"] == "e2e-hooks-1"
            && status["arca"]["lastSnapshotID"] == snapshot.as_str(),
        "a sync whose pre-backup hook failed was recorded as done:\n{status:#}"
    );
    for (api_version, kind, object) in [
        ("batch/v1", "Job", format!("volsync-src-{name}")),
        (
            "snapshot.storage.k8s.io/v1",
            "VolumeSnapshot",
            format!("volsync-{name}-src"),
        ),
    ] {
        ensure!(
            cluster
                .get(api_version, kind, Some(NAMESPACE), &object)
                .await?
                .is_none(),
            "{kind} {object} exists although the pre-backup hook failed"
        );
    }
    summary.passed(format!(
        "{NAMESPACE}/{name}: a pre-backup hook exiting 7 (failurePolicy Fail) stopped the sync before any snapshot or Job: {message}"
    ));
    Ok(())
}

/// Creates what `object` needs and the manifests may lack: its namespace,
/// its repository Secret (for the local S3 server only) and its volume.
async fn prepare(
    cluster: &Cluster,
    object: &Value,
    app: &str,
    s3_bucket: Option<&str>,
) -> anyhow::Result<()> {
    let namespace = namespace_of(object);
    cluster
        .create_if_missing(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
            None,
        )
        .await?;
    let secret = object["spec"]["restic"]["repository"]
        .as_str()
        .context("a mover without spec.restic.repository")?;
    if cluster
        .get("v1", "Secret", Some(&namespace), secret)
        .await?
        .is_none()
    {
        let bucket = s3_bucket.with_context(|| {
            format!("Secret {namespace}/{secret} is missing: with --kubeconfig the manifests or the cluster must hold it")
        })?;
        cluster
            .apply(&repository_secret(&namespace, secret, bucket, app), None)
            .await?;
    }
    let claim = object["spec"]["sourcePVC"]
        .as_str()
        .or(object["spec"]["restic"]["destinationPVC"].as_str());
    if let Some(claim) = claim {
        let capacity = object["spec"]["restic"]["capacity"]
            .as_str()
            .unwrap_or("1Gi");
        cluster
            .create_if_missing(
                &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "namespace": namespace},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": capacity}}}}),
                Some(&namespace),
            )
            .await?;
        if cluster.is_local() {
            cluster
                .wait_for(
                    "v1",
                    "PersistentVolumeClaim",
                    Some(&namespace),
                    claim,
                    "binding",
                    |c| c["status"]["phase"] == "Bound",
                )
                .await?;
        }
    }
    Ok(())
}

/// A repository Secret as the seed's ExternalSecret template makes it, for
/// the local S3 server: one repository per application.
fn repository_secret(namespace: &str, name: &str, bucket: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {
            "RESTIC_REPOSITORY": format!("s3:{bucket}/{app}"),
            "RESTIC_PASSWORD": TEST_PASSWORD,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1"}})
}

/// The controller's and the agents' logs, for an error that a wait timed out.
fn logs(controller: &ControllerProcess, cluster: &Cluster) -> String {
    format!(
        "controller log:\n{}\nagent logs:\n{}",
        controller.log_tail(),
        cluster.agent_logs()
    )
}

/// Sets `spec.trigger.manual` to `tag`, waits for the controller to finish
/// that sync (`status.lastManualSync == tag`) and checks that no second sync
/// follows it ([`no_second_sync`]); returns the object as it was when the sync
/// was first seen finished.
async fn sync(
    cluster: &Cluster,
    controller: &ControllerProcess,
    kind: &str,
    namespace: &str,
    name: &str,
    tag: &str,
) -> anyhow::Result<Value> {
    cluster
        .merge_patch(
            API_VOLSYNC,
            kind,
            Some(namespace),
            name,
            &json!({"spec": {"trigger": {"manual": tag}}}),
        )
        .await?;
    let synced = cluster
        .wait_for(
            API_VOLSYNC,
            kind,
            Some(namespace),
            name,
            &format!("manual sync {tag}"),
            |o| o["status"]["lastManualSync"] == tag,
        )
        .await
        .with_context(|| logs(controller, cluster))?;
    no_second_sync(cluster, controller, kind, namespace, name, &synced).await?;
    Ok(synced)
}

/// Checks that the finished manual sync recorded in `synced` is not followed by
/// another one: a reconcile working from a controller cache that has not seen
/// the finished sync yet must not start it over (docs/ARCHITECTURE.md, "no Job
/// is created from a stale decision"). The controller is made to reconcile the
/// object once more, by a spec change that means nothing (the cache volume's
/// capacity spelled another way), and once its status shows that it has seen
/// the change (`Synchronizing.observedGeneration`), every reconcile that could
/// have worked from an older copy is over: no sync may run then, nor have run
/// since `synced` (same `lastSyncTime`).
async fn no_second_sync(
    cluster: &Cluster,
    controller: &ControllerProcess,
    kind: &str,
    namespace: &str,
    name: &str,
    synced: &Value,
) -> anyhow::Result<()> {
    let capacity = synced["spec"]["restic"]["cacheCapacity"]
        .as_str()
        .unwrap_or("1Gi");
    let respelled = respell_binary_quantity(capacity).with_context(|| {
        format!("{name}: cannot respell spec.restic.cacheCapacity {capacity:?}")
    })?;
    let touched = cluster
        .merge_patch(
            API_VOLSYNC,
            kind,
            Some(namespace),
            name,
            &json!({"spec": {"restic": {"cacheCapacity": respelled}}}),
        )
        .await?;
    let generation = touched["metadata"]["generation"].clone();
    let seen = cluster
        .wait_for(
            API_VOLSYNC,
            kind,
            Some(namespace),
            name,
            &format!("the controller seeing generation {generation}"),
            |o| {
                o["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter().any(|c| {
                        c["type"] == "Synchronizing" && c["observedGeneration"] == generation
                    })
                })
            },
        )
        .await
        .with_context(|| logs(controller, cluster))?;
    let (before, after) = (&synced["status"], &seen["status"]);
    ensure!(
        after["lastSyncStartTime"].is_null() && after["lastSyncTime"] == before["lastSyncTime"],
        "{kind} {name}: another sync followed the finished manual sync {}:\nthen {before:#}\nnow {after:#}\n{}",
        before["lastManualSync"],
        logs(controller, cluster)
    );
    Ok(())
}

/// The same quantity in other units: whole `Gi` as `Mi` and back (`1Gi` ↔ `1024Mi`).
fn respell_binary_quantity(quantity: &str) -> Option<String> {
    if let Some(gibibytes) = quantity.strip_suffix("Gi") {
        return Some(format!("{}Mi", gibibytes.parse::<u64>().ok()? * 1024));
    }
    let mebibytes = quantity.strip_suffix("Mi")?.parse::<u64>().ok()?;
    (mebibytes % 1024 == 0).then(|| format!("{}Gi", mebibytes / 1024))
}

/// The checks every finished backup's status passes; returns its snapshot ID.
fn check_source_status(source: &Value) -> anyhow::Result<String> {
    let status = &source["status"];
    let name = name_of(source);
    ensure!(
        status["latestMoverStatus"]["result"] == "Successful",
        "{name}: the backup did not succeed:\n{status:#}"
    );
    for field in ["lastSyncTime", "lastSyncDuration"] {
        ensure!(
            status[field].is_string(),
            "{name}: status.{field} is not set:\n{status:#}"
        );
    }
    // VolSync clears the start time once a sync has finished.
    ensure!(
        status["lastSyncStartTime"].is_null(),
        "{name}: status.lastSyncStartTime still set after the sync:\n{status:#}"
    );
    let synchronizing = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Synchronizing"))
        .with_context(|| format!("{name}: no Synchronizing condition:\n{status:#}"))?;
    ensure!(
        synchronizing["status"] == "False",
        "{name}: still Synchronizing after the sync finished:\n{status:#}"
    );
    let arca = &status["arca"];
    ensure!(
        arca["bytesProcessed"]
            .as_u64()
            .is_some_and(|b| b >= 1 << 20),
        "{name}: status.arca.bytesProcessed does not count the volume's 1 MiB:\n{status:#}"
    );
    arca["lastSnapshotID"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .with_context(|| format!("{name}: no status.arca.lastSnapshotID:\n{status:#}"))
}

/// The checks every finished restore's status passes; returns the claim it
/// restored into.
fn check_destination_status(destination: &Value, snapshot: &str) -> anyhow::Result<String> {
    let status = &destination["status"];
    let name = name_of(destination);
    ensure!(
        status["latestMoverStatus"]["result"] == "Successful",
        "{name}: the restore did not succeed:\n{status:#}"
    );
    ensure!(
        status["lastSyncTime"].is_string(),
        "{name}: status.lastSyncTime is not set:\n{status:#}"
    );
    ensure!(
        status["arca"]["lastSnapshotID"] == snapshot,
        "{name}: restored {} instead of snapshot {snapshot}:\n{status:#}",
        status["arca"]["lastSnapshotID"]
    );
    ensure!(
        status["latestImage"]["kind"] == "PersistentVolumeClaim",
        "{name}: status.latestImage names no claim:\n{status:#}"
    );
    status["latestImage"]["name"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{name}: status.latestImage has no name"))
}

async fn compare(
    cluster: &Cluster,
    namespace: &str,
    claim: &str,
    expected: &BTreeMap<String, Vec<u8>>,
    what: &str,
) -> anyhow::Result<()> {
    let restored: Digest = cluster.volume_digest(namespace, claim).await?;
    let expected = digest_files(expected);
    if restored != expected {
        let differing: Vec<&String> = expected
            .keys()
            .chain(restored.keys())
            .filter(|path| expected.get(*path) != restored.get(*path))
            .collect();
        bail!(
            "{what}: volume {namespace}/{claim} differs from the snapshot's files in {differing:?}"
        );
    }
    Ok(())
}

/// The seed's metrics after `syncs` successful backups of `source` (its
/// status as read after the last): the counters count each sync once, the
/// histogram observed each, and the last-backup time lies between the
/// sync's start and now.
fn check_backup_metrics(text: &str, source: &Value, syncs: u32) -> anyhow::Result<()> {
    let name = name_of(source);
    let namespace = namespace_of(source);
    let labels = [
        ("obj_name", name.as_str()),
        ("obj_namespace", namespace.as_str()),
        ("role", "source"),
    ];
    let value = |metric: &str, extra: &[(&str, &str)]| {
        let mut all = labels.to_vec();
        all.extend_from_slice(extra);
        metric_value(text, metric, &all)
    };
    let expected = f64::from(syncs);
    for (metric, extra) in [
        ("volsync_backup_jobs_total", &[][..]),
        (
            "volsync_backup_jobs_completed_total",
            &[("status", "success")][..],
        ),
        ("volsync_backup_duration_seconds_count", &[][..]),
        ("volsync_sync_duration_seconds_count", &[][..]),
    ] {
        ensure!(
            value(metric, extra) == Some(expected),
            "{name}: {metric}{extra:?} is {:?}, not {expected}",
            value(metric, extra)
        );
    }
    ensure!(
        value(
            "volsync_backup_jobs_completed_total",
            &[("status", "failed")]
        )
        .unwrap_or(0.0)
            == 0.0,
        "{name}: a failed backup was counted"
    );
    let last =
        value("volsync_last_backup_timestamp", &[]).context("no volsync_last_backup_timestamp")?;
    // Set as the sync's end was recorded: not before lastSyncTime (whole
    // seconds), not after this scrape.
    let synced: jiff::Timestamp = source["status"]["lastSyncTime"]
        .as_str()
        .unwrap_or_default()
        .parse()?;
    let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
    ensure!(
        (synced.as_second() as f64) - 1.0 <= last && last <= now,
        "{name}: volsync_last_backup_timestamp {last} is not between lastSyncTime {synced} and now"
    );
    Ok(())
}

/// The sum of the samples of `name` whose labels include `labels`, from
/// Prometheus/OpenMetrics text; `None` when no sample matches.
fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(parts) => parts,
            None => continue,
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest.strip_suffix('}').unwrap_or(rest)),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let present = parse_labels(label_text);
        if labels
            .iter()
            .all(|(k, v)| present.get(*k).map(String::as_str) == Some(*v))
            && let Ok(value) = value.parse::<f64>()
        {
            *sum.get_or_insert(0.0) += value;
        }
    }
    sum
}

/// `a="x",b="y \" z"` → {a: x, b: y " z}.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    labels
}

/// The application of the replication and drill step.
const DR_APP: &str = "dr-demo";

/// The seed's primary → replicated repository → DR site flow, and a drill: a source whose
/// backups are copied to a second repository (another path of the bucket, its own password
/// Secret), a ReplicationDestination in another namespace restoring from that replica, and a
/// manually triggered recovery drill of the primary, with the status and metrics of both.
async fn replication_and_drill(
    cluster: &Cluster,
    controller: &ControllerProcess,
    bucket: &str,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let (primary_ns, dr_ns) = ("dr-primary", "dr-site");
    let (name, claim) = (format!("{DR_APP}-backup"), format!("{DR_APP}-data"));
    let replica_secret = format!("{DR_APP}-replica-secret");
    let replica_app = format!("{DR_APP}-replica");
    let source = json!({"apiVersion": API_VOLSYNC, "kind": SOURCE,
        "metadata": {"name": name, "namespace": primary_ns},
        "spec": {"sourcePVC": claim, "trigger": {"manual": "e2e-replicated-1"},
            "restic": {"repository": format!("{DR_APP}-volsync-secret"), "copyMethod": "Direct",
                "retain": {"last": "5"}},
            "arca": {"replication": [{"repository": replica_secret}]}}});
    prepare(cluster, &source, DR_APP, Some(bucket)).await?;
    // The replica's Secret in the source's namespace: another path, another password.
    let mut replica = repository_secret(primary_ns, &replica_secret, bucket, &replica_app);
    replica["stringData"]["RESTIC_PASSWORD"] = json!("arca-e2e-replica-password");
    cluster.apply(&replica, None).await?;
    let content = volume_content(DR_APP, 1);
    cluster.write_volume(primary_ns, &claim, &content).await?;
    cluster.apply(&source, Some(primary_ns)).await?;
    let backed_up = cluster
        .wait_for(
            API_VOLSYNC,
            SOURCE,
            Some(primary_ns),
            &name,
            "the replicated backup",
            |o| o["status"]["lastManualSync"] == "e2e-replicated-1",
        )
        .await
        .with_context(|| logs(controller, cluster))?;
    no_second_sync(cluster, controller, SOURCE, primary_ns, &name, &backed_up).await?;
    let snapshot = check_source_status(&backed_up)?;
    let replicas = &backed_up["status"]["arca"]["replicas"];
    ensure!(
        replicas[0]["name"] == replica_secret.as_str()
            && replicas[0]["lastCopyTime"].is_string()
            && replicas[0]["lagSnapshots"] == 0
            && replicas[0]["lagSeconds"] == 0
            && replicas[0]["error"].is_null(),
        "{name}: status.arca.replicas does not show an up-to-date replica:\n{:#}",
        backed_up["status"]
    );
    let labels = [
        ("obj_name", name.as_str()),
        ("obj_namespace", primary_ns),
        ("replica", replica_secret.as_str()),
    ];
    controller.metrics_once(|metrics| {
        for (metric, expected) in [
            ("arca_replica_lag_snapshots", 0.0),
            ("arca_replica_lag_seconds", 0.0),
            ("arca_replica_failing", 0.0),
        ] {
            let value = metric_value(metrics, metric, &labels);
            ensure!(
                value == Some(expected),
                "{name}: {metric} is {value:?}, not {expected}"
            );
        }
        ensure!(
            metric_value(metrics, "arca_replica_last_copy_timestamp", &labels)
                .is_some_and(|t| t > 0.0),
            "{name}: no arca_replica_last_copy_timestamp"
        );
        Ok(())
    })?;
    summary.passed(format!(
        "{primary_ns}/{name}: backup {snapshot} copied to {replica_secret}; status.arca.replicas and arca_replica_* say lag 0"
    ));

    // The DR site: another namespace, only the replica's Secret (unprefixed, as the seed's
    // example-app-dr-secret), restoring into its own claim.
    let restore_name = format!("{DR_APP}-dr");
    let destination = json!({"apiVersion": API_VOLSYNC, "kind": DESTINATION,
        "metadata": {"name": restore_name, "namespace": dr_ns},
        "spec": {"trigger": {"manual": "e2e-dr-1"},
            "restic": {"repository": replica_secret, "destinationPVC": format!("{DR_APP}-dr-data"),
                "copyMethod": "Direct", "capacity": "1Gi", "accessModes": ["ReadWriteOnce"]}}});
    let mut dr_secret = replica.clone();
    dr_secret["metadata"]["namespace"] = json!(dr_ns);
    cluster
        .create_if_missing(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": dr_ns}}),
            None,
        )
        .await?;
    cluster.apply(&dr_secret, None).await?;
    prepare(cluster, &destination, &replica_app, Some(bucket)).await?;
    cluster.apply(&destination, Some(dr_ns)).await?;
    let restored = cluster
        .wait_for(
            API_VOLSYNC,
            DESTINATION,
            Some(dr_ns),
            &restore_name,
            "the restore from the replica",
            |o| o["status"]["lastManualSync"] == "e2e-dr-1",
        )
        .await
        .with_context(|| logs(controller, cluster))?;
    ensure!(
        restored["status"]["latestMoverStatus"]["result"] == "Successful",
        "{restore_name}: the restore from the replica failed:\n{:#}",
        restored["status"]
    );
    let restored_claim = restored["status"]["latestImage"]["name"]
        .as_str()
        .context("the restore from the replica set no latestImage")?
        .to_string();
    compare(
        cluster,
        dr_ns,
        &restored_claim,
        &content,
        &format!("{restore_name} (from the replica)"),
    )
    .await?;
    summary.passed(format!(
        "{dr_ns}/{restore_name}: restored from the replica repository, byte for byte"
    ));

    // A drill of the primary on demand; it must pass and leave the source volume as it was.
    cluster
        .merge_patch(
            API_VOLSYNC,
            SOURCE,
            Some(primary_ns),
            &name,
            &json!({"spec": {"arca": {"drill": {"manual": "e2e-drill-1", "rto": "10m"}}}}),
        )
        .await?;
    let drilled = cluster
        .wait_for(
            API_VOLSYNC,
            SOURCE,
            Some(primary_ns),
            &name,
            "the recovery drill",
            |o| o["status"]["arca"]["drill"]["lastManualDrill"] == "e2e-drill-1",
        )
        .await
        .with_context(|| logs(controller, cluster))?;
    let drill = &drilled["status"]["arca"]["drill"];
    let measured = drill["measuredSeconds"].as_f64().unwrap_or(-1.0);
    ensure!(
        drill["passed"] == true
            && drill["snapshotID"] == snapshot.as_str()
            && drill["rtoSeconds"] == 600.0
            && (0.0..600.0).contains(&measured)
            && drill["bytesVerified"]
                .as_u64()
                .is_some_and(|b| b >= 1 << 20)
            && drill["nextDrillTime"].is_string(),
        "{name}: the drill did not pass as recorded:\n{:#}",
        drilled["status"]
    );
    ensure!(
        drilled["status"]["lastSyncTime"] == backed_up["status"]["lastSyncTime"],
        "{name}: the drill moved the sync's status"
    );
    compare(
        cluster,
        primary_ns,
        &claim,
        &content,
        &format!("{name} (source volume after the drill)"),
    )
    .await?;
    let labels = [("obj_name", name.as_str()), ("obj_namespace", primary_ns)];
    let metrics = controller.metrics_once(|metrics| {
        ensure!(
            metric_value(metrics, "arca_drill_passed", &labels) == Some(1.0)
                && metric_value(metrics, "arca_drill_rto_seconds", &labels) == Some(600.0)
                && metric_value(metrics, "arca_drill_bytes_verified", &labels)
                    .is_some_and(|b| b >= f64::from(1 << 20))
                && metric_value(metrics, "arca_drill_next_due_timestamp", &labels)
                    .is_some_and(|t| t > jiff::Timestamp::now().as_second() as f64),
            "{name}: the arca_drill_* metrics do not show the passed drill"
        );
        ensure!(
            metric_value(metrics, "volsync_backup_jobs_total", &labels) == Some(1.0),
            "{name}: the drill Job was counted as a backup"
        );
        Ok(())
    })?;
    summary.passed(format!(
        "{primary_ns}/{name}: drill of {snapshot} passed in {measured:.1} s (RTO 600 s), status and arca_drill_* agree; the source volume is unchanged"
    ));
    compliance_report(cluster, &metrics, primary_ns, &name, &drilled, summary).await?;
    scheduled_replication(cluster, controller, bucket, primary_ns, &name, summary).await?;
    cluster_report(cluster, controller, primary_ns, &name, summary).await
}

/// A replication target with its own schedule: not copied by backups but by the source's DR
/// Job when it falls due (`* * * * *`: within a minute of the change), with its status.
async fn scheduled_replication(
    cluster: &Cluster,
    controller: &ControllerProcess,
    bucket: &str,
    namespace: &str,
    name: &str,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let secret_name = format!("{DR_APP}-scheduled-secret");
    let mut secret = repository_secret(
        namespace,
        &secret_name,
        bucket,
        &format!("{DR_APP}-scheduled"),
    );
    secret["stringData"]["RESTIC_PASSWORD"] = json!("arca-e2e-scheduled-password");
    cluster.apply(&secret, None).await?;
    let replica_secret = format!("{DR_APP}-replica-secret");
    cluster
        .merge_patch(
            API_VOLSYNC,
            SOURCE,
            Some(namespace),
            name,
            &json!({"spec": {"arca": {"replication": [
                {"repository": replica_secret},
                {"repository": secret_name, "schedule": "* * * * *"}]}}}),
        )
        .await?;
    let copied = cluster
        .wait_for(
            API_VOLSYNC,
            SOURCE,
            Some(namespace),
            name,
            "the scheduled copy",
            |o| {
                o["status"]["arca"]["replicas"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["name"] == secret_name.as_str() && r["lastCopyTime"].is_string())
            },
        )
        .await
        .with_context(|| logs(controller, cluster))?;
    let replicas = copied["status"]["arca"]["replicas"]
        .as_array()
        .context("status.arca.replicas is not a list")?;
    let scheduled = replicas
        .iter()
        .find(|r| r["name"] == secret_name.as_str())
        .context("the scheduled target has no status")?;
    ensure!(
        scheduled["lagSnapshots"] == 0
            && scheduled["error"].is_null()
            && scheduled["lastAttemptTime"].is_string()
            && scheduled["nextCopyTime"].is_string(),
        "{name}: the scheduled copy is not recorded as up to date:\n{:#}",
        copied["status"]
    );
    let labels = [
        ("obj_name", name),
        ("obj_namespace", namespace),
        ("replica", secret_name.as_str()),
    ];
    controller.metrics_once(|metrics| {
        ensure!(
            metric_value(metrics, "arca_replica_lag_snapshots", &labels) == Some(0.0),
            "{name}: arca_replica_lag_snapshots of {secret_name} is not 0"
        );
        Ok(())
    })?;
    summary.passed(format!(
        "{namespace}/{name}: {secret_name} (schedule * * * * *) copied by the DR Job, lag 0 in status and arca_replica_*"
    ));
    Ok(())
}

/// The controller's cluster-wide report: ConfigMap `arca-compliance-report` in its namespace
/// with the drilled source's row, standing as its own report judged, and the
/// `arca_compliance_*` gauges.
async fn cluster_report(
    cluster: &Cluster,
    controller: &ControllerProcess,
    namespace: &str,
    name: &str,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let map_name = "arca-compliance-report";
    let map = cluster
        .wait_for(
            "v1",
            "ConfigMap",
            Some(DEFAULT_NAMESPACE),
            map_name,
            "the cluster-wide compliance report",
            |o| {
                o["data"]["report.json"]
                    .as_str()
                    .and_then(|t| serde_json::from_str::<Value>(t).ok())
                    .is_some_and(|r| {
                        r["sources"].as_array().into_iter().flatten().any(|s| {
                            s["namespace"] == namespace
                                && s["name"] == name
                                && s["standing"] != "unreported"
                        })
                    })
            },
        )
        .await
        .with_context(|| logs(controller, cluster))?;
    let report: Value = serde_json::from_str(map["data"]["report.json"].as_str().unwrap_or("{}"))?;
    let source = cluster
        .get(API_VOLSYNC, SOURCE, Some(namespace), name)
        .await?
        .context("the drilled source is gone")?;
    let (standing, label) = match source["status"]["arca"]["report"]["compliant"].as_bool() {
        Some(true) => ("compliant", "compliant"),
        _ => ("nonCompliant", "noncompliant"),
    };
    let row = report["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["namespace"] == namespace && s["name"] == name);
    ensure!(
        row.is_some_and(|r| r["standing"] == standing),
        "{map_name}: the row of {namespace}/{name} does not stand {standing}:\n{report:#}"
    );
    ensure!(
        map["data"]["report.md"]
            .as_str()
            .is_some_and(|md| md.contains(&format!("| {namespace}/{name} |"))),
        "{map_name}: report.md has no row for {namespace}/{name}:\n{map:#}"
    );
    controller.metrics_once(|metrics| {
        let gauge = metric_value(metrics, "arca_compliance_sources", &[("standing", label)]);
        ensure!(
            gauge.is_some_and(|g| g >= 1.0) && gauge == report["counts"][label].as_f64(),
            "arca_compliance_sources{{standing=\"{label}\"}} is {gauge:?}, the report counts {}",
            report["counts"][label]
        );
        Ok(())
    })?;
    summary.passed(format!(
        "{DEFAULT_NAMESPACE}/{map_name}: {namespace}/{name} stands {label}, as its own report; arca_compliance_sources agrees"
    ));
    Ok(())
}

/// The drill Job's compliance report: `status.arca.report`, the ConfigMap the source owns with
/// the same figures, and the `arca_report_*` gauges.
async fn compliance_report(
    cluster: &Cluster,
    metrics: &str,
    namespace: &str,
    name: &str,
    drilled: &serde_json::Value,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let report = &drilled["status"]["arca"]["report"];
    let map_name = format!("{name}-arca-report");
    ensure!(
        report["configMap"] == map_name.as_str()
            && report["backups"].as_u64().is_some_and(|b| b >= 1)
            && report["successRate"] == 1.0
            && report["auditIntact"] == true,
        "{name}: status.arca.report does not hold the drill's report:\n{:#}",
        drilled["status"]
    );
    let map = cluster
        .get("v1", "ConfigMap", Some(namespace), &map_name)
        .await?
        .with_context(|| format!("ConfigMap {namespace}/{map_name} is missing"))?;
    let figures: serde_json::Value = serde_json::from_str(
        map["data"]["report.json"]
            .as_str()
            .with_context(|| format!("ConfigMap {map_name} has no report.json"))?,
    )?;
    ensure!(
        &figures == report
            && map["data"]["report.md"]
                .as_str()
                .is_some_and(|md| md.contains("| Audit chain | intact |")),
        "{name}: ConfigMap {map_name} does not hold the status's figures:\n{map:#}"
    );
    let labels = [("obj_name", name), ("obj_namespace", namespace)];
    ensure!(
        metric_value(metrics, "arca_report_audit_chain_intact", &labels) == Some(1.0)
            && metric_value(metrics, "arca_report_success_ratio", &labels) == Some(1.0),
        "{name}: the arca_report_* metrics do not show the report"
    );
    summary.passed(format!(
        "{namespace}/{name}: the drill's compliance report is in status, ConfigMap {map_name} and arca_report_*"
    ));
    Ok(())
}

/// A fresh cluster (new API server, kubelet, controller) that has lost
/// everything but the repositories: with only the Secrets applied, a
/// ReplicationDestination per source restores into a claim of the source's
/// name, which must hold the last backup's files.
async fn cluster_loss(
    apps: &BTreeMap<String, App>,
    binaries: &Path,
    work: &Path,
    options: &Options,
    s3_bucket: Option<&str>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let crds = project_root().join("deploy/helm/arca/crds");
    let fresh = Cluster::start_local(
        &work.join("rebuilt"),
        Some(&binaries.join("arca-agent")),
        &crds,
    )
    .await?;
    let controller = ControllerProcess::start(
        &binaries.join("arca-controller"),
        &fresh,
        &options.agent_image,
        &work.join("controller-rebuilt.log"),
        &[],
    )?;
    for (app, objects) in apps {
        for source in &objects.sources {
            let (namespace, name) = (namespace_of(source), name_of(source));
            let claim = source["spec"]["sourcePVC"]
                .as_str()
                .context("a source without sourcePVC")?;
            let recovery = json!({"apiVersion": API_VOLSYNC, "kind": DESTINATION,
                "metadata": {"name": format!("{name}-recovery"), "namespace": namespace},
                "spec": {"trigger": {"manual": "recover"},
                    "restic": {"repository": source["spec"]["restic"]["repository"], "destinationPVC": claim,
                        "copyMethod": "Direct", "capacity": "1Gi", "accessModes": ["ReadWriteOnce"]}}});
            // Only the Secret (and the namespace it lives in) comes from outside the cluster.
            prepare(&fresh, &recovery, app, s3_bucket).await?;
            fresh.apply(&recovery, None).await?;
            let restored = fresh
                .wait_for(
                    API_VOLSYNC,
                    DESTINATION,
                    Some(&namespace),
                    &format!("{name}-recovery"),
                    "the recovery restore",
                    |d| d["status"]["lastManualSync"] == "recover",
                )
                .await
                .with_context(|| logs(&controller, &fresh))?;
            ensure!(
                restored["status"]["latestMoverStatus"]["result"] == "Successful",
                "{name}: the recovery restore failed:\n{:#}",
                restored["status"]
            );
            compare(
                &fresh,
                &namespace,
                claim,
                &volume_content(app, 2),
                &format!("{name} (recovery)"),
            )
            .await?;
            summary.passed(format!("cluster loss: {namespace}/{claim} restored from the repository alone, byte for byte"));
        }
    }
    Ok(())
}

/// The namespace of the controller replicas' Leases in the fail-over step.
const LEASE_NAMESPACE: &str = "arca-system";
/// The lease duration the replicas run with: short, so the take-over is quick.
const LEASE_SECONDS: &str = "3";

/// Two controller replicas with one shard between them: the one holding it
/// is SIGKILLed as soon as it has started the first source's mover Job; the
/// other must take the shard over, see the Job finish and record the sync.
async fn failover(
    cluster: &Cluster,
    apps: &BTreeMap<String, App>,
    controller_binary: &Path,
    work: &Path,
    options: &Options,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let help = std::process::Command::new(controller_binary)
        .arg("--help")
        .output()?;
    if !String::from_utf8_lossy(&help.stdout).contains("--lease-namespace") {
        summary.pending(
            "fail-over: arca-controller has no --lease-namespace (Leases, issue 21) yet".into(),
        );
        return Ok(());
    }
    let Some((app, source)) = apps
        .iter()
        .find_map(|(app, a)| a.sources.first().map(|s| (app, s)))
    else {
        return Ok(());
    };
    let (namespace, name) = (namespace_of(source), name_of(source));
    cluster
        .create_if_missing(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LEASE_NAMESPACE}}), None)
        .await?;
    let mut replicas = BTreeMap::new();
    for identity in ["replica-a", "replica-b"] {
        let args = [
            "--lease-namespace",
            LEASE_NAMESPACE,
            "--lease-shards",
            "1",
            "--lease-duration-seconds",
            LEASE_SECONDS,
            "--identity",
            identity,
        ]
        .map(String::from);
        let log = work.join(format!("controller-{identity}.log"));
        replicas.insert(
            identity,
            ControllerProcess::start(
                controller_binary,
                cluster,
                &options.agent_image,
                &log,
                &args,
            )?,
        );
    }
    let lease = "arca-controller-shard-0";
    let held = cluster
        .wait_for(
            "coordination.k8s.io/v1",
            "Lease",
            Some(LEASE_NAMESPACE),
            lease,
            "a replica holding the shard",
            |l| {
                l["spec"]["holderIdentity"]
                    .as_str()
                    .is_some_and(|h| h.starts_with("replica-"))
            },
        )
        .await?;
    let holder = held["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let survivor = if holder == "replica-a" {
        "replica-b"
    } else {
        "replica-a"
    };
    let claim = source["spec"]["sourcePVC"]
        .as_str()
        .context("a source without sourcePVC")?;
    cluster
        .write_volume(&namespace, claim, &volume_content(app, 3))
        .await?;
    cluster
        .merge_patch(
            API_VOLSYNC,
            SOURCE,
            Some(&namespace),
            &name,
            &json!({"spec": {"trigger": {"manual": "e2e-failover"}}}),
        )
        .await?;
    let job = format!("volsync-src-{name}");
    cluster
        .wait_for(
            "batch/v1",
            "Job",
            Some(&namespace),
            &job,
            "the mover Job",
            |_| true,
        )
        .await?;
    replicas
        .get_mut(holder.as_str())
        .context("the holder is one of the replicas")?
        .kill()?;
    let synced = cluster
        .wait_for(
            API_VOLSYNC,
            SOURCE,
            Some(&namespace),
            &name,
            "the sync finished by the surviving replica",
            |s| s["status"]["lastManualSync"] == "e2e-failover",
        )
        .await
        .with_context(|| {
            format!(
                "surviving replica's log:\n{}",
                replicas[survivor].log_tail()
            )
        })?;
    check_source_status(&synced)?;
    let lease_now = cluster
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            Some(LEASE_NAMESPACE),
            lease,
        )
        .await?
        .context("the shard Lease is gone")?;
    ensure!(
        lease_now["spec"]["holderIdentity"] == survivor,
        "after the kill the shard is held by {} instead of {survivor}",
        lease_now["spec"]["holderIdentity"]
    );
    summary.passed(format!(
        "fail-over: {holder} SIGKILLed with the mover Job running; {survivor} took the shard over and recorded the sync"
    ));
    Ok(())
}

/// `--scale N`: N ReplicationSources (the seed's, each with its own claim)
/// in the in-memory cluster, no kubelet (Jobs are created, never run): the
/// time until the controller has given every source a status, and its
/// memory (peak and at the end, from /proc).
async fn scale(binaries: &Path, work: &Path, count: usize) -> anyhow::Result<()> {
    let crds = project_root().join("deploy/helm/arca/crds");
    let cluster = Cluster::start_local(work, None, &crds).await?;
    let store = cluster
        .local_store()
        .context("the scale run needs the in-memory cluster")?
        .clone();
    let namespace = "scale";
    cluster
        .apply(
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
            None,
        )
        .await?;
    cluster
        .apply(
            &repository_secret(
                namespace,
                "example-app-volsync-secret",
                "http://127.0.0.1:9",
                "scale",
            ),
            None,
        )
        .await?;
    let seed = yaml_documents_in(&project_root().join("deploy/examples"))?
        .into_iter()
        .find(|m| m["kind"] == SOURCE)
        .context("deploy/examples holds no ReplicationSource")?;
    let controller = ControllerProcess::start(
        &binaries.join("arca-controller"),
        &cluster,
        "arca/arca-agent:0.1.0",
        &work.join("controller.log"),
        &[],
    )?;
    let idle_rss = memory_kib(controller.pid(), "VmRSS")?;
    let sources_key =
        arca_testcluster::ResourceKey::new("volsync.backube", "v1alpha1", "replicationsources");
    let claims_key = arca_testcluster::ResourceKey::new("", "v1", "persistentvolumeclaims");
    let started = Instant::now();
    for i in 0..count {
        let claim = format!("app-{i}-data");
        store.create(&claims_key, Some(namespace), json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))?;
        let mut source = seed.clone();
        source["metadata"]["name"] = json!(format!("app-{i}-backup"));
        source["spec"]["sourcePVC"] = json!(claim);
        store.create(&sources_key, Some(namespace), source)?;
    }
    let loaded = started.elapsed();
    // Steady state: every source carries a status with conditions. Read in
    // process (no polling over HTTP, which would load the controller's server).
    let reconciled = |sources: &[Value]| {
        sources.len() == count
            && sources.iter().all(|s| {
                s["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| !c.is_empty())
            })
    };
    if store
        .wait_until_all(
            &sources_key,
            Some(namespace),
            reconciled,
            std::time::Duration::from_secs(600),
        )
        .await
        .is_none()
    {
        bail!(
            "not every source was reconciled within 600 s:\n{}",
            controller.log_tail()
        );
    }
    let steady = started.elapsed();
    let peak = memory_kib(controller.pid(), "VmHWM")?;
    let rss = memory_kib(controller.pid(), "VmRSS")?;
    println!("\n==> scale: {count} ReplicationSources");
    println!(
        "loaded into the API server in {:.2} s",
        loaded.as_secs_f64()
    );
    println!(
        "every source reconciled (status with conditions) after {:.2} s: {:.0} sources/s",
        steady.as_secs_f64(),
        count as f64 / steady.as_secs_f64()
    );
    println!(
        "controller memory: idle {:.1} MiB, at steady state {:.1} MiB, peak {:.1} MiB (VmHWM)",
        idle_rss as f64 / 1024.0,
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    Ok(())
}

/// A `/proc/PID/status` memory line (`VmRSS`, `VmHWM`) in KiB.
fn memory_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# TYPE volsync_backup_jobs counter\n\
        volsync_backup_jobs_total{obj_name=\"a\",obj_namespace=\"n\",role=\"source\",app=\"x \\\"q\\\"\"} 2\n\
        volsync_backup_jobs_total{obj_name=\"b\",obj_namespace=\"n\",role=\"source\",app=\"y\"} 5\n\
        volsync_backup_duration_seconds_count{obj_name=\"a\",obj_namespace=\"n\",role=\"source\"} 2\n\
        volsync_backup_duration_seconds_bucket{obj_name=\"a\",le=\"10.0\"} 1\n\
        # EOF\n";

    #[test]
    fn binary_quantities_are_respelled_in_the_other_unit() {
        let cases = [
            ("1Gi", Some("1024Mi")),
            ("1024Mi", Some("1Gi")),
            ("3Gi", Some("3072Mi")),
            ("512Mi", None),
            ("1G", None),
            ("xGi", None),
        ];
        for (quantity, respelled) in cases {
            assert_eq!(
                respell_binary_quantity(quantity).as_deref(),
                respelled,
                "{quantity}"
            );
        }
    }

    #[test]
    fn a_metric_is_found_by_its_labels_and_others_are_not_mixed_in() {
        assert_eq!(
            metric_value(SAMPLE, "volsync_backup_jobs_total", &[("obj_name", "a")]),
            Some(2.0)
        );
        assert_eq!(
            metric_value(SAMPLE, "volsync_backup_jobs_total", &[("role", "source")]),
            Some(7.0)
        );
        assert_eq!(
            metric_value(SAMPLE, "volsync_backup_jobs_total", &[("app", "x \"q\"")]),
            Some(2.0)
        );
        assert_eq!(
            metric_value(SAMPLE, "volsync_backup_jobs_total", &[("obj_name", "c")]),
            None
        );
        assert_eq!(
            metric_value(SAMPLE, "volsync_backup_duration_seconds", &[]),
            None
        );
        assert_eq!(
            metric_value(SAMPLE, "volsync_backup_duration_seconds_count", &[]),
            Some(2.0)
        );
    }

    #[test]
    fn the_seed_secret_names_map_to_one_application() {
        let object = |secret: &str| json!({"spec": {"restic": {"repository": secret}}});
        assert_eq!(app_of(&object("example-app-volsync-secret")), "example-app");
        assert_eq!(app_of(&object("example-app-dr-secret")), "example-app");
        assert_eq!(app_of(&object("billing")), "billing");
    }

    #[test]
    fn the_two_volume_versions_differ_in_place_and_in_which_files_exist() {
        let (first, second) = (volume_content("a", 1), volume_content("a", 2));
        assert_eq!(first["db/pages"].len(), second["db/pages"].len());
        assert_ne!(first["db/pages"], second["db/pages"]);
        assert_eq!(first["db/pages"][..200_000], second["db/pages"][..200_000]);
        assert!(first.contains_key("logs/first.log") && !second.contains_key("logs/first.log"));
        assert_ne!(volume_content("b", 1)["db/pages"], first["db/pages"]);
    }

    /// What the options hold; the errors for the rest are checked through
    /// the binary (tests/e2e_driver.rs).
    #[test]
    fn options_parse_into_what_the_run_uses() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let options = parse(&args(&[
            "--work",
            "w",
            "--manifests",
            "m",
            "--keep",
            "--scale",
            "10",
        ]))
        .unwrap();
        assert_eq!(options.work, PathBuf::from("w"));
        assert_eq!(options.manifests, PathBuf::from("m"));
        assert!(options.keep);
        assert_eq!(options.scale, Some(10));
        let options = parse(&args(&["--s3", "http://127.0.0.1:9/b/", "--work", "w"])).unwrap();
        assert_eq!(options.s3_bucket.as_deref(), Some("http://127.0.0.1:9/b"));
        assert_eq!(options.scale, None);
        assert!(parse(&args(&["--work", "w", "--scale"])).is_err());
    }
}
