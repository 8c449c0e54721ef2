//! `arca-controller`: Arca's Kubernetes operator. Watches VolSync's
//! ReplicationSource and ReplicationDestination (and the Jobs, PVCs and
//! VolumeSnapshots it makes for them), asks `arca-kube` what to do, does it,
//! and serves Prometheus metrics and health checks. Decisions live in
//! `arca-kube`; this binary only wires the API server to them.

mod metrics;
mod reconcile;
mod serve;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use arca_kube::ControllerConfig;
use arca_kube::api::{ReplicationDestination, ReplicationSource, VolumeSnapshot};
use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Config};

use crate::metrics::Metrics;
use crate::reconcile::Context;

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
    /// Mover Jobs that may run at once, cluster-wide (not enforced yet).
    #[arg(long, default_value_t = 10)]
    max_concurrent_jobs: usize,
    /// Mover Jobs that may run at once on one node (not enforced yet).
    #[arg(long, default_value_t = 2)]
    max_jobs_per_node: usize,
    /// Refuse storage connections below TLS 1.3 (accepted; not enforced by this build yet).
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
    let reporter = Reporter {
        controller: "arca-controller".into(),
        instance: std::env::var("ARCA_POD_NAME").ok(),
    };
    let config = ControllerConfig {
        mover_image: args.agent_image.clone(),
        ..ControllerConfig::default()
    };
    let context = Arc::new(Context {
        client: client.clone(),
        config,
        metrics: Metrics::new(),
        recorder: Recorder::new(client.clone(), reporter),
        failures: Mutex::new(HashMap::new()),
    });
    let ready = serve::Readiness::default();
    tokio::spawn(serve::metrics(args.metrics_address, Arc::clone(&context)));
    tokio::spawn(serve::health(args.health_address, ready.clone()));

    let sources = controller::<ReplicationSource>(&client).run(
        reconcile::reconcile_source,
        reconcile::retry_after_error,
        Arc::clone(&context),
    );
    let destinations = controller::<ReplicationDestination>(&client).run(
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
