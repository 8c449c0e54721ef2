//! The behaviour every [`Backend`] must show, as test helpers.
//!
//! Each check panics with a message naming the backend when the backend
//! misbehaves. Checks write under their own top-level prefix (`conformance-*`),
//! so they can share one empty backend (a fresh directory or bucket).
//! [`run_all`] runs them all; every backend's tests call it.

use bytes::Bytes;

use std::path::Path;
use std::sync::Arc;

use crate::{Backend, Error, ObjectMeta, SpoolFile, direct};

/// Runs every check against `backend`, which must start empty.
pub async fn run_all(backend: &dyn Backend) {
    put_get_head_delete(backend).await;
    overwrite(backend).await;
    missing_objects(backend).await;
    ranges(backend).await;
    list_prefixes(backend).await;
    empty_object(backend).await;
    large_object(backend).await;
    concurrent_puts(backend).await;
    invalid_paths(backend).await;
    spooled_puts(backend).await;
}

/// Deterministic, non-repeating test data.
pub fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(u32::from(seed % 32)) as u8
                ^ seed
        })
        .collect::<Vec<u8>>()
        .into()
}

fn assert_not_found<T: std::fmt::Debug>(
    backend: &dyn Backend,
    what: &str,
    result: crate::Result<T>,
) {
    match result {
        Err(Error::NotFound { .. }) => {}
        other => panic!("{backend}: {what} of a missing object gave {other:?}, want NotFound"),
    }
}

/// Write, read back, stat, list, delete.
pub async fn put_get_head_delete(backend: &dyn Backend) {
    let path = "conformance-basic/config";
    let data = pattern(1000, 1);
    backend.put(path, data.clone()).await.unwrap();
    assert_eq!(
        backend.get(path).await.unwrap(),
        data,
        "{backend}: get after put"
    );
    let meta = backend.head(path).await.unwrap();
    assert_eq!(
        meta,
        ObjectMeta {
            path: path.into(),
            size: 1000
        },
        "{backend}: head"
    );
    let listed = backend.list("conformance-basic/").await.unwrap();
    assert_eq!(listed, vec![meta], "{backend}: list");
    backend.delete(path).await.unwrap();
    assert_not_found(backend, "get after delete", backend.get(path).await);
    assert_not_found(backend, "head after delete", backend.head(path).await);
    backend
        .delete(path)
        .await
        .unwrap_or_else(|err| panic!("{backend}: deleting a missing object: {err}"));
    assert!(
        backend.list("conformance-basic/").await.unwrap().is_empty(),
        "{backend}: list after delete"
    );
}

/// A second put replaces the first.
pub async fn overwrite(backend: &dyn Backend) {
    let path = "conformance-overwrite/locks/x";
    backend.put(path, pattern(500, 2)).await.unwrap();
    backend.put(path, pattern(300, 3)).await.unwrap();
    assert_eq!(
        backend.get(path).await.unwrap(),
        pattern(300, 3),
        "{backend}: overwrite"
    );
    assert_eq!(
        backend.head(path).await.unwrap().size,
        300,
        "{backend}: size after overwrite"
    );
}

/// Missing objects are `NotFound` for every read; missing prefixes list as empty.
pub async fn missing_objects(backend: &dyn Backend) {
    let path = "conformance-missing/data/00/nothing";
    assert_not_found(backend, "get", backend.get(path).await);
    assert_not_found(backend, "get_range", backend.get_range(path, 0..1).await);
    assert_not_found(backend, "head", backend.head(path).await);
    assert!(
        backend
            .list("conformance-missing/")
            .await
            .unwrap()
            .is_empty(),
        "{backend}: list of a missing prefix"
    );
}

/// Ranged reads return exactly the requested bytes; reading past the end fails.
pub async fn ranges(backend: &dyn Backend) {
    let path = "conformance-ranges/data/ab/pack";
    let data = pattern(4096, 4);
    backend.put(path, data.clone()).await.unwrap();
    for range in [0..1, 0..4096, 100..200, 4000..4096, 4095..4096] {
        let got = backend.get_range(path, range.clone()).await.unwrap();
        assert_eq!(
            got,
            data.slice(range.start as usize..range.end as usize),
            "{backend}: range {range:?}"
        );
    }
    let past_end = backend.get_range(path, 4000..5000).await;
    assert!(
        past_end.is_err(),
        "{backend}: a range past the end gave {past_end:?}"
    );
}

/// Listing matches string prefixes across nested directories, sorted, with sizes.
pub async fn list_prefixes(backend: &dyn Backend) {
    let root = "conformance-list";
    let files = [
        ("data/00/aa", 1),
        ("data/01/bb", 2),
        ("data/0a/cc", 3),
        ("data/10/dd", 4),
        ("index/ee", 5),
        ("snapshots/ff", 6),
        ("datafile", 7),
    ];
    for (name, len) in files {
        backend
            .put(&format!("{root}/{name}"), pattern(len, len as u8))
            .await
            .unwrap();
    }
    let names = |listed: Vec<ObjectMeta>| -> Vec<(String, u64)> {
        listed
            .into_iter()
            .map(|m| {
                (
                    m.path
                        .strip_prefix(&format!("{root}/"))
                        .unwrap_or(&m.path)
                        .to_owned(),
                    m.size,
                )
            })
            .collect()
    };
    let expect = |wanted: &[&str]| -> Vec<(String, u64)> {
        wanted
            .iter()
            .map(|w| {
                let len = files.iter().find(|(n, _)| n == w).unwrap().1;
                ((*w).to_owned(), len as u64)
            })
            .collect()
    };
    let cases: [(&str, &[&str]); 6] = [
        (
            "data/",
            &["data/00/aa", "data/01/bb", "data/0a/cc", "data/10/dd"],
        ),
        ("data/0", &["data/00/aa", "data/01/bb", "data/0a/cc"]),
        ("data/01", &["data/01/bb"]),
        (
            "data",
            &[
                "data/00/aa",
                "data/01/bb",
                "data/0a/cc",
                "data/10/dd",
                "datafile",
            ],
        ),
        ("snap", &["snapshots/ff"]),
        (
            "",
            &[
                "data/00/aa",
                "data/01/bb",
                "data/0a/cc",
                "data/10/dd",
                "datafile",
                "index/ee",
                "snapshots/ff",
            ],
        ),
    ];
    for (prefix, wanted) in cases {
        let listed = backend.list(&format!("{root}/{prefix}")).await.unwrap();
        assert_eq!(names(listed), expect(wanted), "{backend}: list {prefix:?}");
    }
}

/// Zero-length objects exist and have size 0.
pub async fn empty_object(backend: &dyn Backend) {
    let path = "conformance-empty/e";
    backend.put(path, Bytes::new()).await.unwrap();
    assert_eq!(
        backend.get(path).await.unwrap(),
        Bytes::new(),
        "{backend}: empty get"
    );
    assert_eq!(
        backend.head(path).await.unwrap().size,
        0,
        "{backend}: empty head"
    );
}

/// An object bigger than the multipart threshold round-trips, also across part boundaries.
pub async fn large_object(backend: &dyn Backend) {
    let path = "conformance-large/data/ff/big";
    let len = crate::MULTIPART_THRESHOLD as usize + crate::MULTIPART_PART_SIZE as usize / 2 + 123;
    let data = pattern(len, 5);
    backend.put(path, data.clone()).await.unwrap();
    assert_eq!(
        backend.head(path).await.unwrap().size,
        len as u64,
        "{backend}: large head"
    );
    let got = backend.get(path).await.unwrap();
    assert!(
        got == data,
        "{backend}: large object differs after a round trip"
    );
    let boundary = crate::MULTIPART_PART_SIZE;
    let range = boundary - 10..boundary + 10;
    let got = backend.get_range(path, range.clone()).await.unwrap();
    assert_eq!(
        got,
        data.slice(range.start as usize..range.end as usize),
        "{backend}: range across a part boundary"
    );
}

/// Many puts at once all land; racing puts of one path leave one whole version.
pub async fn concurrent_puts(backend: &dyn Backend) {
    let puts = (0..16u8).map(|i| async move {
        let path = format!("conformance-concurrent/data/{i:02x}/obj");
        backend
            .put(&path, pattern(10_000 + usize::from(i), i))
            .await
    });
    futures::future::try_join_all(puts).await.unwrap();
    for i in 0..16u8 {
        let got = backend
            .get(&format!("conformance-concurrent/data/{i:02x}/obj"))
            .await
            .unwrap();
        assert_eq!(
            got,
            pattern(10_000 + usize::from(i), i),
            "{backend}: concurrent put {i}"
        );
    }
    let path = "conformance-concurrent/same";
    let racing = (0..8u8).map(|i| backend.put(path, pattern(20_000, i)));
    futures::future::try_join_all(racing).await.unwrap();
    let got = backend.get(path).await.unwrap();
    assert!(
        (0..8u8).any(|i| got == pattern(20_000, i)),
        "{backend}: racing puts left a mix of versions"
    );
}

/// Paths that could escape the repository are refused, for reads and writes alike.
pub async fn invalid_paths(backend: &dyn Backend) {
    for path in [
        "",
        "/abs",
        "../escape",
        "a/../b",
        "a//b",
        "a/./b",
        "trailing/",
    ] {
        let put = backend.put(path, Bytes::from_static(b"x")).await;
        assert!(put.is_err(), "{backend}: put {path:?} was accepted");
        let get = backend.get(path).await;
        assert!(
            matches!(get, Err(Error::Permanent { .. })),
            "{backend}: get {path:?} gave {get:?}, want a permanent error"
        );
    }
}

/// An object written piece by piece into a [`SpoolFile`] (in the backend's
/// spool directory, or the system's temp directory if it has none) and
/// stored with `put_file` reads back whole, and nothing of the spool file is
/// left behind or listed.
pub async fn spooled_puts(backend: &dyn Backend) {
    let mut spool = backend
        .spool_dir()
        .map_or_else(
            || SpoolFile::create(&std::env::temp_dir()),
            |dir| dir.create(),
        )
        .unwrap_or_else(|err| panic!("{backend}: creating a spool file: {err}"));
    let aligned = pattern(2 * direct::DIRECT_IO_ALIGN, 3);
    let (mut buffer, start) = direct::aligned_buffer(aligned.len());
    buffer[start..start + aligned.len()].copy_from_slice(&aligned);
    let pieces = [
        &buffer[start..start + aligned.len()],
        &pattern(1000, 4)[..],
        &pattern(300_000, 5)[..],
    ];
    let mut expected = Vec::new();
    for piece in pieces {
        spool.append(piece).unwrap();
        expected.extend_from_slice(piece);
    }
    let listed = backend.list("").await.unwrap();
    assert!(
        listed.iter().all(|meta| !meta.path.contains("spool")),
        "{backend}: a spool file being written is listed: {listed:?}"
    );
    let path = "conformance-spool/ab/pack";
    let spool = Arc::new(spool);
    let spool_name = spool.name().map(Path::to_owned);
    backend.put_file(path, Arc::clone(&spool)).await.unwrap();
    drop(spool);
    assert_eq!(
        backend.get(path).await.unwrap(),
        expected,
        "{backend}: get after put_file"
    );
    assert_eq!(
        backend.head(path).await.unwrap().size,
        expected.len() as u64
    );
    // An unnamed spool file has nothing to leave behind.
    if let Some(name) = spool_name {
        assert!(
            !name.exists(),
            "{backend}: the spool file is left at {}",
            name.display()
        );
    }
}
