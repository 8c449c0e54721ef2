//! The actions of a Job, run in order against one repository: [`run`] opens
//! what they need, stops at the first failure, and describes everything in
//! a [`MoverReport`].

mod backup;
mod drill;
mod replicate;
mod report;
mod restore;
mod verify;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arca_repo::Repository;
use arca_repo::check::{CheckOptions, check};
use arca_repo::prune::PruneOptions;
use arca_repo::repository::InitOptions;
use arca_repo::select::SnapshotFilter;
use arca_store::OpenedStore;

use crate::config::MoverConfig;
use crate::open;
use crate::progress::{ProgressSink, Ticker};
use crate::report::{
    ActionReport, CheckSummary, ComplianceSummary, DrillSummary, MoverReport, Outcome, PruneReport,
    REPORT_VERSION, ReplicaStatus, SAMPLE_LEN, UnlockReport,
};
use crate::secret::Password;
use crate::{Action, Error, Result};

pub use restore::{RESTORE_MARKER, RESTORE_STAGING};

/// Runs `actions` in order with `config`; progress and warnings go to
/// `sink`. Never fails: a failure is part of the report, with its class.
pub async fn run(
    config: &MoverConfig,
    actions: &[Action],
    sink: Arc<dyn ProgressSink>,
) -> MoverReport {
    let started = jiff::Timestamp::now();
    let clock = Instant::now();
    let mut mover = Mover {
        config,
        sink,
        store: None,
        password: None,
        repository: None,
        drill: None,
        replicas: Vec::new(),
        report: None,
    };
    let mut reports = Vec::with_capacity(actions.len());
    let mut failure = None;
    for &action in actions {
        // `report` only reads: it still runs after a failed drill, whose
        // record it then includes.
        if failure.is_some() && action != Action::Report {
            break;
        }
        tracing::info!(%action, "starting");
        match mover.run_one(action).await {
            Ok(report) => {
                // A check that finished but found damage fails the run, with its report.
                let damage = match &report {
                    ActionReport::Check(summary) if !summary.ok => Some(Error::Damaged {
                        count: summary.errors as usize,
                        first: summary.error_sample.first().cloned().unwrap_or_default(),
                    }),
                    _ => None,
                };
                reports.push(report);
                if let Some(err) = damage {
                    failure.get_or_insert((action, err));
                }
            }
            Err(err) => {
                failure.get_or_insert((action, err));
            }
        }
    }
    mover.record_spec_changes().await;
    // A failed secondary never fails the run: the primary has the data.
    let partial = reports.iter().any(
        |report| matches!(report, ActionReport::Backup(backup) if backup.files_unreadable > 0),
    ) || mover.replicas.iter().any(|replica| replica.error.is_some());
    let (outcome, exit_code, failed_action, error_class, error) = match failure {
        Some((action, err)) => {
            let class = err.class();
            (
                Outcome::Failed,
                class.exit_code(),
                Some(action),
                Some(class),
                Some(err.to_string()),
            )
        }
        None if partial => (Outcome::Partial, 3, None, None, None),
        None => (Outcome::Success, 0, None, None, None),
    };
    MoverReport {
        version: REPORT_VERSION,
        outcome,
        exit_code,
        started,
        duration_seconds: clock.elapsed().as_secs_f64(),
        host: config.host.clone(),
        actions: reports,
        failed_action,
        error_class,
        error,
        drill: mover.drill,
        replicas: mover.replicas,
        report: mover.report,
    }
}

/// What the actions of one run share: the storage connection, the password
/// (read once) and the open repository.
struct Mover<'a> {
    config: &'a MoverConfig,
    sink: Arc<dyn ProgressSink>,
    store: Option<OpenedStore>,
    password: Option<Password>,
    repository: Option<Repository>,
    /// What `drill` found.
    drill: Option<DrillSummary>,
    /// What replication did (after `backup`, or `replicate`).
    replicas: Vec<ReplicaStatus>,
    /// What `report` found.
    report: Option<ComplianceSummary>,
}

impl Mover<'_> {
    /// Writes one `spec-change` audit record per note of `ARCA_AUDIT_SPEC_CHANGES` into the
    /// repository the run opened (none opened: nothing to write to). A record that cannot be
    /// written is a warning: the run's own outcome stands.
    async fn record_spec_changes(&mut self) {
        let Some(repository) = self.repository.clone() else {
            return;
        };
        for note in &self.config.spec_changes {
            let entry = arca_repo::audit::Entry {
                time: jiff::Timestamp::now(),
                hostname: self.config.host.clone(),
                username: username(),
                operation: "spec-change".to_owned(),
                arguments: vec![note.clone()],
                snapshots: Vec::new(),
                outcome: arca_repo::audit::Outcome::Success,
                error: None,
                bytes_written: 0,
                bytes_read: 0,
            };
            match arca_repo::audit::append(&repository, entry).await {
                Ok(id) => tracing::info!(record = %id, "spec change recorded in the audit trail"),
                Err(err) => tracing::warn!("recording a spec change in the audit trail: {err}"),
            }
        }
    }

    async fn run_one(&mut self, action: Action) -> Result<ActionReport> {
        Ok(match action {
            Action::Unlock => ActionReport::Unlock(self.unlock().await?),
            Action::Backup => {
                let report = backup::run(self).await?;
                if !self.config.replicas.is_empty() {
                    self.replicas = replicate::run(self).await?;
                }
                ActionReport::Backup(report)
            }
            Action::Prune => ActionReport::Prune(self.prune().await?),
            Action::Restore => ActionReport::Restore(restore::run(self).await?),
            Action::Check => ActionReport::Check(self.check().await?),
            Action::Verify => ActionReport::Verify(verify::run(self).await?),
            Action::Drill => {
                drill::run(self).await?;
                ActionReport::Drill
            }
            Action::Replicate => {
                self.replicas = replicate::run(self).await?;
                ActionReport::Replicate
            }
            Action::Report => {
                self.report = Some(report::run(self).await?);
                ActionReport::Report
            }
        })
    }

    fn store(&mut self) -> Result<&OpenedStore> {
        if self.store.is_none() {
            let env = self.config.backend_env.clone();
            self.store = Some(open::connect(
                &self.config.repository,
                &self.config.store_options(),
                &move |name| env.get(name),
            )?);
        }
        Ok(self.store.as_ref().expect("connected above"))
    }

    async fn password(&mut self) -> Result<&Password> {
        if self.password.is_none() {
            self.password = Some(open::read_password(&self.config.password).await?);
        }
        Ok(self.password.as_ref().expect("read above"))
    }

    /// Whether a repository exists at the location.
    async fn repository_exists(&mut self) -> Result<bool> {
        if self.repository.is_some() {
            return Ok(true);
        }
        let backend = Arc::clone(&self.store()?.backend);
        open::exists(&backend).await
    }

    /// The open repository; [`arca_repo::Error::NotARepository`] if there is none.
    async fn repository(&mut self) -> Result<Repository> {
        self.open_repository(false).await.map(|(repo, _)| repo)
    }

    /// The open repository, created first if missing; whether it was created.
    async fn repository_or_init(&mut self) -> Result<(Repository, bool)> {
        self.open_repository(true).await
    }

    async fn open_repository(&mut self, init: bool) -> Result<(Repository, bool)> {
        if let Some(repository) = &self.repository {
            return Ok((repository.clone(), false));
        }
        self.store()?;
        self.password().await?;
        let (store, password) = (
            self.store.as_ref().expect("connected above"),
            self.password.as_ref().expect("read above"),
        );
        let cache = Some(self.config.cache_dir.as_path());
        let (repository, created) = if init {
            let options = InitOptions {
                hostname: self.config.host.clone(),
                username: username(),
                ..InitOptions::default()
            };
            open::open_or_init(store, password, cache, options).await?
        } else {
            if !open::exists(&store.backend).await? {
                return Err(arca_repo::Error::NotARepository {
                    location: store.backend.to_string(),
                }
                .into());
            }
            (open::open(store, password, cache).await?, false)
        };
        if created {
            tracing::info!(location = %store.backend, "created a new repository");
        }
        self.repository = Some(repository.clone());
        Ok((repository, created))
    }

    /// The snapshots of this run's host (and of its source, if it has one: `ARCA_SOURCE`).
    fn host_filter(&self) -> SnapshotFilter {
        SnapshotFilter {
            hosts: vec![self.config.host.clone()],
            tags: self
                .config
                .source_tag()
                .map(|tag| vec![tag])
                .into_iter()
                .collect(),
            ..SnapshotFilter::default()
        }
    }

    fn ticker(&self, action: Action) -> Ticker {
        Ticker::start(
            action.name(),
            self.config.progress_interval,
            Arc::clone(&self.sink),
        )
    }

    /// Removes stale leases (a prune's, left by a crashed Job); a harmless
    /// no-op when there are none, or no repository (VolSync ignores that error).
    async fn unlock(&mut self) -> Result<UnlockReport> {
        if !self.repository_exists().await? {
            return Ok(UnlockReport::default());
        }
        let repository = self.repository().await?;
        let report = arca_repo::lease::unlock(&repository, false).await?;
        if !report.kept.is_empty() {
            tracing::info!(
                kept = report.kept.len(),
                "leases still in force were left alone"
            );
        }
        Ok(UnlockReport {
            stale_locks_removed: report.removed.len() as u64,
        })
    }

    /// Prunes with the defaults (5 % unused space allowed, the grace period
    /// of the lock-free protocol): packs marked by an earlier prune are
    /// deleted, unused ones marked for the next.
    async fn prune(&mut self) -> Result<PruneReport> {
        let repository = self.repository().await?;
        let report = arca_repo::prune::prune(&repository, &PruneOptions::default()).await?;
        Ok(PruneReport {
            packs_deleted: report.packs_deleted,
            bytes_freed: report.bytes_deleted,
            packs_marked: report.packs_marked,
            bytes_marked: report.bytes_marked,
            packs_repacked: report.packs_repacked,
        })
    }

    async fn check(&mut self) -> Result<CheckSummary> {
        let repository = self.repository().await?;
        let ticker = self.ticker(Action::Check);
        let report = check(
            &repository,
            &CheckOptions {
                read_data: self.config.check_read_data,
            },
            ticker.progress(),
        )
        .await;
        ticker.finish();
        let report = report?;
        Ok(CheckSummary {
            ok: report.is_ok(),
            errors: report.errors.len() as u64,
            error_sample: report
                .errors
                .iter()
                .take(SAMPLE_LEN)
                .map(ToString::to_string)
                .collect(),
            snapshots_checked: report.snapshots_checked,
            packs_checked: report.packs_checked,
            packs_read: report.packs_read,
            bytes_read: report.bytes_read,
        })
    }
}

/// The user running the agent, recorded in a new repository's key file.
fn username() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |user| user.name)
}

/// Whether `dir` holds nothing but `lost+found` and the agent's own
/// restore leftovers.
pub(crate) fn is_empty_volume(dir: &Path) -> Result<bool> {
    let entries = std::fs::read_dir(dir).map_err(|err| Error::io(dir, err))?;
    for entry in entries {
        let entry = entry.map_err(|err| Error::io(dir, err))?;
        let name = entry.file_name();
        if name != "lost+found" && name != RESTORE_STAGING && name != RESTORE_MARKER {
            return Ok(false);
        }
    }
    Ok(true)
}
