//! From a repository URL and a password to an open [`Repository`]: the
//! backend (through `arca_store::open_with_env`, so credentials come from a
//! lookup function rather than the process environment), the existence
//! check, key derivation, the local metadata cache, and initialisation of a
//! missing repository. Non-interactive: the CLI adds its prompt on top.

use std::path::Path;
use std::sync::Arc;

use arca_repo::Repository;
use arca_repo::repository::{CONFIG_PATH, InitOptions};
use arca_store::{Backend, DiskCache, OpenedStore, StoreOptions};

use crate::secret::{Password, PasswordSource};
use crate::{Error, Result};

/// Connects to the storage at `location` (a restic-style URL) with
/// `options`, reading credentials through `env`. Reads nothing yet.
pub fn connect(
    location: &str,
    options: &StoreOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OpenedStore> {
    Ok(arca_store::open_with_env(location, options, env)?)
}

/// Whether a repository exists at `backend` (its `config` file does). Storage
/// failures are errors, not "no": an unreachable bucket must not look empty.
pub async fn exists(backend: &Arc<dyn Backend>) -> Result<bool> {
    match backend.head(CONFIG_PATH).await {
        Ok(_) => Ok(true),
        Err(arca_store::Error::NotFound { .. }) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Reads the password from `source` on the blocking pool (a password command may take long).
pub async fn read_password(source: &PasswordSource) -> Result<Password> {
    let source = source.clone();
    tokio::task::spawn_blocking(move || source.read())
        .await
        .map_err(|err| Error::Password {
            reason: format!("the password reader stopped: {err}"),
        })?
}

/// Opens the repository in `store` with `password`, keeping metadata in a
/// per-repository directory under `cache_base` (named by the repository ID,
/// as restic lays its cache out) when one is given.
pub async fn open(
    store: &OpenedStore,
    password: &Password,
    cache_base: Option<&Path>,
) -> Result<Repository> {
    let repository = match Repository::open(Arc::clone(&store.backend), password.as_bytes()).await {
        Ok(repository) => repository,
        // Only a repository that does not open as Arca's is looked at, so
        // opening one costs no extra request.
        Err(err) => {
            if arca_restic::is_restic_repository(store.backend.as_ref())
                .await
                .unwrap_or(false)
            {
                return Err(Error::config(
                    "RESTIC_REPOSITORY",
                    format!(
                        "{} is a restic repository: the agent restores from it but never \
                         writes into it; migrate its snapshots into an Arca repository with \
                         `arca copy --from-repo` and point the Secret at that (docs/MIGRATING.md)",
                        store.backend
                    ),
                ));
            }
            return Err(err.into());
        }
    };
    Ok(with_cache(repository, cache_base))
}

/// Opens the repository in `store`, creating it first if there is none.
/// Returns whether it was created. Two Jobs creating the same repository at
/// once are fine: the one that finds it created opens it.
pub async fn open_or_init(
    store: &OpenedStore,
    password: &Password,
    cache_base: Option<&Path>,
    init: InitOptions,
) -> Result<(Repository, bool)> {
    if exists(&store.backend).await? {
        return Ok((open(store, password, cache_base).await?, false));
    }
    match Repository::init(Arc::clone(&store.backend), password.as_bytes(), init).await {
        Ok(repository) => Ok((with_cache(repository, cache_base), true)),
        Err(arca_repo::Error::AlreadyInitialized { .. }) => {
            Ok((open(store, password, cache_base).await?, false))
        }
        Err(err) => Err(err.into()),
    }
}

fn with_cache(repository: Repository, cache_base: Option<&Path>) -> Repository {
    match cache_base {
        Some(base) => {
            let dir = base.join(repository.config().id.to_hex());
            repository.with_cache(DiskCache::new(dir))
        }
        None => repository,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_repository_is_created_once_then_opened() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("repo");
        let store = connect(
            location.to_str().unwrap(),
            &StoreOptions::default(),
            &|_| None,
        )
        .unwrap();
        assert!(!exists(&store.backend).await.unwrap());
        let password = Password::trimmed(b"pw".to_vec());
        let cache = dir.path().join("cache");
        let (first, created) =
            open_or_init(&store, &password, Some(&cache), InitOptions::default())
                .await
                .unwrap();
        assert!(created);
        assert!(exists(&store.backend).await.unwrap());
        let (second, created) =
            open_or_init(&store, &password, Some(&cache), InitOptions::default())
                .await
                .unwrap();
        assert!(!created);
        assert_eq!(first.config().id, second.config().id);
        assert_eq!(
            second.cache_dir().unwrap(),
            cache.join(first.config().id.to_hex())
        );
        let wrong = Password::trimmed(b"not it".to_vec());
        let err = open(&store, &wrong, None).await.unwrap_err();
        assert_eq!(err.class(), crate::ErrorClass::WrongPassword);
    }
}
