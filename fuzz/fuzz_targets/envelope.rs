#![no_main]
//! Fuzz target: opening arbitrary bytes as an object envelope, or as a blob
//! under a pack's blob key (pack format 2), never panics (and, since they
//! carry no valid tag, never succeeds); sealing the same bytes either way
//! and opening the result gives them back.
//!
//! The key is generated once per process. Results do not depend on which key
//! it is: the header checks are key-independent and forging a tag is not
//! something the fuzzer can do.

use std::sync::OnceLock;

use arca_crypto::{BlobKey, MasterKey, ObjectKind};
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
static BLOB_KEY: OnceLock<BlobKey> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let key = KEY.get_or_init(|| MasterKey::generate().expect("OS random number generator"));
    let kind = KINDS[data.first().map_or(0, |&b| usize::from(b) % KINDS.len())];
    assert!(key.open(kind, data).is_err(), "arbitrary bytes opened");
    let sealed = key.seal(kind, data).expect("seal");
    assert_eq!(key.open(kind, &sealed).expect("own envelope opens"), data);
    let blob_key =
        BLOB_KEY.get_or_init(|| key.fresh_blob_key().expect("OS random number generator"));
    assert!(
        blob_key.open(kind, data).is_err(),
        "arbitrary bytes opened as a blob"
    );
    let mut blob = Vec::new();
    blob_key
        .seal_into(kind, data, &mut blob)
        .expect("seal a blob");
    assert_eq!(blob_key.open(kind, &blob).expect("own blob opens"), data);
    let reader = key
        .blob_key(blob_key.id())
        .expect("the key holds the data key");
    assert_eq!(
        reader.open(kind, &blob).expect("a reader's key opens it"),
        data
    );
});
