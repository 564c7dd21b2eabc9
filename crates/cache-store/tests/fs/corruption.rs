//! Damaged entry files: flipped bytes, truncated files and files of another key are misses
//! or body errors, and are removed.

use std::time::Duration;

use cache_store::conformance::{read_body, read_verified, seeded_body};
use cache_store::Store;
use http_body::Body;

use crate::{builder, flip, only_file, put, store_in};

#[tokio::test]
async fn flipped_header_byte_is_a_miss_and_the_file_is_dropped() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path());
    put(&store, "k", None, 1, 1000).await;
    let path = only_file(&store, "k");
    flip(&path, 40);
    assert!(store.get("k").await.expect("get").is_empty());
    assert!(!path.exists(), "a corrupt entry is deleted");
}

#[tokio::test]
async fn flipped_byte_in_small_body_is_a_miss() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path());
    put(&store, "k", None, 1, 1000).await;
    let path = only_file(&store, "k");
    let len = std::fs::metadata(&path).expect("meta").len() as usize;
    flip(&path, len - 100);
    assert!(store.get("k").await.expect("get").is_empty());
}

#[tokio::test]
async fn flipped_byte_in_large_body_is_a_body_error() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path());
    let len = 1 << 20;
    put(&store, "k", None, 1, len).await;
    let path = only_file(&store, "k");
    let file_len = std::fs::metadata(&path).expect("meta").len() as usize;
    // In the last chunk of the body: the frame holding it must never be yielded.
    flip(&path, file_len - 10);
    let entries = store.get("k").await.expect("get");
    let entry = entries.first().expect("header is intact");
    let mut body = entry.body().expect("body");
    let good = seeded_body(1, len);
    let mut at = 0;
    let mut failed = false;
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        match frame {
            Ok(frame) => {
                let data = frame.into_data().expect("data");
                assert_eq!(
                    data,
                    good.slice(at..at + data.len()),
                    "wrong bytes yielded at {at}"
                );
                at += data.len();
            }
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "a damaged body read to the end without error");
    assert!(at < len);
}

#[tokio::test]
async fn flipped_byte_early_in_large_body_ends_the_read_with_an_error() {
    let dir = tempfile::tempdir().expect("dir");
    for inline in [false, true] {
        let store = builder(dir.path())
            .inline_reads(inline)
            .build()
            .expect("build");
        let len = 3 << 20;
        put(&store, "k", None, 1, len).await;
        let path = store
            .variant_paths("k")
            .expect("list")
            .pop()
            .expect("one file");
        flip(&path, 200_000);
        let entries = store.get("k").await.expect("get");
        let entry = entries.first().expect("header is intact");
        // Frames before the end cannot be checked yet; the read must end in an error, so a
        // consumer never takes the body for complete.
        let result = read_body(entry.body().expect("body")).await;
        assert!(
            result.is_err(),
            "inline {inline}: damaged body read without error"
        );
    }
}

/// Hardening: a streamed body that fails its checksum is removed on the first failed read, so
/// that later hits do not stream the damaged prefix again until the entry expires.
#[tokio::test]
async fn large_body_failing_its_checksum_is_removed_on_the_first_failed_read() {
    let dir = tempfile::tempdir().expect("dir");
    for inline in [false, true] {
        let store = builder(dir.path())
            .inline_reads(inline)
            .build()
            .expect("build");
        let len = 1 << 20;
        put(&store, "k", None, 1, len).await;
        let path = only_file(&store, "k");
        let file_len = std::fs::metadata(&path).expect("meta").len() as usize;
        flip(&path, file_len - 10);
        let entries = store.get("k").await.expect("get");
        let entry = entries.first().expect("header is intact");
        assert!(read_body(entry.body().expect("body")).await.is_err());
        // The removal runs on the blocking pool (or inline): give it a moment.
        for _ in 0..200 {
            if !path.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            !path.exists(),
            "inline {inline}: the damaged file is still there"
        );
        assert!(store.get("k").await.expect("get").is_empty());
    }
}

#[tokio::test]
async fn small_body_failing_its_checksum_is_removed() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path());
    put(&store, "k", None, 1, 1000).await;
    let path = only_file(&store, "k");
    let len = std::fs::metadata(&path).expect("meta").len() as usize;
    flip(&path, len - 100);
    assert!(store.get("k").await.expect("get").is_empty());
    assert!(!path.exists(), "a damaged small entry is deleted");
}

#[tokio::test]
async fn truncated_file_is_a_miss() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path());
    for (i, len) in [10usize, 200_000].into_iter().enumerate() {
        let key = format!("k{i}");
        put(&store, &key, None, 1, len).await;
        let path = store
            .variant_paths(&key)
            .expect("list")
            .pop()
            .expect("one file");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        let full = file.metadata().expect("meta").len();
        file.set_len(full - 3).expect("truncate");
        assert!(store.get(&key).await.expect("get").is_empty(), "{key}");
    }
}

#[tokio::test]
async fn another_keys_file_under_our_name_is_a_miss() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store_in(dir.path());
    put(&store, "a", None, 1, 100).await;
    put(&store, "b", None, 2, 100).await;
    let a = store.variant_paths("a").expect("list").pop().expect("a");
    let b = store.variant_paths("b").expect("list").pop().expect("b");
    // As if "b" hashed like "a": its file holds key "a".
    std::fs::copy(&a, &b).expect("copy");
    assert!(store.get("b").await.expect("get").is_empty());
    assert_eq!(read_verified(&store, "a").await.len(), 1);
    assert!(b.exists(), "an intact entry of another key is left alone");
}
