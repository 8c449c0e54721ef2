use std::fmt;
use std::str::FromStr;

/// A 32-byte identifier: a keyed content ID of a blob or the storage ID of a file.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id(pub [u8; 32]);

impl Id {
    /// Unkeyed BLAKE3 of bytes *as stored* (i.e. ciphertext); names repository files.
    pub fn storage_id(stored_bytes: &[u8]) -> Self {
        Id(*blake3::hash(stored_bytes).as_bytes())
    }
    /// Lower-case hex of the whole ID.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    /// The first 8 hex characters, as shown to users.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

/// [`Id::storage_id`] of bytes that arrive in pieces (a pack written to
/// disk as it fills): the ID of their concatenation.
#[derive(Debug, Clone, Default)]
pub struct StorageIdHasher(blake3::Hasher);

impl StorageIdHasher {
    /// Adds the next piece.
    pub fn update(&mut self, stored_bytes: &[u8]) {
        self.0.update(stored_bytes);
    }
    /// The storage ID of every piece added so far, in order.
    pub fn id(&self) -> Id {
        Id(*self.0.finalize().as_bytes())
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

impl FromStr for Id {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|e| crate::Error::Malformed {
            what: "id",
            reason: e.to_string(),
        })?;
        Ok(Id(out))
    }
}

impl serde::Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn pieces_hash_to_the_storage_id_of_the_whole(
            bytes in prop::collection::vec(any::<u8>(), 0..5000),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut hasher = StorageIdHasher::default();
            let mut start = 0;
            for end in cuts.into_iter().chain([bytes.len()]) {
                hasher.update(&bytes[start..end]);
                start = end;
            }
            prop_assert_eq!(hasher.id(), Id::storage_id(&bytes));
        }
    }
}
