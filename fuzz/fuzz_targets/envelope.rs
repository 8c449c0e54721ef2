#![no_main]
//! Fuzz target: opening arbitrary bytes as an envelope never panics (and,
//! since they carry no valid tag, never succeeds); sealing the same bytes and
//! opening the result gives them back.
//!
//! The key is generated once per process. Results do not depend on which key
//! it is: the header checks are key-independent and forging a tag is not
//! something the fuzzer can do.

use std::sync::OnceLock;

use arca_crypto::{MasterKey, ObjectKind};
use libfuzzer_sys::fuzz_target;

const KINDS: [ObjectKind; 7] = [
    ObjectKind::Config,
    ObjectKind::DataBlob,
    ObjectKind::TreeBlob,
    ObjectKind::PackHeader,
    ObjectKind::Index,
    ObjectKind::Snapshot,
    ObjectKind::Lock,
];

static KEY: OnceLock<MasterKey> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let key = KEY.get_or_init(|| MasterKey::generate().expect("OS random number generator"));
    let kind = KINDS[data.first().map_or(0, |&b| usize::from(b) % KINDS.len())];
    assert!(key.open(kind, data).is_err(), "arbitrary bytes opened");
    let sealed = key.seal(kind, data).expect("seal");
    assert_eq!(key.open(kind, &sealed).expect("own envelope opens"), data);
});
