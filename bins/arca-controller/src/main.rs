//! `arca-controller`: Arca's Kubernetes operator. Watches VolSync's
//! ReplicationSource and ReplicationDestination (and the Jobs, PVCs and
//! VolumeSnapshots it makes for them), asks `arca-kube` what to do, does it,
//! and serves Prometheus metrics and health checks. Decisions live in
//! `arca-kube`, the reconcile loop in this package's library; this binary only
//! parses its arguments and wires the API server to them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use arca_kube::ControllerConfig;
use arca_kube::api::{ReplicationDestination, ReplicationSource, VolumeSnapshot};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::runtime::events::Reporter;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Config};

use arca_controller::reconcile::{self, Context};
use arca_controller::{cluster_report, serve, shards};

/// Arca's operator for VolSync-compatible backups.
#[derive(Debug, Parser)]
#[command(name = "arca-controller", version)]
struct Args {
    /// Where `/metrics` is served.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,
    /// Where `/healthz` and `/readyz` are served.
    #[arg(long, default_value = "0.0.0.0:8081")]
    health_address: SocketAddr,
    /// The image mover Jobs run (`arca-agent`).
    #[arg(long, default_value = "arca/arca-agent:0.1.0")]
    agent_image: String,
    /// Mover Jobs that may run at once, cluster-wide: a due backup beyond it waits
    /// (condition reason `WaitingForSlot`), most urgent first.
    #[arg(long, default_value_t = 10)]
    max_concurrent_jobs: usize,
    /// Mover Jobs that may run at once on one node (a mover's node: where its pod runs; a
    /// waiting backup's: where its source volume is in use).
    #[arg(long, default_value_t = 2)]
    max_jobs_per_node: usize,
    /// Namespace of the shard Leases that let several replicas share the work; without it
    /// this replica reconciles every object (run one replica only).
    #[arg(long, env = "ARCA_POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// This replica's Lease holder identity (its pod name).
    #[arg(long, env = "ARCA_POD_NAME")]
    identity: Option<String>,
    /// Shards the objects are spread over; the same on every replica.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    lease_shards: u32,
    /// Lease duration: a dead replica's objects are taken over within about this long.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(2..=3600))]
    lease_duration_seconds: u32,
    /// Namespace of the cluster-wide compliance report (ConfigMap `arca-compliance-report`);
    /// default: the lease namespace; without either, no cluster report is written.
    #[arg(long, env = "ARCA_REPORT_NAMESPACE")]
    report_namespace: Option<String>,
    /// How often the cluster-wide compliance report is gathered, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    report_interval_seconds: u64,
    /// Every mover Job must use TLS 1.3 for storage (`ARCA_REQUIRE_TLS13=1`); plain http only
    /// where a repository Secret sets `ARCA_ALLOW_HTTP`.
    #[arg(long)]
    require_tls13: bool,
    /// A kubeconfig file; by default the in-cluster configuration or `KUBECONFIG`.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ARCA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let client = client(args.kubeconfig.as_deref()).await?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "arca-controller".into()),
            std::process::id()
        )
    });
    let reporter = Reporter {
        controller: "arca-controller".into(),
        instance: Some(identity.clone()),
    };
    let config = ControllerConfig {
        mover_image: args.agent_image.clone(),
        require_tls13: args.require_tls13,
        ..ControllerConfig::default()
    };
    let limits = arca_sched::Limits {
        global: args.max_concurrent_jobs,
        per_node: args.max_jobs_per_node,
    };
    let shards = match args.lease_namespace {
        Some(_) => shards::Shards::leased(args.lease_shards),
        None => shards::Shards::all(),
    };
    let context = Arc::new(Context::new(
        client.clone(),
        config,
        reporter,
        limits,
        shards,
    ));
    let (gained, _) = tokio::sync::watch::channel(());
    if let Some(namespace) = args.lease_namespace.clone() {
        let config = shards::LeaseConfig {
            namespace,
            identity: identity.clone(),
            shards: args.lease_shards,
            duration: jiff::SignedDuration::from_secs(i64::from(args.lease_duration_seconds)),
        };
        tracing::info!(%identity, shards = config.shards, namespace = %config.namespace, "sharing the work over Leases");
        let context = Arc::clone(&context);
        let gained = gained.clone();
        tokio::spawn(async move {
            shards::run(context.client.clone(), config, &context.shards, gained).await
        });
    } else {
        tracing::info!(
            "no --lease-namespace/ARCA_POD_NAMESPACE: reconciling every object (one replica)"
        );
    }
    match args.report_namespace.or(args.lease_namespace) {
        Some(namespace) => {
            tokio::spawn(cluster_report::run(
                Arc::clone(&context),
                namespace,
                std::time::Duration::from_secs(args.report_interval_seconds),
            ));
        }
        None => tracing::info!(
            "no --report-namespace or --lease-namespace: no cluster-wide compliance report"
        ),
    }
    let ready = serve::Readiness::default();
    tokio::spawn(serve::metrics(args.metrics_address, Arc::clone(&context)));
    tokio::spawn(serve::health(args.health_address, ready.clone()));

    let sources = controller::<ReplicationSource>(&client)
        .reconcile_all_on(on_change(gained.subscribe()))
        .run(
            reconcile::reconcile_source,
            reconcile::retry_after_error,
            Arc::clone(&context),
        );
    let destinations = controller::<ReplicationDestination>(&client)
        .reconcile_all_on(on_change(gained.subscribe()))
        .run(
            reconcile::reconcile_destination,
            reconcile::retry_after_error,
            Arc::clone(&context),
        );
    ready.set();
    tracing::info!("arca-controller running");
    futures::stream::select(
        sources.map(|r| r.map(|_| ()).map_err(|e| e.to_string())),
        destinations.map(|r| r.map(|_| ()).map_err(|e| e.to_string())),
    )
    .for_each(|result| async move {
        if let Err(err) = result {
            tracing::debug!("reconcile: {err}");
        }
    })
    .await;
    Ok(())
}

/// A controller over every `K` that also wakes for the Jobs, PVCs and
/// VolumeSnapshots it owns, and stops on SIGTERM.
fn controller<K>(client: &Client) -> Controller<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    Controller::new(Api::<K>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Job>::all(client.clone()), watcher::Config::default())
        .owns(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(
            Api::<VolumeSnapshot>::all(client.clone()),
            watcher::Config::default(),
        )
        .shutdown_on_signal()
}

/// A stream with an item each time `receiver`'s sender signals.
fn on_change(
    receiver: tokio::sync::watch::Receiver<()>,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.changed().await.ok()?;
        Some(((), receiver))
    })
}

async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("using {}", path.display()))?
        }
        None => Config::infer()
            .await
            .context("finding the cluster (in-cluster or KUBECONFIG)")?,
    };
    Client::try_from(config).context("building the Kubernetes client")
}
