//! TODO(owner): see the crate contract.
/// Placeholder until the repository layer lands.
#[derive(Debug)]
pub struct Repository;
