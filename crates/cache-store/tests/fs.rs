//! The conformance suite and filesystem-specific checks for [`FsStore`].

use std::sync::Mutex;

use cache_store::conformance::{Harness, Limits};
use cache_store::fs::FsStoreBuilder;
use cache_store::FsStore;
use tempfile::TempDir;

/// A store builder whose writers may hold a whole test body: these tests write bodies in loops
/// that never yield, faster than any disk, where the default bound on a writer's buffer would
/// rightly abandon the entry. The bound is tested by itself
/// (`a_writer_that_the_disk_cannot_keep_up_with_is_abandoned_within_its_bound`).
fn builder(dir: impl Into<std::path::PathBuf>) -> FsStoreBuilder {
    FsStore::builder(dir).write_buffer_bytes(64 << 20)
}

/// Makes each store in a fresh temporary directory, kept until the harness is dropped.
#[derive(Default)]
struct Fs {
    dirs: Mutex<Vec<TempDir>>,
    inline_reads: bool,
    fsync: bool,
}

impl Fs {
    fn inline() -> Self {
        Fs {
            inline_reads: true,
            ..Fs::default()
        }
    }

    fn fsync() -> Self {
        Fs {
            fsync: true,
            ..Fs::default()
        }
    }
}

impl Harness for Fs {
    type Store = FsStore;

    fn new_store(&self, limits: Limits) -> FsStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = builder(dir.path())
            .max_size_bytes(limits.max_total_bytes)
            .max_body_size(limits.max_body_size)
            .inline_reads(self.inline_reads)
            .fsync(self.fsync)
            .build()
            .expect("build");
        self.dirs.lock().expect("lock").push(dir);
        store
    }

    fn corrupt(&self, store: &FsStore, key: &str) -> bool {
        let paths = store.variant_paths(key).expect("list");
        assert!(!paths.is_empty(), "nothing to corrupt");
        for path in paths {
            let mut bytes = std::fs::read(&path).expect("read");
            // Inside the header records (the primary key record starts at 16).
            bytes[30] ^= 0x55;
            std::fs::write(&path, bytes).expect("write");
        }
        true
    }
}

mod conformance {
    cache_store::conformance_tests!(super::Fs::default());
}

mod conformance_inline_reads {
    cache_store::conformance_tests!(super::Fs::inline());
}

mod conformance_fsync {
    cache_store::conformance_tests!(super::Fs::fsync());
}

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_store::conformance::{read_body, read_verified, seeded_body, seeded_response};
use cache_store::{Store, WriteOptions};
use http_body::Body;

const HOUR: WriteOptions = WriteOptions {
    ttl: Duration::from_secs(3600),
    content_length: None,
};

fn store_in(dir: &Path) -> FsStore {
    builder(dir).build().expect("build")
}

/// The one entry file stored under `key`.
fn only_file(store: &FsStore, key: &str) -> std::path::PathBuf {
    store
        .variant_paths(key)
        .expect("list")
        .pop()
        .expect("one file")
}

async fn put(store: &FsStore, key: &str, language: Option<&str>, seed: u64, len: usize) {
    let body = seeded_body(seed, len);
    let mut writer = store
        .begin(key, seeded_response(language, seed, len).into(), HOUR)
        .await
        .expect("begin");
    for piece in body.chunks(10_000) {
        writer.write(body.slice_ref(piece)).expect("write");
    }
    writer.commit().await.expect("commit");
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).expect("write");
}

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

/// Waits (up to 5 s) until the store has `n` temporary files.
async fn wait_for_temps(store: &FsStore, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.temp_paths().expect("temps").len() != n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(store.temp_paths().expect("temps").len(), n);
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

// --- Crash safety: a writer process killed with SIGKILL mid-write. ---

const CHILD_DIR_VAR: &str = "CACHE_STORE_CRASH_CHILD_DIR";
const CRASH_KEYS: u64 = 40;

fn crash_key(i: u64) -> String {
    format!("https://example.com/crash/{i}")
}

/// The child role: writes entries forever (until killed), several at a time, each body in many
/// chunks. Does nothing when run as a normal test.
#[test]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = builder(dir).build().expect("build");
        // One write that never finishes, so that the kill surely tears one: over 64 KiB, so
        // that a batch reaches its temporary file.
        let mut stalled = store
            .begin(
                &crash_key(0),
                seeded_response(Some("de"), 0, 100_000).into(),
                HOUR,
            )
            .await
            .expect("begin");
        stalled
            .write(seeded_body(0, 100_000).slice(..70_000))
            .expect("write");
        // Four independent lanes, so that other writes are in flight at random stages.
        let mut lanes = Vec::new();
        for lane in 0..4u64 {
            let store = store.clone();
            lanes.push(tokio::spawn(async move {
                for round in 0u64.. {
                    let seed = round * 4 + lane + 1;
                    let key = crash_key(seed % CRASH_KEYS);
                    let language = if seed % 3 == 0 { "fr" } else { "en" };
                    let len = (seed as usize * 7919) % 400_000;
                    let body = seeded_body(seed, len);
                    let mut writer = store
                        .begin(
                            &key,
                            seeded_response(Some(language), seed, len).into(),
                            HOUR,
                        )
                        .await
                        .expect("begin");
                    for piece in body.chunks(8192) {
                        writer.write(body.slice_ref(piece)).expect("write");
                        tokio::task::yield_now().await;
                    }
                    writer.commit().await.expect("commit");
                }
            }));
        }
        for lane in lanes {
            lane.await.expect("lane");
        }
        drop(stalled);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_write_leaves_no_entry_that_reads_back_wrong() {
    let dir = tempfile::tempdir().expect("dir");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_VAR, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");

    // Read alongside the writer (two processes on one directory) until it has committed
    // enough, then kill it mid-stream.
    let reader = store_in(dir.path());
    let started = Instant::now();
    let mut verified = 0;
    loop {
        for i in 0..CRASH_KEYS {
            verified += read_verified(&reader, &crash_key(i)).await.len();
        }
        let entries: usize = (0..CRASH_KEYS)
            .map(|i| reader.variant_paths(&crash_key(i)).map_or(0, |p| p.len()))
            .sum();
        let in_flight = !reader.temp_paths().expect("temps").is_empty();
        if (entries >= 30 && in_flight) || started.elapsed() > Duration::from_secs(20) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The child must still be writing, or this test proves nothing.
    if let Some(status) = child.try_wait().expect("try_wait") {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        }
        panic!("the writer exited before the kill: {status}\n{err}");
    }
    // SIGKILL: no destructor, no cleanup.
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(verified > 0, "the reader never saw a committed entry");
    // The kill interrupted writes: their temporary files are still there.
    let torn = reader.temp_paths().expect("temps").len();
    assert!(torn > 0, "no write was in flight at the kill");

    // A fresh store over the wreck: everything that reads back reads back right.
    let after = builder(dir.path())
        .stale_temp_age(Duration::ZERO)
        .build()
        .expect("build");
    // The first scan (here forced by asking for the size) removes the torn temp files.
    assert!(after.size_bytes() > 0);
    let mut found = 0;
    for i in 0..CRASH_KEYS {
        found += read_verified(&after, &crash_key(i)).await.len();
    }
    assert!(found >= 10, "only {found} entries survived");
    assert!(
        after.temp_paths().expect("temps").is_empty(),
        "temp files left after the scan"
    );
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
