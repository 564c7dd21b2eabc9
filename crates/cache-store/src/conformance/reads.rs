//! Checks of reading: variants under one key, metadata round trips, `get_now` against `get`.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};

use super::{
    awaited_seeds, body_of, get, put, put_seeded, read_body, read_verified, seeded_body,
    seeded_response, Harness, Limits, HOUR, KEY,
};
use crate::{Store, VariantId};

/// When a store answers [`Store::get_now`], it answers what [`Store::get`] does: after
/// commits, a replacement, a removal and an expiry.
pub async fn get_now_agrees_with_get<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    if store.get_now(KEY).is_none() {
        return;
    }
    assert!(get(&store, KEY).await.is_empty());
    put_seeded(&store, KEY, Some("en"), 1, 100).await;
    put_seeded(&store, KEY, Some("fr"), 2, 200).await;
    put_seeded(&store, KEY, Some("fr"), 3, 300).await;
    harness.settle(&store);
    let now = read_verified(&store, KEY).await;
    assert_eq!(now.iter().map(|s| s.1).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(now, awaited_seeds(&store, KEY).await);

    let english = now[0].0.clone();
    store.remove(KEY, Some(&english)).await.expect("remove");
    harness.settle(&store);
    let now = read_verified(&store, KEY).await;
    assert_eq!(now.iter().map(|s| s.1).collect::<Vec<_>>(), [3]);
    assert_eq!(now, awaited_seeds(&store, KEY).await);

    let short = Duration::from_millis(50);
    let other = "https://example.com/short-lived";
    put(
        &store,
        other,
        seeded_response(None, 4, 10),
        &seeded_body(4, 10),
        10,
        short,
    )
    .await;
    assert_eq!(read_verified(&store, other).await.len(), 1);
    tokio::time::sleep(short * 3).await;
    harness.settle(&store);
    assert!(
        get(&store, other).await.is_empty(),
        "expired entry read at once"
    );
    assert!(awaited_seeds(&store, other).await.is_empty());
}

/// Several variants under one key are listed together; a commit replaces only the variant with
/// the same id.
pub async fn variants<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    put_seeded(&store, KEY, Some("en"), 1, 100).await;
    put_seeded(&store, KEY, Some("fr"), 2, 200).await;
    put_seeded(&store, KEY, None, 3, 0).await;
    put_seeded(&store, "https://example.com/other", Some("en"), 4, 10).await;

    let seen = read_verified(&store, KEY).await;
    let mut seeds: Vec<u64> = seen.iter().map(|(_, s)| *s).collect();
    seeds.sort();
    assert_eq!(seeds, [1, 2, 3], "expected three variants");

    // Same variant again: replaces the old one, keeps the others.
    put_seeded(&store, KEY, Some("fr"), 5, 300).await;
    let mut seeds: Vec<u64> = read_verified(&store, KEY)
        .await
        .iter()
        .map(|(_, s)| *s)
        .collect();
    seeds.sort();
    assert_eq!(
        seeds,
        [1, 3, 5],
        "commit must replace only the same variant"
    );

    assert!(get(&store, "https://example.com/missing").await.is_empty());
    assert_eq!(
        read_verified(&store, "https://example.com/other")
            .await
            .len(),
        1
    );
}

/// Everything in a [`StoredResponse`] comes back as stored, including repeated and non-UTF-8
/// header lines in order.
///
/// [`StoredResponse`]: crate::StoredResponse
pub async fn metadata_round_trips<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    let mut response = seeded_response(Some("de"), 7, 3);
    response.method = Method::HEAD;
    response.status = StatusCode::NON_AUTHORITATIVE_INFORMATION;
    response.uri = Uri::from_static("https://example.com/conformance?a=1&b=%FF");
    for i in 0..20 {
        response.headers.append("set-cookie", HeaderValue::from(i));
    }
    let odd = HeaderValue::from_bytes(b"caf\xe9 \x80\xff").expect("obs-text is a valid value");
    response.headers.append("x-latin1", odd);
    response
        .vary_request_headers
        .append("accept-language", HeaderValue::from_static("en;q=0.5"));
    let body = seeded_body(7, 3);
    put(&store, KEY, response.clone(), &body, 1, HOUR).await;

    let entries = get(&store, KEY).await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    let lines = |map: &HeaderMap| -> Vec<(String, Vec<u8>)> {
        map.iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    };
    assert_eq!(lines(&entry.response.headers), lines(&response.headers));
    assert_eq!(
        lines(&entry.response.vary_request_headers),
        lines(&response.vary_request_headers)
    );
    assert_eq!(*entry.response.response(), response);
    assert_eq!(entry.variant, VariantId::of(&response));
    assert_eq!(read_body(body_of(entry)).await.expect("body"), body);
}
