//! Checks run against both the standalone server and the cluster: stores sharing a server,
//! racing writers, damaged chunks and records, aborted writers and `clear`.

use std::time::{Duration, Instant};

use cache_store::conformance::{read_body, read_verified, seeded_body, seeded_response};
use cache_store::{RedisStore, Store, StoreError, VariantId};

use crate::{fresh_prefix, open, put, seeds, url_from_env, Raw, CLUSTER, HOUR, KEY, STANDALONE};

/// Runs `check` against the standalone server and the cluster (each when configured).
macro_rules! on_both {
    ($name:ident, $check:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone() {
                if let Some(url) = super::url_from_env(super::STANDALONE) {
                    super::$check(&url).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                if let Some(url) = super::url_from_env(super::CLUSTER) {
                    super::$check(&url).await;
                }
            }
        }
    };
}

on_both!(two_stores_see_each_others_changes, two_stores);
on_both!(racing_writers_never_mix, racing_writers);
on_both!(damaged_chunk_ends_the_body_in_an_error, damaged_chunk);
on_both!(garbled_record_is_a_miss_and_removed, garbled_record);
on_both!(
    a_reader_asks_for_the_next_batch_while_one_is_handed_out,
    read_ahead
);
on_both!(aborted_writer_leaves_nothing, aborted_writer);
on_both!(clear_removes_only_its_prefix, clear_only_prefix);

/// Two stores on one server (as two processes would have) see each other's commits, updates,
/// removals and clears.
async fn two_stores(url: &str) {
    let prefix = fresh_prefix();
    let (one, two) = (open(url, &prefix).await, open(url, &prefix).await);
    put(&one, KEY, Some("en"), 1, 100).await;
    put(&one, KEY, Some("fr"), 2, 300_000).await;
    assert_eq!(seeds(&read_verified(&two, KEY).await), [1, 2]);

    let mut updated = seeded_response(Some("en"), 1, 100);
    updated
        .headers
        .insert("x-updated", "yes".parse().expect("value"));
    let en = VariantId::of(&updated);
    one.update(KEY, &en, updated.into(), Duration::from_secs(60))
        .await
        .expect("update");
    let entries = two.get(KEY).await.expect("get");
    assert!(entries
        .iter()
        .any(|e| e.variant == en && e.response.headers.contains_key("x-updated")));

    two.remove(KEY, Some(&en)).await.expect("remove");
    assert_eq!(seeds(&read_verified(&one, KEY).await), [2]);
    put(&two, "https://example.com/other", None, 3, 10).await;
    one.clear().await.expect("clear");
    assert!(two.get(KEY).await.expect("get").is_empty());
    assert!(two
        .get("https://example.com/other")
        .await
        .expect("get")
        .is_empty());
}

/// Two writers on one key and variant, their chunks interleaved and their commits at once,
/// round after round: every read is one writer's whole entry, and the last commit wins.
async fn racing_writers(url: &str) {
    let prefix = fresh_prefix();
    let (a, b) = (open(url, &prefix).await, open(url, &prefix).await);
    let len = 200_000;
    for round in 0..6u64 {
        let (sa, sb) = (round * 2, round * 2 + 1);
        let (body_a, body_b) = (seeded_body(sa, len), seeded_body(sb, len));
        let mut wa = a
            .begin(KEY, seeded_response(Some("x"), sa, len).into(), HOUR)
            .await
            .expect("begin");
        let mut wb = b
            .begin(KEY, seeded_response(Some("x"), sb, len).into(), HOUR)
            .await
            .expect("begin");
        for (pa, pb) in body_a.chunks(30_000).zip(body_b.chunks(30_000)) {
            wa.write(body_a.slice_ref(pa)).expect("write");
            wb.write(body_b.slice_ref(pb)).expect("write");
            tokio::task::yield_now().await;
        }
        let (ra, rb) = tokio::join!(wa.commit(), wb.commit());
        ra.expect("commit a");
        rb.expect("commit b");
        let seen = seeds(&read_verified(&a, KEY).await);
        assert!(seen == [sa] || seen == [sb], "round {round}: {seen:?}");
        assert_eq!(seeds(&read_verified(&b, KEY).await), seen);
    }
}

/// A chunk overwritten (or deleted) behind the store's back ends the streamed body in an
/// error, and removes that variant only.
async fn damaged_chunk(url: &str) {
    let store = open(url, &fresh_prefix()).await;
    let raw = Raw::connect(url).await;
    let len = 300_000;
    put(&store, KEY, Some("en"), 1, len).await;
    put(&store, KEY, Some("de"), 2, len).await;
    put(&store, KEY, Some("fr"), 3, 100).await;
    let records = raw.records(&store, KEY).await;
    let write_id = |lang: &str| -> String {
        let variant = VariantId::of(&seeded_response(Some(lang), 0, 0));
        let (_, record) = records
            .iter()
            .find(|(field, _)| field.as_slice() == variant.as_bytes())
            .expect("variant stored");
        String::from_utf8(record[..16].to_vec()).expect("hex write id")
    };
    // en: one byte of chunk 2 changed (same length); de: its last chunk deleted.
    let chunk = store.chunk_key(KEY, &write_id("en"), 2);
    let mut data: Vec<u8> = raw.query(redis::cmd("GET").arg(&chunk)).await;
    data[7] ^= 1;
    let _: () = raw
        .query(redis::cmd("SET").arg(&chunk).arg(data).arg("KEEPTTL"))
        .await;
    let last = store.chunk_key(KEY, &write_id("de"), (len as u32).div_ceil(65_536) - 1);
    let _: i64 = raw.query(redis::cmd("DEL").arg(&last)).await;

    let entries = store.get(KEY).await.expect("get");
    assert_eq!(entries.len(), 3, "the damage is found while streaming");
    for entry in &entries {
        let seed: u64 = entry.response.headers["x-seed"]
            .to_str()
            .expect("seed")
            .parse()
            .expect("seed");
        let result = read_body(entry.body().expect("body")).await;
        match seed {
            1 | 2 => assert!(
                matches!(result, Err(StoreError::Corrupt(_))),
                "a damaged body was read without error: {:?}",
                result.map(|b| b.len())
            ),
            _ => assert!(result.is_ok()),
        }
    }
    assert_eq!(seeds(&read_verified(&store, KEY).await), [3]);
    assert_eq!(raw.records(&store, KEY).await.len(), 1);
}

/// A streamed body keeps its read-ahead of `MGET`s (4 chunks each) in flight, and asks for the
/// next only once a batch is handed out: a reader holds at most that many. Seen by deleting
/// the chunks past the read-ahead right after the first frame: those asked for with the
/// first still arrive whole; the next batch is found missing, and the body ends in an error.
async fn read_ahead(url: &str) {
    let chunk = 65_536;
    // The default, 1 MiB: four batches; and two.
    for (read_ahead, batches) in [(None, 4), (Some(8 * chunk), 2)] {
        let mut builder = RedisStore::builder(url).prefix(fresh_prefix());
        if let Some(bytes) = read_ahead {
            builder = builder.read_ahead_bytes(bytes);
        }
        let store = builder.build().await.expect("connect");
        let held = read_past_deleted_chunks(url, &store, batches * 4).await;
        assert_eq!(held, batches * 4 * chunk, "read-ahead {read_ahead:?}");
    }
}

/// Reads a body of more chunks than `ahead`, deleting chunks `ahead..` after its first frame;
/// returns how many bytes were read before the error that must end it.
async fn read_past_deleted_chunks(url: &str, store: &RedisStore, ahead: usize) -> usize {
    use http_body_util::BodyExt;

    let raw = Raw::connect(url).await;
    let (chunk, chunks) = (65_536, ahead + 6);
    put(store, KEY, None, 5, chunk * chunks).await;
    let records = raw.records(store, KEY).await;
    let write_id = String::from_utf8(records[0].1[..16].to_vec()).expect("hex write id");

    let entries = store.get(KEY).await.expect("get");
    let mut body = entries.iter().next().expect("stored").body().expect("body");
    let first = body.frame().await.expect("a frame").expect("read");
    assert_eq!(first.data_ref().map(|d| d.len()), Some(chunk));
    // The read-ahead's MGETs went out with the first; let them be answered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in ahead..chunks {
        let _: i64 = raw
            .query(redis::cmd("DEL").arg(store.chunk_key(KEY, &write_id, n as u32)))
            .await;
    }
    let mut read = chunk;
    let end = loop {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
            Some(Err(e)) => break Some(e),
            None => break None,
        }
    };
    assert!(
        matches!(end, Some(StoreError::Corrupt(_))),
        "chunks past the read-ahead were read before they were deleted: {end:?}"
    );
    assert!(
        raw.records(store, KEY).await.is_empty(),
        "the damaged entry is removed"
    );
    read
}

/// A truncated record and a record with a garbled header are misses, and are removed.
async fn garbled_record(url: &str) {
    let store = open(url, &fresh_prefix()).await;
    let raw = Raw::connect(url).await;
    put(&store, KEY, Some("en"), 1, 100).await;
    put(&store, KEY, Some("fr"), 2, 300_000).await;
    put(&store, KEY, Some("de"), 3, 100).await;
    let index = store.index_key(KEY);
    let en = VariantId::of(&seeded_response(Some("en"), 0, 0));
    let fr = VariantId::of(&seeded_response(Some("fr"), 0, 0));
    for (field, record) in raw.records(&store, KEY).await {
        let damaged = if field == en.as_bytes() {
            record[..50].to_vec()
        } else if field == fr.as_bytes() {
            let mut record = record;
            record[44 + 20] ^= 0x10;
            record
        } else {
            continue;
        };
        let _: i64 = raw
            .query(redis::cmd("HSET").arg(&index).arg(field).arg(damaged))
            .await;
    }
    assert_eq!(seeds(&read_verified(&store, KEY).await), [3]);
    assert_eq!(
        raw.records(&store, KEY).await.len(),
        1,
        "damaged records kept"
    );
}

/// The keys under `prefix`, on the server or on every master of the cluster.
async fn keys_under(url: &str, prefix: &str) -> Vec<String> {
    let pattern = format!("{prefix}*");
    if let Some(hosts) = url.strip_prefix("redis+cluster://") {
        let mut all = Vec::new();
        for host in hosts.split(',') {
            let raw = Raw::connect(&format!("redis://{host}")).await;
            let found: Vec<String> = raw.query(redis::cmd("KEYS").arg(&pattern)).await;
            all.extend(found);
        }
        all
    } else {
        let raw = Raw::connect(url).await;
        raw.query(redis::cmd("KEYS").arg(&pattern)).await
    }
}

/// A writer dropped before its commit leaves no visible entry, and its staged chunks go.
async fn aborted_writer(url: &str) {
    let prefix = fresh_prefix();
    let store = open(url, &prefix).await;
    let body = seeded_body(1, 500_000);
    let mut writer = store
        .begin(KEY, seeded_response(None, 1, 500_000).into(), HOUR)
        .await
        .expect("begin");
    writer.write(body.slice(..400_000)).expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(writer);
    assert!(store.get(KEY).await.expect("get").is_empty());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = keys_under(url, &prefix).await;
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "staged chunks left: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `clear` removes the keys of its prefix, not those of a prefix that merely starts with it.
async fn clear_only_prefix(url: &str) {
    let prefix = fresh_prefix();
    let (mine, longer) = (
        open(url, &prefix).await,
        open(url, &format!("{prefix}x:")).await,
    );
    for i in 0..20 {
        put(&mine, &format!("{KEY}/{i}"), None, i, 1000).await;
    }
    put(&longer, KEY, None, 99, 100_000).await;
    mine.clear().await.expect("clear");
    assert!(keys_under(url, &prefix)
        .await
        .iter()
        .all(|k| k.starts_with(&format!("{prefix}x:"))));
    assert_eq!(seeds(&read_verified(&longer, KEY).await), [99]);
}
