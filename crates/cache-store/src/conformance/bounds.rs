//! Checks of the store's bounds: TTL expiry, the total size bound, the body size limit.

use std::time::Duration;

use super::{
    get, options, put, put_seeded, read_verified, seeded_body, seeded_response, Harness, Limits,
    HOUR, KEY,
};
use crate::{Store, StoreError, VariantId, WriteOptions};

/// A variant is not returned after its TTL; one with a longer TTL stays; an update resets the
/// TTL.
pub async fn ttl_expiry<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let short = Duration::from_millis(800);
    let body = seeded_body(1, 10);
    put(
        &store,
        KEY,
        seeded_response(Some("en"), 1, 10),
        &body,
        4,
        short,
    )
    .await;
    put(
        &store,
        KEY,
        seeded_response(Some("fr"), 2, 10),
        &seeded_body(2, 10),
        4,
        HOUR,
    )
    .await;
    put(
        &store,
        KEY,
        seeded_response(Some("de"), 3, 10),
        &seeded_body(3, 10),
        4,
        short,
    )
    .await;
    assert_eq!(get(&store, KEY).await.len(), 3);
    // Extend "de" to an hour.
    let de = VariantId::of(&seeded_response(Some("de"), 3, 10));
    store
        .update(KEY, &de, seeded_response(Some("de"), 3, 10).into(), HOUR)
        .await
        .expect("update");

    tokio::time::sleep(short + Duration::from_millis(400)).await;
    harness.settle(&store);
    let seeds: Vec<u64> = read_verified(&store, KEY)
        .await
        .iter()
        .map(|s| s.1)
        .collect();
    let mut seeds = seeds;
    seeds.sort();
    assert_eq!(
        seeds,
        [2, 3],
        "expired variant returned, or a live one lost"
    );
}

/// When the total size bound is reached, least recently used entries are evicted; the store
/// keeps working and never exceeds its bound by more than one entry.
pub async fn size_bound_eviction<H: Harness>(harness: &H) {
    let limits = Limits {
        max_body_size: 256 * 1024,
        max_total_bytes: 1024 * 1024,
    };
    let store = harness.new_store(limits);
    let len = 100 * 1024;
    let key = |i: usize| format!("https://example.com/evict/{i}");
    put_seeded(&store, &key(0), None, 0, len).await;
    for i in 1..30 {
        put_seeded(&store, &key(i), None, i as u64, len).await;
        harness.settle(&store);
        // Keep key 0 recently used.
        assert_eq!(
            read_verified(&store, &key(0)).await.len(),
            1,
            "the most recently read entry was evicted after write {i}"
        );
        harness.settle(&store);
    }

    let mut present = Vec::new();
    for i in 0..30 {
        if !read_verified(&store, &key(i)).await.is_empty() {
            present.push(i);
        }
    }
    let stored_bytes = present.len() as u64 * len as u64;
    assert!(
        stored_bytes <= limits.max_total_bytes,
        "{} entries of {len} bytes kept, over the bound of {}",
        present.len(),
        limits.max_total_bytes
    );
    assert!(present.len() >= 3, "eviction removed too much: {present:?}");
    assert!(present.contains(&29), "the newest entry was evicted");
    assert!(present.contains(&0), "the recently read entry was evicted");
    assert!(
        !present.contains(&1),
        "the least recently used entry was kept"
    );
}

/// Bodies over the size limit are refused with [`StoreError::TooLarge`] and never stored;
/// a body exactly at the limit is stored.
pub async fn body_size_limit<H: Harness>(harness: &H) {
    let limit = 64 * 1024;
    let store = harness.new_store(Limits {
        max_body_size: limit,
        max_total_bytes: 64 << 20,
    });
    let n = limit as usize;

    // Announced too large: refused at begin, or at the first write past the limit.
    let announced = WriteOptions {
        ttl: HOUR,
        content_length: Some(limit + 1),
    };
    match store
        .begin(KEY, seeded_response(None, 1, n + 1).into(), announced)
        .await
    {
        Err(StoreError::TooLarge { .. }) => {}
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(mut writer) => {
            let result = writer.write(seeded_body(1, n + 1));
            assert!(
                matches!(result, Err(StoreError::TooLarge { .. })),
                "{result:?}"
            );
            assert!(writer.commit().await.is_err());
        }
    }
    assert!(get(&store, KEY).await.is_empty());

    // Unannounced: the write that crosses the limit fails, and so does the commit.
    let mut writer = store
        .begin(KEY, seeded_response(None, 2, n + 1).into(), options(HOUR))
        .await
        .expect("begin");
    let body = seeded_body(2, n + 1);
    writer.write(body.slice(..n / 2)).expect("first half fits");
    let result = writer.write(body.slice(n / 2..));
    assert!(
        matches!(result, Err(StoreError::TooLarge { .. })),
        "{result:?}"
    );
    assert!(writer.commit().await.is_err(), "commit after TooLarge");
    assert!(get(&store, KEY).await.is_empty());

    // Exactly the limit is fine.
    put_seeded(&store, KEY, None, 3, n).await;
    assert_eq!(read_verified(&store, KEY).await.len(), 1);
}
