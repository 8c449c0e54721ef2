//! Password-wrapped key files (`keys/<id>`); the JSON layout is specified in the crate docs.

use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::SystemRandom;
use zeroize::Zeroizing;

use crate::master::fill_random;
use crate::{Error, MasterKey, Result};

/// Key file format version written by this build.
const KEYFILE_VERSION: u32 = 1;
/// The only key derivation function key files use.
const KDF_NAME: &str = "argon2id";
/// AEAD associated data of the wrapped master key of a full-access key file.
const KEYFILE_AAD: &[u8] = b"arca keyfile v1";
/// AEAD associated data of the wrapped master key of an append-only key file:
/// the flag is authenticated, so removing `append_only` from the JSON makes
/// the key file fail to open instead of granting full access.
const KEYFILE_AAD_APPEND_ONLY: &[u8] = b"arca keyfile v1 append-only";
/// Length of the Argon2id salt.
const SALT_LEN: usize = 32;
/// AES-GCM tag after the wrapped master key.
const TAG_LEN: usize = 16;

/// Bounds on untrusted Argon2id parameters. The upper bounds stop a crafted key
/// file from making `open` allocate or spin without limit; the lower bound is
/// Argon2's own minimum (8 KiB per lane).
const MIN_M_COST_KIB: u32 = 8;
const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 64;

/// Argon2id cost parameters, stored in every key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 iterations, 4 lanes: RFC 9106's second recommended
    /// setting. The lanes are computed in parallel, so opening a key file
    /// takes about 0.3 s of CPU but only a half or a quarter of that on two or
    /// four cores (`cargo bench -p arca-benches --bench crypto key_file`).
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 4,
        }
    }
}

impl KdfParams {
    /// Checked constructor: memory in 8 KiB..=4 GiB (at least 8 KiB per lane),
    /// 1..=64 iterations, 1..=64 lanes.
    pub fn new(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Result<Self> {
        let params = KdfParams {
            m_cost_kib,
            t_cost,
            p_cost,
        };
        params.validate()?;
        Ok(params)
    }

    /// [`Error::Kdf`] unless the parameters are within the bounds of [`KdfParams::new`].
    pub fn validate(&self) -> Result<()> {
        self.out_of_bounds()
            .map_or(Ok(()), |reason| Err(Error::Kdf(reason)))
    }

    /// Why the parameters are unacceptable, if they are.
    fn out_of_bounds(&self) -> Option<String> {
        let KdfParams {
            m_cost_kib,
            t_cost,
            p_cost,
        } = *self;
        if !(MIN_M_COST_KIB..=MAX_M_COST_KIB).contains(&m_cost_kib) {
            return Some(format!(
                "memory cost {m_cost_kib} KiB is outside {MIN_M_COST_KIB}..={MAX_M_COST_KIB} KiB (8 KiB to 4 GiB)"
            ));
        }
        if !(1..=MAX_T_COST).contains(&t_cost) {
            return Some(format!("time cost {t_cost} is outside 1..={MAX_T_COST}"));
        }
        if !(1..=MAX_P_COST).contains(&p_cost) {
            return Some(format!("parallelism {p_cost} is outside 1..={MAX_P_COST}"));
        }
        if m_cost_kib < MIN_M_COST_KIB * p_cost {
            return Some(format!(
                "memory cost {m_cost_kib} KiB is below Argon2's minimum of {MIN_M_COST_KIB} KiB per lane for {p_cost} lanes"
            ));
        }
        None
    }

    /// The key-encryption key: Argon2id(password, salt) with these parameters.
    fn derive_kek(&self, password: &[u8], salt: &[u8; SALT_LEN]) -> Result<LessSafeKey> {
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| Error::Kdf(e.to_string()))?;
        // Our own working memory, so it can be wiped: every block is derived
        // from the password and the last one yields the key.
        let mut memory = Zeroizing::new(vec![Block::default(); params.block_count()]);
        let mut kek = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into_with_memory(password, salt, kek.as_mut(), memory.as_mut_slice())
            .map_err(|e| Error::Kdf(e.to_string()))?;
        let key = UnboundKey::new(&AES_256_GCM, kek.as_ref()).expect("32 bytes is an AES-256 key");
        Ok(LessSafeKey::new(key))
    }
}

/// What a key file's holder may do with the repository.
///
/// The flag is authenticated (bound into the wrapped key's associated data),
/// but it is a promise kept by Arca's own code: the holder of any key file
/// holds the master key. The real enforcement is storage permissions that
/// refuse deletes and overwrites (see docs/FORMAT.md, "Append-only clients").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAccess {
    /// Everything: back up, restore, forget, prune, manage keys and holds.
    #[default]
    Full,
    /// Back up, list and restore only; Arca refuses forget, prune, key
    /// changes and hold release.
    AppendOnly,
}

impl KeyAccess {
    fn associated_data(self) -> &'static [u8] {
        match self {
            KeyAccess::Full => KEYFILE_AAD,
            KeyAccess::AppendOnly => KEYFILE_AAD_APPEND_ONLY,
        }
    }
}

/// A password-wrapped copy of the master key (`keys/<id>`), plaintext JSON on disk.
///
/// Every value of this type has passed validation: parameters within bounds,
/// a 32-byte salt and a wrapped key long enough to hold a nonce and tag.
/// Deserialising it with serde applies the same checks as [`KeyFile::from_bytes`].
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(into = "KeyFileJson", try_from = "KeyFileJson")]
pub struct KeyFile {
    created: i64,
    hostname: String,
    username: String,
    params: KdfParams,
    salt: [u8; SALT_LEN],
    access: KeyAccess,
    /// `nonce [12] | AES-256-GCM(master key material) | tag [16]`.
    wrapped: Vec<u8>,
}

/// The on-disk JSON, before validation.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct KeyFileJson {
    version: u32,
    created: i64,
    hostname: String,
    username: String,
    kdf: String,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
    data: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    append_only: bool,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("created", &self.created)
            .field("hostname", &self.hostname)
            .field("username", &self.username)
            .field("params", &self.params)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl KeyFile {
    /// Wraps `master` under `password`.
    ///
    /// Runs Argon2id with `params` (validated first, [`Error::Kdf`] if out of
    /// bounds), so this takes as long as opening the key file will.
    pub fn create(
        master: &MasterKey,
        password: &[u8],
        params: KdfParams,
        hostname: &str,
        username: &str,
    ) -> Result<Self> {
        KeyFile::create_with_access(
            master,
            password,
            params,
            hostname,
            username,
            KeyAccess::Full,
        )
    }

    /// [`KeyFile::create`] for a key file with the given [`KeyAccess`].
    pub fn create_with_access(
        master: &MasterKey,
        password: &[u8],
        params: KdfParams,
        hostname: &str,
        username: &str,
        access: KeyAccess,
    ) -> Result<Self> {
        params.validate()?;
        let rng = SystemRandom::new();
        let mut salt = [0u8; SALT_LEN];
        fill_random(&rng, &mut salt)?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&rng, &mut nonce)?;
        let kek = params.derive_kek(password, &salt)?;

        let material = master.to_material();
        let mut wrapped = Vec::with_capacity(NONCE_LEN + material.len() + TAG_LEN);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&material);
        let tag = kek
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(access.associated_data()),
                &mut wrapped[NONCE_LEN..],
            )
            .expect("master key material is far below AES-GCM's message limit");
        wrapped.extend_from_slice(tag.as_ref());

        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
            });
        Ok(KeyFile {
            created,
            hostname: hostname.to_owned(),
            username: username.to_owned(),
            params,
            salt,
            access,
            wrapped,
        })
    }

    /// Unwraps the master key; [`crate::Error::WrongPassword`] if the password does not match.
    ///
    /// A corrupted key file is indistinguishable from a wrong password and
    /// also gives [`Error::WrongPassword`].
    pub fn open(&self, password: &[u8]) -> Result<MasterKey> {
        let kek = self.params.derive_kek(password, &self.salt)?;
        let (nonce, ciphertext_and_tag) = self.wrapped.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("split at NONCE_LEN");
        let mut material = Zeroizing::new(ciphertext_and_tag.to_vec());
        let material = kek
            .open_in_place(
                nonce,
                Aad::from(self.access.associated_data()),
                &mut material,
            )
            .map_err(|_| Error::WrongPassword)?;
        MasterKey::from_material(material)
    }

    /// Serialises to the on-disk bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("strings and integers always serialise to JSON")
    }

    /// Parses on-disk bytes (untrusted input).
    ///
    /// Rejects out-of-bounds KDF parameters with [`Error::Malformed`] without
    /// running the KDF, so a crafted file cannot exhaust memory or CPU.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let json: KeyFileJson = serde_json::from_slice(bytes).map_err(|e| Error::Malformed {
            what: "key file",
            reason: e.to_string(),
        })?;
        KeyFile::try_from(json)
    }

    /// The Argon2id parameters this key file was wrapped with.
    pub fn params(&self) -> KdfParams {
        self.params
    }

    /// When the key file was created, in seconds since the Unix epoch.
    pub fn created(&self) -> i64 {
        self.created
    }

    /// What the key file's holder may do (authenticated: see [`KeyAccess`]).
    pub fn access(&self) -> KeyAccess {
        self.access
    }

    /// Host name recorded at creation (informational, not authenticated).
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// User name recorded at creation (informational, not authenticated).
    pub fn username(&self) -> &str {
        &self.username
    }
}

impl From<KeyFile> for KeyFileJson {
    fn from(file: KeyFile) -> Self {
        KeyFileJson {
            version: KEYFILE_VERSION,
            created: file.created,
            hostname: file.hostname,
            username: file.username,
            kdf: KDF_NAME.to_owned(),
            m_cost_kib: file.params.m_cost_kib,
            t_cost: file.params.t_cost,
            p_cost: file.params.p_cost,
            salt: BASE64.encode(file.salt),
            data: BASE64.encode(&file.wrapped),
            append_only: file.access == KeyAccess::AppendOnly,
        }
    }
}

impl TryFrom<KeyFileJson> for KeyFile {
    type Error = Error;

    fn try_from(json: KeyFileJson) -> Result<Self> {
        let malformed = |reason: String| Error::Malformed {
            what: "key file",
            reason,
        };
        if json.version != KEYFILE_VERSION {
            return Err(malformed(format!(
                "unknown version {}; this build of arca reads version {KEYFILE_VERSION} (upgrade arca?)",
                json.version
            )));
        }
        if json.kdf != KDF_NAME {
            return Err(malformed(format!(
                "unknown kdf {:?}; only {KDF_NAME:?} is supported",
                json.kdf
            )));
        }
        let params = KdfParams {
            m_cost_kib: json.m_cost_kib,
            t_cost: json.t_cost,
            p_cost: json.p_cost,
        };
        if let Some(reason) = params.out_of_bounds() {
            return Err(malformed(reason));
        }
        let salt = BASE64
            .decode(&json.salt)
            .map_err(|e| malformed(format!("salt is not base64: {e}")))?;
        let salt: [u8; SALT_LEN] = salt.try_into().map_err(|salt: Vec<u8>| {
            malformed(format!("salt is {} bytes, expected {SALT_LEN}", salt.len()))
        })?;
        let wrapped = BASE64
            .decode(&json.data)
            .map_err(|e| malformed(format!("data is not base64: {e}")))?;
        if wrapped.len() < NONCE_LEN + TAG_LEN {
            return Err(malformed(format!(
                "data is {} bytes, too short for a {NONCE_LEN}-byte nonce and {TAG_LEN}-byte tag",
                wrapped.len()
            )));
        }
        Ok(KeyFile {
            created: json.created,
            hostname: json.hostname,
            username: json.username,
            params,
            salt,
            access: if json.append_only {
                KeyAccess::AppendOnly
            } else {
                KeyAccess::Full
            },
            wrapped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> KdfParams {
        KdfParams::new(MIN_M_COST_KIB, 1, 1).unwrap()
    }

    #[test]
    fn the_append_only_flag_is_authenticated() {
        let master = MasterKey::generate().unwrap();
        let file =
            KeyFile::create_with_access(&master, b"pw", cheap(), "h", "u", KeyAccess::AppendOnly)
                .unwrap();
        let bytes = file.to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["append_only"], true);
        let back = KeyFile::from_bytes(&bytes).unwrap();
        assert_eq!(back.access(), KeyAccess::AppendOnly);
        assert_eq!(
            back.open(b"pw").unwrap().content_id(b"x"),
            master.content_id(b"x")
        );
        // Stripping the flag does not grant full access: the key no longer opens.
        let mut stripped = json.clone();
        stripped.as_object_mut().unwrap().remove("append_only");
        let stripped = KeyFile::from_bytes(&serde_json::to_vec(&stripped).unwrap()).unwrap();
        assert_eq!(stripped.access(), KeyAccess::Full);
        assert!(matches!(stripped.open(b"pw"), Err(Error::WrongPassword)));
        // Nor does adding it to a full-access key file.
        let full = KeyFile::create(&master, b"pw", cheap(), "h", "u").unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&full.to_bytes()).unwrap();
        assert!(json.get("append_only").is_none());
        json["append_only"] = true.into();
        let flagged = KeyFile::from_bytes(&serde_json::to_vec(&json).unwrap()).unwrap();
        assert!(matches!(flagged.open(b"pw"), Err(Error::WrongPassword)));
    }

    #[test]
    fn params_bounds() {
        assert_eq!(
            KdfParams::default(),
            KdfParams {
                m_cost_kib: 65536,
                t_cost: 3,
                p_cost: 4
            }
        );
        assert!(KdfParams::default().validate().is_ok());
        assert!(KdfParams::new(MIN_M_COST_KIB, 1, 1).is_ok());
        assert!(KdfParams::new(MAX_M_COST_KIB, MAX_T_COST, MAX_P_COST).is_ok());
        for (m, t, p) in [
            (MIN_M_COST_KIB - 1, 1, 1),
            (MAX_M_COST_KIB + 1, 1, 1),
            (MIN_M_COST_KIB, 0, 1),
            (MIN_M_COST_KIB, MAX_T_COST + 1, 1),
            (MIN_M_COST_KIB, 1, 0),
            (MIN_M_COST_KIB, 1, MAX_P_COST + 1),
            (MIN_M_COST_KIB * 4 - 1, 1, 4),
        ] {
            assert!(
                matches!(KdfParams::new(m, t, p), Err(Error::Kdf(_))),
                "{m} {t} {p}"
            );
        }
    }
}
