//! The cache directory: bodies streamed in chunks, temporary files, the size index, two
//! stores on one directory, remembered listings and file permissions.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use cache_store::conformance::{read_verified, seeded_response};
use cache_store::Store;
use http_body::Body;

use crate::{builder, only_file, put, store_in, wait_for_temps, HOUR};

#[tokio::test]
async fn large_bodies_stream_in_chunks() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path());
    let len = 1 << 20;
    put(&store, "k", None, 7, len).await;
    let entries = store.get("k").await.expect("get");
    let entry = entries.first().expect("hit");
    let mut body = entry.body().expect("body");
    assert_eq!(body.size_hint().exact(), Some(len as u64));
    assert!(entry.body().is_none(), "a streamed body is handed out once");
    let mut frames = 0;
    let mut total = 0;
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let data = frame.expect("frame").into_data().expect("data");
        assert!(data.len() <= 64 * 1024);
        total += data.len();
        frames += 1;
    }
    assert_eq!(total, len);
    assert!(frames >= 16, "{frames} frames");
}

#[tokio::test]
async fn aborted_and_refused_writes_leave_no_temp_file() {
    let dir = tempfile::tempdir().expect("dir");
    let store = builder(dir.path())
        .max_body_size(200_000)
        .build()
        .expect("build");
    let mut writer = store
        .begin("k", seeded_response(None, 1, 10).into(), HOUR)
        .await
        .expect("begin");
    // A batch of 64 KiB goes to a temporary file, removed when the writer is dropped.
    writer.write(Bytes::from(vec![0; 100_000])).expect("write");
    wait_for_temps(&store, 1).await;
    drop(writer);
    wait_for_temps(&store, 0).await;

    let mut writer = store
        .begin("k", seeded_response(None, 1, 10).into(), HOUR)
        .await
        .expect("begin");
    writer.write(Bytes::from(vec![0; 100_000])).expect("write");
    wait_for_temps(&store, 1).await;
    let refused = writer.write(Bytes::from(vec![0; 150_000]));
    assert!(matches!(
        refused,
        Err(cache_store::StoreError::TooLarge { .. })
    ));
    // Going over the limit abandons the file even before the writer is dropped.
    wait_for_temps(&store, 0).await;
    assert!(writer.commit().await.is_err());
    assert!(store.variant_paths("k").expect("list").is_empty());
}

#[tokio::test]
async fn stale_temp_files_are_removed_on_first_scan() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path());
    put(&store, "k", None, 1, 10).await;
    let entry = store
        .variant_paths("k")
        .expect("list")
        .pop()
        .expect("entry");
    let fanout = entry.parent().expect("parent");
    let temp = fanout.join(".tmp-1-0-crashed");
    std::fs::write(&temp, b"partial").expect("write temp");

    // A young temp file may belong to a live writer of another process: kept.
    let young = builder(dir.path()).build().expect("build");
    assert!(young.size_bytes() > 0);
    assert!(temp.exists());

    let old = builder(dir.path())
        .stale_temp_age(Duration::ZERO)
        .build()
        .expect("build");
    assert_eq!(
        old.size_bytes(),
        std::fs::metadata(&entry).expect("meta").len()
    );
    assert!(!temp.exists(), "stale temp file kept");
    assert_eq!(read_verified(&old, "k").await.len(), 1);
}

#[tokio::test]
async fn the_index_sees_existing_entries_and_evicts_them() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path());
    for i in 0..10 {
        put(&store, &format!("k{i}"), None, i, 10_000).await;
    }
    let total = store.size_bytes();
    assert!(total > 100_000);
    // A new process with a smaller bound evicts the oldest files first when it writes.
    let small = builder(dir.path())
        .max_size_bytes(total / 2)
        .build()
        .expect("build");
    put(&small, "new", None, 99, 10_000).await;
    assert!(small.size_bytes() <= total / 2);
    assert_eq!(read_verified(&small, "new").await.len(), 1);
    assert!(
        read_verified(&small, "k0").await.is_empty(),
        "oldest entry kept"
    );
    assert_eq!(
        read_verified(&small, "k9").await.len(),
        1,
        "newest entry evicted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_directory_never_mix_entries() {
    // Two handles with separate indexes and locks, as two processes would have.
    let dir = tempfile::tempdir().expect("dir");
    let stores = [store_in(dir.path()), store_in(dir.path())];
    let mut tasks = Vec::new();
    for (s, store) in stores.iter().enumerate() {
        for lane in 0..3u64 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for round in 0..10u64 {
                    let seed = (s as u64 * 100 + lane) * 1000 + round;
                    let language = if round % 2 == 0 { "en" } else { "fr" };
                    let len = 500 + (seed as usize * 7919) % 150_000;
                    put(&store, "shared", Some(language), seed, len).await;
                    // Read through the other handle too.
                    assert!(read_verified(&store, "shared").await.len() <= 2);
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("task");
    }
    for store in &stores {
        assert_eq!(read_verified(store, "shared").await.len(), 2);
    }
    assert!(stores[0].temp_paths().expect("temps").is_empty());
}

fn set_mtime(dir: &Path, time: std::time::SystemTime) {
    std::fs::File::open(dir)
        .expect("open dir")
        .set_modified(time)
        .expect("set mtime");
}

#[tokio::test]
async fn directory_listings_are_reused_only_while_unchanged() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path());
    put(&store, "k", Some("en"), 1, 100).await;
    let fanout = store.variant_paths("k").expect("list")[0]
        .parent()
        .expect("parent")
        .to_owned();
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    set_mtime(&fanout, old);
    // Listed from the directory, and remembered: it has been quiet for long enough.
    assert_eq!(read_verified(&store, "k").await.len(), 1);

    // A new variant changes the directory's time: the listing is not reused.
    put(&store, "k", Some("fr"), 2, 100).await;
    assert_eq!(read_verified(&store, "k").await.len(), 2);

    // White box: a change that leaves the directory's time as it was (impossible in practice,
    // forced here) shows that the remembered listing is what reads use.
    let older = old - Duration::from_secs(60);
    set_mtime(&fanout, older);
    let listed = read_verified(&store, "k").await.len();
    assert_eq!(listed, 2, "re-listed and remembered");
    put(&store, "k", Some("de"), 3, 100).await;
    set_mtime(&fanout, older);
    let reused = read_verified(&store, "k").await.len();
    assert_eq!(reused, 2, "the remembered listing was not used");

    // Any real change is seen again.
    let en = cache_store::VariantId::of(&seeded_response(Some("en"), 0, 0));
    store.remove("k", Some(&en)).await.expect("remove");
    let mut seeds: Vec<u64> = read_verified(&store, "k")
        .await
        .iter()
        .map(|s| s.1)
        .collect();
    seeds.sort();
    assert_eq!(seeds, [2, 3]);
}

/// Hardening: cached responses may hold one user's data; other local users must not read
/// them. Entry files (written, and rewritten by an update) are the owner's only, and so are
/// the directories the store creates.
#[cfg(unix)]
#[tokio::test]
async fn entry_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("cache");
    let store = store_in(&root);
    put(&store, "k", None, 1, 1000).await;
    let path = only_file(&store, "k");
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600, "entry file");
    let entries = store.get("k").await.expect("get");
    let entry = entries.first().expect("stored");
    store
        .update("k", &entry.variant, entry.response.clone(), HOUR.ttl)
        .await
        .expect("update");
    assert_eq!(mode(&only_file(&store, "k")), 0o600, "updated entry file");
    let mut at = path.parent().expect("parent");
    while at != dir.path() {
        assert_eq!(mode(at), 0o700, "{}", at.display());
        at = at.parent().expect("parent");
    }
}
