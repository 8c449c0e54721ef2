//! Rendering the engine's [`Progress`] events: a progress bar when stderr is
//! a terminal, `{"message_type":"status",...}` JSON lines every second with
//! `--json`, nothing otherwise. Warnings are always printed.
//!
//! The engine calls [`Progress`] from hot loops on many threads, so those
//! calls only bump atomics; one ticker thread turns the counters into output.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arca_repo::progress::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{self, Output};

/// Live progress output for one command; call [`Reporter::finish`] when done.
pub(crate) struct Reporter {
    counters: Arc<Counters>,
    ticker: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

/// Where the counters are shown.
enum View {
    Bar(ProgressBar),
    JsonLines,
    Silent,
}

struct Counters {
    view: View,
    started: Instant,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    warnings: AtomicU64,
}

impl Reporter {
    pub(crate) fn start(output: Output) -> Self {
        let (view, interval) = if output.is_json() {
            (View::JsonLines, Duration::from_secs(1))
        } else if !output.is_quiet() && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            (View::Bar(bar), Duration::from_millis(200))
        } else {
            (View::Silent, Duration::ZERO)
        };
        let counters = Arc::new(Counters {
            view,
            started: Instant::now(),
            total_files: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            warnings: AtomicU64::new(0),
        });
        let ticker = (!matches!(counters.view, View::Silent)).then(|| {
            let (stop, stopped) = mpsc::channel::<()>();
            let counters = Arc::clone(&counters);
            // The channel doubles as the timer: it stays empty until finish() drops the sender.
            let thread = std::thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    counters.show();
                }
            });
            (stop, thread)
        });
        Reporter { counters, ticker }
    }

    /// The handle to give the engine.
    pub(crate) fn progress(&self) -> Arc<dyn Progress> {
        Arc::clone(&self.counters) as Arc<dyn Progress>
    }

    /// Stops the ticker and clears the bar.
    pub(crate) fn finish(mut self) {
        if let Some((stop, thread)) = self.ticker.take() {
            drop(stop);
            let _ = thread.join();
        }
        if let View::Bar(bar) = &self.counters.view {
            bar.finish_and_clear();
        }
    }
}

impl Counters {
    fn show(&self) {
        let (total_files, files_done) = (
            self.total_files.load(Relaxed),
            self.files_done.load(Relaxed),
        );
        let (total_bytes, bytes_done) = (
            self.total_bytes.load(Relaxed),
            self.bytes_done.load(Relaxed),
        );
        match &self.view {
            View::Bar(bar) => {
                bar.set_length(total_bytes.max(bytes_done));
                bar.set_position(bytes_done);
                bar.set_message(format!("{files_done}/{total_files} files"));
            }
            View::JsonLines => {
                let percent_done = if total_bytes == 0 {
                    0.0
                } else {
                    (bytes_done as f64 / total_bytes as f64).min(1.0)
                };
                let status = serde_json::json!({
                    "message_type": "status",
                    "seconds_elapsed": self.started.elapsed().as_secs(),
                    "percent_done": percent_done,
                    "total_files": total_files,
                    "files_done": files_done,
                    "total_bytes": total_bytes,
                    "bytes_done": bytes_done,
                    "error_count": self.warnings.load(Relaxed),
                });
                // A closed stdout ends the command through its own writes; nothing to do here.
                let _ = Output::new(true, false).json(&status);
            }
            View::Silent => {}
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
        match &self.view {
            View::Bar(bar) => bar.suspend(|| output::warning(false, path, message)),
            View::JsonLines => output::warning(true, path, message),
            View::Silent => output::warning(false, path, message),
        }
    }
}
