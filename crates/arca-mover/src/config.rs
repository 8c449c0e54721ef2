//! The mover's environment (VolSync's restic mover contract, docs/AGENT.md)
//! as typed data: [`MoverConfig::from_env`] reads it through a lookup
//! function, so it is pure and table-tested, and every malformed variable is
//! reported by name before anything touches the repository or the volume.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use arca_repo::check::ReadData;
use arca_repo::retention::{Count, Duration as Period, RetentionPolicy};
use arca_store::{RetryPolicy, StoreOptions};

use crate::push::PushTarget;
use crate::secret::PasswordSource;
use crate::{Error, Result};

/// One step of a Job, given as an argument (`arca-agent unlock backup prune`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Remove stale locks; a harmless no-op when there are none.
    Unlock,
    /// Back up `DATA_DIR` (initialising a missing repository), then forget
    /// per `FORGET_OPTIONS`.
    Backup,
    /// Remove data no snapshot needs.
    Prune,
    /// Restore the selected snapshot into `DATA_DIR`.
    Restore,
    /// Check the repository's structure (and with a subset, its data).
    Check,
    /// Read and authenticate every blob the latest snapshot references,
    /// without restoring it.
    Verify,
    /// A recovery drill: restore the selected snapshot into `DATA_DIR`
    /// (scratch space), verify it, run `ARCA_DRILL_COMMAND`, compare the
    /// time with the RTO, clean up and record the result.
    Drill,
    /// Copy new snapshots to every `ARCA_REPLICA_<N>_…` repository and apply
    /// each replica's retention (also done after every `backup`).
    Replicate,
    /// The compliance report of the host's backups (`arca_dr::report`)
    /// over the last 30 days, as summary figures in the result document.
    /// It only reads, so it runs even after an earlier action failed.
    Report,
}

impl Action {
    /// Every action, in the order the docs list them.
    pub const ALL: [Action; 9] = [
        Action::Unlock,
        Action::Backup,
        Action::Prune,
        Action::Restore,
        Action::Check,
        Action::Verify,
        Action::Drill,
        Action::Replicate,
        Action::Report,
    ];

    /// The argument naming this action.
    pub fn name(self) -> &'static str {
        match self {
            Action::Unlock => "unlock",
            Action::Backup => "backup",
            Action::Prune => "prune",
            Action::Restore => "restore",
            Action::Check => "check",
            Action::Verify => "verify",
            Action::Drill => "drill",
            Action::Replicate => "replicate",
            Action::Report => "report",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Action {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Action::ALL
            .into_iter()
            .find(|action| action.name() == s)
            .ok_or_else(|| {
                Error::config(
                    "action",
                    format!(
                        "unknown action {s:?}; expected one of unlock, backup, prune, restore, check, verify, drill, replicate, report"
                    ),
                )
            })
    }
}

/// Parses `FORGET_OPTIONS` (restic's `forget` flags, as VolSync writes them
/// from `spec.restic.retain`, `--keep-last 1` when retain is empty) into
/// the retention policy `arca_repo::retention` applies. Both `--flag value`
/// and `--flag=value` are accepted; every `--keep-tag a,b` is one AND-list.
pub fn parse_forget_options(text: &str) -> Result<RetentionPolicy> {
    let bad = |reason: String| Error::config("FORGET_OPTIONS", reason);
    let mut policy = RetentionPolicy::default();
    let mut words = text.split_whitespace();
    while let Some(word) = words.next() {
        let (flag, value) = match word.split_once('=') {
            Some((flag, value)) => (flag, value),
            None => {
                let value = words
                    .next()
                    .ok_or_else(|| bad(format!("{word} needs a value")))?;
                (word, value)
            }
        };
        let count = |value: &str| -> Result<Option<Count>> {
            value
                .parse::<Count>()
                .map(Some)
                .map_err(|err| bad(format!("{flag}: {err}")))
        };
        let period = |value: &str| -> Result<Option<Period>> {
            value
                .parse::<Period>()
                .map(Some)
                .map_err(|err| bad(format!("{flag}: {err}")))
        };
        match flag {
            "--keep-last" | "-l" => policy.keep_last = count(value)?,
            "--keep-hourly" | "-H" => policy.keep_hourly = count(value)?,
            "--keep-daily" | "-d" => policy.keep_daily = count(value)?,
            "--keep-weekly" | "-w" => policy.keep_weekly = count(value)?,
            "--keep-monthly" | "-m" => policy.keep_monthly = count(value)?,
            "--keep-yearly" | "-y" => policy.keep_yearly = count(value)?,
            "--keep-within" => policy.keep_within = period(value)?,
            "--keep-within-hourly" => policy.keep_within_hourly = period(value)?,
            "--keep-within-daily" => policy.keep_within_daily = period(value)?,
            "--keep-within-weekly" => policy.keep_within_weekly = period(value)?,
            "--keep-within-monthly" => policy.keep_within_monthly = period(value)?,
            "--keep-within-yearly" => policy.keep_within_yearly = period(value)?,
            "--keep-tag" => policy
                .keep_tags
                .push(value.split(',').map(String::from).collect()),
            other => {
                return Err(bad(format!(
                    "unsupported option {other:?}; supported: --keep-last, --keep-hourly, \
                     --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, \
                     --keep-within[-hourly|-daily|-weekly|-monthly|-yearly], --keep-tag"
                )));
            }
        }
    }
    Ok(policy)
}

/// The storage credentials and settings the backends read, by variable name.
/// `Debug` shows the names only: most values are secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BackendEnv(BTreeMap<String, String>);

impl std::fmt::Debug for BackendEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl BackendEnv {
    /// The variables the storage backends read (arca-store's credential
    /// chain; VolSync passes these keys of the repository Secret through).
    pub const NAMES: &[&str] = &[
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_ROLE_SESSION_NAME",
        "GOOGLE_PROJECT_ID",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "AZURE_ACCOUNT_NAME",
        "AZURE_ACCOUNT_KEY",
        "AZURE_ACCOUNT_SAS",
        "AZURE_ENDPOINT_SUFFIX",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_FEDERATED_TOKEN_FILE",
        "HOME",
    ];

    /// The value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    /// The names that are set.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// HTTP proxies (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`, either case), as the
/// controller copies them into the Job. The HTTP client of the cloud backends
/// reads them from the process environment itself; they are recorded here so
/// the run can log which are in effect. `Debug` hides the values (a proxy URL
/// may carry credentials).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    /// `HTTP_PROXY` / `http_proxy`.
    pub http: Option<String>,
    /// `HTTPS_PROXY` / `https_proxy`.
    pub https: Option<String>,
    /// `NO_PROXY` / `no_proxy`.
    pub no_proxy: Option<String>,
}

impl std::fmt::Debug for Proxies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxies")
            .field("http", &self.http.is_some())
            .field("https", &self.https.is_some())
            .field("no_proxy", &self.no_proxy.is_some())
            .finish()
    }
}

/// Default `DATA_DIR`.
pub const DEFAULT_DATA_DIR: &str = "/data";
/// Default `RESTIC_CACHE_DIR`.
pub const DEFAULT_CACHE_DIR: &str = "/cache";
/// Default host recorded in snapshots and selected on restore.
pub const DEFAULT_HOST: &str = "volsync";
/// Default result path: the container's termination log.
pub const DEFAULT_RESULT_PATH: &str = "/dev/termination-log";
/// VolSync's progress rate: one line every ten seconds.
pub const DEFAULT_PROGRESS_FPS: f64 = 0.1;

/// Everything a run needs from its environment.
#[derive(Debug, Clone)]
pub struct MoverConfig {
    /// The volume: backed up, or restored into (`DATA_DIR`, default `/data`).
    pub data_dir: PathBuf,
    /// The metadata cache (`ARCA_CACHE_DIR` / `RESTIC_CACHE_DIR`, default `/cache`).
    pub cache_dir: PathBuf,
    /// The repository location (`ARCA_REPOSITORY` / `RESTIC_REPOSITORY`, required).
    pub repository: String,
    /// Where the password comes from.
    pub password: PasswordSource,
    /// Host recorded in snapshots and selected on restore (`ARCA_HOST` /
    /// `RESTIC_HOST`, default `volsync`).
    pub host: String,
    /// The object this run works for, `<namespace>/<name>` (`ARCA_SOURCE`, set by the operator
    /// on a ReplicationSource's Jobs and on a ReplicationDestination's that names one): its
    /// backups carry the tag [`MoverConfig::source_tag`], and parents, retention, restores,
    /// drills, verification and replication look only at snapshots with that tag, so sources
    /// sharing a repository never see, or forget, each other's snapshots.
    pub source: Option<String>,
    /// Retention applied after each backup (`FORGET_OPTIONS`); `None` when
    /// unset or empty: no forget.
    pub forget: Option<RetentionPolicy>,
    /// Restore the newest snapshot not after this time (`RESTORE_AS_OF`, RFC 3339).
    pub restore_as_of: Option<jiff::Timestamp>,
    /// Skip this many newer eligible snapshots (`SELECT_PREVIOUS`, default 0).
    pub select_previous: usize,
    /// Delete files the snapshot does not have (`RESTORE_OPTIONS=--delete`).
    pub restore_delete: bool,
    /// Changes to the ReplicationSource's/ReplicationDestination's spec the controller saw
    /// since the last mover (`ARCA_AUDIT_SPEC_CHANGES`: a JSON array of notes, each naming the
    /// object, its generation and the changed fields); each becomes a `spec-change` record in
    /// the repository's audit trail.
    pub spec_changes: Vec<String>,
    /// Extra CA certificates for https backends (`CUSTOM_CA`, a PEM file).
    pub custom_ca: Option<PathBuf>,
    /// The proxies in effect.
    pub proxies: Proxies,
    /// Storage credentials and settings for the backend.
    pub backend_env: BackendEnv,
    /// How often a progress line is logged (`ARCA_PROGRESS_FPS` /
    /// `RESTIC_PROGRESS_FPS`, lines per second, default 0.1).
    pub progress_interval: Duration,
    /// Retries of each failed storage request (`ARCA_STORAGE_RETRIES`,
    /// default arca-store's: 10, backing off up to 30 s).
    pub storage_retries: Option<u32>,
    /// Where live progress is pushed (`ARCA_PROGRESS_URL`, plain http; the
    /// controller sets it when it collects progress).
    pub progress_url: Option<PushTarget>,
    /// Upload limit in KiB/s (`ARCA_LIMIT_UPLOAD`, restic's `--limit-upload`).
    pub limit_upload_kib: Option<u64>,
    /// Download limit in KiB/s (`ARCA_LIMIT_DOWNLOAD`, restic's `--limit-download`).
    pub limit_download_kib: Option<u64>,
    /// What `check` downloads and authenticates (`ARCA_CHECK_READ_DATA_SUBSET`:
    /// `n/m` or `P%`; default none).
    pub check_read_data: ReadData,
    /// Where the result document goes (`ARCA_RESULT_PATH`, default `/dev/termination-log`).
    pub result_path: PathBuf,
    /// Secondary repositories every backup is copied to (`ARCA_REPLICA_<N>_…`).
    pub replicas: Vec<ReplicaConfig>,
    /// The `drill` action's settings.
    pub drill: DrillConfig,
    /// Every storage connection must negotiate TLS 1.3 (`ARCA_REQUIRE_TLS13`; the controller
    /// sets it on every mover Job with `--require-tls13`).
    pub require_tls13: bool,
    /// With `require_tls13`, still talk plain http to an `http://` endpoint
    /// (`ARCA_ALLOW_HTTP`: a local test server, say).
    pub allow_http: bool,
}

/// `ARCA_SOURCE`: `<namespace>/<name>` (absent or empty: none). A tag cannot hold a comma
/// (restic's `--tag a,b` means two) or whitespace.
fn source_from_env(get: &impl Fn(&str) -> Option<String>) -> Result<Option<String>> {
    let Some(source) = get("ARCA_SOURCE").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let valid = source.split_once('/').is_some_and(|(namespace, name)| {
        !namespace.is_empty() && !name.is_empty() && !name.contains('/')
    }) && !source.contains(',')
        && !source.chars().any(char::is_whitespace);
    if !valid {
        return Err(Error::config(
            "ARCA_SOURCE",
            format!("{source:?} is not <namespace>/<name>"),
        ));
    }
    Ok(Some(source))
}

/// `ARCA_AUDIT_SPEC_CHANGES`: a JSON array of strings (absent or empty: none).
fn spec_changes_from_env(get: &impl Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    match get("ARCA_AUDIT_SPEC_CHANGES").filter(|t| !t.trim().is_empty()) {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text).map_err(|_| {
            Error::config(
                "ARCA_AUDIT_SPEC_CHANGES",
                "not a JSON array of strings".to_owned(),
            )
        }),
    }
}

/// The `drill` action's settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrillConfig {
    /// The data class whose RTO applies (`ARCA_DATA_CLASS`).
    pub class: Option<arca_sched::DataClass>,
    /// An explicit RTO, overriding the class's (`ARCA_RTO`: `900`, `15m`, `PT1H`).
    pub rto: Option<jiff::SignedDuration>,
    /// The application's consistency check, run with `sh -c` in the
    /// restored tree (`ARCA_DRILL_COMMAND`).
    pub command: Option<String>,
}

impl DrillConfig {
    /// The RTO the drill is held to: `ARCA_RTO`, else the class's.
    pub fn rto(&self) -> Option<jiff::SignedDuration> {
        self.rto.or(self.class.map(arca_sched::DataClass::rto))
    }
}

/// Prefix of the variables of secondary repository `N`.
pub fn replica_prefix(n: usize) -> String {
    format!("ARCA_REPLICA_{n}_")
}

/// One secondary repository, from the variables prefixed
/// `ARCA_REPLICA_<N>_` (the controller mounts each secondary's Secret with
/// `envFrom.prefix`): the same names the primary accepts.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// `ARCA_REPLICA_<N>_NAME`, default `replica-<N>`.
    pub name: String,
    /// Its location (`…_RESTIC_REPOSITORY` / `…_ARCA_REPOSITORY`).
    pub repository: String,
    /// Its password (`…_RESTIC_PASSWORD`, `…_PASSWORD_FILE`, …).
    pub password: PasswordSource,
    /// Its storage credentials (`…_AWS_ACCESS_KEY_ID`, …).
    pub backend_env: BackendEnv,
    /// Its CA bundle (`…_CUSTOM_CA`).
    pub custom_ca: Option<PathBuf>,
    /// Its own retention (`…_FORGET_OPTIONS`); `None`: keeps everything copied.
    pub forget: Option<RetentionPolicy>,
}

/// Reads the replica groups `ARCA_REPLICA_0_…`, `ARCA_REPLICA_1_…`, … up to
/// the first number without a repository; a group after a gap is an error
/// (it would be silently ignored otherwise).
fn replicas_from_env(env: &impl Fn(&str) -> Option<String>) -> Result<Vec<ReplicaConfig>> {
    let mut replicas = Vec::new();
    for n in 0.. {
        let prefix = replica_prefix(n);
        let get = |name: &str| env(&format!("{prefix}{name}")).filter(|v| !v.trim().is_empty());
        let Some(repository) = get("ARCA_REPOSITORY").or_else(|| get("RESTIC_REPOSITORY")) else {
            let next = replica_prefix(n + 1);
            if ["ARCA_REPOSITORY", "RESTIC_REPOSITORY"]
                .iter()
                .any(|name| env(&format!("{next}{name}")).is_some_and(|v| !v.trim().is_empty()))
            {
                return Err(Error::config(
                    &format!("{next}RESTIC_REPOSITORY"),
                    format!(
                        "replicas are numbered from 0 without gaps, but {prefix}RESTIC_REPOSITORY is not set"
                    ),
                ));
            }
            break;
        };
        let prefixed = |name: &str| env(&format!("{prefix}{name}"));
        let renamed = |err: Error| match err {
            Error::Config { variable, reason } => Error::Config {
                variable: format!("{prefix}{variable}"),
                reason,
            },
            other => other,
        };
        let password = PasswordSource::from_env(&prefixed).map_err(renamed)?;
        let forget = get("FORGET_OPTIONS")
            .map(|text| parse_forget_options(&text))
            .transpose()
            .map_err(renamed)?;
        replicas.push(ReplicaConfig {
            name: get("NAME").unwrap_or_else(|| format!("replica-{n}")),
            repository,
            password,
            backend_env: BackendEnv(
                BackendEnv::NAMES
                    .iter()
                    .filter_map(|name| get(name).map(|value| ((*name).to_owned(), value)))
                    .collect(),
            ),
            custom_ca: get("CUSTOM_CA").map(PathBuf::from),
            forget,
        });
    }
    Ok(replicas)
}

fn drill_from_env(get: &impl Fn(&str) -> Option<String>) -> Result<DrillConfig> {
    let class = get("ARCA_DATA_CLASS")
        .map(|text| {
            text.trim().parse::<arca_sched::DataClass>().map_err(|_| {
                Error::config(
                    "ARCA_DATA_CLASS",
                    format!("{text:?} is not a data class (critical, important, archival)"),
                )
            })
        })
        .transpose()?;
    let rto = get("ARCA_RTO")
        .map(|text| arca_dr::parse_duration(&text).map_err(|e| Error::config("ARCA_RTO", e)))
        .transpose()?;
    Ok(DrillConfig {
        class,
        rto,
        command: get("ARCA_DRILL_COMMAND"),
    })
}

impl MoverConfig {
    /// The tag of [`MoverConfig::source`]'s snapshots: `arca-source=<namespace>/<name>`.
    pub fn source_tag(&self) -> Option<String> {
        self.source
            .as_ref()
            .map(|source| format!("arca-source={source}"))
    }

    /// Reads the configuration through `env` (a variable's value, `None` when
    /// unset). An empty value counts as unset, as VolSync sets some variables
    /// to `""` when the field is not given.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<MoverConfig> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let either = |arca: &str, restic: &str| get(arca).or_else(|| get(restic));
        let repository = either("ARCA_REPOSITORY", "RESTIC_REPOSITORY").ok_or_else(|| {
            Error::config(
                "RESTIC_REPOSITORY",
                "not set: the repository Secret must define RESTIC_REPOSITORY",
            )
        })?;
        let password = PasswordSource::from_env(&env)?;
        let forget = get("FORGET_OPTIONS")
            .map(|text| parse_forget_options(&text))
            .transpose()?;
        let restore_as_of = get("RESTORE_AS_OF")
            .map(|text| {
                text.trim().parse::<jiff::Timestamp>().map_err(|_| {
                    Error::config(
                        "RESTORE_AS_OF",
                        format!("{text:?} is not an RFC 3339 time such as 2026-01-02T03:04:05Z"),
                    )
                })
            })
            .transpose()?;
        let select_previous = get("SELECT_PREVIOUS")
            .map(|text| {
                text.trim().parse::<usize>().map_err(|_| {
                    Error::config(
                        "SELECT_PREVIOUS",
                        format!("{text:?} is not a whole number of snapshots to skip"),
                    )
                })
            })
            .transpose()?
            .unwrap_or(0);
        let restore_delete = match get("RESTORE_OPTIONS") {
            None => false,
            Some(text) => parse_restore_options(&text)?,
        };
        let progress_interval = match either("ARCA_PROGRESS_FPS", "RESTIC_PROGRESS_FPS") {
            None => Duration::from_secs_f64(1.0 / DEFAULT_PROGRESS_FPS),
            Some(text) => progress_interval(&text)?,
        };
        let storage_retries = get("ARCA_STORAGE_RETRIES")
            .map(|text| {
                text.trim().parse::<u32>().map_err(|_| {
                    Error::config(
                        "ARCA_STORAGE_RETRIES",
                        format!("{text:?} is not a whole number"),
                    )
                })
            })
            .transpose()?;
        let kib_per_second = |name: &str| {
            get(name)
                .map(|text| {
                    text.trim()
                        .parse::<u64>()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or_else(|| {
                            Error::config(
                                name,
                                format!("{text:?} is not a positive number of KiB/s"),
                            )
                        })
                })
                .transpose()
        };
        let progress_url = get("ARCA_PROGRESS_URL")
            .map(|url| url.trim().parse::<PushTarget>())
            .transpose()?;
        let limit_upload_kib = kib_per_second("ARCA_LIMIT_UPLOAD")?;
        let limit_download_kib = kib_per_second("ARCA_LIMIT_DOWNLOAD")?;
        let check_read_data = match get("ARCA_CHECK_READ_DATA_SUBSET") {
            None => ReadData::None,
            Some(text) => text.trim().parse().map_err(|e: arca_repo::Error| {
                Error::config("ARCA_CHECK_READ_DATA_SUBSET", e.to_string())
            })?,
        };
        let proxy = |upper: &str, lower: &str| get(upper).or_else(|| get(lower));
        Ok(MoverConfig {
            data_dir: get("DATA_DIR")
                .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), PathBuf::from),
            cache_dir: either("ARCA_CACHE_DIR", "RESTIC_CACHE_DIR")
                .map_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR), PathBuf::from),
            repository,
            password,
            host: either("ARCA_HOST", "RESTIC_HOST").unwrap_or_else(|| DEFAULT_HOST.to_owned()),
            source: source_from_env(&get)?,
            forget,
            restore_as_of,
            select_previous,
            restore_delete,
            spec_changes: spec_changes_from_env(&get)?,
            custom_ca: get("CUSTOM_CA").map(PathBuf::from),
            proxies: Proxies {
                http: proxy("HTTP_PROXY", "http_proxy"),
                https: proxy("HTTPS_PROXY", "https_proxy"),
                no_proxy: proxy("NO_PROXY", "no_proxy"),
            },
            backend_env: BackendEnv(
                BackendEnv::NAMES
                    .iter()
                    .filter_map(|name| get(name).map(|value| ((*name).to_owned(), value)))
                    .collect(),
            ),
            progress_interval,
            storage_retries,
            progress_url,
            limit_upload_kib,
            limit_download_kib,
            check_read_data,
            result_path: MoverConfig::result_path_from_env(&env),
            replicas: replicas_from_env(&env)?,
            drill: drill_from_env(&get)?,
            require_tls13: flag(&get, "ARCA_REQUIRE_TLS13")?,
            allow_http: flag(&get, "ARCA_ALLOW_HTTP")?,
        })
    }

    /// Where the result document goes, read on its own so that a run whose
    /// environment is otherwise broken can still report that.
    pub fn result_path_from_env(env: impl Fn(&str) -> Option<String>) -> PathBuf {
        env("ARCA_RESULT_PATH")
            .filter(|v| !v.trim().is_empty())
            .map_or_else(|| PathBuf::from(DEFAULT_RESULT_PATH), PathBuf::from)
    }

    /// The storage options this configuration implies (CA bundle, retries).
    pub fn store_options(&self) -> StoreOptions {
        self.store_options_with(self.custom_ca.as_ref())
    }

    /// The storage options with another CA bundle (a replica's); limits
    /// and retries are the run's.
    pub fn store_options_with(&self, custom_ca: Option<&PathBuf>) -> StoreOptions {
        let mut options = StoreOptions::default();
        options.cacert = custom_ca.cloned();
        options.require_tls13 = self.require_tls13;
        options.allow_http = self.allow_http;
        options.limit_upload_kib = self.limit_upload_kib;
        options.limit_download_kib = self.limit_download_kib;
        // VolSync's /tmp is a memory-backed emptyDir; the cache is a volume.
        options.spool_dir = Some(self.cache_dir.join("spool"));
        if let Some(retries) = self.storage_retries {
            let default = RetryPolicy::default();
            options.retry = RetryPolicy::new(retries, default.base_delay, default.max_delay);
        }
        options
    }
}

/// A yes/no variable, spelled as the CLI accepts it (`1`/`0`, `true`/`false`, `yes`/`no`).
fn flag(get: &impl Fn(&str) -> Option<String>, name: &str) -> Result<bool> {
    match get(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some(other) => Err(Error::config(
            name,
            format!("{other:?} is not true or false (1/0, yes/no)"),
        )),
    }
}

/// `RESTORE_OPTIONS`: VolSync passes `--delete` or nothing.
fn parse_restore_options(text: &str) -> Result<bool> {
    let mut delete = false;
    for word in text.split_whitespace() {
        match word {
            "--delete" => delete = true,
            other => {
                return Err(Error::config(
                    "RESTORE_OPTIONS",
                    format!("unsupported restore option {other:?}; supported: --delete"),
                ));
            }
        }
    }
    Ok(delete)
}

/// Lines per second → the interval between lines; 0 means the default, as in restic.
fn progress_interval(text: &str) -> Result<Duration> {
    let fps: f64 = text.trim().parse().map_err(|_| {
        Error::config(
            "RESTIC_PROGRESS_FPS",
            format!("{text:?} is not a number of progress lines per second"),
        )
    })?;
    if fps == 0.0 {
        return Ok(Duration::from_secs_f64(1.0 / DEFAULT_PROGRESS_FPS));
    }
    if !(fps.is_finite() && fps > 0.0 && fps <= 60.0) {
        return Err(Error::config(
            "RESTIC_PROGRESS_FPS",
            format!("{text:?} is out of range (0 to 60 lines per second)"),
        ));
    }
    Ok(Duration::from_secs_f64(1.0 / fps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    const MINIMAL: [(&str, &str); 2] = [
        ("RESTIC_REPOSITORY", "/repository/app"),
        ("RESTIC_PASSWORD", "pw"),
    ];

    fn with(extra: &[(&str, &str)]) -> Result<MoverConfig> {
        let mut pairs = MINIMAL.to_vec();
        pairs.extend_from_slice(extra);
        MoverConfig::from_env(env_of(&pairs))
    }

    #[test]
    fn defaults_are_volsyncs() {
        let config = with(&[]).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/data"));
        assert_eq!(config.cache_dir, PathBuf::from("/cache"));
        let spool_dir = config.store_options().spool_dir;
        assert_eq!(spool_dir, Some(PathBuf::from("/cache/spool")));
        assert_eq!(config.repository, "/repository/app");
        assert_eq!(config.host, "volsync");
        assert_eq!(config.forget, None);
        assert_eq!(config.restore_as_of, None);
        assert_eq!(config.select_previous, 0);
        assert!(!config.restore_delete);
        assert_eq!(config.custom_ca, None);
        assert_eq!(config.progress_interval, Duration::from_secs(10));
        assert_eq!(config.storage_retries, None);
        assert_eq!(config.check_read_data, ReadData::None);
        assert_eq!(config.result_path, PathBuf::from("/dev/termination-log"));
        assert_eq!(config.progress_url, None);
        assert_eq!(config.backend_env.names().count(), 0);
    }

    #[test]
    fn a_volsync_source_job_environment() {
        let config = with(&[
            ("DATA_DIR", "/data"),
            ("RESTIC_CACHE_DIR", "/cache"),
            ("FORGET_OPTIONS", "--keep-hourly 6 --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --keep-yearly 1 --keep-within 3d"),
            ("RESTORE_AS_OF", ""),
            ("SELECT_PREVIOUS", "0"),
            ("RESTORE_OPTIONS", ""),
            ("PRIVILEGED_MOVER", "0"),
            ("CUSTOM_CA", "/customCA/ca.crt"),
            ("HTTPS_PROXY", "http://user:secret@proxy:3128"),
            ("no_proxy", "10.0.0.0/8"),
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("RCLONE_CONFIG", "ignored"),
        ])
        .unwrap();
        let forget = config.forget.clone().unwrap();
        assert_eq!(forget.keep_hourly, Some(Count::Limited(6)));
        assert_eq!(forget.keep_daily, Some(Count::Limited(7)));
        assert_eq!(forget.keep_weekly, Some(Count::Limited(4)));
        assert_eq!(forget.keep_monthly, Some(Count::Limited(12)));
        assert_eq!(forget.keep_yearly, Some(Count::Limited(1)));
        assert_eq!(forget.keep_last, None);
        assert_eq!(forget.keep_within, Some("3d".parse().unwrap()));
        assert_eq!(config.custom_ca, Some(PathBuf::from("/customCA/ca.crt")));
        assert_eq!(config.store_options().cacert, config.custom_ca);
        assert_eq!(
            config.proxies.https.as_deref(),
            Some("http://user:secret@proxy:3128")
        );
        assert_eq!(config.proxies.no_proxy.as_deref(), Some("10.0.0.0/8"));
        assert_eq!(config.proxies.http, None);
        assert_eq!(
            config.backend_env.names().collect::<Vec<_>>(),
            ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        );
        assert_eq!(
            config.backend_env.get("AWS_SECRET_ACCESS_KEY").as_deref(),
            Some("s3cr3t")
        );
        let debug = format!("{config:?}");
        for secret in ["s3cr3t", "user:secret", "\"pw\""] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn spec_change_notes_are_a_json_list_of_strings() {
        assert!(with(&[]).unwrap().spec_changes.is_empty());
        let config = with(&[(
            "ARCA_AUDIT_SPEC_CHANGES",
            r#"["{\"changed\":[\"paused\"]}"]"#,
        )])
        .unwrap();
        assert_eq!(config.spec_changes, [r#"{"changed":["paused"]}"#]);
        let err = with(&[("ARCA_AUDIT_SPEC_CHANGES", "paused")]).unwrap_err();
        assert!(err.to_string().contains("ARCA_AUDIT_SPEC_CHANGES"), "{err}");
    }

    #[test]
    fn a_volsync_destination_job_environment() {
        let config = with(&[
            ("RESTORE_AS_OF", "2026-03-04T05:06:07-02:00"),
            ("SELECT_PREVIOUS", "2"),
            ("RESTORE_OPTIONS", "--delete"),
        ])
        .unwrap();
        assert_eq!(
            config.restore_as_of,
            Some("2026-03-04T07:06:07Z".parse().unwrap())
        );
        assert_eq!(config.select_previous, 2);
        assert!(config.restore_delete);
    }

    #[test]
    fn arca_variables_win_over_restic_ones() {
        let config = with(&[
            ("ARCA_REPOSITORY", "s3:http://127.0.0.1:9000/b/p"),
            ("ARCA_CACHE_DIR", "/arca-cache"),
            ("RESTIC_CACHE_DIR", "/cache"),
            ("RESTIC_HOST", "restic-host"),
            ("ARCA_HOST", "arca-host"),
            ("RESTIC_PROGRESS_FPS", "2"),
            ("ARCA_PROGRESS_FPS", "4"),
            ("ARCA_STORAGE_RETRIES", "0"),
            ("ARCA_CHECK_READ_DATA_SUBSET", "1/5"),
            ("ARCA_RESULT_PATH", "/tmp/result.json"),
            ("ARCA_LIMIT_DOWNLOAD", "512"),
            ("ARCA_PROGRESS_URL", "http://arca:8080/progress/ns/rs/app"),
        ])
        .unwrap();
        assert_eq!(config.repository, "s3:http://127.0.0.1:9000/b/p");
        assert_eq!(config.cache_dir, PathBuf::from("/arca-cache"));
        assert_eq!(config.host, "arca-host");
        assert_eq!(config.progress_interval, Duration::from_millis(250));
        assert_eq!(config.store_options().retry.max_retries, 0);
        assert_eq!(config.check_read_data, ReadData::Nth { n: 1, m: 5 });
        assert_eq!(config.result_path, PathBuf::from("/tmp/result.json"));
        assert_eq!(config.store_options().limit_download_kib, Some(512));
        assert_eq!(config.store_options().limit_upload_kib, None);
        assert_eq!(config.progress_url.unwrap().path, "/progress/ns/rs/app");
        let restic_host = with(&[("RESTIC_HOST", "restic-host")]).unwrap();
        assert_eq!(restic_host.host, "restic-host");
    }

    #[test]
    fn tls13_and_plain_http_are_read_as_flags_and_reach_every_store() {
        let defaults = with(&[]).unwrap().store_options();
        assert!(!defaults.require_tls13 && !defaults.allow_http);
        let config = with(&[("ARCA_REQUIRE_TLS13", "1"), ("ARCA_ALLOW_HTTP", "true")]).unwrap();
        assert!(config.require_tls13 && config.allow_http);
        let replica_ca = PathBuf::from("/replica/ca.crt");
        let replica = config.store_options_with(Some(&replica_ca));
        assert!(
            replica.require_tls13 && replica.allow_http,
            "a replica's store too"
        );
        let strict = with(&[("ARCA_REQUIRE_TLS13", "yes"), ("ARCA_ALLOW_HTTP", "0")]).unwrap();
        assert!(strict.store_options().require_tls13 && !strict.store_options().allow_http);
        let err = with(&[("ARCA_REQUIRE_TLS13", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("ARCA_REQUIRE_TLS13"), "{err}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let table: &[(&[(&str, &str)], &str)] = &[
            (
                &[("FORGET_OPTIONS", "--keep-daily seven")],
                "FORGET_OPTIONS",
            ),
            (&[("FORGET_OPTIONS", "--keep-daily")], "FORGET_OPTIONS"),
            (&[("FORGET_OPTIONS", "--prune")], "FORGET_OPTIONS"),
            (&[("FORGET_OPTIONS", "--keep-within 3w")], "FORGET_OPTIONS"),
            (&[("FORGET_OPTIONS", "--keep-within 3")], "FORGET_OPTIONS"),
            (&[("RESTORE_AS_OF", "yesterday")], "RESTORE_AS_OF"),
            (&[("SELECT_PREVIOUS", "-1")], "SELECT_PREVIOUS"),
            (
                &[("RESTORE_OPTIONS", "--delete --force")],
                "RESTORE_OPTIONS",
            ),
            (&[("RESTIC_PROGRESS_FPS", "fast")], "RESTIC_PROGRESS_FPS"),
            (&[("RESTIC_PROGRESS_FPS", "-1")], "RESTIC_PROGRESS_FPS"),
            (&[("ARCA_STORAGE_RETRIES", "many")], "ARCA_STORAGE_RETRIES"),
            (&[("ARCA_LIMIT_UPLOAD", "0")], "ARCA_LIMIT_UPLOAD"),
            (
                &[("ARCA_PROGRESS_URL", "https://controller/p")],
                "ARCA_PROGRESS_URL",
            ),
            (
                &[("ARCA_CHECK_READ_DATA_SUBSET", "0/5")],
                "ARCA_CHECK_READ_DATA_SUBSET",
            ),
        ];
        for (extra, variable) in table {
            let err = with(extra).unwrap_err();
            assert!(
                matches!(&err, Error::Config { variable: v, .. } if v == variable),
                "{extra:?}: {err}"
            );
            assert_eq!(err.class(), crate::ErrorClass::Config);
        }
        let err = MoverConfig::from_env(env_of(&[("RESTIC_PASSWORD", "pw")])).unwrap_err();
        assert!(err.to_string().contains("RESTIC_REPOSITORY"), "{err}");
        let err = MoverConfig::from_env(env_of(&[("RESTIC_REPOSITORY", "/r")])).unwrap_err();
        assert!(err.to_string().contains("RESTIC_PASSWORD"), "{err}");
    }

    /// The seed's Secrets (its ExternalSecret template with APP substituted,
    /// and its S3 and NFS examples) give the locations they mean.
    #[test]
    fn the_seeds_secret_values() {
        use arca_store::Location;
        let table = [
            (
                "/repository/${APP}",
                Location::Local {
                    path: "/repository/example-app".into(),
                },
            ),
            (
                "/mnt/backup-nfs/repositories/${APP}",
                Location::Local {
                    path: "/mnt/backup-nfs/repositories/example-app".into(),
                },
            ),
            (
                "s3:https://backup-storage.example.com/bucket/path",
                Location::S3 {
                    endpoint: "https://backup-storage.example.com".into(),
                    bucket: "bucket".into(),
                    prefix: "path".into(),
                },
            ),
        ];
        for (template, expected) in table {
            let value = template.replace("${APP}", "example-app");
            let config = MoverConfig::from_env(env_of(&[
                ("RESTIC_REPOSITORY", &value),
                ("RESTIC_PASSWORD", "rendered-from-vault"),
                ("AWS_ACCESS_KEY_ID", "access"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
            ]))
            .unwrap();
            assert_eq!(Location::parse(&config.repository).unwrap(), expected);
        }
    }

    #[test]
    fn forget_options_in_every_spelling() {
        let parsed = parse_forget_options(
            "--keep-last=3 -d 2 --keep-monthly unlimited --keep-tag a,b --keep-tag c \
             --keep-within 1y2m3d4h --keep-within-daily=7d",
        )
        .unwrap();
        assert_eq!(parsed.keep_last, Some(Count::Limited(3)));
        assert_eq!(parsed.keep_daily, Some(Count::Limited(2)));
        assert_eq!(parsed.keep_monthly, Some(Count::Unlimited));
        assert_eq!(parsed.keep_tags, [vec!["a", "b"], vec!["c"]]);
        let within = parsed.keep_within.unwrap();
        assert_eq!(
            (within.years, within.months, within.days, within.hours),
            (1, 2, 3, 4)
        );
        assert_eq!(parsed.keep_within_daily.unwrap().days, 7);
        assert!(parse_forget_options("").unwrap().is_empty());
        assert!(!parse_forget_options("--keep-last 1").unwrap().is_empty());
    }

    #[test]
    fn actions_parse_by_name() {
        for action in Action::ALL {
            assert_eq!(action.name().parse::<Action>().unwrap(), action);
        }
        assert!("sync".parse::<Action>().is_err());
    }

    proptest::proptest! {
        #[test]
        fn keep_counts_round_trip(last in 0u32..1000, daily in 0u32..1000, hours in 0u32..10_000) {
            let text = format!("--keep-last {last} --keep-daily={daily} --keep-within {hours}h");
            let parsed = parse_forget_options(&text).unwrap();
            proptest::prop_assert_eq!(parsed.keep_last, Some(Count::Limited(last)));
            proptest::prop_assert_eq!(parsed.keep_daily, Some(Count::Limited(daily)));
            proptest::prop_assert_eq!(parsed.keep_within.unwrap().hours, hours);
        }

        #[test]
        fn from_env_never_panics(value in ".{0,40}") {
            for variable in ["FORGET_OPTIONS", "RESTORE_AS_OF", "SELECT_PREVIOUS", "RESTORE_OPTIONS", "RESTIC_PROGRESS_FPS"] {
                let _ = with(&[(variable, value.as_str())]);
            }
        }
    }

    #[test]
    fn replica_groups_are_read_in_order_with_their_own_settings() {
        let config = with(&[
            (
                "ARCA_REPLICA_0_RESTIC_REPOSITORY",
                "s3:https://dr.example/bucket/app",
            ),
            ("ARCA_REPLICA_0_RESTIC_PASSWORD", "dr-pw"),
            ("ARCA_REPLICA_0_AWS_ACCESS_KEY_ID", "AKIA"),
            ("ARCA_REPLICA_0_AWS_SECRET_ACCESS_KEY", "very-secret"),
            ("ARCA_REPLICA_0_NAME", "dr-site"),
            ("ARCA_REPLICA_0_FORGET_OPTIONS", "--keep-daily 30"),
            ("ARCA_REPLICA_1_ARCA_REPOSITORY", "/nfs/app"),
            ("ARCA_REPLICA_1_RESTIC_PASSWORD_FILE", "/secret/pw"),
            ("ARCA_REPLICA_1_CUSTOM_CA", "/ca/dr.crt"),
            ("AWS_ACCESS_KEY_ID", "primary"),
        ])
        .unwrap();
        assert_eq!(config.replicas.len(), 2);
        let dr = &config.replicas[0];
        assert_eq!(dr.name, "dr-site");
        assert_eq!(dr.repository, "s3:https://dr.example/bucket/app");
        assert_eq!(
            dr.backend_env.get("AWS_ACCESS_KEY_ID").as_deref(),
            Some("AKIA")
        );
        assert_eq!(
            dr.forget.as_ref().unwrap().keep_daily,
            Some("30".parse().unwrap())
        );
        assert!(!format!("{dr:?}").contains("very-secret"));
        assert!(!format!("{dr:?}").contains("dr-pw"));
        let nfs = &config.replicas[1];
        assert_eq!(nfs.name, "replica-1");
        assert_eq!(nfs.repository, "/nfs/app");
        assert!(
            matches!(&nfs.password, PasswordSource::File(path) if path == Path::new("/secret/pw"))
        );
        assert_eq!(nfs.custom_ca.as_deref(), Some(Path::new("/ca/dr.crt")));
        assert_eq!(
            nfs.backend_env.names().count(),
            0,
            "the primary's credentials are not inherited"
        );
        assert_eq!(nfs.forget, None);
        assert!(with(&[]).unwrap().replicas.is_empty());
    }

    #[test]
    fn bad_replica_groups_name_the_prefixed_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("ARCA_REPLICA_0_RESTIC_REPOSITORY", "/r0")],
                "ARCA_REPLICA_0_RESTIC_PASSWORD",
            ),
            (
                &[
                    ("ARCA_REPLICA_0_RESTIC_REPOSITORY", "/r0"),
                    ("ARCA_REPLICA_0_RESTIC_PASSWORD", "pw"),
                    ("ARCA_REPLICA_0_FORGET_OPTIONS", "--keep-forever 1"),
                ],
                "ARCA_REPLICA_0_FORGET_OPTIONS",
            ),
            (
                &[
                    ("ARCA_REPLICA_1_RESTIC_REPOSITORY", "/r1"),
                    ("ARCA_REPLICA_1_RESTIC_PASSWORD", "pw"),
                ],
                "ARCA_REPLICA_1_RESTIC_REPOSITORY",
            ),
        ];
        for (extra, variable) in cases {
            match with(extra) {
                Err(Error::Config {
                    variable: found, ..
                }) => assert_eq!(found, *variable),
                other => panic!("{extra:?}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_source_becomes_a_tag_and_a_malformed_one_is_refused() {
        let config = with(&[("ARCA_SOURCE", "shop/db-backup")]).unwrap();
        assert_eq!(config.source.as_deref(), Some("shop/db-backup"));
        assert_eq!(
            config.source_tag().as_deref(),
            Some("arca-source=shop/db-backup")
        );
        assert_eq!(with(&[("ARCA_SOURCE", "")]).unwrap().source_tag(), None);
        assert_eq!(with(&[]).unwrap().source_tag(), None);
        for bad in ["db-backup", "shop/", "/db", "a/b/c", "shop/a,b", "shop/a b"] {
            match with(&[("ARCA_SOURCE", bad)]) {
                Err(Error::Config { variable, .. }) => assert_eq!(variable, "ARCA_SOURCE"),
                other => panic!("{bad:?}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn drill_settings_come_from_the_class_or_an_explicit_rto() {
        let config = with(&[("ARCA_DATA_CLASS", "critical")]).unwrap();
        assert_eq!(
            config.drill.rto(),
            Some(jiff::SignedDuration::from_mins(15))
        );
        let config = with(&[
            ("ARCA_DATA_CLASS", "archival"),
            ("ARCA_RTO", "30m"),
            ("ARCA_DRILL_COMMAND", "pg_verify"),
        ])
        .unwrap();
        assert_eq!(
            config.drill.rto(),
            Some(jiff::SignedDuration::from_mins(30))
        );
        assert_eq!(config.drill.command.as_deref(), Some("pg_verify"));
        assert_eq!(with(&[]).unwrap().drill, DrillConfig::default());
        assert_eq!(with(&[]).unwrap().drill.rto(), None);
        for (name, value) in [("ARCA_DATA_CLASS", "vital"), ("ARCA_RTO", "soon")] {
            match with(&[(name, value)]) {
                Err(Error::Config { variable, .. }) => assert_eq!(variable, name),
                other => panic!("{name}={value}: {other:?}"),
            }
        }
    }
}
