//! Reads on the calling task that never wait for the disk (Linux): what the kernel holds in
//! memory is read at once, and everything else goes to tokio's blocking pool.
//!
//! Each test keeps the runtime's only blocking thread busy: a read that went to the pool is
//! then still pending after its first poll, and one that ran on the task is already done.

use std::future::Future;
use std::path::Path;
use std::pin::pin;
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use cache_store::conformance::{read_verified, seeded_body, seeded_response};
use cache_store::{Entries, FsStore, Store, StoreError, WriteOptions};
use http_body::Body;

use crate::{builder, only_file, put};

/// A current-thread runtime with one blocking thread, and a way to keep that thread busy.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Occupies the blocking pool's only thread until the returned sender is dropped.
fn occupy_blocking_pool() -> mpsc::Sender<()> {
    let (release, wait) = mpsc::channel::<()>();
    drop(tokio::task::spawn_blocking(move || {
        let _ = wait.recv();
    }));
    release
}

/// Polls a store read once: `Some` if it finished without waiting for the blocking pool.
fn poll_once(read: impl Future<Output = Result<Entries, StoreError>>) -> Option<Entries> {
    let mut read = pin!(read);
    match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(entries) => Some(entries.expect("read")),
        Poll::Pending => None,
    }
}

/// Reads `key` with the blocking pool's thread busy: checks that the read waits for the
/// pool (pending at its first poll), then lets the pool go and returns what it read.
async fn read_on_the_pool(store: &FsStore, key: &str) -> Entries {
    let release = occupy_blocking_pool();
    let mut read = pin!(store.get(key));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(
        read.as_mut().poll(&mut cx).is_pending(),
        "queued for the pool"
    );
    drop(release);
    read.await.expect("read")
}

/// Makes the directory holding `file` look unchanged for a minute, so that the store may
/// reuse its listing (a directory changed in the last two seconds is read again).
fn settle_dir_of(file: &Path) {
    let dir = std::fs::File::open(file.parent().expect("parent")).expect("open dir");
    let past = SystemTime::now() - Duration::from_secs(60);
    dir.set_modified(past).expect("set mtime");
}

/// Whether this kernel and filesystem can read without waiting (else the tests say so and
/// check nothing: every read then goes to the blocking pool, as documented).
fn nowait_supported(file: &Path) -> bool {
    let file = std::fs::File::open(file).expect("open");
    let mut buf = [0u8; 16];
    let mut bufs = [std::io::IoSliceMut::new(&mut buf)];
    match rustix::io::preadv2(&file, &mut bufs, 0, rustix::io::ReadWriteFlags::NOWAIT) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipped: preadv2(RWF_NOWAIT) fails here ({e}); reads all go to the pool");
            false
        }
    }
}

/// A stored entry, read once so that its directory listing is known to the store.
fn warm_entry(rt: &tokio::runtime::Runtime, store: &FsStore, len: usize) -> std::path::PathBuf {
    rt.block_on(put(store, "k", None, 7, len));
    let path = only_file(store, "k");
    settle_dir_of(&path);
    rt.block_on(async { read_verified(store, "k").await });
    path
}

#[test]
fn a_warm_small_entry_is_read_without_the_blocking_pool() {
    let dir = tempfile::tempdir().expect("dir");
    let store = builder(dir.path()).build().expect("build");
    let rt = runtime();
    let path = warm_entry(&rt, &store, 1024);
    if !nowait_supported(&path) {
        return;
    }
    rt.block_on(async {
        let release = occupy_blocking_pool();
        let entries = poll_once(store.get("k")).expect("read on the task, not queued");
        assert_eq!(entries.len(), 1);
        let body = entries[0].body().expect("body");
        assert_eq!(body.size_hint().exact(), Some(1024));
        drop(release);
        assert_eq!(read_verified(&store, "k").await.len(), 1);
    });
}

#[test]
fn a_warm_large_body_streams_without_the_blocking_pool() {
    let dir = tempfile::tempdir().expect("dir");
    let store = builder(dir.path()).build().expect("build");
    let rt = runtime();
    let len = 300 * 1024;
    let path = warm_entry(&rt, &store, len);
    if !nowait_supported(&path) {
        return;
    }
    rt.block_on(async {
        let release = occupy_blocking_pool();
        let entries = poll_once(store.get("k")).expect("read on the task, not queued");
        let mut body = pin!(entries[0].body().expect("body"));
        let mut read = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        // Every chunk is ready at its first poll: none waits for the pool's thread.
        while let Poll::Ready(frame) = body.as_mut().poll_frame(&mut cx) {
            let Some(frame) = frame else { break };
            let data = frame.expect("frame").into_data().expect("data");
            read.extend_from_slice(&data);
        }
        assert_eq!(
            read.len(),
            len,
            "the whole body, each chunk read on the task"
        );
        assert_eq!(read, seeded_body(7, len), "and the right bytes");
        drop(release);
    });
}

#[test]
fn with_nonblocking_reads_off_every_read_goes_to_the_blocking_pool() {
    let dir = tempfile::tempdir().expect("dir");
    let store = builder(dir.path())
        .nonblocking_reads(false)
        .build()
        .expect("build");
    let rt = runtime();
    warm_entry(&rt, &store, 1024);
    rt.block_on(async {
        assert_eq!(read_on_the_pool(&store, "k").await.len(), 1);
        assert_eq!(read_verified(&store, "k").await.len(), 1);
    });
}

#[test]
fn an_entry_whose_data_left_the_page_cache_is_read_on_the_blocking_pool() {
    let dir = tempfile::tempdir().expect("dir");
    let store = builder(dir.path()).build().expect("build");
    let rt = runtime();
    let path = warm_entry(&rt, &store, 1024);
    if !nowait_supported(&path) {
        return;
    }
    // Written back and dropped from the page cache: reading it now waits for the disk.
    let file = std::fs::File::open(&path).expect("open");
    file.sync_all().expect("sync");
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
    rt.block_on(async {
        let entries = read_on_the_pool(&store, "k").await;
        assert_eq!(entries.len(), 1, "still a hit, read on the pool");
        assert_eq!(read_verified(&store, "k").await.len(), 1);
    });
}

#[test]
fn a_key_whose_directory_just_changed_is_listed_on_the_blocking_pool() {
    let dir = tempfile::tempdir().expect("dir");
    let store = builder(dir.path()).build().expect("build");
    let rt = runtime();
    rt.block_on(async {
        put(&store, "k", None, 7, 1024).await;
        assert_eq!(read_on_the_pool(&store, "k").await.len(), 1);
        assert_eq!(read_verified(&store, "k").await.len(), 1);
    });
}

#[test]
fn an_expired_entry_is_removed_on_the_blocking_pool_not_the_task() {
    let dir = tempfile::tempdir().expect("dir");
    let store = builder(dir.path()).build().expect("build");
    let rt = runtime();
    let path = rt.block_on(async {
        let short = WriteOptions {
            ttl: Duration::from_millis(300),
            content_length: None,
        };
        let mut writer = store
            .begin("k", seeded_response(None, 7, 10).into(), short)
            .await
            .expect("begin");
        writer.write(seeded_body(7, 10)).expect("write");
        writer.commit().await.expect("commit");
        let path = only_file(&store, "k");
        settle_dir_of(&path);
        assert_eq!(read_verified(&store, "k").await.len(), 1);
        path
    });
    std::thread::sleep(Duration::from_millis(400));
    rt.block_on(async {
        // The removal waits for the pool.
        assert!(
            read_on_the_pool(&store, "k").await.is_empty(),
            "expired: a miss"
        );
        assert!(!path.exists(), "and removed");
    });
}
