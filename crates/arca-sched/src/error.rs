//! The crate's one error type.

use crate::cron::CronField;

/// Everything that can go wrong in this crate: all of it is bad input (a schedule, a class name),
/// since nothing here does I/O.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The expression was empty or only whitespace.
    #[error("the cron expression is empty")]
    EmptyExpression,

    /// Not five whitespace-separated fields.
    #[error(
        "cron expression {expression:?} has {found} field(s); expected exactly 5 \
         (minute hour day-of-month month day-of-week) or a descriptor such as @daily"
    )]
    FieldCount {
        /// The expression after any time zone prefix.
        expression: String,
        /// How many fields it has.
        found: usize,
    },

    /// One field is malformed or out of range.
    #[error(
        "cron expression {expression:?}: the {field} field (field {position} of 5, column {column}) \
         is {value:?}: {problem}"
    )]
    Field {
        /// The expression after any time zone prefix.
        expression: String,
        /// Which field.
        field: CronField,
        /// The field's position, 1 to 5.
        position: usize,
        /// The 1-based character column where the field starts in `expression`.
        column: usize,
        /// The field's text.
        value: String,
        /// What is wrong with it.
        problem: FieldProblem,
    },

    /// An `@` word that is not one of the accepted descriptors.
    #[error(
        "unknown cron descriptor {descriptor:?}; expected one of @yearly, @annually, @monthly, \
         @weekly, @daily, @midnight, @hourly"
    )]
    UnknownDescriptor {
        /// The descriptor as written.
        descriptor: String,
    },

    /// A `CRON_TZ=`/`TZ=` prefix not followed by a space and a schedule, or with an empty name.
    #[error(
        "time zone prefix {prefix:?} must be `CRON_TZ=<zone>` followed by a space and the schedule"
    )]
    TimeZonePrefix {
        /// The text up to the first space.
        prefix: String,
    },

    /// The zone in a `CRON_TZ=`/`TZ=` prefix is not in the time zone database.
    #[error("unknown time zone {name:?} in the {prefix}= prefix")]
    UnknownTimeZone {
        /// The zone name as written.
        name: String,
        /// `CRON_TZ` or `TZ`.
        prefix: &'static str,
        /// The database's answer.
        #[source]
        source: jiff::Error,
    },

    /// A data class name that is not `critical`, `important` or `archival`.
    #[error("unknown data class {value:?}; expected critical, important or archival")]
    UnknownDataClass {
        /// The name as given.
        value: String,
    },
}

/// What is wrong with one cron field (see [`Error::Field`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldProblem {
    /// `1,,2`, a leading or trailing comma.
    #[error("it has an empty list item")]
    EmptyItem,
    /// Not a decimal number (nor, where names are allowed, a name).
    #[error("{text:?} is not a number{}", if *names { " or a name" } else { "" })]
    NotANumber {
        /// The offending text.
        text: String,
        /// Whether names (`JAN`, `MON`) would have been accepted here.
        names: bool,
    },
    /// A number below the field's minimum.
    #[error("{value} is below the minimum {min}")]
    BelowMinimum {
        /// The number as written.
        value: String,
        /// The field's minimum.
        min: u32,
    },
    /// A number above the field's maximum.
    #[error("{value} is above the maximum {max}")]
    AboveMaximum {
        /// The number as written.
        value: String,
        /// The field's maximum.
        max: u32,
    },
    /// `5-1`.
    #[error("the range {start}-{end} runs backwards")]
    Backwards {
        /// The range's start.
        start: u32,
        /// The range's end.
        end: u32,
    },
    /// `*/0`.
    #[error("the step must be a positive number")]
    ZeroStep,
    /// `1-2-3`.
    #[error("{item:?} has more than one '-'")]
    TooManyHyphens {
        /// The list item.
        item: String,
    },
    /// `*/2/3`.
    #[error("{item:?} has more than one '/'")]
    TooManySlashes {
        /// The list item.
        item: String,
    },
    /// `*-5`: robfig/cron silently reads this as `*`; rejected here as the mistake it is.
    #[error("{item:?}: '*' and '?' cannot start a range")]
    StarRange {
        /// The list item.
        item: String,
    },
}
