//! The conformance suite and SQLite-specific checks for [`SqliteStore`].

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_store::conformance::{
    read_body, read_verified, seeded_body, seeded_response, write_when_ready, Harness, Limits,
};
use cache_store::{SqliteStore, Store, StoreError, WriteOptions};
use rusqlite::{params, Connection};
use tempfile::TempDir;

/// Makes each store in a fresh temporary database file, or in `:memory:`.
struct Sqlite {
    dirs: Mutex<Vec<TempDir>>,
    memory: bool,
    /// Keep the default write queue (8 chunks) instead of one as deep as the largest body.
    default_queue: bool,
}

impl Sqlite {
    fn file() -> Self {
        Sqlite {
            dirs: Mutex::default(),
            memory: false,
            default_queue: false,
        }
    }

    fn memory() -> Self {
        Sqlite {
            dirs: Mutex::default(),
            memory: true,
            default_queue: false,
        }
    }
}

impl Harness for Sqlite {
    type Store = SqliteStore;

    fn new_store(&self, limits: Limits) -> SqliteStore {
        let path = if self.memory {
            PathBuf::from(":memory:")
        } else {
            let dir = tempfile::tempdir().expect("temp dir");
            let path = dir.path().join("cache.sqlite");
            self.dirs.lock().expect("lock").push(dir);
            path
        };
        let builder = SqliteStore::builder(path)
            .max_size_bytes(limits.max_total_bytes)
            .max_body_size(limits.max_body_size);
        if self.default_queue {
            return builder.build().expect("build");
        }
        builder
            // The suite's writers write whole bodies (up to 5 MiB) without ever yielding to the
            // executor, which no database keeps up with: with a queue of a few chunks their
            // writes would fail by design (see `a_write_fails_with_unavailable_when_the_
            // database_falls_behind`). A queue as deep as the largest body lets the suite
            // check everything else.
            .write_queue_chunks((limits.max_body_size as usize).div_ceil(64 * 1024) + 1)
            .build()
            .expect("build")
    }

    fn settle(&self, store: &SqliteStore) {
        store.maintain().expect("maintain");
    }

    /// Flips a byte inside the header records of every variant of `key`, through a connection
    /// of its own (as another process would). An in-memory database is reachable only through
    /// its store, so the check is skipped there; it shares every code path with files.
    fn corrupt(&self, store: &SqliteStore, key: &str) -> bool {
        if self.memory {
            return false;
        }
        let conn = raw(store.path());
        let rows: Vec<(i64, Vec<u8>)> = {
            let mut stmt = conn
                .prepare("SELECT id, header FROM entries WHERE key = ?1 AND committed = 1")
                .expect("prepare");
            let rows = stmt
                .query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))
                .expect("query");
            rows.collect::<Result<_, _>>().expect("rows")
        };
        assert!(!rows.is_empty(), "nothing to corrupt");
        for (id, mut header) in rows {
            // Inside the header records (the primary key record starts at 16).
            header[30] ^= 0x55;
            conn.execute(
                "UPDATE entries SET header = ?2 WHERE id = ?1",
                params![id, header],
            )
            .expect("update");
        }
        true
    }
}

mod conformance_file {
    cache_store::conformance_tests!(super::Sqlite::file());
}

mod conformance_memory {
    cache_store::conformance_tests!(super::Sqlite::memory());
}

const HOUR: WriteOptions = WriteOptions {
    ttl: Duration::from_secs(3600),
    content_length: None,
};

const KEY: &str = "https://example.com/sqlite";

/// A connection of its own to the database file, as another process would open it.
fn raw(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open raw connection");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn
}

/// (published entries, staged entries, chunks) in the database file.
fn counts(path: &Path) -> (i64, i64, i64) {
    let conn = raw(path);
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
    (
        count("SELECT COUNT(*) FROM entries WHERE committed = 1"),
        count("SELECT COUNT(*) FROM entries WHERE committed = 0"),
        // Chunks of retired entries stay a while for readers still streaming them.
        count(
            "SELECT COUNT(*) FROM chunks WHERE entry_id NOT IN \
             (SELECT id FROM entries WHERE committed = 2)",
        ),
    )
}

/// Waits (up to 5 s) until the database holds `expected` (published, staged, chunks).
async fn wait_for_counts(path: &Path, expected: (i64, i64, i64)) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = counts(path);
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "rows left behind: {now:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cache.sqlite");
    (dir, path)
}

fn open(path: &Path) -> SqliteStore {
    SqliteStore::builder(path).build().expect("build")
}

async fn put(store: &SqliteStore, key: &str, language: Option<&str>, seed: u64, len: usize) {
    let body = seeded_body(seed, len);
    let mut writer = store
        .begin(key, seeded_response(language, seed, len).into(), HOUR)
        .await
        .expect("begin");
    write_when_ready(writer.as_mut(), &body, 10_000).await;
    writer.commit().await.expect("commit");
}

fn seeds(seen: &[(cache_store::VariantId, u64)]) -> Vec<u64> {
    let mut seeds: Vec<u64> = seen.iter().map(|s| s.1).collect();
    seeds.sort();
    seeds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_see_each_others_commits_and_removals() {
    let (_dir, path) = temp_db();
    let a = open(&path);
    let b = open(&path);

    put(&a, KEY, Some("en"), 1, 300 * 1024).await;
    put(&a, KEY, Some("fr"), 2, 100).await;
    assert_eq!(
        seeds(&read_verified(&b, KEY).await),
        [1, 2],
        "b misses a's commits"
    );

    // b replaces a's variant; a sees the new version only.
    put(&b, KEY, Some("en"), 3, 200 * 1024).await;
    assert_eq!(seeds(&read_verified(&a, KEY).await), [2, 3]);

    let fr = cache_store::VariantId::of(&seeded_response(Some("fr"), 0, 0));
    b.remove(KEY, Some(&fr)).await.expect("remove");
    assert_eq!(
        seeds(&read_verified(&a, KEY).await),
        [3],
        "a sees a removed variant"
    );

    a.remove(KEY, None).await.expect("remove key");
    assert!(b.get(KEY).await.expect("get").is_empty());
    put(&b, KEY, None, 4, 10).await;
    a.clear().await.expect("clear");
    assert!(
        b.get(KEY).await.expect("get").is_empty(),
        "b sees entries after a's clear"
    );
    assert_eq!(counts(&path), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_chunk_ends_the_streamed_body_in_an_error_and_removes_the_entry() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    put(&store, KEY, None, 7, 300 * 1024).await;

    let conn = raw(&path);
    let (id, mut data): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT c.entry_id, c.data FROM chunks c JOIN entries e ON e.id = c.entry_id
             WHERE e.key = ?1 AND c.seq = 2",
            [KEY],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("chunk 2");
    data[1000] ^= 0x01;
    conn.execute(
        "UPDATE chunks SET data = ?3 WHERE entry_id = ?1 AND seq = ?2",
        params![id, 2, data],
    )
    .expect("damage");

    let entries = store.get(KEY).await.expect("get");
    assert_eq!(
        entries.len(),
        1,
        "the header is intact, so the entry is listed"
    );
    let body = entries[0].body().expect("body");
    let result = read_body(body).await;
    assert!(
        matches!(result, Err(StoreError::Corrupt(_))),
        "a damaged body must end in an error: {result:?}"
    );
    assert_eq!(
        counts(&path),
        (0, 0, 0),
        "the damaged entry was not removed"
    );
    assert!(store.get(KEY).await.expect("get").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_chunk_ends_the_streamed_body_in_an_error() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    put(&store, KEY, None, 8, 200 * 1024).await;
    raw(&path)
        .execute("DELETE FROM chunks WHERE seq = 3", [])
        .expect("delete the last chunk");
    let entries = store.get(KEY).await.expect("get");
    let result = read_body(entries[0].body().expect("body")).await;
    assert!(matches!(result, Err(StoreError::Corrupt(_))), "{result:?}");
    assert_eq!(counts(&path), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_small_body_is_a_miss_and_its_row_is_deleted() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    put(&store, KEY, None, 9, 1000).await;
    raw(&path)
        .execute("UPDATE chunks SET data = zeroblob(1000) WHERE seq = 0", [])
        .expect("damage");
    assert!(store.get(KEY).await.expect("get").is_empty());
    assert_eq!(counts(&path), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_dropped_without_commit_leaves_no_rows() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    let len = 500 * 1024;
    let body = seeded_body(1, len);
    let mut writer = store
        .begin(KEY, seeded_response(None, 1, len).into(), HOUR)
        .await
        .expect("begin");
    for piece in body.chunks(16 * 1024) {
        writer.write(body.slice_ref(piece)).expect("write");
        tokio::task::yield_now().await;
    }
    // Let the background job stage the full chunks.
    let deadline = Instant::now() + Duration::from_secs(5);
    while counts(&path).2 < 7 {
        assert!(
            Instant::now() < deadline,
            "chunks not staged: {:?}",
            counts(&path)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counts(&path).1, 1, "one staged row");
    assert!(
        store.get(KEY).await.expect("get").is_empty(),
        "staged write visible"
    );
    drop(writer);
    wait_for_counts(&path, (0, 0, 0)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_staged_write_is_swept_on_open_and_a_fresh_one_is_kept() {
    let (_dir, path) = temp_db();
    drop(open(&path));
    let conn = raw(&path);
    let stage = |started_ms: i64| -> i64 {
        conn.execute(
            "INSERT INTO entries (key, variant, committed, header, expires_ms, started_ms)
             VALUES (?1, x'', 0, x'00', 0, ?2)",
            params![KEY, started_ms],
        )
        .expect("stage");
        let id = conn.last_insert_rowid();
        for seq in 0..3 {
            conn.execute(
                "INSERT INTO chunks (entry_id, seq, data) VALUES (?1, ?2, zeroblob(65536))",
                params![id, seq],
            )
            .expect("chunk");
        }
        id
    };
    // A crashed process's write from long ago, one from another process still writing, and
    // a chunk of no entry at all.
    let crashed = stage(0);
    let now_ms = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    let live = stage(now_ms);
    conn.execute(
        "INSERT INTO chunks (entry_id, seq, data) VALUES (?1, 0, x'01')",
        [live + 1000],
    )
    .expect("orphan chunk");
    assert_eq!(counts(&path), (0, 2, 7));

    let store = open(&path);
    assert_eq!(
        counts(&path),
        (0, 1, 3),
        "stale staged rows or orphan chunks kept"
    );
    let left: i64 = conn
        .query_row("SELECT id FROM entries WHERE committed = 0", [], |r| {
            r.get(0)
        })
        .expect("the live row");
    assert_eq!(left, live);
    assert_ne!(left, crashed);
    assert!(store.get(KEY).await.expect("get").is_empty());
}

/// The other side of the bound: a writer that waits for readiness before each write (as the
/// cache's tee does) is slowed, never refused, even when one write brings 64 chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_waits_is_never_refused_at_the_default_queue() {
    let harness = Sqlite {
        default_queue: true,
        ..Sqlite::file()
    };
    cache_store::conformance::large_writes_after_readiness(&harness).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_fails_with_unavailable_when_the_database_falls_behind() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    // Another connection holds the write lock: the background job cannot store a chunk.
    let blocker = raw(&path);
    blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");

    let len = 20 * 64 * 1024;
    let body = seeded_body(2, len);
    let mut writer = store
        .begin(KEY, seeded_response(None, 2, len).into(), HOUR)
        .await
        .expect("begin");
    let mut failure = None;
    for piece in body.chunks(64 * 1024) {
        if let Err(e) = writer.write(body.slice_ref(piece)) {
            failure = Some(e);
            break;
        }
    }
    let failure = failure.expect("the writes outran a locked database and none failed");
    assert!(
        matches!(&failure, StoreError::Unavailable(_))
            && failure.to_string().contains("fell behind"),
        "{failure}"
    );
    assert!(
        writer.write(Bytes::from_static(b"more")).is_err(),
        "a failed writer writes"
    );
    assert!(writer.commit().await.is_err(), "a failed writer commits");
    blocker.execute_batch("ROLLBACK").expect("unlock");
    wait_for_counts(&path, (0, 0, 0)).await;

    // The store works again.
    put(&store, KEY, None, 3, 300 * 1024).await;
    assert_eq!(read_verified(&store, KEY).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_file_is_private_and_in_wal_mode() {
    let (_dir, path) = temp_db();
    let _store = open(&path);
    let mode: String = raw(&path)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("journal mode");
    assert_eq!(mode.to_ascii_lowercase(), "wal");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "database file readable by others: {mode:o}"
        );
    }
}

#[test]
fn works_without_a_runtime() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    let len = 200 * 1024;
    let body = seeded_body(5, len);
    // Outside any runtime, SQLite work runs inline and the writer's job on a thread of its own.
    let mut writer =
        block_on(store.begin(KEY, seeded_response(None, 5, len).into(), HOUR)).expect("begin");
    for piece in body.chunks(64 * 1024) {
        writer.write(body.slice_ref(piece)).expect("write");
        std::thread::sleep(Duration::from_millis(5));
    }
    block_on(writer.commit()).expect("commit");
    assert_eq!(block_on(read_verified(&store, KEY)).len(), 1);
}

/// Polls a future to completion on the current thread without any runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// The stress test's finding: a body being streamed when its entry is replaced (or removed,
/// or evicted) reads to its end, verified: the replaced entry's chunks are retired, not
/// deleted, and swept only after a grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_being_streamed_survives_its_entry_being_replaced_and_is_swept_later() {
    let (_dir, path) = temp_db();
    let store = open(&path);
    let len = 300 * 1024;
    put(&store, KEY, None, 1, len).await;
    let entries = store.get(KEY).await.expect("get");
    let entry = entries.first().expect("stored");
    let mut body = entry.body().expect("body");
    let first =
        std::future::poll_fn(|cx| http_body::Body::poll_frame(std::pin::Pin::new(&mut body), cx))
            .await
            .expect("a frame")
            .expect("ok")
            .into_data()
            .expect("data");
    // Replaced, then removed, while the old body is half read.
    put(&store, KEY, None, 2, len).await;
    store.remove(KEY, None).await.expect("remove");
    let rest = read_body(body)
        .await
        .expect("the old body reads to its end");
    let mut whole = first.to_vec();
    whole.extend_from_slice(&rest);
    assert_eq!(whole, seeded_body(1, len));
    // Retired rows go once their grace period is over.
    raw(&path)
        .execute("UPDATE entries SET started_ms = 0 WHERE committed = 2", [])
        .expect("age the retired rows");
    store.maintain().expect("maintain");
    let conn = raw(&path);
    let left: i64 = conn
        .query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0))
        .expect("count");
    assert_eq!(left, 0);
}

/// The size bound reads a total kept by triggers, not a sum over every entry: after commits,
/// replacements, removals, updates and evictions by two stores on one file, it still equals
/// the sum of the published entries' sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kept_total_size_equals_the_sum_of_the_published_entries() {
    let (_dir, path) = temp_db();
    let bounded = || {
        SqliteStore::builder(&path)
            .max_size_bytes(2 << 20)
            .build()
            .expect("build")
    };
    let (a, b) = (bounded(), bounded());
    let sum = || -> u64 {
        raw(&path)
            .query_row(
                "SELECT COALESCE(SUM(size), 0) FROM entries WHERE committed = 1",
                [],
                |r| r.get::<_, i64>(0),
            )
            .expect("sum") as u64
    };
    for i in 0..40u64 {
        let key = format!("{KEY}/{}", i % 13);
        let store = if i % 2 == 0 { &a } else { &b };
        let language = ["en", "fr"][(i % 2) as usize];
        put(
            store,
            &key,
            Some(language),
            i,
            (i as usize % 5) * 100 * 1024 + 10,
        )
        .await;
        if i % 7 == 0 {
            store
                .remove(&format!("{KEY}/{}", i % 5), None)
                .await
                .expect("remove");
        }
        assert_eq!(a.size_bytes().expect("size"), sum(), "after write {i}");
    }
    assert!(sum() <= 2 << 20, "the bound held: {}", sum());
    b.clear().await.expect("clear");
    assert_eq!(a.size_bytes().expect("size"), 0);
}
