//! restic's encryption: AES-256-CTR with a random 16-byte IV, authenticated
//! by Poly1305-AES over the ciphertext (encrypt-then-MAC), and scrypt key files
//! that wrap the master key (restic's `doc/design.rst`, "Keys, Encryption and MAC").

use aes::cipher::{BlockEncrypt, KeyInit, KeyIvInit, StreamCipher};
use base64::Engine as _;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Error, Result};

/// Bytes of the IV in front of every encrypted object.
pub const IV_LEN: usize = 16;
/// Bytes of the MAC behind every encrypted object.
pub const MAC_LEN: usize = 16;
/// What encryption adds to a plaintext.
pub const OVERHEAD: usize = IV_LEN + MAC_LEN;

/// Largest scrypt memory (`128 · r · N` bytes) a key file may ask for. restic
/// calibrates to at most 60 MiB; this leaves room without letting a hostile
/// key file exhaust memory.
const SCRYPT_MAX_MEMORY: u64 = 1 << 30;
/// Largest scrypt parallelism accepted (restic writes 1).
const SCRYPT_MAX_P: u32 = 16;

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// restic's master key: the AES-256 encryption key and the Poly1305-AES MAC
/// key (`k` for AES-128 of the nonce, `r` for the polynomial). Never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    encrypt: [u8; 32],
    mac_k: [u8; 16],
    mac_r: [u8; 16],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A key from its parts (64 bytes of scrypt output, or a decoded key file).
    pub fn from_parts(encrypt: [u8; 32], mac_k: [u8; 16], mac_r: [u8; 16]) -> Self {
        MasterKey {
            encrypt,
            mac_k,
            mac_r,
        }
    }

    fn mac(&self, iv: &[u8; IV_LEN], ciphertext: &[u8]) -> [u8; MAC_LEN] {
        let mut s = aes::cipher::generic_array::GenericArray::clone_from_slice(iv);
        aes::Aes128::new(&self.mac_k.into()).encrypt_block(&mut s);
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(&self.mac_r);
        key[16..].copy_from_slice(&s);
        let tag = poly1305::Poly1305::new(&key.into()).compute_unpadded(ciphertext);
        key.zeroize();
        tag.into()
    }

    /// Authenticates and decrypts `IV ‖ ciphertext ‖ MAC`. `what` names the
    /// object in the error.
    pub fn open(&self, what: &dyn std::fmt::Display, sealed: &[u8]) -> Result<Vec<u8>> {
        let unauthenticated = || Error::Unauthenticated {
            what: what.to_string(),
        };
        if sealed.len() < OVERHEAD {
            return Err(unauthenticated());
        }
        let (iv, rest) = sealed.split_at(IV_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - MAC_LEN);
        let iv: &[u8; IV_LEN] = iv.try_into().expect("split at IV_LEN");
        let expected = self.mac(iv, ciphertext);
        // Constant time: every byte is compared whatever the first difference.
        let diff = expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(unauthenticated());
        }
        let mut plaintext = ciphertext.to_vec();
        Aes256Ctr::new(&self.encrypt.into(), iv.into()).apply_keystream(&mut plaintext);
        Ok(plaintext)
    }

    /// Encrypts `plaintext` under `iv` (restic draws a random one per object):
    /// the inverse of [`MasterKey::open`], for tests and test fixtures.
    pub fn seal(&self, iv: [u8; IV_LEN], plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&iv);
        let start = out.len();
        out.extend_from_slice(plaintext);
        Aes256Ctr::new(&self.encrypt.into(), (&iv).into()).apply_keystream(&mut out[start..]);
        let tag = self.mac(&iv, &out[start..]);
        out.extend_from_slice(&tag);
        out
    }
}

/// A key file in `keys/` (plaintext JSON): scrypt parameters and the master
/// key encrypted under the key scrypt derives from the password.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct KeyFile {
    /// When the key was added (RFC 3339).
    #[serde(default)]
    pub created: Option<String>,
    /// Who added it.
    #[serde(default)]
    pub username: String,
    /// Where it was added.
    #[serde(default)]
    pub hostname: String,
    /// Key derivation function; restic only writes `scrypt`.
    pub kdf: String,
    /// scrypt's cost N (a power of two).
    #[serde(rename = "N")]
    pub n: u64,
    /// scrypt's block size r.
    pub r: u32,
    /// scrypt's parallelism p.
    pub p: u32,
    /// Salt, standard base64.
    pub salt: String,
    /// The encrypted master key, standard base64.
    pub data: String,
}

/// The master key's JSON inside a key file's `data`.
#[derive(serde::Deserialize)]
struct MasterKeyJson {
    mac: MacKeyJson,
    encrypt: String,
}

#[derive(serde::Deserialize)]
struct MacKeyJson {
    k: String,
    r: String,
}

fn base64_array<const N: usize>(what: &str, text: &str) -> Result<[u8; N]> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| Error::corrupt(what, e))?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| Error::corrupt(what, format!("expected {N} bytes, got {}", bytes.len())))
}

impl KeyFile {
    /// Parses a key file (untrusted input) and checks its parameters, before
    /// any expensive key derivation.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let key: KeyFile =
            serde_json::from_slice(bytes).map_err(|e| Error::corrupt("key file", e))?;
        key.scrypt_params()?;
        Ok(key)
    }

    fn scrypt_params(&self) -> Result<scrypt::Params> {
        let bad = |reason: String| Error::Unsupported {
            what: "key file".into(),
            reason,
        };
        if self.kdf != "scrypt" {
            return Err(bad(format!("key derivation {:?} (only scrypt)", self.kdf)));
        }
        if self.n < 2 || !self.n.is_power_of_two() {
            return Err(bad(format!("scrypt N = {} is not a power of two", self.n)));
        }
        let memory = 128u64
            .saturating_mul(u64::from(self.r))
            .saturating_mul(self.n);
        if self.r == 0 || memory > SCRYPT_MAX_MEMORY {
            return Err(bad(format!(
                "scrypt N = {}, r = {} needs more than {} MiB",
                self.n,
                self.r,
                SCRYPT_MAX_MEMORY >> 20
            )));
        }
        if self.p == 0 || self.p > SCRYPT_MAX_P {
            return Err(bad(format!("scrypt p = {} is out of range", self.p)));
        }
        scrypt::Params::new(self.n.trailing_zeros() as u8, self.r, self.p, 64)
            .map_err(|e| bad(format!("scrypt parameters: {e}")))
    }

    /// Derives the key from `password` (CPU- and memory-heavy: call it off the
    /// async runtime) and decrypts the master key. A failed MAC is
    /// [`Error::WrongPassword`].
    pub fn open(&self, password: &[u8]) -> Result<MasterKey> {
        let params = self.scrypt_params()?;
        let salt = base64::engine::general_purpose::STANDARD
            .decode(&self.salt)
            .map_err(|e| Error::corrupt("key file salt", e))?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(&self.data)
            .map_err(|e| Error::corrupt("key file data", e))?;
        let mut derived = [0u8; 64];
        scrypt::scrypt(password, &salt, &params, &mut derived)
            .expect("64 bytes is a valid scrypt output length");
        let user_key = MasterKey::from_parts(
            derived[..32].try_into().expect("32 bytes"),
            derived[32..48].try_into().expect("16 bytes"),
            derived[48..].try_into().expect("16 bytes"),
        );
        derived.zeroize();
        let mut plaintext = user_key
            .open(&"key file", &data)
            .map_err(|_| Error::WrongPassword)?;
        let parsed: std::result::Result<MasterKeyJson, _> = serde_json::from_slice(&plaintext);
        plaintext.zeroize();
        let json = parsed.map_err(|e| Error::corrupt("master key in key file", e))?;
        Ok(MasterKey::from_parts(
            base64_array("master encryption key", &json.encrypt)?,
            base64_array("master MAC key k", &json.mac.k)?,
            base64_array("master MAC key r", &json.mac.r)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(seed: u8) -> MasterKey {
        MasterKey::from_parts(
            [seed; 32],
            [seed.wrapping_add(1); 16],
            [seed.wrapping_add(2); 16],
        )
    }

    /// RFC 8439's Poly1305 test vector, through the AES step restic puts in
    /// front: with `s` known, the tag must match the RFC's.
    #[test]
    fn poly1305_matches_rfc8439() {
        let r: [u8; 16] = hex::decode("85d6be7857556d337f4452fe42d506a8")
            .unwrap()
            .try_into()
            .unwrap();
        let s = hex::decode("0103808afb0db2fd4abff6af4149f51b").unwrap();
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(&r);
        key[16..].copy_from_slice(&s);
        let tag = poly1305::Poly1305::new(&key.into())
            .compute_unpadded(b"Cryptographic Forum Research Group");
        assert_eq!(
            hex::encode(tag),
            "a8061dc1305136c6c22b8baf0c0127a9",
            "the poly1305 crate computes RFC 8439's tag"
        );
    }

    #[test]
    fn tampering_anywhere_fails_authentication() {
        let key = key(7);
        let sealed = key.seal([3; 16], b"hello restic");
        assert_eq!(key.open(&"x", &sealed).unwrap(), b"hello restic");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(matches!(
                key.open(&"x", &bad),
                Err(Error::Unauthenticated { .. })
            ));
        }
        assert!(key.open(&"x", &sealed[..OVERHEAD - 1]).is_err());
        assert!(key2_fails(&sealed));
    }

    fn key2_fails(sealed: &[u8]) -> bool {
        key(8).open(&"x", sealed).is_err()
    }

    #[test]
    fn key_file_parameters_are_checked_before_derivation() {
        let file = |n: u64, r: u32, p: u32| {
            format!(r#"{{"kdf":"scrypt","N":{n},"r":{r},"p":{p},"salt":"","data":""}}"#)
        };
        assert!(KeyFile::decode(file(16384, 8, 1).as_bytes()).is_ok());
        for bad in [
            file(1000, 8, 1),
            file(1 << 30, 8, 1),
            file(1024, 0, 1),
            file(1024, 8, 0),
        ] {
            assert!(KeyFile::decode(bad.as_bytes()).is_err(), "{bad}");
        }
        assert!(KeyFile::decode(br#"{"kdf":"argon2id"}"#).is_err());
    }

    proptest! {
        #[test]
        fn seal_open_round_trips(plain in proptest::collection::vec(any::<u8>(), 0..300), iv in any::<[u8; 16]>(), seed in any::<u8>()) {
            let key = key(seed);
            let sealed = key.seal(iv, &plain);
            prop_assert_eq!(sealed.len(), plain.len() + OVERHEAD);
            prop_assert_eq!(key.open(&"x", &sealed).unwrap(), plain);
        }

        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = key(1).open(&"x", &bytes);
        }
    }
}
