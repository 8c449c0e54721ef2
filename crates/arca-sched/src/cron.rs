//! The cron syntax (robfig/cron's standard parser, as VolSync uses it) and the search for matching
//! wall-clock minutes. Everything here is civil (wall-clock) time; turning wall-clock minutes into
//! instants, and so DST, is `schedule.rs`'s job.

use std::fmt;

use crate::error::{Error, FieldProblem};

/// One of the five fields of a cron expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CronField {
    /// 0–59.
    Minute,
    /// 0–23.
    Hour,
    /// 1–31.
    DayOfMonth,
    /// 1–12 or `JAN`–`DEC`.
    Month,
    /// 0–6 (Sunday is 0) or `SUN`–`SAT`.
    DayOfWeek,
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl CronField {
    /// The fields in the order they are written.
    pub const ALL: [CronField; 5] = [
        CronField::Minute,
        CronField::Hour,
        CronField::DayOfMonth,
        CronField::Month,
        CronField::DayOfWeek,
    ];

    /// The field's 1-based position in an expression.
    pub fn position(self) -> usize {
        self as usize + 1
    }

    /// The smallest and largest value the field accepts.
    pub fn bounds(self) -> (u32, u32) {
        match self {
            CronField::Minute => (0, 59),
            CronField::Hour => (0, 23),
            CronField::DayOfMonth => (1, 31),
            CronField::Month => (1, 12),
            CronField::DayOfWeek => (0, 6),
        }
    }

    /// Names accepted for values, lower case, the first naming the minimum.
    fn names(self) -> &'static [&'static str] {
        match self {
            CronField::Month => &MONTH_NAMES,
            CronField::DayOfWeek => &WEEKDAY_NAMES,
            _ => &[],
        }
    }

    fn name(self) -> &'static str {
        match self {
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
        }
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The values one field allows, as a bit set, and whether it was written as `*`/`?` (with no
/// step above 1). The star matters for days only: robfig/cron (like Vixie cron) matches a day
/// if day-of-month OR day-of-week matches when both are restricted, and AND when either is a star.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FieldSet {
    pub(crate) bits: u64,
    pub(crate) star: bool,
}

impl FieldSet {
    fn all(field: CronField) -> FieldSet {
        let (min, max) = field.bounds();
        FieldSet {
            bits: range_bits(min, max, 1),
            star: true,
        }
    }

    fn only(value: u32) -> FieldSet {
        FieldSet {
            bits: 1 << value,
            star: false,
        }
    }

    fn contains(self, value: u32) -> bool {
        self.bits >> value & 1 == 1
    }

    /// The smallest member `>= from`.
    fn next_from(self, from: u32) -> Option<u32> {
        let rest = self.bits.checked_shr(from).unwrap_or(0);
        (rest != 0).then(|| from + rest.trailing_zeros())
    }

    /// The largest member `<= from` (`from` < 63).
    fn prev_from(self, from: u32) -> Option<u32> {
        let upto = self.bits & ((2u64 << from) - 1);
        (upto != 0).then(|| 63 - upto.leading_zeros())
    }
}

fn range_bits(start: u32, end: u32, step: u32) -> u64 {
    (start..=end)
        .step_by(step as usize)
        .fold(0, |bits, v| bits | 1 << v)
}

/// The five parsed fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Fields {
    minute: FieldSet,
    hour: FieldSet,
    day_of_month: FieldSet,
    month: FieldSet,
    day_of_week: FieldSet,
}

/// The `@` descriptors. `@every` is not accepted: VolSync's CRD validation pattern rejects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Descriptor {
    Yearly,
    Annually,
    Monthly,
    Weekly,
    Daily,
    Midnight,
    Hourly,
}

impl Descriptor {
    const ALL: [Descriptor; 7] = [
        Descriptor::Yearly,
        Descriptor::Annually,
        Descriptor::Monthly,
        Descriptor::Weekly,
        Descriptor::Daily,
        Descriptor::Midnight,
        Descriptor::Hourly,
    ];

    pub(crate) fn text(self) -> &'static str {
        match self {
            Descriptor::Yearly => "@yearly",
            Descriptor::Annually => "@annually",
            Descriptor::Monthly => "@monthly",
            Descriptor::Weekly => "@weekly",
            Descriptor::Daily => "@daily",
            Descriptor::Midnight => "@midnight",
            Descriptor::Hourly => "@hourly",
        }
    }

    /// robfig/cron's expansion of each descriptor.
    fn fields(self) -> Fields {
        let all = FieldSet::all;
        let zero_zero = |day_of_month, month, day_of_week| Fields {
            minute: FieldSet::only(0),
            hour: FieldSet::only(0),
            day_of_month,
            month,
            day_of_week,
        };
        match self {
            Descriptor::Yearly | Descriptor::Annually => zero_zero(
                FieldSet::only(1),
                FieldSet::only(1),
                all(CronField::DayOfWeek),
            ),
            Descriptor::Monthly => zero_zero(
                FieldSet::only(1),
                all(CronField::Month),
                all(CronField::DayOfWeek),
            ),
            Descriptor::Weekly => zero_zero(
                all(CronField::DayOfMonth),
                all(CronField::Month),
                FieldSet::only(0),
            ),
            Descriptor::Daily | Descriptor::Midnight => zero_zero(
                all(CronField::DayOfMonth),
                all(CronField::Month),
                all(CronField::DayOfWeek),
            ),
            Descriptor::Hourly => Fields {
                minute: FieldSet::only(0),
                hour: all(CronField::Hour),
                day_of_month: all(CronField::DayOfMonth),
                month: all(CronField::Month),
                day_of_week: all(CronField::DayOfWeek),
            },
        }
    }
}

/// How the expression was written, kept for `Display` so a schedule prints as its author wrote
/// it (whitespace normalised to single spaces).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Spec {
    Descriptor(Descriptor),
    Fields(Box<str>),
}

impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Spec::Descriptor(d) => f.write_str(d.text()),
            Spec::Fields(text) => f.write_str(text),
        }
    }
}

/// Parses the expression after any time zone prefix.
pub(crate) fn parse_spec(expression: &str) -> Result<(Spec, Fields), Error> {
    // Like robfig/cron, a descriptor must be the whole (trimmed) expression, spelled exactly.
    if expression.starts_with('@') {
        return Descriptor::ALL
            .into_iter()
            .find(|d| d.text() == expression)
            .map(|d| (Spec::Descriptor(d), d.fields()))
            .ok_or_else(|| Error::UnknownDescriptor {
                descriptor: expression.to_owned(),
            });
    }
    let words: Vec<(usize, &str)> = words_with_columns(expression);
    if words.is_empty() {
        return Err(Error::EmptyExpression);
    }
    if words.len() != 5 {
        return Err(Error::FieldCount {
            expression: expression.to_owned(),
            found: words.len(),
        });
    }
    let mut sets = [FieldSet {
        bits: 0,
        star: false,
    }; 5];
    for ((set, field), (column, text)) in sets.iter_mut().zip(CronField::ALL).zip(&words) {
        *set = parse_field(field, text).map_err(|problem| Error::Field {
            expression: expression.to_owned(),
            field,
            position: field.position(),
            column: *column,
            value: (*text).to_owned(),
            problem,
        })?;
    }
    let [minute, hour, day_of_month, month, day_of_week] = sets;
    let text = words.iter().map(|(_, w)| *w).collect::<Vec<_>>().join(" ");
    Ok((
        Spec::Fields(text.into()),
        Fields {
            minute,
            hour,
            day_of_month,
            month,
            day_of_week,
        },
    ))
}

/// Whitespace-separated words and the 1-based character column each starts at.
fn words_with_columns(text: &str) -> Vec<(usize, &str)> {
    let mut words = Vec::new();
    let mut start = None;
    for (index, (byte, c)) in text.char_indices().enumerate() {
        match (c.is_whitespace(), start) {
            (true, Some((column, from))) => {
                words.push((column, &text[from..byte]));
                start = None;
            }
            (false, None) => start = Some((index + 1, byte)),
            _ => {}
        }
    }
    if let Some((column, from)) = start {
        words.push((column, &text[from..]));
    }
    words
}

/// One field: a comma list of `*`, `?`, `N`, `N-M`, each optionally `/step`.
fn parse_field(field: CronField, text: &str) -> Result<FieldSet, FieldProblem> {
    let mut set = FieldSet {
        bits: 0,
        star: false,
    };
    for item in text.split(',') {
        if item.is_empty() {
            // robfig/cron drops empty items (and so accepts `,` as a field that never matches);
            // VolSync's CRD pattern rejects them.
            return Err(FieldProblem::EmptyItem);
        }
        let item_set = parse_item(field, item)?;
        set.bits |= item_set.bits;
        set.star |= item_set.star;
    }
    Ok(set)
}

fn parse_item(field: CronField, item: &str) -> Result<FieldSet, FieldProblem> {
    let (min, max) = field.bounds();
    let mut slash = item.split('/');
    let range = slash.next().unwrap_or_default();
    let step_text = slash.next();
    if slash.next().is_some() {
        return Err(FieldProblem::TooManySlashes {
            item: item.to_owned(),
        });
    }
    let mut hyphen = range.split('-');
    let low = hyphen.next().unwrap_or_default();
    let high = hyphen.next();
    if hyphen.next().is_some() {
        return Err(FieldProblem::TooManyHyphens {
            item: item.to_owned(),
        });
    }
    let (start, mut end, mut star) = if low == "*" || low == "?" {
        if high.is_some() {
            return Err(FieldProblem::StarRange {
                item: item.to_owned(),
            });
        }
        (min, max, true)
    } else {
        let start = number_or_name(field, low)?;
        let end = match high {
            Some(high) => number_or_name(field, high)?,
            None => start,
        };
        (start, end, false)
    };
    let step = match step_text {
        None => 1,
        Some(step_text) => {
            let step = number(step_text, false, max)?;
            // robfig/cron: "N/step" means "N-max/step".
            if high.is_none() {
                end = max;
            }
            if step > 1 {
                star = false;
            }
            step
        }
    };
    if start < min {
        return Err(FieldProblem::BelowMinimum {
            value: start.to_string(),
            min,
        });
    }
    if end > max {
        return Err(FieldProblem::AboveMaximum {
            value: end.to_string(),
            max,
        });
    }
    if start > end {
        return Err(FieldProblem::Backwards { start, end });
    }
    if step == 0 {
        return Err(FieldProblem::ZeroStep);
    }
    Ok(FieldSet {
        bits: range_bits(start, end, step),
        star,
    })
}

fn number_or_name(field: CronField, text: &str) -> Result<u32, FieldProblem> {
    let names = field.names();
    if let Some(index) = names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        return Ok(field.bounds().0 + index as u32);
    }
    number(text, !names.is_empty(), field.bounds().1)
}

/// A plain decimal number (digits only: no sign, as VolSync's pattern requires).
fn number(text: &str, names: bool, max: u32) -> Result<u32, FieldProblem> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldProblem::NotANumber {
            text: text.to_owned(),
            names,
        });
    }
    text.parse::<u32>().map_err(|_| FieldProblem::AboveMaximum {
        value: text.to_owned(),
        max,
    })
}

/// A wall-clock minute. Kept as plain integers: the search below steps through thousands of
/// them per query and needs nothing of a full datetime type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Minute {
    pub(crate) year: i32,
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
}

/// Searches give up this many years past their starting point: enough for any satisfiable
/// expression (Feb 29 recurs at most 8 years apart), so `None` means "never" in practice.
pub(crate) const SEARCH_YEARS: i32 = 10;
const MIN_YEAR: i32 = -9999;
const MAX_YEAR: i32 = 9999;

impl Minute {
    pub(crate) fn of(dt: jiff::civil::DateTime) -> Minute {
        Minute {
            year: i32::from(dt.year()),
            month: dt.month() as u32,
            day: dt.day() as u32,
            hour: dt.hour() as u32,
            minute: dt.minute() as u32,
        }
    }

    pub(crate) fn to_datetime(self) -> Option<jiff::civil::DateTime> {
        jiff::civil::DateTime::new(
            i16::try_from(self.year).ok()?,
            self.month as i8,
            self.day as i8,
            self.hour as i8,
            self.minute as i8,
            0,
            0,
        )
        .ok()
    }

    fn start_of_month(year: i32, month: u32) -> Minute {
        Minute {
            year,
            month,
            day: 1,
            hour: 0,
            minute: 0,
        }
    }

    fn end_of_month(year: i32, month: u32) -> Minute {
        Minute {
            year,
            month,
            day: days_in_month(year, month),
            hour: 23,
            minute: 59,
        }
    }

    fn start_of_next_month(self) -> Minute {
        if self.month == 12 {
            Minute::start_of_month(self.year + 1, 1)
        } else {
            Minute::start_of_month(self.year, self.month + 1)
        }
    }

    fn end_of_previous_month(self) -> Minute {
        if self.month == 1 {
            Minute::end_of_month(self.year - 1, 12)
        } else {
            Minute::end_of_month(self.year, self.month - 1)
        }
    }

    fn start_of_next_day(self) -> Minute {
        if self.day >= days_in_month(self.year, self.month) {
            self.start_of_next_month()
        } else {
            Minute {
                day: self.day + 1,
                hour: 0,
                minute: 0,
                ..self
            }
        }
    }

    fn end_of_previous_day(self) -> Minute {
        if self.day == 1 {
            self.end_of_previous_month()
        } else {
            Minute {
                day: self.day - 1,
                hour: 23,
                minute: 59,
                ..self
            }
        }
    }

    /// The next wall-clock minute.
    pub(crate) fn succ(self) -> Minute {
        match (self.minute, self.hour) {
            (59, 23) => self.start_of_next_day(),
            (59, hour) => Minute {
                hour: hour + 1,
                minute: 0,
                ..self
            },
            (minute, _) => Minute {
                minute: minute + 1,
                ..self
            },
        }
    }

    /// The previous wall-clock minute.
    pub(crate) fn pred(self) -> Minute {
        match (self.minute, self.hour) {
            (0, 0) => self.end_of_previous_day(),
            (0, hour) => Minute {
                hour: hour - 1,
                minute: 59,
                ..self
            },
            (minute, _) => Minute {
                minute: minute - 1,
                ..self
            },
        }
    }
}

pub(crate) fn is_leap_year(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

pub(crate) fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Day of the week, Sunday = 0 (Howard Hinnant's `days_from_civil`; 1970-01-01 was a Thursday).
pub(crate) fn weekday(year: i32, month: u32, day: u32) -> u32 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year as i32;
    let days = era * 146_097 + day_of_era - 719_468;
    (days + 4).rem_euclid(7) as u32
}

impl Fields {
    /// Whether a day matches: day-of-month OR day-of-week when both are restricted, AND when
    /// either is `*` (robfig/cron's `dayMatches`).
    fn day_matches(&self, year: i32, month: u32, day: u32) -> bool {
        let by_date = self.day_of_month.contains(day);
        let by_weekday = self.day_of_week.contains(weekday(year, month, day));
        if self.day_of_month.star || self.day_of_week.star {
            by_date && by_weekday
        } else {
            by_date || by_weekday
        }
    }

    pub(crate) fn matches(&self, m: Minute) -> bool {
        self.month.contains(m.month)
            && self.day_matches(m.year, m.month, m.day)
            && self.hour.contains(m.hour)
            && self.minute.contains(m.minute)
    }

    /// The first matching wall-clock minute at or after `from`.
    pub(crate) fn first_at_or_after(&self, from: Minute) -> Option<Minute> {
        let last_year = (from.year + SEARCH_YEARS).min(MAX_YEAR);
        let mut at = from;
        loop {
            if at.year > last_year {
                return None;
            }
            match self.month.next_from(at.month) {
                None => {
                    at = Minute::start_of_month(at.year + 1, 1);
                    continue;
                }
                Some(month) if month != at.month => at = Minute::start_of_month(at.year, month),
                Some(_) => {}
            }
            if !self.day_matches(at.year, at.month, at.day) {
                at = at.start_of_next_day();
                continue;
            }
            match self.hour.next_from(at.hour) {
                None => {
                    at = at.start_of_next_day();
                    continue;
                }
                Some(hour) if hour != at.hour => {
                    at = Minute {
                        hour,
                        minute: 0,
                        ..at
                    }
                }
                Some(_) => {}
            }
            match self.minute.next_from(at.minute) {
                None if at.hour == 23 => at = at.start_of_next_day(),
                None => {
                    at = Minute {
                        hour: at.hour + 1,
                        minute: 0,
                        ..at
                    }
                }
                Some(minute) => return Some(Minute { minute, ..at }),
            }
        }
    }

    /// The last matching wall-clock minute at or before `from`.
    pub(crate) fn last_at_or_before(&self, from: Minute) -> Option<Minute> {
        let first_year = (from.year - SEARCH_YEARS).max(MIN_YEAR);
        let mut at = from;
        loop {
            if at.year < first_year {
                return None;
            }
            match self.month.prev_from(at.month) {
                None => {
                    at = Minute::end_of_month(at.year - 1, 12);
                    continue;
                }
                Some(month) if month != at.month => at = Minute::end_of_month(at.year, month),
                Some(_) => {}
            }
            if !self.day_matches(at.year, at.month, at.day) {
                at = at.end_of_previous_day();
                continue;
            }
            match self.hour.prev_from(at.hour) {
                None => {
                    at = at.end_of_previous_day();
                    continue;
                }
                Some(hour) if hour != at.hour => {
                    at = Minute {
                        hour,
                        minute: 59,
                        ..at
                    }
                }
                Some(_) => {}
            }
            match self.minute.prev_from(at.minute) {
                None if at.hour == 0 => at = at.end_of_previous_day(),
                None => {
                    at = Minute {
                        hour: at.hour - 1,
                        minute: 59,
                        ..at
                    }
                }
                Some(minute) => return Some(Minute { minute, ..at }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Fields {
        parse_spec(text).unwrap().1
    }

    #[test]
    fn weekday_agrees_with_jiff() {
        let mut date = jiff::civil::date(1899, 12, 25);
        for _ in 0..(366 * 210) {
            let expected = date.weekday().to_sunday_zero_offset() as u32;
            assert_eq!(
                weekday(
                    i32::from(date.year()),
                    date.month() as u32,
                    date.day() as u32
                ),
                expected,
                "{date}"
            );
            date = date.tomorrow().unwrap();
        }
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        assert_eq!(
            fields("*/15 * * * *").minute.bits,
            1 | 1 << 15 | 1 << 30 | 1 << 45
        );
        assert!(!fields("*/15 * * * *").minute.star);
        assert!(fields("*/1 * * * *").minute.star);
        assert_eq!(
            fields("1-5/2 * * * *").minute.bits,
            1 << 1 | 1 << 3 | 1 << 5
        );
        assert_eq!(fields("50/5 * * * *").minute.bits, 1 << 50 | 1 << 55);
        assert_eq!(
            fields("1,2,10-11 * * * *").minute.bits,
            1 << 1 | 1 << 2 | 1 << 10 | 1 << 11
        );
        assert_eq!(
            fields("0 0 * JAN-mar *").month.bits,
            1 << 1 | 1 << 2 | 1 << 3
        );
        assert_eq!(fields("0 0 * * MON-FRI").day_of_week.bits, 0b0011_1110);
        assert_eq!(
            fields("0 0 * * sun/3").day_of_week.bits,
            1 | 1 << 3 | 1 << 6
        );
        assert!(fields("0 0 ? * ?").day_of_month.star);
        assert!(fields("0 0 1,* * *").day_of_month.star);
        assert_eq!(fields("*/100 * * * *").minute.bits, 1);
    }

    #[test]
    fn descriptors_expand_like_their_fields() {
        for (descriptor, expansion) in [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ] {
            assert_eq!(fields(descriptor), fields(expansion), "{descriptor}");
        }
    }

    #[test]
    fn bad_fields_name_the_problem() {
        let problem = |text: &str| match parse_spec(text) {
            Err(Error::Field { problem, .. }) => problem,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(
            problem("60 * * * *"),
            FieldProblem::AboveMaximum {
                value: "60".into(),
                max: 59
            }
        );
        assert_eq!(
            problem("* * 0 * *"),
            FieldProblem::BelowMinimum {
                value: "0".into(),
                min: 1
            }
        );
        assert_eq!(
            problem("* * * * 7"),
            FieldProblem::AboveMaximum {
                value: "7".into(),
                max: 6
            }
        );
        assert_eq!(
            problem("5-1 * * * *"),
            FieldProblem::Backwards { start: 5, end: 1 }
        );
        assert_eq!(problem("*/0 * * * *"), FieldProblem::ZeroStep);
        assert_eq!(problem("1,,2 * * * *"), FieldProblem::EmptyItem);
        assert_eq!(
            problem("1-2-3 * * * *"),
            FieldProblem::TooManyHyphens {
                item: "1-2-3".into()
            }
        );
        assert_eq!(
            problem("*/2/3 * * * *"),
            FieldProblem::TooManySlashes {
                item: "*/2/3".into()
            }
        );
        assert_eq!(
            problem("*-5 * * * *"),
            FieldProblem::StarRange { item: "*-5".into() }
        );
        assert_eq!(
            problem("+5 * * * *"),
            FieldProblem::NotANumber {
                text: "+5".into(),
                names: false
            }
        );
        assert_eq!(
            problem("* * * FOO *"),
            FieldProblem::NotANumber {
                text: "FOO".into(),
                names: true
            }
        );
        assert_eq!(
            problem("* * * * MON/TUE"),
            FieldProblem::NotANumber {
                text: "TUE".into(),
                names: false
            }
        );
        assert_eq!(
            problem("99999999999 * * * *"),
            FieldProblem::AboveMaximum {
                value: "99999999999".into(),
                max: 59
            }
        );
    }

    #[test]
    fn field_errors_carry_position_and_column() {
        let err = parse_spec("0  2 32 * *").unwrap_err();
        match &err {
            Error::Field {
                field,
                position,
                column,
                value,
                ..
            } => {
                assert_eq!(
                    (*field, *position, *column, value.as_str()),
                    (CronField::DayOfMonth, 3, 6, "32")
                );
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("day-of-month field (field 3 of 5, column 6)"),
            "{message}"
        );
        assert!(message.contains("32 is above the maximum 31"), "{message}");
    }

    #[test]
    fn search_respects_or_and_and_day_rules() {
        // 2026-03-01 is a Sunday.
        let from = Minute {
            year: 2026,
            month: 3,
            day: 1,
            hour: 0,
            minute: 0,
        };
        // Both restricted: the 15th OR any Friday; the first such day is Friday the 6th.
        let or = fields("0 12 15 * FRI").first_at_or_after(from).unwrap();
        assert_eq!((or.day, or.hour), (6, 12));
        // Day-of-week restricted, day-of-month star: Fridays only.
        let and = fields("0 12 * * FRI").first_at_or_after(from).unwrap();
        assert_eq!(and.day, 6);
        // Day-of-month restricted, day-of-week star: the 15th only.
        let dom = fields("0 12 15 * ?").first_at_or_after(from).unwrap();
        assert_eq!(dom.day, 15);
        // Never matches: None rather than a loop.
        assert_eq!(fields("0 0 30 2 *").first_at_or_after(from), None);
        assert_eq!(fields("0 0 31 4 *").last_at_or_before(from), None);
    }

    #[test]
    fn succ_and_pred_roll_over() {
        let end = Minute {
            year: 2024,
            month: 2,
            day: 29,
            hour: 23,
            minute: 59,
        };
        let next = end.succ();
        assert_eq!(
            next,
            Minute {
                year: 2024,
                month: 3,
                day: 1,
                hour: 0,
                minute: 0
            }
        );
        assert_eq!(next.pred(), end);
        let new_year = Minute {
            year: 2025,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
        };
        assert_eq!(
            new_year.pred(),
            Minute {
                year: 2024,
                month: 12,
                day: 31,
                hour: 23,
                minute: 59
            }
        );
    }
}
