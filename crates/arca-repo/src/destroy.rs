//! `arca repository destroy`: makes a whole repository unreadable by
//! deleting what unlocks it — every key file, every keyring object and the
//! config — after the caller typed the repository's ID.
//!
//! The packs, index files and snapshots stay where they are: they are
//! ciphertext that no key opens any more (docs/FORMAT.md §20, "Destroying
//! a repository", says what that does and does not guarantee). Key files go
//! first, so an interrupted destroy never leaves a repository that opens
//! without its config while its keys remain.

use crate::marks::delete_if_present;
use crate::repository::{CONFIG_PATH, KEYRING_DIR, KEYS_DIR};
use crate::{Error, Repository, Result};

/// What a destroy removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DestroyReport {
    /// Key files deleted (`keys/<id>`).
    pub key_files: u64,
    /// Keyring objects deleted (`keyring/<id>`).
    pub keyrings: u64,
    /// Whether the config was deleted.
    pub config: bool,
}

/// Destroys `repo` if `confirmation` is its full repository ID (the hex
/// `arca init` printed, as `arca cat config` shows it). A wrong or missing
/// confirmation is [`Error::DestroyNotConfirmed`] and removes nothing. Needs
/// a full-access key.
pub async fn destroy(repo: &Repository, confirmation: &str) -> Result<DestroyReport> {
    repo.require_full_access("repository destroy")?;
    let id = repo.config().id;
    if confirmation.trim() != id.to_hex() {
        return Err(Error::DestroyNotConfirmed {
            repository: id,
            given: confirmation.to_owned(),
        });
    }
    let mut report = DestroyReport::default();
    for (dir, count) in [
        (KEYS_DIR, &mut report.key_files),
        (KEYRING_DIR, &mut report.keyrings),
    ] {
        for meta in repo.backend().list(&format!("{dir}/")).await? {
            delete_if_present(repo, &meta.path).await?;
            *count += 1;
        }
    }
    delete_if_present(repo, CONFIG_PATH).await?;
    report.config = true;
    tracing::info!(
        key_files = report.key_files,
        keyrings = report.keyrings,
        "destroyed the repository's keys and config"
    );
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MemoryBackend, small_repo_options};

    const PASSWORD: &[u8] = b"destroy-test-password";

    #[tokio::test]
    async fn a_wrong_confirmation_removes_nothing_and_the_right_one_everything_that_unlocks() {
        let backend = MemoryBackend::new();
        let repo = Repository::init(backend.clone(), PASSWORD, small_repo_options())
            .await
            .unwrap();
        crate::keys::rotate(&repo).await.unwrap();
        let id = repo.config().id.to_hex();

        let refused = destroy(&repo, &id[..8]).await.unwrap_err();
        assert!(
            matches!(refused, Error::DestroyNotConfirmed { .. }),
            "{refused}"
        );
        Repository::open(backend.clone(), PASSWORD).await.unwrap();

        let report = destroy(&repo, &id).await.unwrap();
        assert_eq!(
            report,
            DestroyReport {
                key_files: 1,
                keyrings: 1,
                config: true
            }
        );
        for dir in ["keys/", "keyring/", "config"] {
            assert!(backend.paths(dir).is_empty(), "{dir}");
        }
        let reopened = Repository::open(backend, PASSWORD).await;
        assert!(
            matches!(reopened, Err(Error::NotARepository { .. })),
            "{reopened:?}"
        );
    }
}
