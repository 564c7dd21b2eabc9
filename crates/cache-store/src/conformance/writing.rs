//! Checks of writing: streamed and large bodies, visibility on commit, aborted writes.

use std::time::Duration;

use http_body::Body;

use super::{
    body_of, get, options, put_seeded, read_body, read_verified, seeded_body, seeded_response,
    Harness, Limits, HOUR, KEY,
};
use crate::Store;

/// A multi-MiB body written in many uneven chunks reads back intact.
pub async fn streams_large_body<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let len = 5 * 1024 * 1024 + 123;
    let body = seeded_body(42, len);
    let mut writer = store
        .begin(KEY, seeded_response(None, 42, len).into(), options(HOUR))
        .await
        .expect("begin");
    let mut at = 0;
    let mut step = 1;
    while at < len {
        let end = (at + step).min(len);
        writer.write(body.slice(at..end)).expect("write");
        at = end;
        step = (step * 7 + 13) % 200_000 + 1;
    }
    writer.commit().await.expect("commit");

    let entries = get(&store, KEY).await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    let stored = body_of(entry);
    assert_eq!(stored.size_hint().exact(), Some(len as u64));
    let read = read_body(stored).await.expect("body");
    assert_eq!(read.len(), len);
    assert!(read == body, "large body differs");
}

/// A writer that waits for [`EntryWriter::poll_ready`](crate::EntryWriter::poll_ready) before
/// each write is never refused for being ahead of its backend, however large one write is:
/// hyper hands the cache's tee frames as large as its read buffer, which grows past 800 KiB
/// under load (a 1 GiB body was once refused by SQLite that way).
pub async fn large_writes_after_readiness<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let write = 4 << 20;
    let len = 3 * write;
    let body = seeded_body(7, len);
    let mut writer = store
        .begin(KEY, seeded_response(None, 7, len).into(), options(HOUR))
        .await
        .expect("begin");
    for at in (0..len).step_by(write) {
        std::future::poll_fn(|cx| writer.poll_ready(cx))
            .await
            .expect("ready");
        writer
            .write(body.slice(at..at + write))
            .expect("a write after readiness is not refused");
    }
    writer.commit().await.expect("commit");

    let entries = get(&store, KEY).await;
    assert_eq!(entries.len(), 1);
    let read = read_body(body_of(&entries[0])).await.expect("body");
    assert!(read == body, "body differs");
}

/// A variant is invisible while its body is being written; until then readers see the previous
/// version.
pub async fn invisible_until_commit<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let mut writer = store
        .begin(KEY, seeded_response(None, 1, 10).into(), options(HOUR))
        .await
        .expect("begin");
    writer.write(seeded_body(1, 10).slice(..5)).expect("write");
    assert!(get(&store, KEY).await.is_empty(), "visible before commit");
    writer.write(seeded_body(1, 10).slice(5..)).expect("write");
    assert!(get(&store, KEY).await.is_empty(), "visible before commit");
    writer.commit().await.expect("commit");
    assert_eq!(read_verified(&store, KEY).await.len(), 1);

    // Replacing: the old version stays visible until the new one commits.
    let mut writer = store
        .begin(KEY, seeded_response(None, 2, 20).into(), options(HOUR))
        .await
        .expect("begin");
    writer.write(seeded_body(2, 20)).expect("write");
    let seen = read_verified(&store, KEY).await;
    assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), [1]);
    writer.commit().await.expect("commit");
    let seen = read_verified(&store, KEY).await;
    assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), [2]);
}

/// A writer dropped before commit leaves nothing, and does not disturb the version already
/// stored.
pub async fn aborted_write_leaves_nothing<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let mut writer = store
        .begin(KEY, seeded_response(None, 1, 100_000).into(), options(HOUR))
        .await
        .expect("begin");
    writer
        .write(seeded_body(1, 100_000).slice(..50_000))
        .expect("write");
    drop(writer);
    assert!(get(&store, KEY).await.is_empty(), "aborted write visible");

    put_seeded(&store, KEY, None, 2, 1000).await;
    let mut writer = store
        .begin(KEY, seeded_response(None, 3, 1000).into(), options(HOUR))
        .await
        .expect("begin");
    writer.write(seeded_body(3, 1000)).expect("write");
    drop(writer);
    // Give a background writer time to clean up, then check again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = read_verified(&store, KEY).await;
    assert_eq!(seen.iter().map(|s| s.1).collect::<Vec<_>>(), [2]);
}
