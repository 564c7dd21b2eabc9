//! Writers and the disk (issue 10): bounded buffers, no thread held per write, and
//! backpressure through `poll_ready`.

use std::time::Duration;

use cache_store::conformance::{read_verified, seeded_body, seeded_response};
use cache_store::{FsStore, Store};

use crate::{builder, put, wait_for_temps, HOUR};

/// Issue 10: a writer never holds more than its bound, and never a thread: with the blocking
/// pool busy (one thread, taken), chunks pile up in the writer's buffer until the bound, and
/// then the write fails and the entry is abandoned, leaving nothing behind.
#[test]
fn a_writer_that_the_disk_cannot_keep_up_with_is_abandoned_within_its_bound() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        let store = FsStore::builder(dir.path())
            .write_buffer_bytes(256 << 10)
            .build()
            .expect("build");
        let mut writer = store
            .begin("k", seeded_response(None, 1, 4 << 20).into(), HOUR)
            .await
            .expect("begin");
        // The first batch takes the only blocking thread... and so does this, until released.
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let stall = tokio::task::spawn_blocking(move || {
            let _ = wait.recv();
        });
        let body = seeded_body(1, 4 << 20);
        let mut accepted = 0;
        let mut refused = None;
        for piece in body.chunks(16 << 10) {
            match writer.write(body.slice_ref(piece)) {
                Ok(()) => accepted += piece.len(),
                Err(error) => {
                    refused = Some(error);
                    break;
                }
            }
        }
        let refused = refused.expect("a stalled disk makes the writer give up");
        assert!(
            matches!(refused, cache_store::StoreError::Unavailable(_)),
            "{refused}"
        );
        // What it took before giving up: one batch on its way plus at most the bound.
        assert!(
            accepted <= (64 << 10) + (256 << 10) + (16 << 10),
            "{accepted}"
        );
        assert!(
            writer.commit().await.is_err(),
            "an abandoned entry does not commit"
        );
        release.send(()).expect("release");
        stall.await.expect("stall");
        // The batch queued behind the stall runs now and hands its file to the abandoned
        // writer's clean-up, itself a blocking task: let both run (one blocking thread, in
        // order) before looking for the file.
        for _ in 0..3 {
            tokio::task::spawn_blocking(|| ()).await.expect("marker");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        wait_for_temps(&store, 0).await;
        assert!(store.get("k").await.expect("get").is_empty());
    });
}

/// Issue 10: writes in progress hold no thread, so 600 of them, uncommitted, do not delay a
/// read (with a writer thread per write, as before, the blocking pool's 8 threads would all
/// be taken and the read would wait for a commit that never comes).
#[test]
fn six_hundred_uncommitted_writes_do_not_delay_a_read() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        let store = builder(dir.path()).build().expect("build");
        put(&store, "ready", None, 7, 1000).await;
        let body = seeded_body(1, 100_000);
        let mut writers = Vec::new();
        for i in 0..600 {
            let mut writer = store
                .begin(
                    &format!("k{i}"),
                    seeded_response(None, 1, 100_000).into(),
                    HOUR,
                )
                .await
                .expect("begin");
            writer.write(body.slice(..70_000)).expect("write");
            writers.push(writer);
        }
        let read = tokio::time::timeout(Duration::from_secs(20), store.get("ready")).await;
        let entries = read.expect("the read waited on the writes").expect("get");
        assert_eq!(entries.len(), 1);
        drop(writers);
        wait_for_temps(&store, 0).await;
    });
}

/// Backpressure: once half its bound waits behind a batch on its way to the disk, a writer's
/// `poll_ready` is pending (so a tee reads no more from the origin), and ready again once
/// the disk has caught up; the entry is then stored whole.
#[test]
fn a_writer_behind_the_disk_is_pending_until_it_catches_up() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        let store = FsStore::builder(dir.path())
            .write_buffer_bytes(256 << 10)
            .build()
            .expect("build");
        let len = 1 << 20;
        let mut writer = store
            .begin("k", seeded_response(None, 3, len).into(), HOUR)
            .await
            .expect("begin");
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let stall = tokio::task::spawn_blocking(move || {
            let _ = wait.recv();
        });
        let body = seeded_body(3, len);
        let mut pieces = body.chunks(16 << 10);
        let ready = |writer: &mut Box<dyn cache_store::EntryWriter>| {
            let waker = std::task::Waker::noop();
            writer.poll_ready(&mut std::task::Context::from_waker(waker))
        };
        let mut written = 0;
        while ready(&mut writer).is_ready() {
            let piece = pieces
                .next()
                .expect("the writer should push back before the end");
            writer.write(body.slice_ref(piece)).expect("write");
            written += piece.len();
        }
        assert!(
            written <= (64 << 10) + (128 << 10) + (16 << 10),
            "{written}"
        );
        release.send(()).expect("release");
        stall.await.expect("stall");
        for piece in pieces {
            std::future::poll_fn(|cx| writer.poll_ready(cx))
                .await
                .expect("ready again");
            writer.write(body.slice_ref(piece)).expect("write");
        }
        writer.commit().await.expect("commit");
        assert_eq!(read_verified(&store, "k").await.len(), 1);
    });
}
