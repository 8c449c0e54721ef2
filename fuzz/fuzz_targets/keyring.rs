#![no_main]
//! Fuzz target: adopting arbitrary bytes as a keyring never panics, never
//! adds a key (they carry no valid tag; bytes that look like another keyring
//! key's keyring are left alone) and leaves the master key as it was; a
//! keyring the key itself sealed is still adopted afterwards.

use std::sync::OnceLock;

use arca_crypto::{MasterKey, ObjectKind};
use libfuzzer_sys::fuzz_target;

static KEY: OnceLock<MasterKey> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let key = KEY.get_or_init(|| MasterKey::generate().expect("OS random number generator"));
    let mut adopting = key.duplicate().expect("duplicate");
    let before = adopting.current_data_key_id();
    if let Ok(adopted) = adopting.adopt_keyrings(&[data]) {
        assert_eq!(adopted.foreign, 1, "arbitrary bytes adopted");
    }
    assert_eq!(adopting.current_data_key_id(), before);
    assert_eq!(adopting.data_key_ids(), key.data_key_ids());
    let sealed = key.seal(ObjectKind::Snapshot, data).expect("seal");
    assert_eq!(
        adopting
            .open(ObjectKind::Snapshot, &sealed)
            .expect("still opens"),
        data
    );
});
