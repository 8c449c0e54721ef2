//! Data classes and the RPO check.

use std::fmt;
use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};

use crate::error::Error;

/// How much an object's data matters, with the mission's recovery objectives as defaults.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DataClass {
    /// Databases, configuration, user content: RPO 1 h, RTO 15 min.
    Critical,
    /// Logs, metrics, caches, development data: RPO 4 h, RTO 1 h.
    Important,
    /// Historical data, audit trails, static content: RPO 24 h, RTO 4 h.
    Archival,
}

impl DataClass {
    /// All classes, most important first.
    pub const ALL: [DataClass; 3] = [
        DataClass::Critical,
        DataClass::Important,
        DataClass::Archival,
    ];

    /// Recovery point objective: the most data, in time, the object may lose.
    pub fn rpo(self) -> SignedDuration {
        match self {
            DataClass::Critical => SignedDuration::from_hours(1),
            DataClass::Important => SignedDuration::from_hours(4),
            DataClass::Archival => SignedDuration::from_hours(24),
        }
    }

    /// Recovery time objective: how long a restore may take.
    pub fn rto(self) -> SignedDuration {
        match self {
            DataClass::Critical => SignedDuration::from_mins(15),
            DataClass::Important => SignedDuration::from_hours(1),
            DataClass::Archival => SignedDuration::from_hours(4),
        }
    }

    /// The lower-case name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            DataClass::Critical => "critical",
            DataClass::Important => "important",
            DataClass::Archival => "archival",
        }
    }
}

impl fmt::Display for DataClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DataClass {
    type Err = Error;

    /// The serde names exactly: `critical`, `important`, `archival`.
    fn from_str(value: &str) -> Result<DataClass, Error> {
        DataClass::ALL
            .into_iter()
            .find(|class| class.as_str() == value)
            .ok_or_else(|| Error::UnknownDataClass {
                value: value.to_owned(),
            })
    }
}

/// A recovery point objective: a class's default or a custom duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rpo(pub SignedDuration);

impl From<DataClass> for Rpo {
    fn from(class: DataClass) -> Rpo {
        Rpo(class.rpo())
    }
}

impl From<SignedDuration> for Rpo {
    fn from(duration: SignedDuration) -> Rpo {
        Rpo(duration)
    }
}

/// Whether an object is within its RPO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RpoStatus {
    /// The last success is at most one RPO old (a backup exactly one RPO old is still within).
    pub within: bool,
    /// When the RPO is (or was) breached: last success + RPO. `None` if there never was a success.
    pub breaches_at: Option<Timestamp>,
    /// How long ago the breach happened; `None` while within, and for an object never backed up
    /// (which is out of its RPO by an unknown amount).
    pub overdue_by: Option<SignedDuration>,
}

impl RpoStatus {
    /// Evaluates `rpo` (a [`DataClass`] or a [`SignedDuration`]) against the last successful
    /// backup at `now`.
    pub fn evaluate(
        rpo: impl Into<Rpo>,
        last_success: Option<Timestamp>,
        now: Timestamp,
    ) -> RpoStatus {
        let Rpo(rpo) = rpo.into();
        let Some(last_success) = last_success else {
            return RpoStatus {
                within: false,
                breaches_at: None,
                overdue_by: None,
            };
        };
        let breaches_at = last_success.saturating_add(rpo).unwrap_or(Timestamp::MAX);
        let within = now <= breaches_at;
        RpoStatus {
            within,
            breaches_at: Some(breaches_at),
            overdue_by: (!within).then(|| now.duration_since(breaches_at)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn defaults_are_the_missions() {
        let table = [
            (DataClass::Critical, "critical", 60, 15),
            (DataClass::Important, "important", 240, 60),
            (DataClass::Archival, "archival", 1440, 240),
        ];
        for (class, name, rpo_mins, rto_mins) in table {
            assert_eq!(class.rpo(), SignedDuration::from_mins(rpo_mins));
            assert_eq!(class.rto(), SignedDuration::from_mins(rto_mins));
            assert_eq!(class.to_string(), name);
            assert_eq!(name.parse::<DataClass>().unwrap(), class);
            assert_eq!(
                serde_json::to_string(&class).unwrap(),
                format!("\"{name}\"")
            );
            assert_eq!(
                serde_json::from_str::<DataClass>(&format!("\"{name}\"")).unwrap(),
                class
            );
        }
        let err = "Critical".parse::<DataClass>().unwrap_err();
        assert!(err.to_string().contains("\"Critical\""), "{err}");
        assert!(serde_json::from_str::<DataClass>("\"gold\"").is_err());
    }

    #[test]
    fn rpo_status() {
        let last = ts("2026-01-01T00:00:00Z");
        let within =
            RpoStatus::evaluate(DataClass::Critical, Some(last), ts("2026-01-01T00:59:00Z"));
        assert_eq!(
            within,
            RpoStatus {
                within: true,
                breaches_at: Some(ts("2026-01-01T01:00:00Z")),
                overdue_by: None
            }
        );
        let edge = RpoStatus::evaluate(DataClass::Critical, Some(last), ts("2026-01-01T01:00:00Z"));
        assert!(edge.within);
        let late =
            RpoStatus::evaluate(DataClass::Important, Some(last), ts("2026-01-01T04:30:00Z"));
        assert_eq!(
            late,
            RpoStatus {
                within: false,
                breaches_at: Some(ts("2026-01-01T04:00:00Z")),
                overdue_by: Some(SignedDuration::from_mins(30)),
            }
        );
        let custom = RpoStatus::evaluate(
            SignedDuration::from_mins(10),
            Some(last),
            ts("2026-01-01T00:11:00Z"),
        );
        assert_eq!(custom.overdue_by, Some(SignedDuration::from_mins(1)));
        let never = RpoStatus::evaluate(DataClass::Archival, None, last);
        assert_eq!(
            never,
            RpoStatus {
                within: false,
                breaches_at: None,
                overdue_by: None
            }
        );
    }
}
