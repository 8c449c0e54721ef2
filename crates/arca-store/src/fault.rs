//! Fault injection for tests: transient failures, delays, torn writes and outages.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Backend, Error, ObjectMeta, Result, SpoolFile};

/// What [`FaultBackend`] does to calls.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct FaultConfig {
    /// Seed of the random choices, so a failing run can be replayed.
    pub seed: u64,
    /// Fraction (0.0–1.0) of calls that fail with a transient error before reaching the store.
    pub transient_failure_rate: f64,
    /// Fraction (0.0–1.0) of writes that store only a prefix of the data and then fail
    /// transiently, like a connection cut mid-upload to a store without atomic writes.
    pub torn_write_rate: f64,
    /// Added before every call.
    pub delay: Option<Duration>,
}

impl FaultConfig {
    /// No faults, with `seed` for the choices made once rates are set.
    pub fn seeded(seed: u64) -> Self {
        FaultConfig {
            seed,
            ..FaultConfig::default()
        }
    }

    /// Sets [`FaultConfig::transient_failure_rate`].
    pub fn transient_failures(mut self, rate: f64) -> Self {
        self.transient_failure_rate = rate;
        self
    }

    /// Sets [`FaultConfig::torn_write_rate`].
    pub fn torn_writes(mut self, rate: f64) -> Self {
        self.torn_write_rate = rate;
        self
    }

    /// Sets [`FaultConfig::delay`].
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// Switch for a simulated permanent outage; clones share the switch.
#[derive(Debug, Clone, Default)]
pub struct OutageSwitch(Arc<AtomicBool>);

impl OutageSwitch {
    /// Starts (`true`) or ends (`false`) the outage.
    pub fn set(&self, down: bool) {
        self.0.store(down, Ordering::SeqCst);
    }

    /// Whether the outage is on.
    pub fn is_down(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Decorator that injects faults into any backend (tests and chaos drills only).
#[derive(Debug)]
pub struct FaultBackend {
    inner: Arc<dyn Backend>,
    config: FaultConfig,
    rng: Mutex<StdRng>,
    outage: OutageSwitch,
    injected: AtomicU64,
}

/// Which fault, if any, a call gets.
enum Fault {
    None,
    Transient,
    TornWrite,
}

impl FaultBackend {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>, config: FaultConfig) -> Self {
        FaultBackend {
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            inner,
            config,
            outage: OutageSwitch::default(),
            injected: AtomicU64::new(0),
        }
    }

    /// The switch that turns a permanent outage on and off while the backend is in use.
    pub fn outage_switch(&self) -> OutageSwitch {
        self.outage.clone()
    }

    /// How many faults (transient failures and torn writes) were injected so far.
    pub fn injected_faults(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    async fn before_call(&self, what: &str, path: &str, is_write: bool) -> Result<Fault> {
        if let Some(delay) = self.config.delay {
            tokio::time::sleep(delay).await;
        }
        if self.outage.is_down() {
            return Err(Error::permanent(
                format!("{}/{path}", self.inner),
                format!("{what}: simulated outage (storage unreachable)"),
            ));
        }
        let fault = {
            let mut rng = self.rng.lock().unwrap_or_else(|poison| poison.into_inner());
            let roll: f64 = rng.random();
            if roll < self.config.transient_failure_rate {
                Fault::Transient
            } else if is_write
                && roll < self.config.transient_failure_rate + self.config.torn_write_rate
            {
                Fault::TornWrite
            } else {
                Fault::None
            }
        };
        if !matches!(fault, Fault::None) {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        match fault {
            Fault::Transient => Err(self.transient(what, path)),
            other => Ok(other),
        }
    }

    fn transient(&self, what: &str, path: &str) -> Error {
        Error::transient(
            format!("{}/{path}", self.inner),
            format!("{what}: injected fault (connection reset)"),
        )
    }
}

impl std::fmt::Display for FaultBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait::async_trait]
impl Backend for FaultBackend {
    async fn get(&self, path: &str) -> Result<Bytes> {
        self.before_call("get", path, false).await?;
        self.inner.get(path).await
    }

    async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        self.before_call("get_range", path, false).await?;
        self.inner.get_range(path, range).await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        match self.before_call("put", path, true).await? {
            Fault::TornWrite => {
                let kept = data.len() / 2;
                self.inner.put(path, data.slice(..kept)).await?;
                Err(self.transient("put (torn write)", path))
            }
            Fault::None | Fault::Transient => self.inner.put(path, data).await,
        }
    }

    async fn put_file(&self, path: &str, file: Arc<SpoolFile>) -> Result<()> {
        match self.before_call("put", path, true).await? {
            // The store is left holding a prefix, as after a torn `put`.
            Fault::TornWrite => {
                let data = file.read_all()?;
                self.inner.put(path, data.slice(..data.len() / 2)).await?;
                Err(self.transient("put (torn write)", path))
            }
            Fault::None | Fault::Transient => self.inner.put_file(path, file).await,
        }
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.before_call("delete", path, false).await?;
        self.inner.delete(path).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.before_call("list", prefix, false).await?;
        self.inner.list(prefix).await
    }

    async fn head(&self, path: &str) -> Result<ObjectMeta> {
        self.before_call("head", path, false).await?;
        self.inner.head(path).await
    }

    fn put_requests(&self, size: u64) -> u64 {
        self.inner.put_requests(size)
    }
    fn put_file_requests(&self, size: u64) -> u64 {
        self.inner.put_file_requests(size)
    }

    fn connections(&self) -> Option<usize> {
        self.inner.connections()
    }

    fn spool_dir(&self) -> Option<crate::SpoolDir> {
        self.inner.spool_dir()
    }
}
