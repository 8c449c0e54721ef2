//! The `arca` binary against storage, beyond `cli.rs`'s full cycle: request
//! budgets of a first backup, the local metadata cache across runs, and
//! `--limit-upload`. Each test runs on a local repository and, when
//! `ARCA_TEST_S3_ENDPOINT` is set (as `cargo xtask test` does), on a fresh
//! bucket of that S3 server.

use std::fs;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use crate::support::{Repo, assert_same_tree, noise, on_every_backend, restored};

/// `files` incompressible files of `len` bytes each (distinct seeds).
fn make_noise(dir: &Path, files: usize, len: usize) {
    fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..files {
        fs::write(dir.join(format!("sub/noise{i}.bin")), noise(len, i as u64)).unwrap();
    }
    fs::write(dir.join("readme.txt"), "arca on s3\n".repeat(50)).unwrap();
}

fn requests(summary: &Value, kind: &str) -> u64 {
    summary["requests"][kind]
        .as_u64()
        .unwrap_or_else(|| panic!("no requests.{kind} in {summary}"))
}

on_every_backend!(
    first_backup_stays_within_its_request_budget,
    metadata_comes_from_the_cache_on_later_runs,
    limit_upload_slows_the_backup_down,
);

/// Bytes per upload request a first backup must at least average: packs
/// are 16 MiB; this leaves room for the last, partial pack.
const BYTES_PER_PUT: u64 = 8 * 1024 * 1024;
/// Writes besides full packs: a partial pack, a tree pack, index, snapshot.
const FIXED_PUTS: u64 = 6;

fn first_backup_stays_within_its_request_budget(repo: &Repo) {
    let data = repo.path("data");
    make_noise(&data, 5, 7 * 1024 * 1024);
    repo.json(&["init"]);
    let summary = repo.json_summary(&["backup", data.to_str().unwrap()]);
    assert_eq!(summary["message_type"], "summary", "{summary}");
    let added = summary["data_added_packed"].as_u64().unwrap();
    assert!(added >= 35 * 1024 * 1024, "{summary}");
    let puts = requests(&summary, "put");
    assert!(
        puts <= added / BYTES_PER_PUT + FIXED_PUTS,
        "{puts} write requests for {added} bytes: {summary}"
    );
    // Nothing is read back or stat'ed per pack.
    assert!(requests(&summary, "head") <= 2, "{summary}");

    let target = repo.path("restored");
    let restore = repo.json_summary(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(restore["message_type"], "summary", "{restore}");
    assert_same_tree(&data, &restored(&target, &data));
    let check = repo.json_summary(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["errors"], Value::Array(vec![]), "{check}");
}

fn metadata_comes_from_the_cache_on_later_runs(repo: &Repo) {
    let data = repo.path("data");
    make_noise(&data, 2, 300 * 1024);
    repo.json(&["init"]);
    // Without a cache, a second backup reads the index and the parent
    // snapshot and tree from the repository...
    repo.json_summary(&["--no-cache", "backup", data.to_str().unwrap()]);
    let uncached = repo.json_summary(&["--no-cache", "backup", data.to_str().unwrap()]);
    // config, key file, index file, parent snapshot; ranged reads of trees.
    assert!(requests(&uncached, "get") >= 4, "{uncached}");
    assert!(requests(&uncached, "get_range") >= 1, "{uncached}");
    assert!(
        !repo.path("xdg-cache").exists(),
        "--no-cache writes no cache"
    );
    // ...with one, the first run fills the cache and the next reads none.
    let cache = repo.path("my-cache");
    let cache_arg = cache.to_str().unwrap();
    repo.json_summary(&["--cache-dir", cache_arg, "backup", data.to_str().unwrap()]);
    let cached = repo.json_summary(&["--cache-dir", cache_arg, "backup", data.to_str().unwrap()]);
    assert_eq!(requests(&cached, "get"), 2, "config and key file: {cached}");
    assert_eq!(requests(&cached, "get_range"), 0, "{cached}");
    let per_repository: Vec<_> = fs::read_dir(&cache).unwrap().collect();
    assert_eq!(per_repository.len(), 1, "one directory per repository ID");
    // Damage every cached file: the next run notices and reads the repository.
    let mut damaged = 0;
    let mut pending = vec![cache.clone()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().unwrap() != "CACHEDIR.TAG" {
                fs::write(&path, b"garbage").unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged >= 3, "index, snapshots and a tree pack are cached");
    let after_damage =
        repo.json_summary(&["--cache-dir", cache_arg, "backup", data.to_str().unwrap()]);
    assert!(requests(&after_damage, "get") >= 4, "{after_damage}");
    // Deleting the cache is harmless too.
    fs::remove_dir_all(&cache).unwrap();
    let target = repo.path("restored");
    repo.json_summary(&[
        "--cache-dir",
        cache_arg,
        "restore",
        "latest",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_same_tree(&data, &restored(&target, &data));
    let check = repo.json_summary(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
}

/// Upload limit of the throttled backup, KiB/s.
const LIMIT_KIB: u64 = 2048;

fn limit_upload_slows_the_backup_down(repo: &Repo) {
    let data = repo.path("data");
    make_noise(&data, 1, 5 * 1024 * 1024);
    repo.json(&["init"]);
    let start = Instant::now();
    let summary = repo.json_summary(&[
        "--limit-upload",
        &LIMIT_KIB.to_string(),
        "backup",
        data.to_str().unwrap(),
    ]);
    let elapsed = start.elapsed().as_secs_f64();
    let uploaded = requests(&summary, "bytes_up");
    assert!(uploaded >= 5 * 1024 * 1024, "{summary}");
    // The bucket starts with a tenth of a second's worth of tokens.
    let rate = (LIMIT_KIB * 1024) as f64;
    let at_least = uploaded as f64 / rate - 0.1;
    assert!(
        elapsed >= at_least,
        "{uploaded} bytes at {LIMIT_KIB} KiB/s took {elapsed:.2} s, less than {at_least:.2} s"
    );
}
