//! `backup`: `DATA_DIR` into a new snapshot of host `volsync` (or
//! `RESTIC_HOST`), excluding `lost+found`, creating a missing repository
//! first; then forget per `FORGET_OPTIONS`. An empty volume is reported and
//! neither backed up nor followed by a forget.

use arca_repo::Repository;
use arca_repo::backup::{BackupOptions, PreparedBackup};
use arca_repo::forget::ForgetOptions;
use arca_repo::repository::{DATA_DIR, INDEX_DIR, SNAPSHOTS_DIR};
use arca_repo::retention::RetentionPolicy;
use arca_repo::select::GroupBy;

use super::{Mover, RESTORE_MARKER, RESTORE_STAGING, is_empty_volume};
use crate::report::{BackupReport, ForgetReport, SAMPLE_LEN};
use crate::{Action, Error, Result};

pub(super) async fn run(mover: &mut Mover<'_>) -> Result<BackupReport> {
    let data_dir = mover.config.data_dir.clone();
    if is_empty_volume(&data_dir)? {
        tracing::warn!(
            data_dir = %data_dir.display(),
            "the volume is empty (nothing but lost+found): no snapshot taken, nothing forgotten"
        );
        return Ok(BackupReport {
            empty_source: true,
            ..BackupReport::default()
        });
    }
    let options = BackupOptions {
        paths: vec![data_dir.clone()],
        hostname: mover.config.host.clone(),
        // restic's pattern, as VolSync passes it: lost+found at any depth.
        // The agent's own restore leftovers are never data.
        excludes: vec![
            "lost+found".to_owned(),
            data_dir
                .join(RESTORE_STAGING)
                .to_string_lossy()
                .into_owned(),
            data_dir.join(RESTORE_MARKER).to_string_lossy().into_owned(),
        ],
        // A source's own tag, on its snapshots and required of its parent.
        tags: mover.config.source_tag().into_iter().collect(),
        parent_tags: mover.config.source_tag().into_iter().collect(),
        ..BackupOptions::default()
    };
    // Checked before the repository is opened or created.
    let prepared = PreparedBackup::new(options)?;
    let (repository, initialized) = mover.repository_or_init().await?;
    let ticker = mover.ticker(Action::Backup);
    let outcome = prepared.run(&repository, ticker.progress()).await;
    ticker.finish();
    let outcome = outcome?;
    let summary = outcome.snapshot.summary.clone().ok_or_else(|| {
        Error::Repo(arca_repo::Error::BackupIncomplete {
            reason: "the engine saved a snapshot without a summary".into(),
        })
    })?;
    tracing::info!(
        snapshot = %outcome.snapshot_id.short(),
        files_new = summary.files_new,
        files_changed = summary.files_changed,
        files_unmodified = summary.files_unmodified,
        unreadable = outcome.unreadable.len(),
        "snapshot saved"
    );
    let forget = match &mover.config.forget {
        Some(policy) => Some(forget(mover, &repository, policy).await?),
        None => None,
    };
    let duration = summary
        .backup_end
        .duration_since(summary.backup_start)
        .unsigned_abs();
    Ok(BackupReport {
        empty_source: false,
        repository_initialized: initialized,
        snapshot_id: Some(outcome.snapshot_id),
        parent_id: outcome.snapshot.parent,
        files_new: summary.files_new,
        files_changed: summary.files_changed,
        files_unmodified: summary.files_unmodified,
        files_unreadable: outcome.unreadable.len() as u64,
        unreadable_sample: outcome
            .unreadable
            .iter()
            .take(SAMPLE_LEN)
            .map(|(path, why)| format!("{}: {why}", path.display()))
            .collect(),
        dirs_new: summary.dirs_new,
        dirs_changed: summary.dirs_changed,
        dirs_unmodified: summary.dirs_unmodified,
        bytes_processed: summary.total_bytes_processed,
        bytes_added: summary.data_added,
        bytes_stored: summary.data_added_packed,
        duration_seconds: duration.as_secs_f64(),
        forget,
        repository_bytes: repository_bytes(&repository).await,
    })
}

/// Forgets the host's snapshots (of this run's source only, with
/// `ARCA_SOURCE`) per `policy`, grouped by host and paths as `restic forget
/// --host volsync` does. Snapshots under a legal hold are kept.
pub(super) async fn forget(
    mover: &Mover<'_>,
    repository: &Repository,
    policy: &RetentionPolicy,
) -> Result<ForgetReport> {
    let options = ForgetOptions {
        policy: policy.clone(),
        filter: mover.host_filter(),
        group_by: GroupBy::HOST_PATHS,
        unsafe_allow_remove_all: false,
    };
    let plan =
        arca_repo::forget::forget(repository, &options, jiff::Timestamp::now(), false).await?;
    let report = ForgetReport {
        kept: plan.groups.iter().map(|g| g.keep.len() as u64).sum(),
        removed: plan.groups.iter().map(|g| g.remove.len() as u64).sum(),
    };
    tracing::info!(
        kept = report.kept,
        removed = report.removed,
        "forgot per FORGET_OPTIONS"
    );
    Ok(report)
}

/// Bytes of packs, index and snapshot files; `None` if listing fails (the
/// backup has succeeded; its size is only information).
async fn repository_bytes(repository: &Repository) -> Option<u64> {
    let mut total = 0;
    for dir in [DATA_DIR, INDEX_DIR, SNAPSHOTS_DIR] {
        match repository.backend().list(dir).await {
            Ok(objects) => total += objects.iter().map(|o| o.size).sum::<u64>(),
            Err(err) => {
                tracing::info!(%err, "cannot list the repository to report its size");
                return None;
            }
        }
    }
    Some(total)
}
