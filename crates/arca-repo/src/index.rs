//! TODO(owner): see the crate contract.
