//! The conformance suite and S3-specific checks for [`S3Store`], against a real S3-compatible
//! server: `scripts/s3.sh start DIR` starts one (moto) on 127.0.0.1 and prints the variables
//! (`S3_ENDPOINT`, `S3_BUCKET`, `S3_REGION`, `S3_ACCESS_KEY_ID`, `S3_SECRET_ACCESS_KEY`).
//! Without them each test says it is skipped, except under CI (`CI=true`), where a missing
//! server is a failure. The fault tests (s3/faults.rs) put a TCP relay of their own between
//! the store and the server, and take it down, stall it and bring it back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cache_store::conformance::{
    read_body, read_verified, seeded_body, seeded_response, Harness, Limits,
};
use cache_store::{S3Store, Store, StoreError, VariantId, WriteOptions};
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const HOUR: WriteOptions = WriteOptions {
    ttl: Duration::from_secs(3600),
    content_length: None,
};

const KEY: &str = "https://example.com/s3";

const MIB: usize = 1 << 20;

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The server's settings, from the environment scripts/s3.sh prints.
#[derive(Clone)]
struct Server {
    endpoint: String,
    bucket: String,
    region: String,
    key_id: String,
    secret: String,
}

impl Server {
    /// `None` (the test is skipped) without `S3_ENDPOINT`, except under CI.
    fn from_env() -> Option<Server> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let Some(endpoint) = var("S3_ENDPOINT") else {
            if under_ci() {
                panic!("S3_ENDPOINT is not set under CI: the S3 tests need a server");
            }
            println!("skipped: S3_ENDPOINT not set (scripts/s3.sh starts a server)");
            return None;
        };
        Some(Server {
            endpoint,
            bucket: var("S3_BUCKET").unwrap_or_else(|| "http-cache-tests".into()),
            region: var("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
            key_id: var("S3_ACCESS_KEY_ID").unwrap_or_default(),
            secret: var("S3_SECRET_ACCESS_KEY").unwrap_or_default(),
        })
    }

    /// The store URL for `prefix`, through `endpoint` (the server's own, or a relay's).
    fn url_via(&self, endpoint: &str, prefix: &str) -> String {
        format!(
            "s3://{}/{prefix}?endpoint={}&region={}&access_key_id={}&secret_access_key={}",
            self.bucket,
            encode(endpoint),
            self.region,
            encode(&self.key_id),
            encode(&self.secret)
        )
    }

    fn url(&self, prefix: &str) -> String {
        self.url_via(&self.endpoint, prefix)
    }

    async fn open(&self, prefix: &str) -> S3Store {
        S3Store::open(&self.url(prefix)).await.expect("open")
    }
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A prefix no other test (or run) uses.
fn fresh_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t{}-{nanos:x}-{n}", std::process::id())
}

/// Runs a future from synchronous harness code, on the test's own runtime.
fn block<F: std::future::Future>(fut: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(fut))
}

/// Every object under `dir`.
async fn objects(raw: &Arc<dyn ObjectStore>, dir: &str) -> Vec<object_store::ObjectMeta> {
    raw.list(Some(&Path::from(dir)))
        .try_collect()
        .await
        .expect("list")
}

impl Harness for Server {
    type Store = S3Store;

    fn new_store(&self, limits: Limits) -> S3Store {
        let builder = S3Store::builder(self.url(&fresh_prefix()))
            .max_size_bytes(limits.max_total_bytes)
            .max_body_size(limits.max_body_size)
            // The suite's writers write whole bodies (up to 16 MiB) without yielding to the
            // executor, which no network store keeps up with: a queue as deep as the largest
            // body lets the suite check everything else (the bound has its own test).
            .write_queue_parts((limits.max_body_size as usize).div_ceil(5 * MIB) + 1);
        block(builder.build()).expect("open")
    }

    /// Flips a byte inside the header records of every variant of `key`, through the
    /// object_store client directly.
    fn corrupt(&self, store: &S3Store, key: &str) -> bool {
        block(async {
            let raw = store.object_store();
            let found = objects(&raw, &store.key_prefix(key)).await;
            assert!(!found.is_empty(), "nothing to corrupt");
            for object in found {
                let bytes = raw.get(&object.location).await.expect("get");
                let mut bytes = bytes.bytes().await.expect("bytes").to_vec();
                bytes[16 + 10] ^= 0x55;
                raw.put(&object.location, PutPayload::from(bytes))
                    .await
                    .expect("put");
            }
        });
        true
    }
}

mod conformance {
    cache_store::conformance_tests!(match super::Server::from_env() {
        Some(harness) => harness,
        None => return,
    });
}

macro_rules! server {
    () => {
        match Server::from_env() {
            Some(server) => server,
            None => return,
        }
    };
}

// After the macro, which it uses.
#[path = "s3/faults.rs"]
mod faults;

/// Writes a seeded body in 64 KiB chunks and commits it.
async fn put(
    store: &S3Store,
    key: &str,
    language: Option<&str>,
    seed: u64,
    len: usize,
    options: WriteOptions,
) {
    let body = seeded_body(seed, len);
    let response = seeded_response(language, seed, len);
    let mut writer = store
        .begin(key, response.into(), options)
        .await
        .expect("begin");
    for piece in body.chunks(64 << 10) {
        writer.write(body.slice_ref(piece)).expect("write");
        std::future::poll_fn(|cx| writer.poll_ready(cx))
            .await
            .expect("ready");
    }
    writer.commit().await.expect("commit");
}

fn seeds(seen: &[(VariantId, u64)]) -> Vec<u64> {
    seen.iter().map(|(_, seed)| *seed).collect()
}

fn with_length(len: usize) -> WriteOptions {
    WriteOptions {
        content_length: Some(len as u64),
        ..HOUR
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_bodies_of_several_mib_round_trip_with_and_without_a_length() {
    let server = server!();
    let store = server.open(&fresh_prefix()).await;
    let raw = store.object_store();
    let len = 12 * MIB + 77;
    // Announced: the header goes into the first part, the parts straight to the entry.
    put(&store, KEY, Some("en"), 1, len, with_length(len)).await;
    // Unannounced: staged, then copied behind the header.
    put(&store, KEY, Some("fr"), 2, len, HOUR).await;
    let mut seen = seeds(&read_verified(&store, KEY).await);
    seen.sort();
    assert_eq!(seen, [1, 2]);
    let entries = store.get(KEY).await.expect("get");
    for entry in &entries {
        let body = read_body(entry.body().expect("body")).await.expect("read");
        assert_eq!(body.len(), len);
    }
    // Each is one object of header + body + trailer; no staging object is left.
    let stored = objects(&raw, &store.key_prefix(KEY)).await;
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|o| o.size > len as u64));
    let root = store.key_prefix(KEY);
    let prefix = root.split("/e/").next().expect("prefix");
    assert!(objects(&raw, &format!("{prefix}/s")).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_racing_on_one_variant_leave_one_whole_entry() {
    let server = server!();
    let prefix = fresh_prefix();
    // Two stores, as two processes would have.
    let (a, b) = (server.open(&prefix).await, server.open(&prefix).await);
    for (len, round) in [(40_000, 0u64), (6 * MIB + 5, 1), (40_000, 2)] {
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (store, stop) = (a.clone(), stop.clone());
            tokio::spawn(async move {
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) {
                    // Panics on a body that does not match its own metadata.
                    let seen = read_verified(&store, KEY).await;
                    assert!(seen.len() <= 1, "two entries for one variant");
                    reads += 1;
                }
                reads
            })
        };
        let (sa, sb) = (10 * round + 1, 10 * round + 2);
        let wa = put(&a, KEY, None, sa, len, HOUR);
        let wb = put(&b, KEY, None, sb, len + 1, HOUR);
        tokio::join!(wa, wb);
        stop.store(true, Ordering::Relaxed);
        assert!(reader.await.expect("reader") > 0);
        let seen = seeds(&read_verified(&b, KEY).await);
        assert!(seen == [sa] || seen == [sb], "round {round}: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_objects_are_misses_and_are_removed() {
    let server = server!();
    let store = server.open(&fresh_prefix()).await;
    let raw = store.object_store();
    let en = VariantId::of(&seeded_response(Some("en"), 1, 0));
    let fr = VariantId::of(&seeded_response(Some("fr"), 2, 0));
    let de = VariantId::of(&seeded_response(Some("de"), 3, 0));
    put(&store, KEY, Some("en"), 1, 5000, HOUR).await;
    put(&store, KEY, Some("fr"), 2, 5000, HOUR).await;
    put(&store, KEY, Some("de"), 3, 300_000, HOUR).await;
    put(&store, KEY, Some("it"), 4, 5000, HOUR).await;
    // en: garbage; fr: cut short; de (streamed): one body byte flipped.
    let path = |v: &VariantId| Path::from(store.object_path(KEY, v));
    raw.put(&path(&en), PutPayload::from_static(b"not an entry at all"))
        .await
        .expect("put garbage");
    let whole = raw
        .get(&path(&fr))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    raw.put(
        &path(&fr),
        PutPayload::from(whole.slice(..whole.len() - 10)),
    )
    .await
    .expect("put truncated");
    let mut flipped = raw
        .get(&path(&de))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes")
        .to_vec();
    let at = flipped.len() - 1000;
    flipped[at] ^= 1;
    raw.put(&path(&de), PutPayload::from(flipped))
        .await
        .expect("put flipped");

    let entries = store.get(KEY).await.expect("get");
    let mut intact = Vec::new();
    for entry in &entries {
        let result = read_body(entry.body().expect("body")).await;
        if entry.variant == de {
            let error = result.expect_err("a damaged body read without error");
            assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
        } else {
            result.expect("intact body");
            intact.push(entry.variant.clone());
        }
    }
    assert_eq!(intact.len(), 1, "only the untouched variant reads");
    // The damaged objects are gone (the streamed one in the background, once detected).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = objects(&raw, &store.key_prefix(KEY)).await;
        if left.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "damaged objects kept: {}",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seeds(&read_verified(&store, KEY).await), [4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entries_are_misses_removed_on_read_and_by_the_sweep() {
    let server = server!();
    let prefix = fresh_prefix();
    let store = S3Store::builder(server.url(&prefix))
        .staging_ttl(Duration::ZERO)
        .build()
        .await
        .expect("open");
    let raw = store.object_store();
    let short = WriteOptions {
        ttl: Duration::from_millis(500),
        ..HOUR
    };
    let other = "https://example.com/s3/other";
    put(&store, KEY, Some("en"), 1, 100, short).await;
    put(&store, KEY, Some("fr"), 2, 100, HOUR).await;
    put(&store, other, None, 3, 100, short).await;
    // An abandoned staging object and a stray undecodable one.
    raw.put(
        &Path::from(format!("{prefix}/s/abandoned")),
        PutPayload::from_static(b"x"),
    )
    .await
    .expect("put");
    raw.put(
        &Path::from(format!("{prefix}/e/stray/object")),
        PutPayload::from_static(b"y"),
    )
    .await
    .expect("put");
    tokio::time::sleep(Duration::from_millis(700)).await;

    // A read: the expired variant is a miss and is gone.
    assert_eq!(seeds(&read_verified(&store, KEY).await), [2]);
    assert_eq!(objects(&raw, &store.key_prefix(KEY)).await.len(), 1);
    // The sweep: the other expired entry, the stray object, the staging object.
    let sweep = store.sweep().await.expect("sweep");
    assert_eq!(
        (sweep.expired, sweep.damaged, sweep.staging),
        (1, 1, 1),
        "{sweep:?}"
    );
    let left = objects(&raw, &prefix).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(seeds(&read_verified(&store, KEY).await), [2]);
    // The periodic sweep does the same by itself.
    let periodic = S3Store::builder(server.url(&prefix))
        .sweep_every(Duration::from_secs(1))
        .build()
        .await
        .expect("open");
    put(&periodic, other, None, 4, 100, short).await;
    let deadline = Instant::now() + Duration::from_secs(6);
    while objects(&raw, &prefix).await.len() > 1 {
        assert!(Instant::now() < deadline, "the periodic sweep did not run");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_writer_leaves_no_object_and_no_staged_body() {
    let server = server!();
    let prefix = fresh_prefix();
    let store = server.open(&prefix).await;
    let raw = store.object_store();
    for options in [HOUR, with_length(8 * MIB)] {
        let body = seeded_body(1, 8 * MIB);
        let mut writer = store
            .begin(KEY, seeded_response(None, 1, 8 * MIB).into(), options)
            .await
            .expect("begin");
        for piece in body.slice(..7 * MIB).chunks(64 << 10) {
            writer.write(body.slice_ref(piece)).expect("write");
            std::future::poll_fn(|cx| writer.poll_ready(cx))
                .await
                .expect("ready");
        }
        drop(writer);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(store.get(KEY).await.expect("get").is_empty());
    assert!(objects(&raw, &prefix).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_rewrites_a_multipart_entry_keeping_its_body() {
    let server = server!();
    let store = server.open(&fresh_prefix()).await;
    let len = 6 * MIB;
    put(&store, KEY, None, 5, len, HOUR).await;
    let variant = VariantId::of(&seeded_response(None, 5, len));
    let mut response = seeded_response(None, 5, len);
    response
        .headers
        .insert("x-updated", http::HeaderValue::from_static("yes"));
    store
        .update(KEY, &variant, response.into(), HOUR.ttl)
        .await
        .expect("update");
    let entries = store.get(KEY).await.expect("get");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].response.headers["x-updated"], "yes");
    let body = read_body(entries[0].body().expect("body"))
        .await
        .expect("read");
    assert!(body == seeded_body(5, len));
}

#[tokio::test]
async fn malformed_urls_missing_buckets_and_unreachable_servers_say_what_to_do() {
    for (url, says) in [
        ("s3://", "bucket is missing"),
        (
            "s3://Not_A_Bucket/p?endpoint=http://127.0.0.1:1&region=r",
            "not a bucket name",
        ),
        ("s3://bucket/p?colour=blue", "unknown parameter"),
    ] {
        let error = cache_store::open(url).await.err().expect(url).to_string();
        assert!(error.contains(says), "{url}: {error}");
    }
    // An https endpoint needs the TLS feature; with it, the connection is tried.
    let https =
        "s3://bucket/p?endpoint=https://127.0.0.1:1&region=r&access_key_id=a&secret_access_key=b";
    let error = cache_store::open(https)
        .await
        .err()
        .expect("refused")
        .to_string();
    let says = if cfg!(feature = "s3-tls") {
        "cannot be reached"
    } else {
        "s3-tls"
    };
    assert!(error.contains(says), "{error}");
    // Nothing listens on port 1: refused at once, said clearly.
    let started = Instant::now();
    let url = "s3://bucket/p?endpoint=http://127.0.0.1:1&region=us-east-1&access_key_id=a&secret_access_key=b";
    let error = cache_store::open(url)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(error.contains("cannot be reached"), "{error}");
    assert!(error.contains("127.0.0.1:1"), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    let server = server!();
    let missing = server
        .url(&fresh_prefix())
        .replacen(&server.bucket, "no-such-bucket-here", 1);
    let error = S3Store::open(&missing)
        .await
        .expect_err("no bucket")
        .to_string();
    assert!(error.contains("bucket does not exist"), "{error}");
}

#[tokio::test]
async fn bad_credentials_are_refused_with_a_message_naming_them() {
    let server = server!();
    for (key_id, secret) in [
        (server.key_id.clone(), "wrong-secret".to_owned()),
        ("AKIANOSUCHKEY0000000".to_owned(), server.secret.clone()),
    ] {
        let bad = Server {
            key_id,
            secret,
            ..server.clone()
        };
        let error = S3Store::open(&bad.url(&fresh_prefix()))
            .await
            .expect_err("refused")
            .to_string();
        assert!(error.contains("refused the credentials"), "{error}");
        assert!(error.contains("AWS_SECRET_ACCESS_KEY"), "{error}");
        assert!(
            !error.contains(&server.secret),
            "the secret is shown: {error}"
        );
    }
}

#[tokio::test]
async fn a_small_entry_reads_as_one_bytes() {
    let server = server!();
    let store = server.open(&fresh_prefix()).await;
    put(&store, KEY, None, 1, 1000, HOUR).await;
    let entries = store.get(KEY).await.expect("get");
    let body = entries[0].body().expect("body");
    let again = entries[0]
        .body()
        .expect("a body held in memory is handed out again");
    let (a, b) = (
        read_body(body).await.expect("a"),
        read_body(again).await.expect("b"),
    );
    assert_eq!(a, b);
    assert_eq!(a, seeded_body(1, 1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_prefix_share_entries_and_removals() {
    let server = server!();
    let prefix = fresh_prefix();
    let (a, b) = (server.open(&prefix).await, server.open(&prefix).await);
    put(&a, KEY, Some("en"), 1, 1000, HOUR).await;
    put(&b, KEY, Some("fr"), 2, 200_000, HOUR).await;
    let mut seen = seeds(&read_verified(&b, KEY).await);
    seen.sort();
    assert_eq!(
        seen,
        [1, 2],
        "a write through one is a hit through the other"
    );
    a.remove(KEY, None).await.expect("remove");
    assert!(
        b.get(KEY).await.expect("get").is_empty(),
        "a removal is seen by the other"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_store_counts_the_entries_already_in_the_bucket() {
    let server = server!();
    let prefix = fresh_prefix();
    let unbounded = server.open(&prefix).await;
    let key = |i: usize| format!("{KEY}/{i}");
    for i in 0..8 {
        put(&unbounded, &key(i), None, i as u64, 100_000, HOUR).await;
    }
    // Opened later, as another process would be: it lists the bucket, oldest change first.
    let bounded = S3Store::builder(server.url(&prefix))
        .max_size_bytes(500_000)
        .build()
        .await
        .expect("open");
    put(&bounded, &key(8), None, 8, 100_000, HOUR).await;
    let mut present = Vec::new();
    for i in 0..9 {
        if !read_verified(&unbounded, &key(i)).await.is_empty() {
            present.push(i);
        }
    }
    // Eight entries written within a second or so: which of them are the oldest is down to
    // the timestamps' precision, but the new one stays and the total is back under the bound.
    assert_eq!(present.len(), 4, "{present:?}");
    assert!(present.contains(&8), "{present:?}");
}

/// A process reuses its listing of a key for `listing_reuse`, so a hit sends no LIST: another
/// process's new variant with `Vary` shows once the listing is taken again, while a response
/// without `Vary` (read by its name) and a removal show at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_listing_hides_only_other_processes_new_vary_variants_until_it_is_retaken() {
    let server = server!();
    let prefix = fresh_prefix();
    let reuse = Duration::from_millis(700);
    let a = S3Store::builder(server.url(&prefix))
        .listing_reuse(reuse)
        .build()
        .await
        .expect("open a");
    let b = server.open(&prefix).await;
    assert!(a.get(KEY).await.expect("get").is_empty(), "a miss, listed");

    put(&b, KEY, Some("fr"), 1, 1000, HOUR).await;
    put(&b, KEY, None, 2, 1000, HOUR).await;
    assert_eq!(
        seeds(&read_verified(&a, KEY).await),
        [2],
        "within the reuse: the Vary-less response at once, not yet the variant"
    );
    tokio::time::sleep(reuse + Duration::from_millis(100)).await;
    let mut seen = seeds(&read_verified(&a, KEY).await);
    seen.sort();
    assert_eq!(seen, [1, 2], "listed again: both");

    // Its own commits are in its listing at once.
    put(&a, KEY, Some("en"), 3, 1000, HOUR).await;
    let mut seen = seeds(&read_verified(&a, KEY).await);
    seen.sort();
    assert_eq!(seen, [1, 2, 3]);

    // Another process's removal is seen at once: the objects are gone.
    b.remove(KEY, None).await.expect("remove");
    assert!(a.get(KEY).await.expect("get").is_empty(), "removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_listing_reuse_another_processs_new_variant_shows_at_once() {
    let server = server!();
    let prefix = fresh_prefix();
    let a = S3Store::builder(server.url(&prefix))
        .listing_reuse(Duration::ZERO)
        .build()
        .await
        .expect("open a");
    let b = server.open(&prefix).await;
    assert!(a.get(KEY).await.expect("get").is_empty());
    put(&b, KEY, Some("fr"), 1, 1000, HOUR).await;
    assert_eq!(seeds(&read_verified(&a, KEY).await), [1]);
}
