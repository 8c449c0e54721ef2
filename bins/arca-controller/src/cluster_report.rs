//! The cluster-wide compliance report's hands: every `interval`, list every
//! ReplicationSource, ask `arca_kube::compliance` for the report, apply its ConfigMap in the
//! controller's namespace and set the `arca_compliance_*` gauges. Every replica does it (the
//! document is a function of the sources alone, so they write the same thing).

use std::sync::Arc;
use std::time::Duration;

use arca_kube::api::ReplicationSource;
use arca_kube::compliance::{cluster_report, config_map};
use arca_kube::reconcile::Object;
use kube::Api;
use kube::api::ListParams;

use crate::reconcile::{Context, ReconcileError, apply};

/// Writes the cluster report into `namespace` every `interval`, until the process ends; a
/// failed pass is logged and retried at the next.
pub async fn run(context: Arc<Context>, namespace: String, interval: Duration) {
    loop {
        if let Err(err) = once(&context, &namespace).await {
            tracing::warn!(%namespace, "writing the cluster compliance report: {err}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// One pass: list, gather, apply, count.
async fn once(context: &Context, namespace: &str) -> Result<(), ReconcileError> {
    let sources: Api<ReplicationSource> = Api::all(context.client.clone());
    let sources = sources.list(&ListParams::default()).await?.items;
    let report = cluster_report(&sources);
    let map = config_map(&report, namespace);
    apply(
        &context.client,
        namespace,
        &Object::ConfigMap(Box::new(map)),
    )
    .await?;
    context.metrics.dr.record_cluster(&report);
    Ok(())
}
