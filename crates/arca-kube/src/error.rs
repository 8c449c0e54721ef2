//! The crate's one error type.

/// What can go wrong in this crate: rendering CRDs, and specs the operator cannot act on (these
/// become the `Synchronizing` condition's message, so they name the field at fault).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A CRD could not be rendered as YAML.
    #[error("cannot render CRD {name} as YAML")]
    CrdYaml {
        /// The CRD's name.
        name: String,
        /// What the YAML encoder said.
        #[source]
        source: serde_norway::Error,
    },
    /// A schedule that does not parse.
    #[error("{field}: invalid schedule {expression:?}: {reason}")]
    InvalidSchedule {
        /// The field holding it (`spec.trigger.schedule`).
        field: &'static str,
        /// The expression.
        expression: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A duration that does not parse.
    #[error(
        "{field}: invalid duration {value:?} (expected a Go duration such as 90s, 15m or 1h30m)"
    )]
    InvalidDuration {
        /// The field holding it.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// A time that does not parse.
    #[error("{field}: invalid time {value:?} (expected RFC 3339)")]
    InvalidTime {
        /// The field holding it.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// A required field is missing or empty.
    #[error("{field} is required{reason}")]
    MissingField {
        /// The field.
        field: &'static str,
        /// When it is required (empty when always).
        reason: &'static str,
    },
    /// A field has a value the operator does not support.
    #[error("{field}: unsupported value {value:?}: {reason}")]
    Unsupported {
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// The repository Secret lacks a required key (only key names are ever reported, never values).
    #[error("Secret {secret} lacks the required key {key}")]
    SecretKeyMissing {
        /// The Secret's name.
        secret: String,
        /// The missing key.
        key: &'static str,
    },
    /// The agent's result document could not be read.
    #[error("the mover's result document is unreadable: {reason}")]
    ResultDocument {
        /// What is wrong with it (never its content).
        reason: String,
    },
    /// An object the sync needs does not exist.
    #[error("{kind} {name} not found")]
    NotFound {
        /// Its kind.
        kind: &'static str,
        /// Its name.
        name: String,
    },
}
