//! Printing. Results go to stdout (human text, or JSON with `--json`);
//! progress, warnings and errors go to stderr so stdout stays parseable.

use std::fmt::Display;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

/// How results are printed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    json: bool,
    quiet: bool,
}

impl Output {
    pub(crate) fn new(json: bool, quiet: bool) -> Self {
        Output { json, quiet }
    }

    pub(crate) fn is_json(&self) -> bool {
        self.json
    }

    pub(crate) fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// A line of the command's human-readable result (shown even with
    /// `--quiet`, because it is what was asked for).
    pub(crate) fn result(&self, line: impl Display) -> anyhow::Result<()> {
        writeln!(std::io::stdout().lock(), "{line}")?;
        Ok(())
    }

    /// A line of commentary, dropped by `--quiet`.
    pub(crate) fn info(&self, line: impl Display) -> anyhow::Result<()> {
        if !self.quiet {
            self.result(line)
        } else {
            Ok(())
        }
    }

    /// One JSON document on one line of stdout (also how JSON lines are written).
    pub(crate) fn json(&self, value: &impl Serialize) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer(&mut stdout, value)?;
        writeln!(stdout)?;
        Ok(())
    }

    /// A JSON document indented for people (`arca cat`).
    pub(crate) fn json_pretty(&self, value: &impl Serialize) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, value)?;
        writeln!(stdout)?;
        Ok(())
    }
}

/// A problem with one item that did not stop the command (stderr).
pub(crate) fn warning(json: bool, path: &Path, message: &str) {
    let mut stderr = std::io::stderr().lock();
    if json {
        let line = serde_json::json!({
            "message_type": "error",
            "error": {"message": message},
            "item": path.to_string_lossy(),
        });
        let _ = writeln!(stderr, "{line}");
    } else {
        let _ = writeln!(stderr, "warning: {}: {message}", path.display());
    }
}

/// The error that ended the command (stderr), as restic's `exit_error`
/// message in JSON mode.
pub(crate) fn error(json: bool, code: u8, err: &anyhow::Error) {
    let message = describe(err);
    let mut stderr = std::io::stderr().lock();
    if json {
        let line =
            serde_json::json!({"message_type": "exit_error", "code": code, "message": message});
        let _ = writeln!(stderr, "{line}");
    } else {
        let _ = writeln!(stderr, "arca: error: {message}");
    }
}

/// The error and its causes joined by `: `, leaving out a cause whose text
/// the message already ends with (errors that print their source too).
fn describe(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if message.ends_with(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// Bytes in binary units with three significant digits: `512 B`, `1.50 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let decimals = if value < 10.0 {
        2
    } else if value < 100.0 {
        1
    } else {
        0
    };
    format!("{value:.decimals$} {}", UNITS[unit])
}

/// A duration like restic prints it: `0:07`, `12:03`, `1:02:03`.
pub(crate) fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_listed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let repeated = anyhow::Error::new(arca_repo::Error::Io {
            path: "/x".into(),
            source: io,
        });
        assert_eq!(describe(&repeated), "/x: gone");
        let layered = anyhow::anyhow!("inner").context("outer");
        assert_eq!(describe(&layered), "outer: inner");
    }

    #[test]
    fn bytes_are_human() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.00 KiB");
        assert_eq!(bytes(1536 * 1024), "1.50 MiB");
        assert_eq!(bytes(200 * 1024 * 1024 * 1024), "200 GiB");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn durations_are_clock_like() {
        assert_eq!(duration(Duration::from_millis(7_900)), "0:07");
        assert_eq!(duration(Duration::from_secs(723)), "12:03");
        assert_eq!(duration(Duration::from_secs(3723)), "1:02:03");
    }
}
