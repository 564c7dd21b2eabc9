//! Checks of damaged entries: a corrupt entry is a miss.

use super::{
    body_of, get, header_u64, put_seeded, read_body, read_verified, seeded_body, Harness, Limits,
    KEY,
};

/// An entry whose stored bytes are damaged is a miss (or, for a body damaged after the header
/// was read, a body error), never wrong data. Skipped when [`Harness::corrupt`] returns
/// `false`.
pub async fn corrupt_entry_is_a_miss<H: Harness>(harness: &H) {
    let store = harness.new_store(Limits::default());
    put_seeded(&store, KEY, Some("en"), 1, 2000).await;
    put_seeded(&store, KEY, Some("fr"), 2, 2000).await;
    let other = "https://example.com/other";
    put_seeded(&store, other, None, 3, 2000).await;
    if !harness.corrupt(&store, KEY) {
        return;
    }
    for entry in &get(&store, KEY).await {
        let seed = header_u64(&entry.response, "x-seed");
        let len = header_u64(&entry.response, "x-len") as usize;
        if let Ok(body) = read_body(body_of(entry)).await {
            let verdict = if body == seeded_body(seed, len) {
                "intact"
            } else {
                "wrong"
            };
            panic!("a damaged entry was returned and read without error ({verdict} bytes)");
        }
    }
    assert_eq!(
        read_verified(&store, other).await.len(),
        1,
        "other key damaged"
    );
    // The key can be stored again.
    put_seeded(&store, KEY, None, 4, 10).await;
    assert_eq!(read_verified(&store, KEY).await.len(), 1);
}
