//! Replication: copies the host's new snapshots from the primary repository
//! to every secondary (`ARCA_REPLICA_<N>_…`) with `arca_repo::copy`, then
//! applies the secondary's own retention. Runs after every backup and as the
//! `replicate` action. A secondary that fails is reported (the run becomes
//! partial); it never affects the primary or the other secondaries.

use arca_repo::repository::InitOptions;
use arca_repo::snapshot::Snapshot;
use arca_repo::{Id, Repository};

use super::{Mover, backup, username};
use crate::config::ReplicaConfig;
use crate::open;
use crate::report::ReplicaStatus;
use crate::{Error, Result};

/// Replicates to every configured secondary; one status each, in order.
/// `Err` only if the primary cannot be opened.
pub(super) async fn run(mover: &mut Mover<'_>) -> Result<Vec<ReplicaStatus>> {
    if mover.config.replicas.is_empty() {
        return Err(Error::config(
            "ARCA_REPLICA_0_RESTIC_REPOSITORY",
            "replicate needs at least one secondary repository (ARCA_REPLICA_0_RESTIC_REPOSITORY and its password)",
        ));
    }
    let primary = mover.repository().await?;
    let mut statuses = Vec::with_capacity(mover.config.replicas.len());
    for replica in &mover.config.replicas {
        let status = match replicate_one(mover, &primary, replica).await {
            Ok(status) => status,
            Err(err) => {
                tracing::warn!(replica = %replica.name, %err, "replication failed");
                ReplicaStatus {
                    name: replica.name.clone(),
                    error: Some(err.to_string()),
                    ..ReplicaStatus::default()
                }
            }
        };
        statuses.push(status);
    }
    Ok(statuses)
}

/// The host's snapshots in `repository`, oldest first.
async fn host_snapshots(mover: &Mover<'_>, repository: &Repository) -> Result<Vec<(Id, Snapshot)>> {
    Ok(arca_repo::copy::select(repository, &[], &mover.host_filter()).await?)
}

async fn replicate_one(
    mover: &Mover<'_>,
    primary: &Repository,
    replica: &ReplicaConfig,
) -> Result<ReplicaStatus> {
    let config = mover.config;
    let env = replica.backend_env.clone();
    let store = open::connect(
        &replica.repository,
        &config.store_options_with(replica.custom_ca.as_ref()),
        &move |name| env.get(name),
    )?;
    let password = open::read_password(&replica.password).await?;
    let init = InitOptions {
        hostname: config.host.clone(),
        username: username(),
        ..InitOptions::default()
    };
    let (secondary, created) =
        open::open_or_init(&store, &password, Some(config.cache_dir.as_path()), init).await?;
    if created {
        tracing::info!(replica = %replica.name, location = %store.backend, "created the secondary repository");
    }
    let on_primary = host_snapshots(mover, primary).await?;
    let newest_copy = host_snapshots(mover, &secondary)
        .await?
        .last()
        .map(|(_, snapshot)| snapshot.time);
    // Only snapshots newer than the secondary's newest: those its own
    // retention removed are not copied again.
    let new: Vec<(Id, Snapshot)> = on_primary
        .iter()
        .filter(|(_, snapshot)| newest_copy.is_none_or(|newest| snapshot.time > newest))
        .cloned()
        .collect();
    let copied = arca_repo::copy::copy(primary, &secondary, &new).await?;
    if let Some(policy) = &replica.forget {
        backup::forget(mover, &secondary, policy).await?;
    }
    let newest_copy = host_snapshots(mover, &secondary)
        .await?
        .last()
        .map(|(_, snapshot)| snapshot.time);
    let newest_primary = on_primary.last().map(|(_, snapshot)| snapshot.time);
    let lag_snapshots = on_primary
        .iter()
        .filter(|(_, snapshot)| newest_copy.is_none_or(|newest| snapshot.time > newest))
        .count() as u64;
    let lag_seconds = match (newest_primary, newest_copy) {
        (Some(primary), Some(copy)) => Some(primary.duration_since(copy).as_secs_f64().max(0.0)),
        _ => None,
    };
    tracing::info!(
        replica = %replica.name,
        copied = copied.copied.len(),
        lag_snapshots,
        "replicated"
    );
    Ok(ReplicaStatus {
        name: replica.name.clone(),
        copied: copied.copied.len() as u64,
        lag_snapshots: Some(lag_snapshots),
        lag_seconds,
        error: None,
    })
}
