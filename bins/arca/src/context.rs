//! Global options and what every command derives from them: the repository
//! location, storage options, the local metadata cache, the password and the
//! output mode.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use arca_repo::Repository;
use arca_repo::repository::CONFIG_PATH;
use arca_store::{DiskCache, KeyLocationBackend, RequestCounters, StoreOptions};

use crate::commands::audit::Recorder;
use crate::output::Output;
use crate::password::{Password, PasswordSources, Purpose};

/// Options accepted before or after any subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct GlobalOptions {
    /// Repository location: a path, local:PATH, s3:URL, gs:BUCKET:/PREFIX or azure:CONTAINER:/PREFIX
    /// [env: ARCA_REPOSITORY, RESTIC_REPOSITORY]
    #[arg(short = 'r', long = "repo", global = true, value_name = "REPOSITORY")]
    repository: Option<String>,
    /// Keep the key files and keyrings (keys/, keyring/) here instead of in the
    /// repository: another location of any kind, or a directory such as a
    /// mounted Kubernetes Secret [env: ARCA_KEY_LOCATION]
    #[arg(long, global = true, value_name = "LOCATION")]
    key_location: Option<String>,
    /// Read the password from this file (surrounding whitespace is ignored)
    /// [env: ARCA_PASSWORD_FILE, RESTIC_PASSWORD_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the password
    /// [env: ARCA_PASSWORD_COMMAND, RESTIC_PASSWORD_COMMAND]
    #[arg(long, global = true, value_name = "COMMAND")]
    password_command: Option<String>,
    /// Print machine-readable JSON on stdout (see docs/CLI.md for the schemas)
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Print only errors and what was asked for; no progress
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More log output on stderr (repeat for more)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Backend option KEY=VALUE; supported: connections=N
    #[arg(short = 'o', long = "option", global = true, value_name = "KEY=VALUE")]
    backend_options: Vec<String>,
    /// Concurrent connections to the storage backend
    #[arg(long, global = true, value_name = "N")]
    connections: Option<usize>,
    /// Limit uploads to this many KiB/s
    #[arg(long, global = true, value_name = "KiB/s")]
    limit_upload: Option<u64>,
    /// Limit downloads to this many KiB/s
    #[arg(long, global = true, value_name = "KiB/s")]
    limit_download: Option<u64>,
    /// PEM file with extra CA certificates for https backends
    #[arg(long, global = true, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// Refuse every storage connection that is not TLS 1.3, and plain http
    /// unless --allow-http [env: ARCA_REQUIRE_TLS13=true]
    #[arg(long, global = true)]
    require_tls13: bool,
    /// With --require-tls13, still talk plain http to an http:// endpoint
    /// (a local test server) [env: ARCA_ALLOW_HTTP=true]
    #[arg(long, global = true)]
    allow_http: bool,
    /// Keep the local metadata cache (index files, snapshots, tree packs) under this
    /// directory instead of ~/.cache/arca [env: ARCA_CACHE_DIR, RESTIC_CACHE_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Read everything from the repository; use and write no local cache
    #[arg(long, global = true, conflicts_with = "cache_dir")]
    no_cache: bool,
}

/// An open repository and the request counters of its backend.
pub(crate) struct Opened {
    pub(crate) repository: Repository,
    pub(crate) requests: Arc<RequestCounters>,
}

/// A repository the read-only verbs can read: Arca's own, or restic's.
pub(crate) enum AnyRepository {
    Arca(Opened),
    Restic(arca_restic::ResticRepository),
}

enum ArcaOrRestic {
    Arca(Opened),
    Restic {
        backend: Arc<dyn arca_store::Backend>,
        password: Password,
    },
}

/// Everything a command needs from the global options.
#[derive(Debug)]
pub(crate) struct Context {
    location: Option<String>,
    /// Where keys/ and keyring/ live when not beside the data.
    key_location: Option<String>,
    passwords: PasswordSources,
    store_options: StoreOptions,
    /// Where per-repository cache directories go: `None` = no cache,
    /// `Some(None)` = the platform's default.
    cache_base: Option<Option<PathBuf>>,
    pub(crate) output: Output,
    /// What this run did, for its audit record (see `commands::run`).
    pub(crate) audit: Recorder,
    /// Whose password [`Context::open_repository`] asks for.
    open_purpose: Purpose,
}

impl Context {
    pub(crate) fn new(global: GlobalOptions) -> anyhow::Result<Self> {
        let location = global
            .repository
            .or_else(|| env_either("ARCA_REPOSITORY", "RESTIC_REPOSITORY"));
        let key_location = global
            .key_location
            .or_else(|| std::env::var("ARCA_KEY_LOCATION").ok())
            .filter(|location| !location.is_empty());
        let passwords = PasswordSources {
            file: global.password_file.or_else(|| {
                env_either("ARCA_PASSWORD_FILE", "RESTIC_PASSWORD_FILE").map(PathBuf::from)
            }),
            command: global
                .password_command
                .or_else(|| env_either("ARCA_PASSWORD_COMMAND", "RESTIC_PASSWORD_COMMAND")),
        };
        let mut store_options = StoreOptions::default();
        for option in &global.backend_options {
            apply_backend_option(&mut store_options, option)?;
        }
        if global.connections.is_some() {
            store_options.connections = global.connections;
        }
        store_options.limit_upload_kib = global.limit_upload;
        store_options.limit_download_kib = global.limit_download;
        store_options.cacert = global.cacert;
        store_options.require_tls13 = global.require_tls13 || env_flag("ARCA_REQUIRE_TLS13")?;
        store_options.allow_http = global.allow_http || env_flag("ARCA_ALLOW_HTTP")?;
        let cache_base = (!global.no_cache).then(|| {
            global
                .cache_dir
                .or_else(|| env_either("ARCA_CACHE_DIR", "RESTIC_CACHE_DIR").map(PathBuf::from))
        });
        let output = Output::new(global.json, global.quiet);
        Ok(Context {
            location,
            key_location,
            passwords,
            store_options,
            cache_base,
            output,
            audit: Recorder::default(),
            open_purpose: Purpose::Open,
        })
    }

    /// The same storage, cache and output options for another repository,
    /// the one `copy --from-repo` reads: its own location and password
    /// sources (`ARCA_FROM_PASSWORD` rather than `ARCA_PASSWORD`). It keeps
    /// an audit record only when the caller names its operation.
    pub(crate) fn source_repository(
        &self,
        location: String,
        passwords: PasswordSources,
    ) -> Context {
        Context {
            location: Some(location),
            key_location: None,
            passwords,
            store_options: self.store_options.clone(),
            cache_base: self.cache_base.clone(),
            output: self.output,
            audit: Recorder::default(),
            open_purpose: Purpose::OpenSource,
        }
    }

    /// The repository location as given.
    pub(crate) fn location(&self) -> anyhow::Result<&str> {
        match self.location.as_deref() {
            Some(location) if !location.is_empty() => Ok(location),
            _ => bail!("no repository given: use -r/--repo or set ARCA_REPOSITORY"),
        }
    }

    /// The password, from the first source that is set. Read on the blocking
    /// pool: a prompt or password command may take long, and Ctrl-C must
    /// still be noticed meanwhile.
    pub(crate) async fn password(&self, purpose: Purpose) -> anyhow::Result<Password> {
        let sources = self.passwords.clone();
        tokio::task::spawn_blocking(move || sources.read(purpose)).await?
    }

    /// Connects to the storage backend (without reading anything yet), and
    /// to the key location if the keys live apart.
    pub(crate) fn open_store(&self) -> anyhow::Result<arca_store::OpenedStore> {
        let location = self.location()?;
        let mut store = arca_store::open(location, &self.store_options)
            .with_context(|| format!("cannot open repository {location}"))?;
        if let Some(key_location) = &self.key_location {
            let keys = arca_store::open(key_location, &self.store_options)
                .with_context(|| format!("cannot open key location {key_location}"))?;
            store.backend = Arc::new(KeyLocationBackend::new(store.backend, keys.backend));
        }
        Ok(store)
    }

    /// Opens the repository: storage, then the password, then the key. Like
    /// restic, a missing repository is reported before asking for a password.
    /// A restic repository is refused with a pointer to migration: only the
    /// read-only verbs ([`Context::open_any_repository`]) read one.
    pub(crate) async fn open_repository(&self) -> anyhow::Result<Opened> {
        match self.open_arca_or_restic(false).await? {
            ArcaOrRestic::Arca(opened) => Ok(opened),
            ArcaOrRestic::Restic { backend, .. } => bail!(
                "{backend} is a restic repository: Arca reads it (snapshots, ls, cat, restore, \
                 check) but never writes into it; migrate its snapshots into an Arca repository \
                 with `arca copy --from-repo` (docs/MIGRATING.md)"
            ),
        }
    }

    /// Opens the repository, an Arca one or a restic one, for the read-only verbs.
    pub(crate) async fn open_any_repository(&self) -> anyhow::Result<AnyRepository> {
        match self.open_arca_or_restic(true).await? {
            ArcaOrRestic::Arca(opened) => Ok(AnyRepository::Arca(opened)),
            ArcaOrRestic::Restic { backend, password } => {
                let opened = arca_restic::ResticRepository::open(backend, password.as_bytes())
                    .await
                    .map_err(restic_error)?;
                Ok(AnyRepository::Restic(opened))
            }
        }
    }

    /// The one detection point. With `restic_first` (the read-only verbs) the
    /// key files are looked at before opening, so a restic repository opens
    /// without Arca's warnings about key files it cannot read (three more
    /// requests); otherwise only a repository that fails to open as Arca's is
    /// looked at, so opening one costs no extra request.
    async fn open_arca_or_restic(&self, restic_first: bool) -> anyhow::Result<ArcaOrRestic> {
        let store = self.open_store()?;
        if let Err(arca_store::Error::NotFound { .. }) = store.backend.head(CONFIG_PATH).await {
            return Err(arca_repo::Error::NotARepository {
                location: store.backend.to_string(),
            }
            .into());
        }
        let password = self.password(self.open_purpose).await?;
        let is_restic = || async {
            arca_restic::is_restic_repository(store.backend.as_ref())
                .await
                .unwrap_or(false)
        };
        if restic_first && is_restic().await {
            return Ok(ArcaOrRestic::Restic {
                backend: store.backend,
                password,
            });
        }
        let mut repository =
            match Repository::open(store.backend.clone(), password.as_bytes()).await {
                Ok(repository) => repository,
                Err(err) => {
                    if !restic_first && is_restic().await {
                        return Ok(ArcaOrRestic::Restic {
                            backend: store.backend,
                            password,
                        });
                    }
                    return Err(err.into());
                }
            };
        if let Some(cache) = self.cache(&repository) {
            tracing::debug!(cache = %cache.dir().display(), "using the local metadata cache");
            repository = repository.with_cache(cache);
        }
        self.audit.opened(&repository, &store.requests);
        Ok(ArcaOrRestic::Arca(Opened {
            repository,
            requests: store.requests,
        }))
    }

    /// The cache for `repository`: a directory named by its ID under the
    /// cache base, as restic lays it out.
    fn cache(&self, repository: &Repository) -> Option<DiskCache> {
        let id = repository.config().id.to_hex();
        let dir = match self.cache_base.as_ref()? {
            Some(base) => base.join(id),
            None => match DiskCache::default_dir(&id) {
                Some(dir) => dir,
                None => {
                    tracing::info!("no cache directory (is $HOME set?); running without a cache");
                    return None;
                }
            },
        };
        Some(DiskCache::new(dir))
    }
}

/// An error of `arca_restic` as the CLI reports it: a wrong password, and
/// a failure of the Arca repository a migration writes into, as the same
/// errors (and exit codes) as with Arca repositories alone.
pub(crate) fn restic_error(error: arca_restic::Error) -> anyhow::Error {
    match error {
        arca_restic::Error::WrongPassword => arca_repo::Error::WrongPassword.into(),
        arca_restic::Error::Destination(inner) => inner.into(),
        other => other.into(),
    }
}

/// This machine's name, recorded in snapshots and key files.
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The user running arca, recorded in key files (the uid when it has no name).
pub(crate) fn username() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |user| user.name)
}

/// `ARCA_*` wins over the `RESTIC_*` variable so one machine can hold both.
pub(crate) fn env_either(arca: &str, restic: &str) -> Option<String> {
    [arca, restic]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

/// A boolean environment variable: `true`/`1`/`yes` or `false`/`0`/`no`
/// (unset or empty is false).
fn env_flag(name: &str) -> anyhow::Result<bool> {
    match std::env::var(name)
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "false" | "0" | "no" => Ok(false),
        "true" | "1" | "yes" => Ok(true),
        other => bail!("{name}={other:?}: expected true or false"),
    }
}

/// restic's `-o KEY=VALUE`; the backend prefix (`s3.connections`) is optional.
fn apply_backend_option(options: &mut StoreOptions, option: &str) -> anyhow::Result<()> {
    let Some((key, value)) = option.split_once('=') else {
        bail!("backend option {option:?} is not KEY=VALUE (e.g. -o connections=8)");
    };
    match key.rsplit('.').next().unwrap_or(key) {
        "connections" => {
            let connections = value.parse().ok().filter(|&n: &usize| n > 0);
            options.connections =
                Some(connections.with_context(|| {
                    format!("-o {option}: connections must be a positive number")
                })?);
        }
        other => bail!("unknown backend option {other:?}; supported: connections=N"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_options_parse_with_or_without_prefix() {
        let mut options = StoreOptions::default();
        apply_backend_option(&mut options, "connections=4").unwrap();
        assert_eq!(options.connections, Some(4));
        apply_backend_option(&mut options, "s3.connections=9").unwrap();
        assert_eq!(options.connections, Some(9));
        assert!(apply_backend_option(&mut options, "connections=0").is_err());
        assert!(apply_backend_option(&mut options, "connections").is_err());
        assert!(apply_backend_option(&mut options, "region=eu").is_err());
    }
}
