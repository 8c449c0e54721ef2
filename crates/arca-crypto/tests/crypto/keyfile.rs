//! Key files through the public API: wrap/unwrap, wrong passwords, untrusted JSON.

use arca_crypto::{Error, KdfParams, KeyFile, MasterKey, ObjectKind};
use proptest::prelude::*;

/// Cheap Argon2id parameters so tests stay fast; the format is the same.
fn cheap() -> KdfParams {
    KdfParams::new(1024, 1, 1).unwrap()
}

fn json_of(file: &KeyFile) -> serde_json::Value {
    serde_json::from_slice(&file.to_bytes()).unwrap()
}

fn parse(json: &serde_json::Value) -> Result<KeyFile, Error> {
    KeyFile::from_bytes(&serde_json::to_vec(json).unwrap())
}

/// The unwrapped key is the same key: it opens envelopes and derives the same IDs.
fn assert_same_key(a: &MasterKey, b: &MasterKey) {
    assert_eq!(a.content_id(b"x"), b.content_id(b"x"));
    assert_eq!(a.chunker_key(), b.chunker_key());
    assert_eq!(a.current_data_key_id(), b.current_data_key_id());
    let sealed = a.seal(ObjectKind::Snapshot, b"snapshot").unwrap();
    assert_eq!(b.open(ObjectKind::Snapshot, &sealed).unwrap(), b"snapshot");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn create_serialise_parse_open_round_trips(
        password in prop::collection::vec(any::<u8>(), 0..64),
        hostname in "\\PC{0,20}",
        username in "\\PC{0,20}",
        rotations in 0u32..4,
    ) {
        let mut master = MasterKey::generate().unwrap();
        for _ in 0..rotations {
            master.rotate_data_key().unwrap();
        }
        let file = KeyFile::create(&master, &password, cheap(), &hostname, &username).unwrap();
        let parsed = KeyFile::from_bytes(&file.to_bytes()).unwrap();
        prop_assert_eq!(parsed.to_bytes(), file.to_bytes());
        prop_assert_eq!(parsed.hostname(), hostname.as_str());
        prop_assert_eq!(parsed.username(), username.as_str());
        prop_assert_eq!(parsed.params(), cheap());
        let opened = parsed.open(&password).unwrap();
        assert_same_key(&master, &opened);
    }
}

#[test]
fn json_has_the_documented_fields() {
    let master = MasterKey::generate().unwrap();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let file = KeyFile::create(&master, b"pw", cheap(), "host-1", "alice").unwrap();
    let json = json_of(&file);
    let object = json.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created",
            "data",
            "hostname",
            "kdf",
            "m_cost_kib",
            "p_cost",
            "salt",
            "t_cost",
            "username",
            "version"
        ]
    );
    assert_eq!(json["version"], 1);
    assert_eq!(json["kdf"], "argon2id");
    assert_eq!(json["hostname"], "host-1");
    assert_eq!(json["username"], "alice");
    assert_eq!(json["m_cost_kib"], 1024);
    assert_eq!(json["t_cost"], 1);
    assert_eq!(json["p_cost"], 1);
    let created = json["created"].as_i64().unwrap();
    assert!(created >= before && created == file.created());
    use base64::Engine;
    let salt = base64::engine::general_purpose::STANDARD
        .decode(json["salt"].as_str().unwrap())
        .unwrap();
    assert_eq!(salt.len(), 32);
}

#[test]
fn wrong_password_is_reported_as_such() {
    let master = MasterKey::generate().unwrap();
    let file = KeyFile::create(&master, b"correct horse", cheap(), "h", "u").unwrap();
    for wrong in [
        &b"correct hors"[..],
        b"correct horse ",
        b"",
        b"Correct horse",
    ] {
        assert!(matches!(file.open(wrong), Err(Error::WrongPassword)));
    }
    assert!(file.open(b"correct horse").is_ok());
}

#[test]
fn secrets_do_not_appear_in_debug_or_errors() {
    let password = "hunter2-very-secret";
    let master = MasterKey::generate().unwrap();
    let file = KeyFile::create(&master, password.as_bytes(), cheap(), "h", "u").unwrap();
    let err = file.open(b"not-it").unwrap_err();
    let json = json_of(&file);
    let shown = format!("{file:?} {err} {err:?}");
    assert!(!shown.contains(password));
    assert!(!shown.contains("not-it"));
    assert!(!shown.contains(json["data"].as_str().unwrap()));
    assert!(!shown.contains(json["salt"].as_str().unwrap()));
    assert!(!shown.contains(&hex::encode(master.chunker_key())));
    assert!(format!("{file:?}").contains("hostname"));
}

#[test]
fn tampered_key_files_do_not_open() {
    let master = MasterKey::generate().unwrap();
    let file = KeyFile::create(&master, b"pw", cheap(), "h", "u").unwrap();
    let json = json_of(&file);
    // Each change keeps the file well-formed but alters something the KDF or tag covers.
    let changes: [(&str, serde_json::Value); 3] = [
        ("t_cost", 2.into()),
        ("m_cost_kib", 2048.into()),
        ("salt", base64_of(&[7u8; 32]).into()),
    ];
    for (field, value) in changes {
        let mut changed = json.clone();
        changed[field] = value;
        let result = parse(&changed).unwrap().open(b"pw");
        assert!(
            matches!(result, Err(Error::WrongPassword)),
            "changed {field}"
        );
    }
    let mut data = decode(json["data"].as_str().unwrap());
    let last = data.len() - 1;
    data[last] ^= 0x80;
    let mut changed = json.clone();
    changed["data"] = base64_of(&data).into();
    assert!(matches!(
        parse(&changed).unwrap().open(b"pw"),
        Err(Error::WrongPassword)
    ));

    // Host and user are informational: changing them does not break the file.
    let mut changed = json.clone();
    changed["hostname"] = "elsewhere".into();
    assert!(parse(&changed).unwrap().open(b"pw").is_ok());
}

#[test]
fn malformed_json_is_rejected_before_the_kdf() {
    let master = MasterKey::generate().unwrap();
    let json = json_of(&KeyFile::create(&master, b"pw", cheap(), "h", "u").unwrap());
    let absurd: [(&str, serde_json::Value); 11] = [
        // 8 TiB of memory or hours of CPU would be spent if these reached Argon2id.
        ("m_cost_kib", u32::MAX.into()),
        ("m_cost_kib", (4 * 1024 * 1024 + 1).into()),
        ("m_cost_kib", 7.into()),
        ("t_cost", 65.into()),
        ("t_cost", 0.into()),
        ("p_cost", 65.into()),
        ("p_cost", 0.into()),
        ("version", 2.into()),
        ("kdf", "scrypt".into()),
        ("salt", base64_of(&[1u8; 31]).into()),
        ("data", base64_of(&[1u8; 27]).into()),
    ];
    for (field, value) in absurd {
        let mut bad = json.clone();
        bad[field] = value.clone();
        let result = parse(&bad);
        assert!(
            matches!(
                result,
                Err(Error::Malformed {
                    what: "key file",
                    ..
                })
            ),
            "{field} = {value}: {result:?}"
        );
    }
    for field in ["salt", "data"] {
        let mut bad = json.clone();
        bad[field] = "not base64!".into();
        assert!(
            matches!(parse(&bad), Err(Error::Malformed { .. })),
            "{field}"
        );
    }
    let mut missing = json.clone();
    missing.as_object_mut().unwrap().remove("t_cost");
    assert!(matches!(parse(&missing), Err(Error::Malformed { .. })));
    for garbage in [
        &b""[..],
        b"{",
        b"[]",
        b"null",
        b"{\"version\":1}",
        b"\xff\xfe",
    ] {
        assert!(matches!(
            KeyFile::from_bytes(garbage),
            Err(Error::Malformed { .. })
        ));
    }
}

#[test]
fn serde_deserialisation_validates_too() {
    let master = MasterKey::generate().unwrap();
    let mut json = json_of(&KeyFile::create(&master, b"pw", cheap(), "h", "u").unwrap());
    assert!(serde_json::from_value::<KeyFile>(json.clone()).is_ok());
    json["t_cost"] = 1000.into();
    let err = serde_json::from_value::<KeyFile>(json).unwrap_err();
    assert!(err.to_string().contains("time cost 1000"), "{err}");
}

#[test]
fn create_rejects_out_of_bounds_params() {
    let master = MasterKey::generate().unwrap();
    let params = KdfParams {
        m_cost_kib: 1024,
        t_cost: 0,
        p_cost: 1,
    };
    assert!(matches!(
        KeyFile::create(&master, b"pw", params, "h", "u"),
        Err(Error::Kdf(_))
    ));
}

#[test]
fn default_params_round_trip() {
    // The production parameters (64 MiB, t = 3) actually work end to end.
    let master = MasterKey::generate().unwrap();
    let file = KeyFile::create(&master, b"pw", KdfParams::default(), "h", "u").unwrap();
    assert_eq!(file.params(), KdfParams::default());
    assert_same_key(&master, &file.open(b"pw").unwrap());
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}
