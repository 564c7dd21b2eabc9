//! The conformance suite and filesystem-specific checks for [`FsStore`].

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cache_store::conformance::{
    read_verified, seeded_body, seeded_response, write_when_ready, Harness, Limits,
};
use cache_store::fs::FsStoreBuilder;
use cache_store::{FsStore, Store, WriteOptions};
use tempfile::TempDir;

mod corruption;
mod directory;
#[cfg(target_os = "linux")]
mod nonblocking;
mod writers;

// The crash-safety tests stay in this file: the child process is this binary run with
// `--exact crash_child_writer`, a name at the crate root.

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
    write_when_ready(writer.as_mut(), &body, 10_000).await;
    writer.commit().await.expect("commit");
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).expect("write");
}

/// Waits (up to 5 s) until the store has `n` temporary files.
async fn wait_for_temps(store: &FsStore, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.temp_paths().expect("temps").len() != n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(store.temp_paths().expect("temps").len(), n);
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
