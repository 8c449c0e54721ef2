//! Disaster recovery over one Arca repository: recovery **drills** and
//! compliance **reports**.
//!
//! - [`drill`] restores a snapshot into scratch space, verifies every
//!   restored file against the snapshot (content by blob IDs, and metadata:
//!   type, size, mode, mtime, symlink targets), optionally runs the
//!   application's own consistency command on the copy, measures the time
//!   from start to verified, compares it with a recovery time objective,
//!   removes the copy and appends an audit record (operation `drill`).
//! - [`report::collect`] gathers, for a time window, per application
//!   (host + paths) the backups present and failed, RPO compliance, the last
//!   drill against its RTO, retention conformance, holds, key age, the audit
//!   chain's state and the repository's size and growth; [`render`] turns
//!   that into JSON, Markdown or one self-contained HTML page (pure
//!   functions of the data and `now`).
//!
//! It is not a scheduler (the operator runs drills and reports on a
//! schedule) and not a CLI: it never prints. Replication is
//! `arca_repo::copy`, driven by the agent.

mod drill;
mod error;
pub mod render;
pub mod report;

pub use drill::{
    CommandResult, DRILL_OPERATION, DrillFailure, DrillOptions, DrillRecord, DrillReport, drill,
};
pub use error::{Error, Result};

/// Parses a duration as the CLI's `--rto` and the agent's `ARCA_RTO` take
/// it: a number of seconds (`900`), whole days or weeks (`30d`, `2w`: 24 h
/// days), a friendly span (`15m`, `1h30m`, `4 hours`) or ISO 8601
/// (`PT15M`). Negative durations are refused.
pub fn parse_duration(text: &str) -> Result<jiff::SignedDuration, String> {
    let text = text.trim();
    let whole = |suffix: char, hours: i64| {
        text.strip_suffix(suffix)
            .and_then(|n| n.parse::<i64>().ok())
            .and_then(|n| n.checked_mul(hours))
            .map(jiff::SignedDuration::from_hours)
    };
    let parsed = match text.parse::<u64>() {
        Ok(seconds) => Ok(jiff::SignedDuration::from_secs(seconds as i64)),
        Err(_) => match whole('d', 24).or_else(|| whole('w', 7 * 24)) {
            Some(duration) => Ok(duration),
            None => text.parse::<jiff::SignedDuration>().map_err(|_| ()),
        },
    };
    match parsed {
        Ok(duration) if !duration.is_negative() => Ok(duration),
        Ok(_) => Err(format!("{text:?} is negative")),
        Err(()) => Err(format!(
            "{text:?} is not a duration (examples: 900, 15m, 1h30m, 30d, PT4H)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_accepted_form() {
        let minutes = |m| jiff::SignedDuration::from_mins(m);
        assert_eq!(parse_duration("900"), Ok(minutes(15)));
        assert_eq!(parse_duration("15m"), Ok(minutes(15)));
        assert_eq!(parse_duration(" 1h30m "), Ok(minutes(90)));
        assert_eq!(parse_duration("PT4H"), Ok(minutes(240)));
        assert_eq!(parse_duration("30d"), Ok(minutes(30 * 24 * 60)));
        assert_eq!(parse_duration("2w"), Ok(minutes(14 * 24 * 60)));
        assert!(parse_duration("-5m").is_err());
        assert!(parse_duration("soon").unwrap_err().contains("soon"));
        assert!(parse_duration("").is_err());
    }
}
