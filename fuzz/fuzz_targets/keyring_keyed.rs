#![no_main]
//! Fuzz target: a keyring in the keyring-key format (magic, keyring key id,
//! then arbitrary bytes) that names the adopting key's own keyring key is
//! opened and must be refused (it carries no valid tag) without a panic or
//! a change to the key; the key's own sealed keyring is still adopted.

use std::sync::OnceLock;

use arca_crypto::MasterKey;
use libfuzzer_sys::fuzz_target;

/// The key and its own keyring's prefix: magic [8] and keyring key id [16].
static KEY: OnceLock<(MasterKey, Vec<u8>)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (key, prefix) = KEY.get_or_init(|| {
        let key = MasterKey::generate().expect("OS random number generator");
        let prefix = key.keyring(1).expect("seal a keyring")[..24].to_vec();
        (key, prefix)
    });
    let mut crafted = prefix.clone();
    crafted.extend_from_slice(data);
    let mut adopting = key.duplicate().expect("duplicate");
    assert!(
        adopting.adopt_keyrings(&[&crafted]).is_err(),
        "crafted keyring adopted"
    );
    assert_eq!(adopting.data_key_ids(), key.data_key_ids());
    let own = key.keyring(2).expect("seal a keyring");
    assert_eq!(
        adopting
            .adopt_keyrings(&[&own])
            .expect("own keyring")
            .generation,
        2
    );
});
