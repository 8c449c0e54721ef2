//! Retention: which snapshots of a group a `forget` policy keeps, with
//! restic's semantics exactly (restic's `ApplyPolicy`, as of 0.17).
//!
//! [`apply`] is pure: it sees only the policy and the snapshots, never the
//! clock, so the same inputs always give the same answer. Its rules:
//!
//! - Snapshots are considered newest first (ties in time broken by ID, so
//!   the input order does not matter).
//! - Calendar buckets (hourly, daily, ISO-weekly, monthly, yearly) use the
//!   wall-clock time in the UTC offset the snapshot recorded
//!   (`time_offset_seconds`), not the zone of the machine running `forget`.
//! - A count rule keeps the newest snapshot of each bucket until its count is
//!   spent; `unlimited` never runs out. A rule that still has budget when it
//!   reaches the oldest snapshot keeps that one too ("oldest daily snapshot").
//! - `keep_within*` windows are relative to the newest snapshot of the group
//!   (restic excludes snapshots in the future from "newest"; without a clock
//!   Arca takes the newest one), computed as Go's `AddDate` would (month
//!   arithmetic overflows into the next month rather than clamping).
//! - Rules are ORed; every rule sees every snapshot, so one snapshot usually
//!   uses up a unit of several count rules at once.
//! - An empty policy removes nothing.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime};
use jiff::tz::{Offset, TimeZone};

use crate::select::{chronological, has_tags};
use crate::snapshot::Snapshot;
use crate::{Error, Id, Result};

/// How many buckets a count rule keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// At most this many.
    Limited(u32),
    /// Every bucket (restic's `unlimited`).
    Unlimited,
}

impl FromStr for Count {
    type Err = Error;

    /// A non-negative number or `unlimited`; negative numbers are refused as
    /// restic refuses them.
    fn from_str(s: &str) -> Result<Count> {
        if s == "unlimited" {
            return Ok(Count::Unlimited);
        }
        if s.trim_start().starts_with('-') && s.trim_start()[1..].parse::<u64>().is_ok() {
            return Err(Error::InvalidOptions(format!(
                "count {s}: negative values are not allowed, use 'unlimited' instead"
            )));
        }
        s.parse::<u32>().map(Count::Limited).map_err(|_| {
            Error::InvalidOptions(format!(
                "count {s:?}: expected a non-negative number or 'unlimited'"
            ))
        })
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Limited(n) => write!(f, "{n}"),
            Count::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// restic's calendar duration, `1y2m3d4h`: years, months (`m`), days and
/// hours; no weeks or minutes. A unit given twice keeps the last value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Duration {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl Duration {
    /// Whether every part is zero (restic treats such a rule as absent).
    pub fn is_zero(&self) -> bool {
        *self == Duration::default()
    }

    /// The start of the window of this length ending at `latest`, in the
    /// offset `latest` was recorded in: Go's `AddDate(-y, -m, -d)` (months
    /// and days overflow as in Go: 31 March minus one month is 3 March),
    /// then minus the hours. `None` if that lies before the calendar's start
    /// (the window then covers everything).
    fn window_start(
        &self,
        latest: jiff::Timestamp,
        offset_seconds: i32,
    ) -> Option<jiff::Timestamp> {
        let tz = TimeZone::fixed(offset(offset_seconds));
        let wall = latest.to_zoned(tz.clone()).datetime();
        let months = i64::from(wall.year()) * 12 + i64::from(wall.month())
            - 1
            - i64::from(self.years) * 12
            - i64::from(self.months);
        let year = i16::try_from(months.div_euclid(12)).ok()?;
        let month = i8::try_from(months.rem_euclid(12) + 1).ok()?;
        let day_shift = i64::from(wall.day()) - 1 - i64::from(self.days);
        let date = Date::new(year, month, 1)
            .ok()?
            .checked_add(jiff::Span::new().days(day_shift))
            .ok()?;
        let shifted = DateTime::from_parts(date, wall.time())
            .to_zoned(tz)
            .ok()?
            .timestamp();
        shifted
            .checked_sub(jiff::SignedDuration::from_hours(i64::from(self.hours)))
            .ok()
    }
}

impl FromStr for Duration {
    type Err = Error;

    /// Parses `[<n>y][<n>m][<n>d][<n>h]` in any order (surrounding
    /// whitespace ignored). Negative numbers are refused.
    fn from_str(input: &str) -> Result<Duration> {
        let invalid = |why: String| {
            Error::InvalidOptions(format!(
                "duration {input:?}: {why} (expected e.g. 1y2m3d4h)"
            ))
        };
        let mut duration = Duration::default();
        let mut rest = input.trim();
        while !rest.is_empty() {
            if rest.starts_with('-') {
                return Err(invalid("negative values are not allowed".into()));
            }
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(invalid(format!("no number found at {rest:?}")));
            }
            let number: u32 = rest[..digits]
                .parse()
                .map_err(|_| invalid(format!("{} is too large", &rest[..digits])))?;
            let field = match rest[digits..].chars().next() {
                Some('y') => &mut duration.years,
                Some('m') => &mut duration.months,
                Some('d') => &mut duration.days,
                Some('h') => &mut duration.hours,
                Some(unit) => {
                    return Err(invalid(format!(
                        "invalid unit {unit:?} after {number} (use y, m, d or h)"
                    )));
                }
                None => return Err(invalid(format!("no unit after {number}"))),
            };
            *field = number;
            rest = &rest[digits + 1..];
        }
        Ok(duration)
    }
}

impl fmt::Display for Duration {
    /// restic's form: the non-zero parts in the order y, m, d, h; the empty
    /// string for zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (value, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if value != 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

/// A retention policy: restic's `--keep-*` options. `None` (and a zero
/// duration) means the rule is not used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Keep the newest N snapshots.
    pub keep_last: Option<Count>,
    /// Keep the newest snapshot of each of the last N hours that have one.
    pub keep_hourly: Option<Count>,
    /// Keep the newest snapshot of each of the last N days that have one.
    pub keep_daily: Option<Count>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one.
    pub keep_weekly: Option<Count>,
    /// Keep the newest snapshot of each of the last N months that have one.
    pub keep_monthly: Option<Count>,
    /// Keep the newest snapshot of each of the last N years that have one.
    pub keep_yearly: Option<Count>,
    /// Keep every snapshot newer than this, relative to the newest snapshot.
    pub keep_within: Option<Duration>,
    /// Keep the newest snapshot of every hour within this duration.
    pub keep_within_hourly: Option<Duration>,
    /// Keep the newest snapshot of every day within this duration.
    pub keep_within_daily: Option<Duration>,
    /// Keep the newest snapshot of every ISO week within this duration.
    pub keep_within_weekly: Option<Duration>,
    /// Keep the newest snapshot of every month within this duration.
    pub keep_within_monthly: Option<Duration>,
    /// Keep the newest snapshot of every year within this duration.
    pub keep_within_yearly: Option<Duration>,
    /// Keep every snapshot carrying all tags of at least one of these lists
    /// (`--keep-tag a,b --keep-tag c`); `[""]` matches untagged snapshots.
    pub keep_tags: Vec<Vec<String>>,
}

/// The calendar unit of a bucket rule.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Hour => "hourly",
            Unit::Day => "daily",
            Unit::Week => "weekly",
            Unit::Month => "monthly",
            Unit::Year => "yearly",
        }
    }

    /// A number naming the bucket `wall` falls in (restic's `ymdh`, `ymd`,
    /// `yw`, `ym`, `y`).
    fn bucket(self, wall: DateTime) -> i64 {
        let (y, m, d, h) = (
            i64::from(wall.year()),
            i64::from(wall.month()),
            i64::from(wall.day()),
            i64::from(wall.hour()),
        );
        match self {
            Unit::Hour => y * 1_000_000 + m * 10_000 + d * 100 + h,
            Unit::Day => y * 10_000 + m * 100 + d,
            Unit::Week => {
                let week = wall.date().iso_week_date();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Unit::Month => y * 100 + m,
            Unit::Year => y,
        }
    }
}

impl RetentionPolicy {
    /// Whether no rule is set (then [`apply`] keeps everything).
    pub fn is_empty(&self) -> bool {
        let counts = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        counts
            .iter()
            .all(|count| matches!(count, None | Some(Count::Limited(0))))
            && self.windows().iter().all(|(_, window)| window.is_none())
            && self.keep_within.is_none_or(|d| d.is_zero())
            && self.keep_tags.is_empty()
    }

    /// The within-bucket rules that are set (non-zero), by unit.
    fn windows(&self) -> [(Unit, Option<Duration>); 5] {
        let set = |d: Option<Duration>| d.filter(|d| !d.is_zero());
        [
            (Unit::Hour, set(self.keep_within_hourly)),
            (Unit::Day, set(self.keep_within_daily)),
            (Unit::Week, set(self.keep_within_weekly)),
            (Unit::Month, set(self.keep_within_monthly)),
            (Unit::Year, set(self.keep_within_yearly)),
        ]
    }
}

impl fmt::Display for RetentionPolicy {
    /// restic's "Applying Policy:" sentence, e.g. `keep 7 daily, 4 weekly
    /// snapshots`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counts = Vec::new();
        for (count, name) in [
            (self.keep_last, "latest"),
            (self.keep_hourly, "hourly"),
            (self.keep_daily, "daily"),
            (self.keep_weekly, "weekly"),
            (self.keep_monthly, "monthly"),
            (self.keep_yearly, "yearly"),
        ] {
            match count {
                Some(Count::Limited(0)) | None => {}
                Some(Count::Limited(n)) => counts.push(format!("{n} {name}")),
                Some(Count::Unlimited) => counts.push(format!("all {name}")),
            }
        }
        let mut text = String::new();
        if !counts.is_empty() {
            text = format!("{} snapshots", counts.join(", "));
        }
        let windows: Vec<String> = self
            .windows()
            .iter()
            .filter_map(|(unit, window)| {
                window.map(|d| format!("{} snapshots within {d}", unit.name()))
            })
            .collect();
        if !windows.is_empty() {
            if !text.is_empty() {
                text.push_str(", ");
            }
            text.push_str(&windows.join(", "));
        }
        if !self.keep_tags.is_empty() {
            if !text.is_empty() {
                text.push_str(" and ");
            }
            let lists: Vec<String> = self.keep_tags.iter().map(|l| tag_list(l)).collect();
            text.push_str(&format!("all snapshots with tags [{}]", lists.join(" ")));
        }
        if let Some(within) = self.keep_within.filter(|d| !d.is_zero()) {
            if !text.is_empty() {
                text.push_str(" and ");
            }
            text.push_str(&format!("all snapshots within {within} of the newest"));
        }
        if text.is_empty() {
            f.write_str("remove")
        } else {
            write!(f, "keep {text}")
        }
    }
}

/// restic's rendering of a tag list: `[a, b]`.
fn tag_list(tags: &[String]) -> String {
    format!("[{}]", tags.join(", "))
}

/// The budget left in each count rule after a snapshot was considered:
/// `-1` for unlimited, `0` for a rule not set or spent (restic's
/// `counters`, whose JSON omits zeros).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// `keep_last` budget left.
    #[serde(skip_serializing_if = "is_zero")]
    pub last: i64,
    /// `keep_hourly` budget left.
    #[serde(skip_serializing_if = "is_zero")]
    pub hourly: i64,
    /// `keep_daily` budget left.
    #[serde(skip_serializing_if = "is_zero")]
    pub daily: i64,
    /// `keep_weekly` budget left.
    #[serde(skip_serializing_if = "is_zero")]
    pub weekly: i64,
    /// `keep_monthly` budget left.
    #[serde(skip_serializing_if = "is_zero")]
    pub monthly: i64,
    /// `keep_yearly` budget left.
    #[serde(skip_serializing_if = "is_zero")]
    pub yearly: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// What [`apply`] decided for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The snapshot.
    pub id: Id,
    /// Why it is kept, in restic's words ("last snapshot", "daily snapshot",
    /// "oldest monthly snapshot", "within 1y2m", "daily within 7d",
    /// "has tags [a, b]"); empty if it is to be removed.
    pub reasons: Vec<String>,
    /// The count rules' remaining budget after this snapshot.
    pub counters: Counters,
}

impl Decision {
    /// Whether the snapshot is kept.
    pub fn keep(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// The reason given to every snapshot under an empty policy.
pub const EMPTY_POLICY_REASON: &str = "empty policy";

/// A count rule while the policy runs: its remaining budget and the bucket
/// of the last snapshot it kept.
struct CountRule {
    budget: Option<u32>,
    unit: Option<Unit>,
    last_bucket: Option<i64>,
    reason: String,
}

/// A within-bucket rule while the policy runs.
struct WindowRule {
    unit: Unit,
    duration: Duration,
    start: Option<jiff::Timestamp>,
    last_bucket: Option<i64>,
}

/// Applies `policy` to one group of snapshots. Returns one decision per
/// snapshot, newest first. Pure: the result depends only on the arguments,
/// not on their order or the clock.
pub fn apply(policy: &RetentionPolicy, snapshots: &[(Id, Snapshot)]) -> Vec<Decision> {
    let mut sorted: Vec<&(Id, Snapshot)> = snapshots.iter().collect();
    sorted.sort_by(|a, b| chronological(b, a));
    if policy.is_empty() {
        return sorted
            .iter()
            .map(|(id, _)| Decision {
                id: *id,
                reasons: vec![EMPTY_POLICY_REASON.to_owned()],
                counters: Counters::default(),
            })
            .collect();
    }
    let Some(&(_, newest)) = sorted.first() else {
        return Vec::new();
    };
    let window_start = |d: Duration| d.window_start(newest.time, newest.time_offset_seconds);

    let mut counts: Vec<CountRule> = [
        (policy.keep_last, None),
        (policy.keep_hourly, Some(Unit::Hour)),
        (policy.keep_daily, Some(Unit::Day)),
        (policy.keep_weekly, Some(Unit::Week)),
        (policy.keep_monthly, Some(Unit::Month)),
        (policy.keep_yearly, Some(Unit::Year)),
    ]
    .into_iter()
    .map(|(count, unit)| CountRule {
        budget: match count {
            None => Some(0),
            Some(Count::Limited(n)) => Some(n),
            Some(Count::Unlimited) => None,
        },
        unit,
        last_bucket: None,
        reason: format!("{} snapshot", unit.map_or("last", Unit::name)),
    })
    .collect();
    let mut windows: Vec<WindowRule> = policy
        .windows()
        .into_iter()
        .filter_map(|(unit, duration)| {
            duration.map(|duration| WindowRule {
                unit,
                duration,
                start: window_start(duration),
                last_bucket: None,
            })
        })
        .collect();
    let within = policy
        .keep_within
        .filter(|d| !d.is_zero())
        .map(|d| (d, window_start(d)));
    let inside =
        |start: Option<jiff::Timestamp>, time: jiff::Timestamp| start.is_none_or(|s| time > s);

    let oldest = sorted.len() - 1;
    sorted
        .iter()
        .enumerate()
        .map(|(nr, (id, snapshot))| {
            let wall = snapshot
                .time
                .to_zoned(TimeZone::fixed(offset(snapshot.time_offset_seconds)))
                .datetime();
            let mut reasons = Vec::new();
            for tags in &policy.keep_tags {
                if has_tags(snapshot, tags) {
                    reasons.push(format!("has tags {}", tag_list(tags)));
                }
            }
            if let Some((duration, start)) = within
                && inside(start, snapshot.time)
            {
                reasons.push(format!("within {duration}"));
            }
            for rule in &mut counts {
                if rule.budget == Some(0) {
                    continue;
                }
                // `keep_last`'s bucket is the position: always a new one.
                let bucket = rule.unit.map_or(nr as i64, |unit| unit.bucket(wall));
                let same = rule.last_bucket == Some(bucket);
                if !same || nr == oldest {
                    reasons.push(if same {
                        format!("oldest {}", rule.reason)
                    } else {
                        rule.reason.clone()
                    });
                    rule.last_bucket = Some(bucket);
                    if let Some(budget) = &mut rule.budget {
                        *budget -= 1;
                    }
                }
            }
            for rule in &mut windows {
                if !inside(rule.start, snapshot.time) {
                    continue;
                }
                let bucket = rule.unit.bucket(wall);
                let same = rule.last_bucket == Some(bucket);
                if !same || nr == oldest {
                    let oldest = if same { "oldest " } else { "" };
                    reasons.push(format!(
                        "{oldest}{} within {}",
                        rule.unit.name(),
                        rule.duration
                    ));
                    rule.last_bucket = Some(bucket);
                }
            }
            let left = |rule: &CountRule| rule.budget.map_or(-1, i64::from);
            Decision {
                id: *id,
                reasons,
                counters: Counters {
                    last: left(&counts[0]),
                    hourly: left(&counts[1]),
                    daily: left(&counts[2]),
                    weekly: left(&counts[3]),
                    monthly: left(&counts[4]),
                    yearly: left(&counts[5]),
                },
            }
        })
        .collect()
}

/// The recorded UTC offset, or UTC if it is out of range (a damaged or
/// hand-made snapshot; offsets beyond ±25:59:59 do not exist).
fn offset(seconds: i32) -> Offset {
    Offset::from_seconds(seconds).unwrap_or(Offset::UTC)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::select::tests::snapshot_at;

    fn count(s: &str) -> Option<Count> {
        Some(s.parse().unwrap())
    }

    fn duration(s: &str) -> Option<Duration> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn counts_parse_like_restic() {
        assert_eq!("0".parse::<Count>().unwrap(), Count::Limited(0));
        assert_eq!("7".parse::<Count>().unwrap(), Count::Limited(7));
        assert_eq!("unlimited".parse::<Count>().unwrap(), Count::Unlimited);
        for bad in ["-1", "-5"] {
            let error = bad.parse::<Count>().unwrap_err().to_string();
            assert!(error.contains("negative values are not allowed"), "{error}");
        }
        assert!("seven".parse::<Count>().is_err());
        assert!("".parse::<Count>().is_err());
        assert_eq!(Count::Unlimited.to_string(), "unlimited");
    }

    #[test]
    fn durations_parse_like_restic() {
        let d: Duration = "1y2m3d4h".parse().unwrap();
        assert_eq!(
            d,
            Duration {
                years: 1,
                months: 2,
                days: 3,
                hours: 4
            }
        );
        assert_eq!(d.to_string(), "1y2m3d4h");
        // Any order; a repeated unit overwrites; whitespace around is ignored.
        assert_eq!(
            " 4h1y2d2h ".parse::<Duration>().unwrap().to_string(),
            "1y2d2h"
        );
        assert!("".parse::<Duration>().unwrap().is_zero());
        for bad in ["1w", "5", "d", "1y-2m", "-1d", "1.5d", "99999999999d"] {
            assert!(
                matches!(bad.parse::<Duration>(), Err(Error::InvalidOptions(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn window_start_follows_go_add_date() {
        let ts = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        // 31 March minus one month is "31 February", which Go normalises to 3 March.
        let d: Duration = "1m".parse().unwrap();
        assert_eq!(
            d.window_start(ts("2025-03-31T12:00:00Z"), 0),
            Some(ts("2025-03-03T12:00:00Z"))
        );
        // Days cross month and year boundaries; hours come off the instant last.
        let d: Duration = "1y1d2h".parse().unwrap();
        assert_eq!(
            d.window_start(ts("2016-01-01T01:00:00Z"), 0),
            Some(ts("2014-12-30T23:00:00Z"))
        );
        // The calendar arithmetic happens in the recorded offset: at +02:00,
        // 2025-03-01T00:30 local minus 1 month is 2025-02-01T00:30 local.
        let d: Duration = "1m".parse().unwrap();
        assert_eq!(
            d.window_start(ts("2025-02-28T22:30:00Z"), 7200),
            Some(ts("2025-01-31T22:30:00Z"))
        );
        // Beyond the calendar: no lower bound.
        let d: Duration = "99999y".parse().unwrap();
        assert_eq!(d.window_start(ts("2025-02-28T22:30:00Z"), 0), None);
    }

    #[derive(serde::Deserialize)]
    struct Fixture {
        inputs: Vec<FixtureSnapshot>,
        cases: Vec<FixtureCase>,
    }

    #[derive(serde::Deserialize)]
    struct FixtureSnapshot {
        time: String,
        tags: Vec<String>,
        paths: Vec<String>,
    }

    #[derive(serde::Deserialize)]
    struct FixtureCase {
        policy: std::collections::BTreeMap<String, serde_json::Value>,
        keep: Vec<FixtureKept>,
    }

    #[derive(serde::Deserialize)]
    struct FixtureKept {
        time: String,
        tags: Vec<String>,
        paths: Vec<String>,
        matches: Vec<String>,
        counters: std::collections::BTreeMap<String, i64>,
    }

    fn fixture_policy(
        fields: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> RetentionPolicy {
        let mut policy = RetentionPolicy::default();
        for (name, value) in fields {
            let text = || value.as_str().unwrap();
            match name.as_str() {
                "last" => policy.keep_last = count(text()),
                "hourly" => policy.keep_hourly = count(text()),
                "daily" => policy.keep_daily = count(text()),
                "weekly" => policy.keep_weekly = count(text()),
                "monthly" => policy.keep_monthly = count(text()),
                "yearly" => policy.keep_yearly = count(text()),
                "within" => policy.keep_within = duration(text()),
                "within_hourly" => policy.keep_within_hourly = duration(text()),
                "within_daily" => policy.keep_within_daily = duration(text()),
                "within_weekly" => policy.keep_within_weekly = duration(text()),
                "within_monthly" => policy.keep_within_monthly = duration(text()),
                "within_yearly" => policy.keep_within_yearly = duration(text()),
                "tags" => policy.keep_tags = serde_json::from_value(value.clone()).unwrap(),
                other => panic!("unknown fixture policy field {other}"),
            }
        }
        policy
    }

    /// A kept snapshot as the golden files describe it: time, tags, paths,
    /// reasons, counters.
    type KeptRow = (String, Vec<String>, Vec<String>, Vec<String>, Counters);

    /// restic's own test: 103 snapshots and 40 policies, with the kept
    /// snapshots, reasons and counters restic's golden files record.
    #[test]
    fn reproduces_restic_golden_files() {
        let fixture: Fixture =
            serde_json::from_str(include_str!("../testdata/retention_restic_cases.json")).unwrap();
        // restic sorts stably by time, so equal times stay in input order;
        // IDs that fall with the input position give the same order here.
        let snapshots: Vec<(Id, Snapshot)> = fixture
            .inputs
            .iter()
            .enumerate()
            .map(|(i, input)| {
                let paths: Vec<&str> = input.paths.iter().map(String::as_str).collect();
                let tags: Vec<&str> = input.tags.iter().map(String::as_str).collect();
                (
                    Id([u8::MAX - i as u8; 32]),
                    snapshot_at(&input.time, "", &paths, &tags),
                )
            })
            .collect();
        let by_id: std::collections::BTreeMap<Id, &Snapshot> =
            snapshots.iter().map(|(id, s)| (*id, s)).collect();
        assert_eq!(fixture.cases.len(), 40);
        for (number, case) in fixture.cases.iter().enumerate() {
            let policy = fixture_policy(&case.policy);
            let decisions = apply(&policy, &snapshots);
            assert_eq!(decisions.len(), snapshots.len());
            if policy.is_empty() {
                // restic's ApplyPolicy keeps nothing for an empty policy (its
                // CLI refuses to run one); Arca's removes nothing.
                assert!(decisions.iter().all(|d| d.reasons == [EMPTY_POLICY_REASON]));
                continue;
            }
            let kept: Vec<KeptRow> = decisions
                .iter()
                .filter(|d| d.keep())
                .map(|d| {
                    let snapshot = by_id[&d.id];
                    (
                        snapshot.time.to_string(),
                        snapshot.tags.clone(),
                        snapshot.paths.clone(),
                        d.reasons.clone(),
                        d.counters,
                    )
                })
                .collect();
            let expected: Vec<KeptRow> = case
                .keep
                .iter()
                .map(|k| {
                    let c = |name: &str| k.counters.get(name).copied().unwrap_or(0);
                    (
                        k.time.parse::<jiff::Timestamp>().unwrap().to_string(),
                        k.tags.clone(),
                        k.paths.clone(),
                        k.matches.clone(),
                        Counters {
                            last: c("last"),
                            hourly: c("hourly"),
                            daily: c("daily"),
                            weekly: c("weekly"),
                            monthly: c("monthly"),
                            yearly: c("yearly"),
                        },
                    )
                })
                .collect();
            assert_eq!(kept, expected, "restic policy case {number}: {policy}");
        }
    }

    /// The example of restic's `doc/060_forget.rst`: weekday backups for two
    /// weeks, a second one on Fridays, no backup on the second Wednesday.
    fn documented_example() -> Vec<(Id, Snapshot)> {
        [
            "2025-04-21T11:00:00Z",
            "2025-04-22T11:00:00Z",
            "2025-04-23T11:00:00Z",
            "2025-04-24T11:00:00Z",
            "2025-04-25T11:00:00Z",
            "2025-04-25T23:00:00Z",
            "2025-04-28T11:00:00Z",
            "2025-04-29T11:00:00Z",
            "2025-05-01T11:00:00Z",
            "2025-05-02T11:00:00Z",
            "2025-05-02T23:00:00Z",
        ]
        .iter()
        .enumerate()
        .map(|(i, time)| {
            (
                Id([i as u8; 32]),
                snapshot_at(time, "mopped", &["/home/user/work"], &[]),
            )
        })
        .collect()
    }

    fn kept_times(
        policy: &RetentionPolicy,
        snapshots: &[(Id, Snapshot)],
    ) -> Vec<(String, Vec<String>)> {
        let by_id: std::collections::BTreeMap<Id, &Snapshot> =
            snapshots.iter().map(|(id, s)| (*id, s)).collect();
        apply(policy, snapshots)
            .into_iter()
            .filter(|d| d.keep())
            .map(|d| (by_id[&d.id].time.to_string(), d.reasons))
            .collect()
    }

    #[test]
    fn documented_keep_daily_example() {
        let policy = RetentionPolicy {
            keep_daily: count("5"),
            ..Default::default()
        };
        assert_eq!(policy.to_string(), "keep 5 daily snapshots");
        let daily = || vec!["daily snapshot".to_string()];
        assert_eq!(
            kept_times(&policy, &documented_example()),
            vec![
                ("2025-05-02T23:00:00Z".into(), daily()),
                ("2025-05-01T11:00:00Z".into(), daily()),
                ("2025-04-29T11:00:00Z".into(), daily()),
                ("2025-04-28T11:00:00Z".into(), daily()),
                ("2025-04-25T23:00:00Z".into(), daily()),
            ]
        );
    }

    #[test]
    fn documented_keep_within_daily_example() {
        let policy = RetentionPolicy {
            keep_within_daily: duration("7d"),
            ..Default::default()
        };
        assert_eq!(policy.to_string(), "keep daily snapshots within 7d");
        let daily = || vec!["daily within 7d".to_string()];
        assert_eq!(
            kept_times(&policy, &documented_example()),
            vec![
                ("2025-05-02T23:00:00Z".into(), daily()),
                ("2025-05-01T11:00:00Z".into(), daily()),
                ("2025-04-29T11:00:00Z".into(), daily()),
                ("2025-04-28T11:00:00Z".into(), daily()),
            ]
        );
    }

    #[test]
    fn count_rule_with_budget_left_keeps_the_oldest() {
        let policy = RetentionPolicy {
            keep_daily: count("30"),
            ..Default::default()
        };
        // Nine days have snapshots: nine daily ones, the oldest among them.
        let kept = kept_times(&policy, &documented_example());
        assert_eq!(kept.len(), 9);
        assert_eq!(
            kept.last().unwrap(),
            &(
                "2025-04-21T11:00:00Z".to_string(),
                vec!["daily snapshot".to_string()]
            )
        );
        // Two snapshots of the oldest day: the newer is the daily one, the
        // older one is kept as the oldest while budget remains.
        let mut snapshots = documented_example();
        snapshots[0].1.time = "2025-04-21T09:00:00Z".parse().unwrap();
        snapshots.push((
            Id([99; 32]),
            snapshot_at("2025-04-21T10:00:00Z", "mopped", &["/home/user/work"], &[]),
        ));
        let kept = kept_times(&policy, &snapshots);
        assert_eq!(
            &kept[kept.len() - 2..],
            &[
                (
                    "2025-04-21T10:00:00Z".to_string(),
                    vec!["daily snapshot".to_string()]
                ),
                (
                    "2025-04-21T09:00:00Z".to_string(),
                    vec!["oldest daily snapshot".to_string()]
                ),
            ]
        );
    }

    #[test]
    fn buckets_use_the_recorded_offset() {
        // 23:30 and 00:30 at +02:00 are two local days but one UTC day.
        let mut late = snapshot_at("2026-03-10T21:30:00Z", "h", &["/"], &[]);
        late.time_offset_seconds = 7200;
        let mut early = snapshot_at("2026-03-10T22:30:00Z", "h", &["/"], &[]);
        early.time_offset_seconds = 7200;
        let snapshots = vec![(Id([1; 32]), late.clone()), (Id([2; 32]), early.clone())];
        let policy = RetentionPolicy {
            keep_daily: count("1"),
            ..Default::default()
        };
        // Local days differ: the one daily slot goes to the newest, and the
        // older one, a different day, is not kept (budget spent).
        let decisions = apply(&policy, &snapshots);
        assert_eq!(decisions[0].reasons, ["daily snapshot"]);
        assert!(!decisions[1].keep());
        let within_daily = RetentionPolicy {
            keep_within_daily: duration("1d"),
            ..Default::default()
        };
        let decisions = apply(&within_daily, &snapshots);
        assert!(
            decisions.iter().all(Decision::keep),
            "two local days, two daily buckets"
        );
        // In UTC they share a day, so the older one is only the oldest of its bucket.
        let utc: Vec<(Id, Snapshot)> = snapshots
            .into_iter()
            .map(|(id, mut s)| {
                s.time_offset_seconds = 0;
                (id, s)
            })
            .collect();
        let decisions = apply(&within_daily, &utc);
        assert_eq!(decisions[1].reasons, ["oldest daily within 1d"]);
    }

    #[test]
    fn weeks_are_iso_weeks() {
        // 2026-01-01 is a Thursday: ISO week 1 of 2026 starts Monday 2025-12-29.
        let snapshots = vec![
            (
                Id([1; 32]),
                snapshot_at("2025-12-28T12:00:00Z", "h", &["/"], &[]),
            ),
            (
                Id([2; 32]),
                snapshot_at("2025-12-29T12:00:00Z", "h", &["/"], &[]),
            ),
            (
                Id([3; 32]),
                snapshot_at("2026-01-02T12:00:00Z", "h", &["/"], &[]),
            ),
        ];
        let policy = RetentionPolicy {
            keep_weekly: count("2"),
            ..Default::default()
        };
        let kept: Vec<Id> = apply(&policy, &snapshots)
            .into_iter()
            .filter(Decision::keep)
            .map(|d| d.id)
            .collect();
        assert_eq!(kept, vec![Id([3; 32]), Id([1; 32])]);
    }

    #[test]
    fn keep_tag_lists_are_or_of_and() {
        let snapshots = vec![
            (
                Id([1; 32]),
                snapshot_at("2026-01-01T00:00:00Z", "h", &["/"], &["a"]),
            ),
            (
                Id([2; 32]),
                snapshot_at("2026-01-02T00:00:00Z", "h", &["/"], &["a", "b"]),
            ),
            (
                Id([3; 32]),
                snapshot_at("2026-01-03T00:00:00Z", "h", &["/"], &["c"]),
            ),
            (
                Id([4; 32]),
                snapshot_at("2026-01-04T00:00:00Z", "h", &["/"], &[]),
            ),
        ];
        let policy = RetentionPolicy {
            keep_tags: vec![
                vec!["a".into(), "b".into()],
                vec!["c".into()],
                vec!["".into()],
            ],
            ..Default::default()
        };
        let decisions = apply(&policy, &snapshots);
        let reasons: Vec<(u8, Vec<String>)> = decisions
            .iter()
            .map(|d| (d.id.0[0], d.reasons.clone()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (4, vec!["has tags []".to_string()]),
                (3, vec!["has tags [c]".to_string()]),
                (2, vec!["has tags [a, b]".to_string()]),
                (1, vec![]),
            ]
        );
    }

    #[test]
    fn empty_policy_removes_nothing() {
        let policy = RetentionPolicy {
            keep_last: count("0"),
            keep_within: duration(""),
            ..Default::default()
        };
        assert!(policy.is_empty());
        assert_eq!(policy.to_string(), "remove");
        let decisions = apply(&policy, &documented_example());
        assert_eq!(decisions.len(), 11);
        assert!(decisions.iter().all(Decision::keep));
        assert!(apply(&RetentionPolicy::default(), &[]).is_empty());
    }

    fn any_snapshots() -> impl Strategy<Value = Vec<(Id, Snapshot)>> {
        proptest::collection::vec(
            (
                0i64..(3 * 365 * 86_400),
                prop_oneof![Just(0i32), Just(3600), Just(-5 * 3600), Just(19_800)],
                proptest::sample::subsequence(vec!["a", "b"], 0..=2),
            ),
            0..40,
        )
        .prop_map(|entries| {
            entries
                .into_iter()
                .enumerate()
                .map(|(i, (seconds, offset, tags))| {
                    let mut snapshot = snapshot_at("2024-01-01T00:00:00Z", "h", &["/"], &tags);
                    snapshot.time = jiff::Timestamp::from_second(1_700_000_000 + seconds).unwrap();
                    snapshot.time_offset_seconds = offset;
                    (Id([i as u8; 32]), snapshot)
                })
                .collect()
        })
    }

    fn any_count() -> impl Strategy<Value = Option<Count>> {
        prop_oneof![
            3 => Just(None),
            3 => (0u32..6).prop_map(|n| Some(Count::Limited(n))),
            1 => Just(Some(Count::Unlimited)),
        ]
    }

    fn any_window() -> impl Strategy<Value = Option<Duration>> {
        prop_oneof![
            3 => Just(None),
            1 => (0u32..2, 0u32..4, 0u32..20, 0u32..30).prop_map(|(years, months, days, hours)| {
                Some(Duration { years, months, days, hours })
            }),
        ]
    }

    fn any_policy() -> impl Strategy<Value = RetentionPolicy> {
        (
            proptest::array::uniform6(any_count()),
            proptest::array::uniform6(any_window()),
            proptest::sample::subsequence(
                vec![
                    vec!["a".to_string()],
                    vec!["a".into(), "b".into()],
                    vec![String::new()],
                ],
                0..=1,
            ),
        )
            .prop_map(|(c, w, keep_tags)| RetentionPolicy {
                keep_last: c[0],
                keep_hourly: c[1],
                keep_daily: c[2],
                keep_weekly: c[3],
                keep_monthly: c[4],
                keep_yearly: c[5],
                keep_within: w[0],
                keep_within_hourly: w[1],
                keep_within_daily: w[2],
                keep_within_weekly: w[3],
                keep_within_monthly: w[4],
                keep_within_yearly: w[5],
                keep_tags,
            })
    }

    fn kept_ids(policy: &RetentionPolicy, snapshots: &[(Id, Snapshot)]) -> BTreeSet<Id> {
        apply(policy, snapshots)
            .into_iter()
            .filter(Decision::keep)
            .map(|d| d.id)
            .collect()
    }

    proptest! {
        #[test]
        fn duration_display_round_trips(years in 0u32..10_000, months in 0u32..100, days in 0u32..1000, hours in 0u32..10_000) {
            let d = Duration { years, months, days, hours };
            prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }

        #[test]
        fn duration_parse_never_panics(text in "[0-9ymdh -]{0,12}") {
            let _ = text.parse::<Duration>();
        }

        #[test]
        fn every_snapshot_gets_one_decision(policy in any_policy(), snapshots in any_snapshots()) {
            let decisions = apply(&policy, &snapshots);
            let ids: BTreeSet<Id> = decisions.iter().map(|d| d.id).collect();
            prop_assert_eq!(ids, snapshots.iter().map(|(id, _)| *id).collect::<BTreeSet<Id>>());
            prop_assert_eq!(decisions.len(), snapshots.len());
        }

        #[test]
        fn input_order_does_not_matter(policy in any_policy(), snapshots in any_snapshots(), seed in any::<u64>()) {
            let mut shuffled = snapshots.clone();
            // A deterministic permutation from the seed.
            let n = shuffled.len();
            for i in (1..n).rev() {
                let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % (i as u64 + 1)) as usize;
                shuffled.swap(i, j);
            }
            prop_assert_eq!(apply(&policy, &snapshots), apply(&policy, &shuffled));
        }

        /// Applying a policy to its own keep set keeps all of it. This holds
        /// for count rules and tags; the within rules keep it too because the
        /// newest snapshot (the window's anchor) is always kept when any
        /// within rule is set.
        #[test]
        fn policy_over_its_keep_set_keeps_it_all(policy in any_policy(), snapshots in any_snapshots()) {
            let kept = kept_ids(&policy, &snapshots);
            let survivors: Vec<(Id, Snapshot)> =
                snapshots.iter().filter(|(id, _)| kept.contains(id)).cloned().collect();
            prop_assert_eq!(kept_ids(&policy, &survivors), kept);
        }

        /// A new snapshot, newer than all others, shifts `keep_last N` by
        /// one: of the previously kept-by-last snapshots, only the oldest
        /// may lose that reason; the newest N-1 stay kept.
        #[test]
        fn a_newer_snapshot_keeps_the_newest_last_kept(n in 1u32..8, snapshots in any_snapshots()) {
            let policy = RetentionPolicy { keep_last: Some(Count::Limited(n)), ..Default::default() };
            let before: Vec<Id> = apply(&policy, &snapshots)
                .into_iter()
                .filter(|d| d.reasons.iter().any(|r| r == "last snapshot"))
                .map(|d| d.id)
                .collect();
            let newest = snapshots.iter().map(|(_, s)| s.time).max();
            let mut more = snapshots.clone();
            let mut added = snapshot_at("2024-01-01T00:00:00Z", "h", &["/"], &[]);
            added.time = newest.map_or(added.time, |t| t + jiff::SignedDuration::from_secs(1));
            more.push((Id([200; 32]), added));
            let after = kept_ids(&policy, &more);
            prop_assert!(after.contains(&Id([200; 32])));
            for id in before.iter().take(n as usize - 1) {
                prop_assert!(after.contains(id), "{id} was kept by keep-last and is now removed");
            }
        }
    }
}
