//! Progress of a running action as lines at a steady rate (VolSync's
//! `RESTIC_PROGRESS_FPS`), for the pod log.
//!
//! The engine calls [`Progress`] from hot loops on many threads, so those
//! calls only bump atomics; one ticker thread turns the counters into a
//! [`ProgressLine`] every interval and hands it to the caller's sink (the
//! binary writes it to stderr). This crate never prints.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arca_repo::progress::Progress;

/// One progress report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProgressLine {
    /// The action running.
    pub action: &'static str,
    /// Seconds since the action started.
    pub seconds_elapsed: u64,
    /// Files the action will process, as far as known.
    pub total_files: u64,
    /// Files done.
    pub files_done: u64,
    /// Bytes the action will process, as far as known.
    pub total_bytes: u64,
    /// Bytes done.
    pub bytes_done: u64,
    /// Items skipped with a warning so far.
    pub warnings: u64,
}

impl std::fmt::Display for ProgressLine {
    /// `[backup 0:10] 42.0% 120/300 files, 1.2 GiB of 2.0 GiB, 0 warnings`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let percent = if self.total_bytes == 0 {
            0.0
        } else {
            (self.bytes_done as f64 / self.total_bytes as f64).min(1.0) * 100.0
        };
        write!(
            f,
            "[{} {}:{:02}] {percent:.1}% {}/{} files, {} of {}, {} warnings",
            self.action,
            self.seconds_elapsed / 60,
            self.seconds_elapsed % 60,
            self.files_done,
            self.total_files,
            bytes(self.bytes_done),
            bytes(self.total_bytes),
            self.warnings
        )
    }
}

/// `bytes` in binary units with one decimal.
pub fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Receives progress lines and warnings.
pub trait ProgressSink: Send + Sync + 'static {
    /// A periodic progress line.
    fn line(&self, line: &ProgressLine);
    /// An item was skipped (unreadable file, item not restored).
    fn warning(&self, path: &Path, message: &str);
}

/// Counters for one action, shown every interval until [`Ticker::finish`].
pub struct Ticker {
    counters: Arc<Counters>,
    ticker: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

struct Counters {
    action: &'static str,
    started: Instant,
    sink: Arc<dyn ProgressSink>,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    warnings: AtomicU64,
}

impl Ticker {
    /// Starts showing progress of `action` through `sink` every `interval`.
    pub fn start(action: &'static str, interval: Duration, sink: Arc<dyn ProgressSink>) -> Self {
        let counters = Arc::new(Counters {
            action,
            started: Instant::now(),
            sink,
            total_files: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            warnings: AtomicU64::new(0),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let shown = Arc::clone(&counters);
        // The channel doubles as the timer: it stays empty until finish() drops the sender.
        let thread = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                shown.sink.line(&shown.line());
            }
        });
        Ticker {
            counters,
            ticker: Some((stop, thread)),
        }
    }

    /// The handle to give the engine.
    pub fn progress(&self) -> Arc<dyn Progress> {
        Arc::clone(&self.counters) as Arc<dyn Progress>
    }

    /// The counters now.
    pub fn line(&self) -> ProgressLine {
        self.counters.line()
    }

    /// Stops the ticker and shows the final line.
    pub fn finish(mut self) -> ProgressLine {
        self.stop();
        let line = self.counters.line();
        self.counters.sink.line(&line);
        line
    }

    fn stop(&mut self) {
        if let Some((stop, thread)) = self.ticker.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Counters {
    fn line(&self) -> ProgressLine {
        ProgressLine {
            action: self.action,
            seconds_elapsed: self.started.elapsed().as_secs(),
            total_files: self.total_files.load(Relaxed),
            files_done: self.files_done.load(Relaxed),
            total_bytes: self.total_bytes.load(Relaxed),
            bytes_done: self.bytes_done.load(Relaxed),
            warnings: self.warnings.load(Relaxed),
        }
    }
}

impl Progress for Counters {
    fn set_total(&self, files: u64, bytes: u64) {
        self.total_files.store(files, Relaxed);
        self.total_bytes.store(bytes, Relaxed);
    }

    fn add_bytes(&self, bytes: u64) {
        self.bytes_done.fetch_add(bytes, Relaxed);
    }

    fn add_file(&self, _path: &Path) {
        self.files_done.fetch_add(1, Relaxed);
    }

    fn warn(&self, path: &Path, message: &str) {
        self.warnings.fetch_add(1, Relaxed);
        self.sink.warning(path, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect {
        lines: Mutex<Vec<ProgressLine>>,
        warnings: Mutex<Vec<String>>,
    }

    impl ProgressSink for Collect {
        fn line(&self, line: &ProgressLine) {
            self.lines.lock().unwrap().push(line.clone());
        }
        fn warning(&self, path: &Path, message: &str) {
            self.warnings
                .lock()
                .unwrap()
                .push(format!("{}: {message}", path.display()));
        }
    }

    #[test]
    fn counters_reach_the_sink() {
        let sink = Arc::new(Collect::default());
        // An interval longer than the test: only the final line is shown.
        let ticker = Ticker::start("backup", Duration::from_secs(3600), sink.clone());
        let progress = ticker.progress();
        progress.set_total(2, 3 << 30);
        progress.add_file(Path::new("/data/a"));
        progress.add_bytes(1 << 30);
        progress.warn(Path::new("/data/b"), "permission denied");
        let last = ticker.finish();
        assert_eq!(
            (
                last.files_done,
                last.total_files,
                last.bytes_done,
                last.warnings
            ),
            (1, 2, 1 << 30, 1)
        );
        assert_eq!(*sink.lines.lock().unwrap(), std::slice::from_ref(&last));
        assert_eq!(
            *sink.warnings.lock().unwrap(),
            ["/data/b: permission denied"]
        );
        let text = last.to_string();
        assert!(
            text.starts_with("[backup 0:00] 33.3% 1/2 files, 1.0 GiB of 3.0 GiB"),
            "{text}"
        );
    }

    #[test]
    fn byte_counts_read_naturally() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 40), "5.0 TiB");
    }
}
