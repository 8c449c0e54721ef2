//! The envelope through the public API: round trips, tampering, kinds, rotation.

use arca_crypto::{Error, Id, MasterKey, ObjectKind, SEAL_OVERHEAD};
use proptest::prelude::*;

const KINDS: [ObjectKind; 7] = [
    ObjectKind::Config,
    ObjectKind::DataBlob,
    ObjectKind::TreeBlob,
    ObjectKind::PackHeader,
    ObjectKind::Index,
    ObjectKind::Snapshot,
    ObjectKind::Lock,
];

fn kind() -> impl Strategy<Value = ObjectKind> {
    prop::sample::select(KINDS.to_vec())
}

fn key() -> MasterKey {
    MasterKey::generate().unwrap()
}

proptest! {
    #[test]
    fn seal_then_open_round_trips(plaintext in prop::collection::vec(any::<u8>(), 0..4096), kind in kind()) {
        let key = key();
        let sealed = key.seal(kind, &plaintext).unwrap();
        prop_assert_eq!(sealed.len(), plaintext.len() + SEAL_OVERHEAD);
        prop_assert_eq!(key.open(kind, &sealed).unwrap(), plaintext);
    }

    #[test]
    fn seal_into_appends_after_existing_bytes(
        prefix in prop::collection::vec(any::<u8>(), 0..64),
        plaintext in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let key = key();
        let mut out = prefix.clone();
        key.seal_into(ObjectKind::DataBlob, &plaintext, &mut out).unwrap();
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        prop_assert_eq!(key.open(ObjectKind::DataBlob, &out[prefix.len()..]).unwrap(), plaintext);
    }

    #[test]
    fn seal_with_seals_what_the_writer_appends(
        prefix in prop::collection::vec(any::<u8>(), 0..64),
        plaintext in prop::collection::vec(any::<u8>(), 0..512),
        fail in any::<bool>(),
    ) {
        let key = key();
        let mut out = prefix.clone();
        let result: Result<usize, Error> = key.seal_with(ObjectKind::DataBlob, &mut out, |out| {
            out.extend_from_slice(&plaintext);
            if fail {
                return Err(Error::Random);
            }
            Ok(plaintext.len())
        });
        if fail {
            prop_assert!(result.is_err());
            prop_assert_eq!(out, prefix);
        } else {
            prop_assert_eq!(result.unwrap(), plaintext.len());
            prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
            prop_assert_eq!(key.open(ObjectKind::DataBlob, &out[prefix.len()..]).unwrap(), plaintext);
        }
    }

    #[test]
    fn any_bit_flip_is_rejected(plaintext in prop::collection::vec(any::<u8>(), 0..256), bit in any::<prop::sample::Index>()) {
        let key = key();
        let mut sealed = key.seal(ObjectKind::TreeBlob, &plaintext).unwrap();
        let bit = bit.index(sealed.len() * 8);
        sealed[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(key.open(ObjectKind::TreeBlob, &sealed).is_err());
    }

    #[test]
    fn truncation_is_rejected(plaintext in prop::collection::vec(any::<u8>(), 0..256), cut in any::<prop::sample::Index>()) {
        let key = key();
        let sealed = key.seal(ObjectKind::Index, &plaintext).unwrap();
        let len = cut.index(sealed.len());
        prop_assert!(key.open(ObjectKind::Index, &sealed[..len]).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_open(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        prop_assert!(key().open(ObjectKind::Snapshot, &bytes).is_err());
    }
}

#[test]
fn opening_as_another_kind_fails_authentication() {
    let key = key();
    for sealed_as in KINDS {
        let sealed = key
            .seal(sealed_as, b"a tree pretending to be data")
            .unwrap();
        for opened_as in KINDS {
            let result = key.open(opened_as, &sealed);
            if opened_as == sealed_as {
                assert!(result.is_ok());
            } else {
                assert!(
                    matches!(result, Err(Error::Authentication)),
                    "{sealed_as:?} as {opened_as:?}"
                );
            }
        }
    }
}

#[test]
fn another_repositorys_key_fails_authentication() {
    let sealed = key().seal(ObjectKind::Config, b"config").unwrap();
    // Both keyrings start at key id 0, so only the tag can tell them apart.
    assert!(matches!(
        key().open(ObjectKind::Config, &sealed),
        Err(Error::Authentication)
    ));
}

#[test]
fn sealing_twice_gives_different_envelopes() {
    let key = key();
    let a = key.seal(ObjectKind::DataBlob, b"same").unwrap();
    let b = key.seal(ObjectKind::DataBlob, b"same").unwrap();
    assert_ne!(a, b);
    // Salt and nonce both differ.
    assert_ne!(a[5..21], b[5..21]);
    assert_ne!(a[21..33], b[21..33]);
}

#[test]
fn header_layout_is_as_documented() {
    let mut key = key();
    let sealed = key.seal(ObjectKind::DataBlob, b"x").unwrap();
    assert_eq!(sealed[0], 1);
    assert_eq!(sealed[1..5], 0u32.to_le_bytes());
    key.rotate_data_key().unwrap();
    let sealed = key.seal(ObjectKind::DataBlob, b"x").unwrap();
    assert_eq!(sealed[1..5], 1u32.to_le_bytes());
}

#[test]
fn malformed_headers_are_named() {
    let key = key();
    let sealed = key.seal(ObjectKind::Lock, b"lock").unwrap();

    let short = key
        .open(ObjectKind::Lock, &sealed[..SEAL_OVERHEAD - 1])
        .unwrap_err();
    assert!(
        matches!(
            short,
            Error::Malformed {
                what: "envelope",
                ..
            }
        ),
        "{short}"
    );

    let mut bad_version = sealed.clone();
    bad_version[0] = 2;
    let err = key.open(ObjectKind::Lock, &bad_version).unwrap_err();
    assert!(err.to_string().contains("unknown version 2"), "{err}");

    let mut unknown_key = sealed.clone();
    unknown_key[1..5].copy_from_slice(&7u32.to_le_bytes());
    let err = key.open(ObjectKind::Lock, &unknown_key).unwrap_err();
    assert!(
        matches!(err, Error::Malformed { .. }) && err.to_string().contains("data key 7"),
        "{err}"
    );
}

#[test]
fn rotated_keys_still_open_old_objects() {
    let mut key = key();
    let mut sealed = vec![
        key.seal(ObjectKind::DataBlob, b"before any rotation")
            .unwrap(),
    ];
    for round in 1..=3u32 {
        assert_eq!(key.rotate_data_key().unwrap(), round);
        sealed.push(
            key.seal(
                ObjectKind::DataBlob,
                format!("after rotation {round}").as_bytes(),
            )
            .unwrap(),
        );
    }
    assert_eq!(
        key.open(ObjectKind::DataBlob, &sealed[0]).unwrap(),
        b"before any rotation"
    );
    for (round, envelope) in sealed.iter().enumerate().skip(1) {
        assert_eq!(envelope[1..5], (round as u32).to_le_bytes());
        assert_eq!(
            key.open(ObjectKind::DataBlob, envelope).unwrap(),
            format!("after rotation {round}").as_bytes()
        );
    }
}

#[test]
fn rotation_does_not_change_content_ids_or_chunker_key() {
    let mut key = key();
    let id = key.content_id(b"blob");
    let chunker_key = key.chunker_key();
    key.rotate_data_key().unwrap();
    assert_eq!(key.content_id(b"blob"), id);
    assert_eq!(key.chunker_key(), chunker_key);
}

#[test]
fn content_ids_are_keyed() {
    let a = key();
    let b = key();
    assert_eq!(a.content_id(b"blob"), a.content_id(b"blob"));
    assert_ne!(a.content_id(b"blob"), a.content_id(b"blob!"));
    assert_ne!(a.content_id(b"blob"), b.content_id(b"blob"));
    assert_ne!(a.content_id(b"blob"), Id(*blake3::hash(b"blob").as_bytes()));
}

#[test]
fn errors_show_no_plaintext_or_key() {
    let key = key();
    let sealed = key.seal(ObjectKind::Config, b"SECRET-PLAINTEXT").unwrap();
    let mut tampered = sealed.clone();
    *tampered.last_mut().unwrap() ^= 1;
    let err = key.open(ObjectKind::Config, &tampered).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("SECRET-PLAINTEXT"));
    assert!(!shown.contains(&hex::encode(key.chunker_key())));
    assert_eq!(format!("{key:?}"), "MasterKey(..)");
}
