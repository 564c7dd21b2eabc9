//! Checks of changes to stored entries: header-only updates, removal, clear, replacement.

use std::time::Duration;

use http::HeaderValue;

use super::{
    body_of, get, header_u64, put, put_seeded, read_body, read_verified, seeded_body,
    seeded_response, Harness, Limits, HOUR, KEY,
};
use crate::{Store, VariantId};

/// A header-only update (after a 304) replaces the metadata and keeps the body; updating a
/// missing variant creates nothing.
pub async fn update_keeps_body<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    // A body large enough to be streamed by backends that stream.
    let len = 700 * 1024 + 3;
    let body = put_seeded(&store, KEY, Some("en"), 9, len).await;
    put_seeded(&store, KEY, Some("fr"), 10, 10).await;
    let en = VariantId::of(&seeded_response(Some("en"), 9, len));

    let mut updated = seeded_response(Some("en"), 9, len);
    updated
        .headers
        .append("etag", HeaderValue::from_static("\"v2\""));
    updated.response_time += Duration::from_secs(100);
    store
        .update(KEY, &en, updated.clone().into(), HOUR)
        .await
        .expect("update");

    let entries = get(&store, KEY).await;
    assert_eq!(entries.len(), 2, "update must keep the other variants");
    let mut found = false;
    for entry in &entries {
        if entry.variant == en {
            found = true;
            assert_eq!(*entry.response.response(), updated, "metadata not updated");
            assert_eq!(read_body(body_of(entry)).await.expect("body"), body);
        } else {
            assert_eq!(header_u64(&entry.response, "x-seed"), 10);
        }
    }
    assert!(found, "updated variant missing");

    let missing = VariantId::of(&seeded_response(Some("it"), 0, 0));
    store
        .update(
            KEY,
            &missing,
            seeded_response(Some("it"), 0, 0).into(),
            HOUR,
        )
        .await
        .expect("update of a missing variant is not an error");
    store
        .update(
            "https://example.com/none",
            &missing,
            seeded_response(None, 0, 0).into(),
            HOUR,
        )
        .await
        .expect("update of a missing key is not an error");
    assert_eq!(get(&store, KEY).await.len(), 2);
    assert!(get(&store, "https://example.com/none").await.is_empty());
}

/// An update computed for a version that has since been replaced (another `ETag`), or whose
/// `Content-Length` does not match the stored body, is ignored: it would pair one response's
/// header lines with another's body.
pub async fn update_ignores_a_replaced_representation<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let tagged = |seed: u64, len: usize, etag: &'static str| {
        let mut response = seeded_response(None, seed, len);
        response
            .headers
            .append("etag", HeaderValue::from_static(etag));
        response
    };
    put(
        &store,
        KEY,
        tagged(1, 100, "\"one\""),
        &seeded_body(1, 100),
        50,
        HOUR,
    )
    .await;
    let variant = VariantId::of(&tagged(1, 100, "\"one\""));
    // Replaced by a new representation before the 304 for the first one arrives.
    put(
        &store,
        KEY,
        tagged(2, 200, "\"two\""),
        &seeded_body(2, 200),
        50,
        HOUR,
    )
    .await;
    let mut stale = tagged(1, 100, "\"one\"");
    stale.response_time += Duration::from_secs(60);
    store
        .update(KEY, &variant, stale.into(), HOUR)
        .await
        .expect("update");
    let seen = read_verified(&store, KEY).await;
    assert_eq!(
        seen.iter().map(|s| s.1).collect::<Vec<_>>(),
        [2],
        "mixed entry"
    );

    // A Content-Length that does not match the stored body.
    let mut wrong_length = tagged(2, 200, "\"two\"");
    wrong_length
        .headers
        .insert("content-length", HeaderValue::from_static("999"));
    store
        .update(KEY, &variant, wrong_length.into(), HOUR)
        .await
        .expect("update");
    let entries = get(&store, KEY).await;
    assert_eq!(entries.len(), 1);
    assert!(entries[0].response.headers.get("content-length").is_none());

    // The matching update applies.
    let mut fresh = tagged(2, 200, "\"two\"");
    fresh
        .headers
        .insert("content-length", HeaderValue::from_static("200"));
    store
        .update(KEY, &variant, fresh.clone().into(), HOUR)
        .await
        .expect("update");
    let entries = get(&store, KEY).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(*entries[0].response.response(), fresh);
    assert_eq!(read_verified(&store, KEY).await.len(), 1);
}

/// Removing one variant keeps the others; removing a key removes all its variants; clear
/// removes everything.
pub async fn remove_and_clear<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let other = "https://example.com/other";
    put_seeded(&store, KEY, Some("en"), 1, 10).await;
    put_seeded(&store, KEY, Some("fr"), 2, 10).await;
    put_seeded(&store, KEY, Some("de"), 3, 10).await;
    put_seeded(&store, other, None, 4, 10).await;

    let fr = VariantId::of(&seeded_response(Some("fr"), 0, 0));
    store.remove(KEY, Some(&fr)).await.expect("remove variant");
    let seeds: Vec<u64> = read_verified(&store, KEY)
        .await
        .iter()
        .map(|s| s.1)
        .collect();
    let mut seeds = seeds;
    seeds.sort();
    assert_eq!(seeds, [1, 3]);

    store.remove(KEY, None).await.expect("remove key");
    assert!(get(&store, KEY).await.is_empty());
    assert_eq!(
        get(&store, other).await.len(),
        1,
        "remove touched another key"
    );
    store
        .remove(KEY, None)
        .await
        .expect("removing a missing key is fine");

    put_seeded(&store, KEY, None, 5, 10).await;
    store.clear().await.expect("clear");
    assert!(get(&store, KEY).await.is_empty());
    assert!(get(&store, other).await.is_empty());
    // The store still works after clear.
    put_seeded(&store, KEY, None, 6, 10).await;
    assert_eq!(read_verified(&store, KEY).await.len(), 1);
}

/// A body obtained from [`Store::get`] keeps yielding its own version's bytes (or an error)
/// after the variant is replaced or removed.
pub async fn body_survives_replace<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let len = 300 * 1024;
    let old = put_seeded(&store, KEY, None, 1, len).await;
    let entries = get(&store, KEY).await;
    assert_eq!(entries.len(), 1);
    put_seeded(&store, KEY, None, 2, len).await;
    store.remove(KEY, None).await.expect("remove");
    for entry in &entries {
        if let Ok(body) = read_body(body_of(entry)).await {
            assert!(body == old, "an old handle yielded another version's bytes");
        }
    }
}
