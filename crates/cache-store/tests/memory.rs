//! The conformance suite and memory-specific checks for [`MemoryStore`].

use std::time::Duration;

use bytes::Bytes;
use cache_store::conformance::{Harness, Limits};
use cache_store::{MemoryStore, Store, StoredResponse, WriteOptions};
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body::Body;

struct Memory;

impl Harness for Memory {
    type Store = MemoryStore;

    fn new_store(&self, limits: Limits) -> MemoryStore {
        MemoryStore::builder()
            .max_capacity_bytes(limits.max_total_bytes)
            .max_body_size(limits.max_body_size)
            .build()
    }

    fn settle(&self, store: &MemoryStore) {
        store.run_pending_tasks();
    }
}

mod conformance {
    cache_store::conformance_tests!(super::Memory);
}

/// The same store behind `Arc<dyn Store>`, as a cache layer holds a store chosen at run time.
#[derive(Default)]
struct Dyn {
    last: std::sync::Mutex<Option<MemoryStore>>,
}

impl Harness for Dyn {
    type Store = std::sync::Arc<dyn Store>;

    fn new_store(&self, limits: Limits) -> std::sync::Arc<dyn Store> {
        let store = Memory.new_store(limits);
        *self.last.lock().expect("lock") = Some(store.clone());
        std::sync::Arc::new(store)
    }

    fn settle(&self, _store: &std::sync::Arc<dyn Store>) {
        if let Some(store) = &*self.last.lock().expect("lock") {
            store.run_pending_tasks();
        }
    }
}

mod conformance_dyn {
    cache_store::conformance_tests!(super::Dyn::default());
}

/// A store that copies what it keeps behaves the same.
struct Copying;

impl Harness for Copying {
    type Store = MemoryStore;

    fn new_store(&self, limits: Limits) -> MemoryStore {
        MemoryStore::builder()
            .max_capacity_bytes(limits.max_total_bytes)
            .max_body_size(limits.max_body_size)
            .copy_bytes(true)
            .build()
    }

    fn settle(&self, store: &MemoryStore) {
        store.run_pending_tasks();
    }
}

mod conformance_copying {
    cache_store::conformance_tests!(super::Copying);
}

fn response() -> StoredResponse {
    StoredResponse {
        method: Method::GET,
        uri: Uri::from_static("http://example.com/"),
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        vary_request_headers: HeaderMap::new(),
        request_time: std::time::SystemTime::UNIX_EPOCH,
        response_time: std::time::SystemTime::UNIX_EPOCH,
    }
}

const OPTIONS: WriteOptions = WriteOptions {
    ttl: Duration::from_secs(60),
    content_length: None,
};

#[tokio::test]
async fn hit_shares_the_stored_bytes() {
    let store = MemoryStore::default();
    let body = Bytes::from(vec![7u8; 10_000]);
    let mut writer = store
        .begin("k", response().into(), OPTIONS)
        .await
        .expect("begin");
    writer.write(body.clone()).expect("write");
    writer.commit().await.expect("commit");

    for _ in 0..2 {
        let entries = store.get("k").await.expect("get");
        let entry = entries.first().expect("hit");
        let mut stored = entry.body().expect("body");
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut stored).poll_frame(cx))
            .await
            .expect("one frame")
            .expect("no error");
        let data = frame.into_data().expect("data frame");
        // The same allocation as the written chunk: served without copying.
        assert_eq!(data.as_ptr(), body.as_ptr());
        assert_eq!(data.len(), body.len());
        assert!(stored.is_end_stream());
    }
}

/// With `copy_bytes`, an entry keeps nothing of the buffers its values, target and body were
/// slices of (a connection's read buffer, as hyper's are); without it, it shares them.
#[tokio::test]
async fn copy_bytes_keeps_nothing_of_the_buffers_it_was_given() {
    let read_buffer = Bytes::from(b"max-age=60|vary-value|the body|http://example.com/x".to_vec());
    let cache_control = read_buffer.slice(0..10);
    let selected = read_buffer.slice(11..21);
    let body = read_buffer.slice(22..30);
    let target = Uri::from_maybe_shared(read_buffer.slice(31..)).expect("uri");
    let inside = |bytes: &[u8]| read_buffer.as_ptr_range().contains(&bytes.as_ptr());
    for copy in [false, true] {
        let store = MemoryStore::builder().copy_bytes(copy).build();
        let mut response = response();
        response.uri = target.clone();
        let value = http::HeaderValue::from_maybe_shared(cache_control.clone()).expect("value");
        response.headers.insert("cache-control", value);
        response
            .headers
            .insert("vary", http::HeaderValue::from_static("x-v"));
        let value = http::HeaderValue::from_maybe_shared(selected.clone()).expect("value");
        response.vary_request_headers.insert("x-v", value);
        let mut writer = store
            .begin("k", response.into(), OPTIONS)
            .await
            .expect("begin");
        writer.write(body.clone()).expect("write");
        writer.commit().await.expect("commit");

        let entries = store.get("k").await.expect("get");
        let entry = entries.first().expect("hit");
        let stored = &entry.response;
        // The one frame as the store hands it out (a collected body would be a copy anyway).
        let mut stored_body = entry.body().expect("held in memory");
        let stored_body =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut stored_body).poll_frame(cx))
                .await
                .expect("one frame")
                .expect("no error")
                .into_data()
                .expect("data frame");
        // The same bytes either way.
        assert_eq!(stored.headers["cache-control"], "max-age=60");
        assert_eq!(stored.vary_request_headers["x-v"], "vary-value");
        assert_eq!(stored_body, body);
        assert_eq!(stored.uri, target);
        for (what, bytes) in [
            ("header value", stored.headers["cache-control"].as_bytes()),
            ("target", stored.uri.path().as_bytes()),
            (
                "selecting value",
                stored.vary_request_headers["x-v"].as_bytes(),
            ),
            ("body", &stored_body[..]),
        ] {
            assert_eq!(inside(bytes), !copy, "{what}, copy_bytes({copy})");
        }
    }
}

#[tokio::test]
async fn chunks_are_joined_once_and_sized() {
    let store = MemoryStore::default();
    let mut writer = store
        .begin("k", response().into(), OPTIONS)
        .await
        .expect("begin");
    writer.write(Bytes::from_static(b"ab")).expect("write");
    writer.write(Bytes::new()).expect("empty write");
    writer.write(Bytes::from_static(b"cd")).expect("write");
    writer.commit().await.expect("commit");
    let entries = store.get("k").await.expect("get");
    let entry = entries.first().expect("hit");
    assert_eq!(entry.body().expect("body").size_hint().exact(), Some(4));
    let body = cache_store::conformance::read_body(entry.body().expect("body"))
        .await
        .expect("body");
    assert_eq!(body, "abcd");
}

#[tokio::test]
async fn weighted_size_stays_under_capacity() {
    let store = MemoryStore::builder()
        .max_capacity_bytes(200_000)
        .max_body_size(50_000)
        .build();
    for i in 0..50 {
        let mut writer = store
            .begin(&format!("k{i}"), response().into(), OPTIONS)
            .await
            .expect("begin");
        writer.write(Bytes::from(vec![1u8; 40_000])).expect("write");
        writer.commit().await.expect("commit");
        store.run_pending_tasks();
        assert!(
            store.weighted_size() <= 200_000,
            "{}",
            store.weighted_size()
        );
    }
    assert!(
        store.weighted_size() >= 120_000,
        "{}",
        store.weighted_size()
    );
}

async fn put(store: &MemoryStore, body: &'static [u8]) {
    let mut writer = store
        .begin("k", response().into(), OPTIONS)
        .await
        .expect("begin");
    writer.write(Bytes::from_static(body)).expect("write");
    writer.commit().await.expect("commit");
}

async fn body_of(entry: &cache_store::StoredEntry) -> Bytes {
    cache_store::conformance::read_body(entry.body().expect("held in memory"))
        .await
        .expect("body")
}

/// Reads of an unchanged key share one list; a list already read keeps its own version of the
/// variant when the key changes, so a reader never sees another version's body.
#[tokio::test]
async fn reads_share_one_list_and_keep_their_version() {
    let store = MemoryStore::default();
    put(&store, b"first").await;
    let before = store.get_now("k").expect("at once").expect("get");
    let again = store.get_now("k").expect("at once").expect("get");
    assert_eq!(before.as_ptr(), again.as_ptr(), "one shared list");

    put(&store, b"second").await;
    let after = store.get_now("k").expect("at once").expect("get");
    assert_ne!(before.as_ptr(), after.as_ptr());
    assert_eq!(body_of(&before[0]).await, "first");
    assert_eq!(body_of(&after[0]).await, "second");
    // Held in memory: the body can be read again from the same list.
    assert_eq!(body_of(&before[0]).await, "first");

    store.remove("k", None).await.expect("remove");
    assert!(store
        .get_now("k")
        .expect("at once")
        .expect("get")
        .is_empty());
    assert_eq!(body_of(&after[0]).await, "second");
}

/// A key whose shared read list was built, and whose one variant then expires while the other
/// lives, answers with the live one only, with no write in between (RFC 9111 §3: a stored
/// response past its storage lifetime is not used).
#[tokio::test]
async fn one_variant_expires_under_a_shared_list() {
    let store = MemoryStore::default();
    for (language, ttl) in [
        ("en", Duration::from_millis(30)),
        ("fr", Duration::from_secs(60)),
    ] {
        let mut response = response();
        response
            .headers
            .insert("vary", http::HeaderValue::from_static("accept-language"));
        response
            .vary_request_headers
            .insert("accept-language", http::HeaderValue::from_static(language));
        let options = WriteOptions {
            ttl,
            content_length: None,
        };
        let mut writer = store
            .begin("k", response.into(), options)
            .await
            .expect("begin");
        writer.write(Bytes::from(language)).expect("write");
        writer.commit().await.expect("commit");
    }
    let both = store.get_now("k").expect("at once").expect("get");
    assert_eq!(both.len(), 2);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let live = store.get_now("k").expect("at once").expect("get");
    assert_eq!(live.len(), 1, "the expired variant was returned");
    assert_eq!(body_of(&live[0]).await, "fr");
    // The expired variant is gone for good, and the list read before is unchanged.
    assert_eq!(store.get_now("k").expect("at once").expect("get").len(), 1);
    assert_eq!(both.len(), 2);
}
