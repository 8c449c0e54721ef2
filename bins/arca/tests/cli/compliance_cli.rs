//! Keys, holds, the audit trail and append-only keys through the real
//! `arca` binary, on a local repository and, when `ARCA_TEST_S3_ENDPOINT`
//! is set, on S3. Every run checks that the repository password appears
//! nowhere in the output (see `support`); the other passwords used here are
//! checked the same way.

// Skipped variants say so on the test's stderr.
#![allow(clippy::print_stderr)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::support;
use crate::support::{PASSWORD, Repo, Run, on_every_backend};

const SECOND_PASSWORD: &str = "second-password-91c2e7";
const LIMITED_PASSWORD: &str = "append-only-password-4d1b";

on_every_backend!(
    keys_round_trip,
    holds_round_trip,
    audit_records_and_verifies,
    keys_live_in_a_separate_location
);

/// A run that must not print any of this file's passwords either.
fn no_secrets(run: &Run) {
    for secret in [SECOND_PASSWORD, LIMITED_PASSWORD] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "password printed:\n{run}"
        );
    }
}

fn run(repo: &Repo, args: &[&str]) -> Run {
    let run = repo.run(args);
    no_secrets(&run);
    run
}

fn ok(repo: &Repo, args: &[&str]) -> Run {
    let run = run(repo, args);
    assert_eq!(run.code, Some(0), "arca {args:?} failed:\n{run}");
    run
}

fn json(repo: &Repo, args: &[&str]) -> Value {
    let mut with_json = vec!["--json"];
    with_json.extend_from_slice(args);
    let run = ok(repo, &with_json);
    serde_json::from_str(run.stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{run}"))
}

/// `arca` with another password than the repository's usual one.
fn as_password(repo: &Repo, password: &str, args: &[&str]) -> Run {
    let mut command = repo.command(args);
    command.env("ARCA_PASSWORD", password);
    let run = Run::of(command);
    no_secrets(&run);
    run
}

fn password_file(repo: &Repo, name: &str, password: &str) -> String {
    let path = repo.path(name);
    fs::write(&path, format!("{password}\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

fn backed_up(repo: &Repo) -> String {
    let data = repo.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a.txt"), "alpha\n".repeat(1000)).unwrap();
    ok(repo, &["init"]);
    let summary = json(repo, &["backup", data.to_str().unwrap()]);
    summary["snapshot_id"].as_str().unwrap().to_owned()
}

fn keys_round_trip(repo: &Repo) {
    ok(repo, &["init"]);
    let keys = json(repo, &["key", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let first = keys[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(keys[0]["current"], true);

    let second_file = password_file(repo, "second", SECOND_PASSWORD);
    let added = json(
        repo,
        &[
            "key",
            "add",
            "--new-password-file",
            &second_file,
            "--host",
            "vault",
            "--user",
            "ops",
        ],
    );
    assert_eq!(added["message_type"], "key_added");
    let second = added["id"].as_str().unwrap().to_owned();
    let keys = json(repo, &["key", "list"]);
    let listed = keys.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let entry = listed.iter().find(|k| k["id"] == second.as_str()).unwrap();
    assert_eq!(
        (&entry["hostname"], &entry["username"]),
        (&"vault".into(), &"ops".into())
    );
    assert_eq!(entry["current"], false);
    let human = ok(repo, &["key", "list"]);
    assert!(
        human.stdout.contains(&format!("*{}", &first[..8])),
        "{human}"
    );

    // The second password opens the repository; it cannot remove itself
    // without --force, and the first key cannot be given by a wrong ID.
    assert_eq!(
        as_password(repo, SECOND_PASSWORD, &["snapshots"]).code,
        Some(0)
    );
    let in_use = as_password(repo, SECOND_PASSWORD, &["key", "remove", &second[..10]]);
    assert_eq!(in_use.code, Some(1), "{in_use}");
    assert!(in_use.stderr.contains("key in use"), "{in_use}");
    let wrong = run(repo, &["key", "remove", "0123456789abcdef"]);
    assert_eq!(wrong.code, Some(1), "{wrong}");
    assert!(wrong.stderr.contains("no key matches"), "{wrong}");

    ok(repo, &["key", "remove", &second]);
    assert_eq!(
        as_password(repo, SECOND_PASSWORD, &["snapshots"]).code,
        Some(12)
    );
    let last = run(repo, &["key", "remove", &first, "--force"]);
    assert_eq!(last.code, Some(1), "{last}");
    assert!(last.stderr.contains("only key"), "{last}");

    // passwd: the old password stops working, the new one opens.
    let new_file = password_file(repo, "new", SECOND_PASSWORD);
    let changed = json(repo, &["key", "passwd", "--new-password-file", &new_file]);
    assert_eq!(changed["message_type"], "password_changed");
    assert_eq!(run(repo, &["snapshots"]).code, Some(12));
    let keys = as_password(repo, SECOND_PASSWORD, &["--json", "key", "list"]);
    let keys: Value = serde_json::from_str(keys.stdout.trim()).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(keys[0]["id"], changed["id"]);

    // No new password without a file and no terminal.
    let missing = as_password(repo, SECOND_PASSWORD, &["key", "add"]);
    assert_eq!(missing.code, Some(1), "{missing}");
    assert!(missing.stderr.contains("--new-password-file"), "{missing}");
}

fn holds_round_trip(repo: &Repo) {
    let snapshot = backed_up(repo);
    let placed = json(
        repo,
        &[
            "hold",
            "add",
            &snapshot[..8],
            "--reason",
            "case 2026-17",
            "--until",
            "2999-01-01",
        ],
    );
    assert_eq!(placed["message_type"], "hold_placed");
    assert_eq!(placed["snapshot"], snapshot.as_str());
    assert_eq!(placed["until"], "2999-01-01T00:00:00Z");
    let holds = json(repo, &["hold", "list"]);
    assert_eq!(holds.as_array().unwrap().len(), 1);
    assert_eq!(holds[0]["snapshot"], snapshot.as_str());
    assert_eq!(holds[0]["reason"], "case 2026-17");
    let human = ok(repo, &["hold", "list"]);
    assert!(human.stdout.contains("1 held snapshot"), "{human}");

    let past = run(
        repo,
        &[
            "hold",
            "add",
            "latest",
            "--reason",
            "x",
            "--until",
            "2001-01-01",
        ],
    );
    assert_eq!(past.code, Some(1), "{past}");
    assert!(past.stderr.contains("already have expired"), "{past}");
    let bad_date = run(
        repo,
        &["hold", "add", "latest", "--reason", "x", "--until", "soon"],
    );
    assert_eq!(bad_date.code, Some(1), "{bad_date}");
    let no_reason = run(repo, &["hold", "add", "latest"]);
    assert_eq!(no_reason.code, Some(1), "{no_reason}");

    ok(
        repo,
        &["hold", "release", &snapshot, "--reason", "case closed"],
    );
    assert_eq!(json(repo, &["hold", "list"]).as_array().unwrap().len(), 0);
    let again = run(repo, &["hold", "release", &snapshot, "--reason", "again"]);
    assert_eq!(again.code, Some(1), "{again}");
    assert!(again.stderr.contains("no active hold"), "{again}");
    let history = json(repo, &["hold", "list", "--all"]);
    let actions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["place", "release"]);
}

fn audit_records_and_verifies(repo: &Repo) {
    let snapshot = backed_up(repo);
    ok(repo, &["hold", "add", &snapshot, "--reason", "audit"]);
    let target = repo.path("restore");
    ok(
        repo,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    let failed = run(
        repo,
        &[
            "hold",
            "add",
            "latest",
            "--reason",
            "x",
            "--until",
            "2001-01-01",
        ],
    );
    assert_eq!(failed.code, Some(1));

    let records = json(repo, &["audit"]);
    let operations: Vec<(&str, &str)> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["record"]["operation"].as_str().unwrap(),
                r["record"]["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        operations,
        [
            ("init", "success"),
            ("backup", "success"),
            ("hold add", "success"),
            ("restore", "success"),
            ("hold add", "failure"),
        ]
    );
    let hold = &records[2]["record"];
    assert_eq!(hold["snapshots"][0], snapshot.as_str());
    assert!(
        hold["arguments"]
            .as_array()
            .unwrap()
            .contains(&"audit".into())
    );
    assert!(records[0]["record"]["bytes_written"].as_u64().unwrap() > 0);
    assert!(records[1]["record"]["bytes_written"].as_u64().unwrap() > 0);
    assert!(records[3]["record"]["bytes_read"].as_u64().unwrap() > 0);
    let holds_only = json(repo, &["audit", "--operation", "hold"]);
    assert_eq!(holds_only.as_array().unwrap().len(), 2);

    let verified = json(repo, &["audit", "--verify"]);
    assert_eq!(verified["gaps"].as_array().unwrap().len(), 0, "{verified}");
    assert_eq!(verified["records"], 5);
    let human = ok(repo, &["audit", "--verify"]);
    assert!(human.stdout.contains("no gaps or alterations"), "{human}");
}

/// The audit records of `repo` as (operation, outcome, snapshot IDs), in time order.
fn audit_trail(repo: &Repo) -> Vec<(String, String, Vec<String>)> {
    let field = |record: &Value, name: &str| record[name].as_str().unwrap().to_owned();
    json(repo, &["audit"])
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let record = &entry["record"];
            // Left out of the JSON when there are none.
            let snapshots = record["snapshots"]
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .map(|id| id.as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            (
                field(record, "operation"),
                field(record, "outcome"),
                snapshots,
            )
        })
        .collect()
}

/// Every operation that reads or changes snapshots records which: backup
/// the new one, restore and dump the one read, copy the source's in the
/// source's trail and the new ones in the destination's, forget the removed
/// ones; init is recorded too.
#[test]
fn every_operation_records_its_snapshot_ids() {
    let repo = Repo::local();
    let first = backed_up(&repo);
    let data = repo.path("data");
    fs::write(data.join("b.txt"), "beta\n".repeat(500)).unwrap();
    let second = json(&repo, &["backup", data.to_str().unwrap()])["snapshot_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let target = repo.path("restore");
    ok(
        &repo,
        &["restore", &first, "--target", target.to_str().unwrap()],
    );
    let file = data.join("a.txt");
    ok(&repo, &["dump", &second, file.to_str().unwrap()]);

    let destination = Repo::local();
    ok(&destination, &["init"]);
    let mut copy = destination.command(&["--json", "copy", "--from-repo", &repo.url, &first]);
    copy.env("ARCA_FROM_PASSWORD", support::PASSWORD);
    let copied = Run::of(copy);
    assert_eq!(copied.code, Some(0), "{copied}");
    let report: Value = serde_json::from_str(copied.stdout.trim()).unwrap();
    let copy_id = report["copied"][0]["destination"]
        .as_str()
        .unwrap()
        .to_owned();

    ok(&repo, &["forget", &second]);

    let expected = |operation: &str, ids: &[&str]| {
        (
            operation.to_owned(),
            "success".to_owned(),
            ids.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        audit_trail(&repo),
        [
            expected("init", &[]),
            expected("backup", &[&first]),
            expected("backup", &[&second]),
            expected("restore", &[&first]),
            expected("dump", &[&second]),
            expected("copy", &[&first]),
            expected("forget", &[&second]),
        ]
    );
    // The destination also holds the source's records of the copied
    // snapshot (at their own times), linked into its trail.
    assert_eq!(
        audit_trail(&destination),
        [
            expected("backup", &[&first]),
            expected("restore", &[&first]),
            expected("init", &[]),
            expected("copy", &[&copy_id]),
        ]
    );
    // Copying again adds the source's record of the first copy, once, and
    // this run's own record (no snapshot written); the trail stays intact.
    let mut again = destination.command(&["copy", "--from-repo", &repo.url, &first]);
    again.env("ARCA_FROM_PASSWORD", support::PASSWORD);
    let again = Run::of(again);
    assert_eq!(again.code, Some(0), "{again}");
    assert!(
        again.stdout.contains("1 audit record(s) carried"),
        "{again}"
    );
    let trail = audit_trail(&destination);
    // (The source wrote its record of the first copy before the
    // destination wrote its own.)
    assert_eq!(
        trail[3..],
        [
            expected("copy", &[&first]),
            expected("copy", &[&copy_id]),
            expected("copy", &[]),
        ]
    );
    ok(&destination, &["audit", "--verify"]);
}

/// The ID of the `index`-th audit record in time order.
fn audit_record_id(repo: &Repo, index: usize) -> String {
    json(repo, &["audit"])[index]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn audit_verify_detects_a_deleted_and_a_modified_record() {
    let repo = Repo::local();
    backed_up(&repo);
    ok(&repo, &["snapshots"]);
    ok(&repo, &["snapshots"]);
    ok(&repo, &["snapshots"]);
    let dir = repo.local_dir.clone().unwrap().join("audit");

    let second = audit_record_id(&repo, 1);
    fs::remove_file(dir.join(&second)).unwrap();
    let gap = run(&repo, &["audit", "--verify"]);
    assert_eq!(gap.code, Some(1), "{gap}");
    assert!(
        gap.stdout
            .contains(&format!("missing record {}", &second[..8])),
        "{gap}"
    );
    assert!(gap.stdout.contains("NOT intact"), "{gap}");

    let third = audit_record_id(&repo, 1);
    let path = dir.join(&third);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, bytes).unwrap();
    let damaged = run(&repo, &["--json", "audit", "--verify"]);
    assert_eq!(damaged.code, Some(1), "{damaged}");
    let report: Value = serde_json::from_str(damaged.stdout.trim()).unwrap();
    assert_eq!(report["damaged"][0]["id"], third.as_str(), "{report}");
}

#[test]
fn an_append_only_key_backs_up_and_restores_but_removes_nothing() {
    let repo = Repo::local();
    let snapshot = backed_up(&repo);
    let limited = password_file(&repo, "limited", LIMITED_PASSWORD);
    ok(
        &repo,
        &[
            "key",
            "add",
            "--append-only",
            "--new-password-file",
            &limited,
        ],
    );
    let keys = json(&repo, &["key", "list"]);
    assert_eq!(
        keys.as_array()
            .unwrap()
            .iter()
            .filter(|k| k["append_only"] == true)
            .count(),
        1
    );
    ok(&repo, &["hold", "add", &snapshot, "--reason", "keep"]);

    let data = repo.path("data");
    fs::write(data.join("b.txt"), "beta").unwrap();
    let backup = as_password(&repo, LIMITED_PASSWORD, &["backup", data.to_str().unwrap()]);
    assert_eq!(backup.code, Some(0), "{backup}");
    let target = repo.path("restore");
    let restore = as_password(
        &repo,
        LIMITED_PASSWORD,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    assert_eq!(restore.code, Some(0), "{restore}");
    assert_eq!(
        fs::read_to_string(target.join(data.strip_prefix("/").unwrap()).join("b.txt")).unwrap(),
        "beta"
    );
    let keys = json(&repo, &["key", "list"]);
    let full = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["append_only"] == false)
        .unwrap();
    let full_id = full["id"].as_str().unwrap();
    for args in [
        vec!["key", "remove", full_id, "--force"],
        vec!["key", "add", "--new-password-file", limited.as_str()],
        vec!["key", "passwd", "--new-password-file", limited.as_str()],
        vec!["hold", "release", snapshot.as_str(), "--reason", "ransom"],
    ] {
        let refused = as_password(&repo, LIMITED_PASSWORD, &args);
        assert_eq!(refused.code, Some(1), "{args:?}: {refused}");
        assert!(
            refused.stderr.contains("append-only key"),
            "{args:?}: {refused}"
        );
    }
    assert_eq!(json(&repo, &["key", "list"]).as_array().unwrap().len(), 2);
    assert_eq!(json(&repo, &["hold", "list"]).as_array().unwrap().len(), 1);
}

#[test]
fn a_storage_refusing_audit_writes_still_restores_and_warns() {
    let repo = Repo::local();
    backed_up(&repo);
    // Nothing can be created under audit/ any more (a file where the
    // directory was; chmod would not stop root).
    let audit = repo.local_dir.clone().unwrap().join("audit");
    fs::remove_dir_all(&audit).unwrap();
    fs::write(&audit, "not a directory").unwrap();
    let target = repo.path("restore");
    let restore = run(
        &repo,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    assert_eq!(restore.code, Some(0), "{restore}");
    assert!(
        restore
            .stderr
            .contains("could not record this access in the audit trail"),
        "{restore}"
    );
    assert!(
        target
            .join(repo.path("data").strip_prefix("/").unwrap())
            .join("a.txt")
            .exists()
    );
}

/// Passwords from a secret manager: ARCA_PASSWORD_COMMAND (Vault's CLI,
/// say), and the file an External Secrets `ExternalSecret` mounts (key
/// `RESTIC_PASSWORD`), by path or as the environment variable a
/// `secretRef` sets.
#[test]
fn passwords_come_from_commands_and_mounted_secrets() {
    let repo = Repo::local();
    ok(&repo, &["init"]);
    let secrets = repo.path("secret-volume");
    fs::create_dir_all(&secrets).unwrap();
    let mounted = secrets.join("RESTIC_PASSWORD");
    // Secrets mount without a trailing newline; both forms work.
    fs::write(&mounted, PASSWORD).unwrap();
    let vault = repo.path("vault-kv-get");
    fs::write(&vault, format!("#!/bin/sh\nprintf '%s\\n' '{PASSWORD}'\n")).unwrap();
    fs::set_permissions(&vault, fs::Permissions::from_mode(0o755)).unwrap();

    let sources: [(&str, &Path); 3] = [
        ("ARCA_PASSWORD_COMMAND", &vault),
        ("RESTIC_PASSWORD_FILE", &mounted),
        ("ARCA_PASSWORD_FILE", &mounted),
    ];
    for (variable, value) in sources {
        let mut command = repo.command(&["snapshots"]);
        command.env_remove("ARCA_PASSWORD").env(variable, value);
        let run = Run::of(command);
        assert_eq!(run.code, Some(0), "{variable}: {run}");
    }
    let mut from_env = repo.command(&["snapshots"]);
    from_env
        .env_remove("ARCA_PASSWORD")
        .env("RESTIC_PASSWORD", PASSWORD);
    assert_eq!(Run::of(from_env).code, Some(0));
    let mut wrong = repo.command(&["snapshots"]);
    wrong
        .env_remove("ARCA_PASSWORD")
        .env("ARCA_PASSWORD_COMMAND", "printf wrong");
    assert_eq!(Run::of(wrong).code, Some(12));
}

#[test]
fn rotate_then_back_up_and_restore_across_generations() {
    let repo = Repo::local();
    let first = backed_up(&repo);
    let rotated = json(&repo, &["key", "rotate"]);
    assert_eq!(rotated["message_type"], "key_rotated");
    let data = repo.path("data");
    fs::write(data.join("a.txt"), "after rotation").unwrap();
    let second = json(&repo, &["backup", data.to_str().unwrap()]);
    let second = second["snapshot_id"].as_str().unwrap();
    // The new snapshot is sealed with the new data key.
    let stored = fs::read(
        repo.local_dir
            .clone()
            .unwrap()
            .join("snapshots")
            .join(second),
    )
    .unwrap();
    let data_key = u32::from_le_bytes(stored[1..5].try_into().unwrap());
    assert_eq!(u64::from(data_key), rotated["data_key"].as_u64().unwrap());
    for (snapshot, content) in [
        (first.as_str(), "alpha\n".repeat(1000)),
        (second, "after rotation".into()),
    ] {
        let target = repo.path(&format!("restore-{snapshot}"));
        ok(
            &repo,
            &["restore", snapshot, "--target", target.to_str().unwrap()],
        );
        let restored = target.join(data.strip_prefix("/").unwrap()).join("a.txt");
        assert_eq!(fs::read_to_string(restored).unwrap(), content);
    }
    ok(&repo, &["check", "--read-data"]);
}

/// `repository destroy` removes nothing without the repository's full ID
/// (none given and no terminal, or a wrong one), and with it leaves nothing
/// that opens the repository: not the password, not a rotated keyring.
#[test]
fn repository_destroy_needs_the_id_and_then_nothing_opens_the_repository() {
    let repo = Repo::local();
    backed_up(&repo);
    ok(&repo, &["key", "rotate"]);
    let dir = repo.local_dir.clone().unwrap();
    let listing = |sub: &str| fs::read_dir(dir.join(sub)).map_or(0, Iterator::count);
    let id = repo.json(&["cat", "config"])["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let unconfirmed = run(&repo, &["repository", "destroy"]);
    assert_eq!(unconfirmed.code, Some(1), "{unconfirmed}");
    assert!(unconfirmed.stderr.contains("--confirm"), "{unconfirmed}");
    let wrong = run(&repo, &["repository", "destroy", "--confirm", &id[..12]]);
    assert_eq!(wrong.code, Some(1), "{wrong}");
    assert!(wrong.stderr.contains("nothing was removed"), "{wrong}");
    assert_eq!((listing("keys"), listing("keyring")), (1, 1));
    ok(&repo, &["snapshots"]);

    let destroyed = json(&repo, &["repository", "destroy", "--confirm", &id]);
    assert_eq!(destroyed["key_files"], 1, "{destroyed}");
    assert_eq!(destroyed["keyrings"], 1, "{destroyed}");
    assert_eq!((listing("keys"), listing("keyring")), (0, 0));
    assert!(!dir.join("config").exists());
    assert!(listing("data") > 0, "the data stays, unreadable");
    for args in [&["snapshots"][..], &["cat", "config"], &["check"]] {
        let after = run(&repo, args);
        assert_ne!(after.code, Some(0), "arca {args:?} after destroy:\n{after}");
    }
}

/// `arca` with the key files and keyrings in a local directory apart from
/// the repository's data.
fn with_keys_in(repo: &Repo, key_dir: &Path, args: &[&str]) -> Run {
    let mut command = repo.command(args);
    command.env("ARCA_KEY_LOCATION", key_dir);
    let run = Run::of(command);
    no_secrets(&run);
    run
}

/// With `ARCA_KEY_LOCATION` the key files and keyrings are written to and
/// read from that directory only: the data storage alone (local, or an S3
/// bucket) holds no key and opens with no password, while with the key
/// location backups, rotation and restores work as usual; a destroy deletes
/// the keys there.
fn keys_live_in_a_separate_location(repo: &Repo) {
    let key_dir = repo.path("key-location");
    let keyed = |args: &[&str]| {
        let run = with_keys_in(repo, &key_dir, args);
        assert_eq!(run.code, Some(0), "arca {args:?} failed:\n{run}");
        run
    };
    let data = repo.path("data");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("a.txt"), "alpha\n".repeat(1000)).unwrap();
    keyed(&["init"]);
    keyed(&["backup", data.to_str().unwrap()]);
    keyed(&["key", "rotate"]);
    fs::write(data.join("b.txt"), "beta\n".repeat(1000)).unwrap();
    keyed(&["backup", data.to_str().unwrap()]);
    let count = |dir: &Path| fs::read_dir(dir).map_or(0, Iterator::count);
    assert_eq!(count(&key_dir.join("keys")), 1);
    assert_eq!(count(&key_dir.join("keyring")), 1);
    if let Some(local) = &repo.local_dir {
        assert!(local.join("config").exists());
        assert_eq!(
            count(&local.join("keys")) + count(&local.join("keyring")),
            0
        );
    }

    let without_keys = run(repo, &["snapshots"]);
    assert_ne!(without_keys.code, Some(0), "{without_keys}");

    let target = repo.path("restore");
    keyed(&["restore", "latest", "--target", target.to_str().unwrap()]);
    support::assert_same_tree(&data, &support::restored(&target, &data));

    let config = with_keys_in(repo, &key_dir, &["--json", "cat", "config"]);
    let id: Value = serde_json::from_str(config.stdout.trim()).unwrap();
    keyed(&[
        "repository",
        "destroy",
        "--confirm",
        id["id"].as_str().unwrap(),
    ]);
    assert_eq!(
        count(&key_dir.join("keys")) + count(&key_dir.join("keyring")),
        0
    );
    let after = with_keys_in(repo, &key_dir, &["snapshots"]);
    assert_ne!(after.code, Some(0), "{after}");
}

/// `key reencrypt` after a rotation, then `key rotate --reencrypt`: the packs
/// written before are rewritten and marked, and both snapshots restore.
#[test]
fn key_reencrypt_rewrites_old_packs_and_everything_restores() {
    let repo = Repo::local();
    backed_up(&repo);
    ok(&repo, &["key", "rotate"]);
    let data = repo.path("data");
    fs::write(data.join("b.txt"), "beta\n".repeat(1000)).unwrap();
    ok(&repo, &["backup", data.to_str().unwrap()]);
    let report = json(&repo, &["key", "reencrypt"]);
    assert!(report["packs_rewritten"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["marks"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["snapshots"].as_array().unwrap().len(), 1, "{report}");
    assert!(report["config_resealed"].as_bool().unwrap(), "{report}");
    let again = json(&repo, &["key", "reencrypt"]);
    assert_eq!(again["packs_rewritten"], 0, "{again}");
    // `key rotate --reencrypt`: a new data key, then everything sealed under
    // it in the same run (its last JSON line is the re-encryption's report).
    let rotated = json(&repo, &["key", "rotate", "--reencrypt"]);
    assert_ne!(rotated["data_key"], report["data_key"], "{rotated}");
    assert!(
        rotated["packs_rewritten"].as_u64().unwrap() > 0,
        "{rotated}"
    );
    assert_eq!(
        rotated["snapshots"].as_array().unwrap().len(),
        2,
        "{rotated}"
    );
    assert!(rotated["config_resealed"].as_bool().unwrap(), "{rotated}");
    for snapshot in json(&repo, &["snapshots"]).as_array().unwrap() {
        let target = repo.path(&format!(
            "restore-{}",
            snapshot["short_id"].as_str().unwrap()
        ));
        let id = snapshot["id"].as_str().unwrap();
        ok(
            &repo,
            &[
                "restore",
                id,
                "--target",
                target.to_str().unwrap(),
                "--verify",
            ],
        );
    }
    ok(&repo, &["check", "--read-data"]);
}

/// `arca` with the grace floor lowered to a second (test-only).
fn with_short_grace(repo: &Repo, args: &[&str]) -> Run {
    let mut command = repo.command(args);
    command.env("ARCA_TEST_GRACE_FLOOR", "1");
    let run = Run::of(command);
    no_secrets(&run);
    run
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// `key reencrypt` killed (SIGKILL) at several points and run again, then
/// `prune --erase`: the first run re-encrypts nothing more and waits for the
/// grace period, the second destroys data key 0; afterwards every file is
/// sealed under the kept key (`check --read-data` reads every blob with only
/// that key), a copy of the old key file alone no longer opens the
/// repository, and bad input is refused with a clear message.
#[test]
fn reencrypt_killed_and_resumed_then_prune_erase_destroys_the_old_key() {
    let repo = Repo::local();
    let dir = repo.local_dir.clone().unwrap();
    backed_up(&repo);
    let data = repo.path("data");
    for i in 0..4 {
        fs::write(
            data.join(format!("noise-{i}")),
            support::noise(512 << 10, i + 1),
        )
        .unwrap();
    }
    ok(&repo, &["backup", data.to_str().unwrap()]);
    let only_key = |dir: &Path| {
        let keys: Vec<_> = fs::read_dir(dir.join("keys")).unwrap().collect();
        assert_eq!(keys.len(), 1);
        keys.into_iter().next().unwrap().unwrap().path()
    };
    let old_key_file = only_key(&dir);
    let old_key_bytes = fs::read(&old_key_file).unwrap();
    ok(&repo, &["key", "rotate"]);
    let mut killed = 0;
    for delay in [0, 40, 120, 300] {
        let mut reencrypt = repo.command(&["key", "reencrypt"]).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay));
        if reencrypt.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = reencrypt.kill();
        reencrypt.wait().unwrap();
        ok(&repo, &["check"]);
    }
    assert!(killed > 0, "every re-encryption finished before its kill");
    ok(&repo, &["key", "reencrypt"]);

    let erase = |grace: &str| {
        let all = ["--json", "prune", "--erase", "--grace", grace];
        let run = with_short_grace(&repo, &all);
        assert_eq!(run.code, Some(0), "prune --erase failed:\n{run}");
        run.json_lines().pop().unwrap()
    };
    // The old packs were marked by the re-encryptions above; with an hour's
    // grace none is due yet however slowly this runs, so the old key waits.
    let first = erase("1h");
    assert_eq!(first["message_type"], "erase_summary", "{first}");
    assert!(first["waiting"]["packs"].as_u64().unwrap() > 0, "{first}");
    assert_eq!(first["destroyed"], serde_json::json!([]), "{first}");
    // Every mark is now older than a second: this run deletes the old packs.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let second = erase("1s");
    assert_eq!(second["waiting"], Value::Null, "{second}");
    assert_eq!(second["destroyed"], serde_json::json!([0]), "{second}");
    let kept = u32::try_from(second["kept"].as_u64().unwrap()).unwrap();

    let key_of =
        |path: &Path| u32::from_le_bytes(fs::read(path).unwrap()[1..5].try_into().unwrap());
    assert_eq!(key_of(&dir.join("config")), kept);
    for sub in ["snapshots", "index", "marks", "holds"] {
        for entry in fs::read_dir(dir.join(sub)).into_iter().flatten() {
            let path = entry.unwrap().path();
            assert_eq!(key_of(&path), kept, "{}", path.display());
        }
    }
    ok(&repo, &["check", "--read-data"]);
    assert_ne!(only_key(&dir), old_key_file);
    assert_eq!(fs::read_dir(dir.join("keyring")).unwrap().count(), 1);
    let target = repo.path("restored");
    ok(
        &repo,
        &["restore", "latest", "--target", target.to_str().unwrap()],
    );
    support::assert_same_tree(&data, &support::restored(&target, &data));

    // A copy of the repository with only the old key file does not open.
    let stale = Repo::local();
    let stale_dir = stale.local_dir.clone().unwrap();
    copy_dir(&dir, &stale_dir);
    fs::remove_dir_all(stale_dir.join("keys")).unwrap();
    fs::create_dir_all(stale_dir.join("keys")).unwrap();
    fs::write(
        stale_dir
            .join("keys")
            .join(old_key_file.file_name().unwrap()),
        old_key_bytes,
    )
    .unwrap();
    let refused = run(&stale, &["snapshots"]);
    assert_ne!(refused.code, Some(0), "{refused}");
    assert!(refused.stderr.contains("before an erasure"), "{refused}");

    // Bad input.
    let nothing = with_short_grace(&repo, &["prune", "--erase", "--grace", "1s"]);
    assert_eq!(nothing.code, Some(1), "{nothing}");
    assert!(nothing.stderr.contains("nothing to erase"), "{nothing}");
    let without_erase = run(&repo, &["prune", "--remove-other-keys"]);
    assert_eq!(without_erase.code, Some(1), "{without_erase}");
    assert!(without_erase.stderr.contains("--erase"), "{without_erase}");
    let file = password_file(&repo, "limited", LIMITED_PASSWORD);
    ok(
        &repo,
        &["key", "add", "--append-only", "--new-password-file", &file],
    );
    ok(&repo, &["key", "rotate"]);
    let limited = as_password(&repo, LIMITED_PASSWORD, &["prune", "--erase"]);
    assert_eq!(limited.code, Some(1), "{limited}");
    assert!(
        limited
            .stderr
            .contains("not allowed with an append-only key"),
        "{limited}"
    );
    let others = with_short_grace(&repo, &["prune", "--erase", "--grace", "1s"]);
    assert_eq!(others.code, Some(1), "{others}");
    assert!(others.stderr.contains("--remove-other-keys"), "{others}");
}
