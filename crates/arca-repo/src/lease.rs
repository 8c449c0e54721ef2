//! Leases that keep two prunes from running at once, and expire by themselves.
//!
//! A lease is a sealed JSON file in `locks/` ([`ObjectKind::Lock`]) with a
//! start time and an expiry. A prune writes its lease, then lists `locks/`:
//! if another unexpired prune lease started earlier (ties broken by file
//! ID), it withdraws its own and stops with [`Error::PruneRunning`]. While it
//! runs it refreshes the lease every [`LEASE_REFRESH`] (a new file with the
//! same start time and a later expiry, then the old file deleted) and
//! checks, before each step that deletes, that the lease has not run out. Expired leases, and leases
//! of dead processes on this host, are ignored and removed. Backups never
//! write or look at leases, so no lease ever blocks one.

use std::time::Duration;

use arca_crypto::ObjectKind;

use crate::marks::delete_if_present;
use crate::{Error, Id, Repository, Result, records};

/// Directory of leases.
pub const LOCKS_DIR: &str = "locks";
/// How long a lease lasts unless refreshed.
pub const LEASE_DURATION: Duration = Duration::from_secs(15 * 60);
/// How often a running prune refreshes its lease.
pub const LEASE_REFRESH: Duration = Duration::from_secs(3 * 60);

/// One file in `locks/` (the stored JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    /// What holds it (`prune`).
    pub purpose: String,
    /// When the holder started; orders competing leases.
    pub time: jiff::Timestamp,
    /// When it lapses unless refreshed.
    pub expires: jiff::Timestamp,
    /// Host of the holder.
    pub hostname: String,
    /// Process ID of the holder.
    pub pid: u32,
}

impl Lease {
    /// Whether the lease no longer counts at `now`: expired, or held by a
    /// process of this host that no longer exists.
    pub fn is_stale(&self, now: jiff::Timestamp) -> bool {
        self.expires <= now || (self.hostname == local_hostname() && !process_alive(self.pid))
    }
}

/// A lease this process holds; [`HeldLease::release`] gives it up.
#[derive(Debug)]
pub struct HeldLease {
    repo: Repository,
    id: Id,
    lease: Lease,
}

fn local_hostname() -> String {
    nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn process_alive(pid: u32) -> bool {
    // Linux: a process exists iff its /proc entry does. Elsewhere every
    // process counts as alive, and its lease lapses only by expiry.
    !cfg!(target_os = "linux") || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn expiry(now: jiff::Timestamp) -> jiff::Timestamp {
    now + jiff::SignedDuration::try_from(LEASE_DURATION).expect("the lease duration fits")
}

/// Every lease, by ID; unreadable ones are reported as errors beside them.
pub async fn list_leases(repo: &Repository) -> Result<Vec<(Id, Result<Lease>)>> {
    records::load_all(repo, LOCKS_DIR, |repo, path, stored| {
        records::decode(repo, ObjectKind::Lock, path, stored)
    })
    .await
}

/// Takes the prune lease, or fails with [`Error::PruneRunning`] naming the
/// prune that holds it. Removes stale leases on the way.
pub async fn acquire(repo: &Repository, purpose: &str) -> Result<HeldLease> {
    let now = jiff::Timestamp::now();
    let lease = Lease {
        purpose: purpose.to_owned(),
        time: now,
        expires: expiry(now),
        hostname: local_hostname(),
        pid: std::process::id(),
    };
    let id = records::save(repo, ObjectKind::Lock, LOCKS_DIR, &lease).await?;
    let held = HeldLease {
        repo: repo.clone(),
        id,
        lease,
    };
    let now = jiff::Timestamp::now();
    for (other_id, other) in list_leases(repo).await? {
        if other_id == held.id {
            continue;
        }
        let other = match other {
            Ok(other) => other,
            Err(error) => {
                tracing::warn!(lease = %other_id, %error, "ignoring an unreadable lease");
                continue;
            }
        };
        if other.is_stale(now) {
            tracing::info!(lease = %other_id, "removing a stale lease");
            delete_if_present(repo, &format!("{LOCKS_DIR}/{other_id}")).await?;
        } else if other.purpose == held.lease.purpose
            && (other.time, other_id) < (held.lease.time, held.id)
        {
            held.release().await?;
            return Err(Error::PruneRunning {
                hostname: other.hostname,
                pid: other.pid,
                expires: other.expires,
            });
        }
    }
    Ok(held)
}

impl HeldLease {
    /// Extends the lease: a new file with a later expiry, then the old one
    /// deleted.
    pub async fn refresh(&mut self) -> Result<()> {
        let mut lease = self.lease.clone();
        lease.expires = expiry(jiff::Timestamp::now());
        let id = records::save(&self.repo, ObjectKind::Lock, LOCKS_DIR, &lease).await?;
        delete_if_present(&self.repo, &format!("{LOCKS_DIR}/{}", self.id)).await?;
        (self.id, self.lease) = (id, lease);
        Ok(())
    }

    /// [`Error::LeaseLost`] unless the lease is valid for another refresh
    /// interval: called before each step that deletes.
    pub fn ensure_valid(&self) -> Result<()> {
        let margin = jiff::SignedDuration::try_from(LEASE_REFRESH).expect("fits");
        if jiff::Timestamp::now() + margin < self.lease.expires {
            Ok(())
        } else {
            Err(Error::LeaseLost {
                reason: format!("it expires at {}", self.lease.expires),
            })
        }
    }

    /// Gives the lease up.
    pub async fn release(self) -> Result<()> {
        delete_if_present(&self.repo, &format!("{LOCKS_DIR}/{}", self.id)).await
    }
}

/// What [`unlock`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnlockReport {
    /// Leases removed.
    pub removed: Vec<Id>,
    /// Leases still in force and left alone.
    pub kept: Vec<Id>,
}

/// Removes stale leases (every lease with `remove_all`), and unreadable
/// ones. With none, does nothing.
pub async fn unlock(repo: &Repository, remove_all: bool) -> Result<UnlockReport> {
    repo.require_full_access("unlock")?;
    let now = jiff::Timestamp::now();
    let mut report = UnlockReport::default();
    for (id, lease) in list_leases(repo).await? {
        let remove = remove_all || lease.as_ref().map_or(true, |lease| lease.is_stale(now));
        if remove {
            delete_if_present(repo, &format!("{LOCKS_DIR}/{id}")).await?;
            report.removed.push(id);
        } else {
            report.kept.push(id);
        }
    }
    Ok(report)
}
