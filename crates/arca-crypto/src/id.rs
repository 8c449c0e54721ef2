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

/// The value of each ASCII hex digit, either case; 0xff for any other byte.
const HEX_DIGITS: [u8; 256] = {
    let mut values = [0xff; 256];
    let mut digit = 0;
    while digit < 16 {
        let value = digit as u8;
        let lower = if value < 10 {
            b'0' + value
        } else {
            b'a' + value - 10
        };
        values[lower as usize] = value;
        values[lower.to_ascii_uppercase() as usize] = value;
        digit += 1;
    }
    values
};

impl FromStr for Id {
    type Err = crate::Error;
    /// Parses 64 hex digits. Decoding a parent snapshot's trees parses an ID
    /// per file: a table lookup per digit took about half the time of the
    /// `hex` crate's (issue 23).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = |reason: String| crate::Error::Malformed { what: "id", reason };
        let digits = s.as_bytes();
        if digits.len() != 64 {
            return Err(malformed(format!(
                "{} characters, not 64 hex digits",
                digits.len()
            )));
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            let high = HEX_DIGITS[usize::from(pair[0])];
            let low = HEX_DIGITS[usize::from(pair[1])];
            if (high | low) > 0xf {
                return Err(malformed(format!("{s:?} is not all hex digits")));
            }
            *byte = (high << 4) | low;
        }
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
        d.deserialize_str(IdVisitor)
    }
}

/// Parses the text where the deserializer has it (in the input itself, for
/// JSON without escapes), with no `String` per ID.
struct IdVisitor;

impl serde::de::Visitor<'_> for IdVisitor {
    type Value = Id;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ID of 64 hex digits")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Id, E> {
        text.parse().map_err(E::custom)
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

        #[test]
        fn ids_parse_from_their_hex_in_either_case(bytes in any::<[u8; 32]>()) {
            let id = Id(bytes);
            prop_assert_eq!(id.to_hex().parse::<Id>().unwrap(), id);
            prop_assert_eq!(id.to_hex().to_uppercase().parse::<Id>().unwrap(), id);
            let json = serde_json::to_string(&id).unwrap();
            prop_assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
        }

        #[test]
        fn only_64_hex_digits_parse(text in "[0-9a-fA-FgG/:@`ü]{0,66}") {
            let valid = text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
            prop_assert_eq!(text.parse::<Id>().is_ok(), valid);
            prop_assert_eq!(
                text.parse::<Id>().ok(),
                hex::decode(&text).ok().and_then(|bytes| bytes.try_into().ok()).map(Id)
            );
        }
    }

    #[test]
    fn an_id_deserializes_only_from_a_string() {
        let hex = "ab".repeat(32);
        assert_eq!(
            serde_json::from_str::<Id>(&format!("\"{hex}\"")).unwrap(),
            Id([0xab; 32])
        );
        // Escapes, which the input cannot lend, still parse.
        assert_eq!(
            serde_json::from_str::<Id>(&format!("\"\\u0061{}\"", &hex[1..])).unwrap(),
            Id([0xab; 32])
        );
        assert!(serde_json::from_str::<Id>("17").is_err());
        assert!(serde_json::from_str::<Id>(&format!("[\"{hex}\"]")).is_err());
    }
}
