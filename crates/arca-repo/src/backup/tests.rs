//! Tests of the backup pipeline that need its internals.
