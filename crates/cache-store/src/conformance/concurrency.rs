//! Checks under concurrency and against a model: concurrent writers, parallel commits.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;

use super::{
    body_of, get, header_u64, options, put_seeded, read_body, read_verified, seeded_body,
    seeded_response, Harness, Limits, HOUR, KEY,
};
use crate::{Store, VariantId};

/// Many writers committing variants of one key while readers read them. Each of six writers
/// owns one variant and replaces it round after round; two more writers replace one shared
/// variant. Every entry read is whole and consistent with its own metadata; in the end every
/// writer's last commit is there (no commit to one variant loses a concurrent commit to
/// another) and nothing else.
pub async fn concurrent_writers_and_readers<H: Harness>(harness: &H) {
    const OWNERS: u64 = 6;
    const ROUNDS: u64 = 8;
    let store = Arc::new(harness.new_store(Limits::default()));
    let done = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let (store, done, reads) = (store.clone(), done.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let seen = read_verified(&*store, KEY).await;
                let most = OWNERS as usize + 1;
                assert!(
                    seen.len() <= most,
                    "more variants than written: {}",
                    seen.len()
                );
                reads.fetch_add(seen.len(), Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }));
    }
    // All writers commit each round at the same moment, to make races likely.
    let barrier = Arc::new(tokio::sync::Barrier::new(OWNERS as usize + 2));
    let mut writers = Vec::new();
    for w in 0..OWNERS + 2 {
        let (store, barrier) = (store.clone(), barrier.clone());
        writers.push(tokio::spawn(async move {
            let language = if w < OWNERS {
                format!("owner-{w}")
            } else {
                "shared".to_owned()
            };
            for round in 0..ROUNDS {
                let seed = w * 1000 + round;
                let len = 1000 + (seed as usize * 7919) % 60_000;
                let body = seeded_body(seed, len);
                let response = seeded_response(Some(&language), seed, len);
                let mut writer = store
                    .begin(KEY, response.into(), options(HOUR))
                    .await
                    .expect("begin");
                for piece in body.chunks(7000) {
                    writer.write(body.slice_ref(piece)).expect("write");
                    tokio::task::yield_now().await;
                }
                barrier.wait().await;
                writer.commit().await.expect("commit");
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer task panicked");
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("reader task panicked");
    }
    let mut seeds: Vec<u64> = read_verified(&*store, KEY)
        .await
        .into_iter()
        .map(|(_, seed)| seed)
        .collect();
    seeds.sort();
    let last = ROUNDS - 1;
    let shared = seeds.pop().unwrap_or_default();
    assert!(
        shared == OWNERS * 1000 + last || shared == (OWNERS + 1) * 1000 + last,
        "the shared variant is not one of its writers' last commits: {shared}"
    );
    let owners: Vec<u64> = (0..OWNERS).map(|w| w * 1000 + last).collect();
    assert_eq!(seeds, owners, "a commit was lost, or an older version won");
}

/// Several OS threads committing their own variant of one key as fast as they can for a
/// moment: afterwards, every thread's last commit is there. Catches read-modify-write races
/// between commits to different variants of one key (which task-based tests rarely hit).
pub async fn parallel_commits_keep_every_variant<H: Harness>(harness: &H) {
    const THREADS: u64 = 4;
    let store = Arc::new(harness.new_store(Limits::default()));
    let handle = tokio::runtime::Handle::current();
    let stop = std::time::Instant::now() + Duration::from_millis(300);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, handle) = (store.clone(), handle.clone());
            std::thread::spawn(move || {
                let language = format!("thread-{t}");
                let mut round = 0;
                loop {
                    let seed = t * 1_000_000 + round;
                    handle.block_on(put_seeded(&*store, KEY, Some(&language), seed, 64));
                    round += 1;
                    if std::time::Instant::now() >= stop {
                        return seed;
                    }
                }
            })
        })
        .collect();
    let mut lasts = tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .map(|t| t.join().expect("committing thread panicked"))
            .collect::<Vec<u64>>()
    })
    .await
    .expect("join");
    lasts.sort();
    let seeds: Vec<u64> = read_verified(&*store, KEY)
        .await
        .into_iter()
        .map(|(_, seed)| seed)
        .collect::<Vec<_>>();
    let mut seeds = seeds;
    seeds.sort();
    assert_eq!(seeds, lasts, "a commit was lost, or an older version won");
}

/// A pseudo-random sequence of commits, updates, removals and clears over a few keys and
/// variants, checked after every step against a model (a map of what must be stored).
pub async fn matches_a_model<H: Harness>(harness: &H) {
    use std::collections::BTreeMap;

    let store = harness.new_store(Limits::default());
    let keys = [
        "https://example.com/m/0",
        "https://example.com/m/1",
        "https://example.com/m/2",
    ];
    let languages = ["en", "fr", "de"];
    // (key, language) -> (seed, update marker)
    let mut model: BTreeMap<(usize, usize), (u64, Option<u64>)> = BTreeMap::new();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for step in 0..150u64 {
        let (k, l) = (next(3) as usize, next(3) as usize);
        let (key, language) = (keys[k], languages[l]);
        let variant = VariantId::of(&seeded_response(Some(language), 0, 0));
        match next(20) {
            0..=8 => {
                let len = next(5000) as usize;
                put_seeded(&store, key, Some(language), step, len).await;
                model.insert((k, l), (step, None));
            }
            9..=12 => {
                if let Some((seed, marker)) = model.get_mut(&(k, l)) {
                    let len = seeded_len(&store, key, &variant).await;
                    let mut response = seeded_response(Some(language), *seed, len);
                    response
                        .headers
                        .insert("x-updated", HeaderValue::from(step));
                    store
                        .update(key, &variant, response.into(), HOUR)
                        .await
                        .expect("update");
                    *marker = Some(step);
                } else {
                    let response = seeded_response(Some(language), step, 1);
                    store
                        .update(key, &variant, response.into(), HOUR)
                        .await
                        .expect("update of a missing variant");
                }
            }
            13..=15 => {
                store.remove(key, Some(&variant)).await.expect("remove");
                model.remove(&(k, l));
            }
            16..=17 => {
                store.remove(key, None).await.expect("remove key");
                model.retain(|(mk, _), _| *mk != k);
            }
            18 if next(4) == 0 => {
                store.clear().await.expect("clear");
                model.clear();
            }
            _ => {}
        }
        harness.settle(&store);
        for (k, key) in keys.iter().enumerate() {
            let mut found: Vec<(u64, Option<u64>)> = Vec::new();
            for entry in &get(&store, key).await {
                let marker = entry
                    .response
                    .headers
                    .get("x-updated")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let seed = header_u64(&entry.response, "x-seed");
                let len = header_u64(&entry.response, "x-len") as usize;
                let body = read_body(body_of(entry)).await.expect("body");
                assert!(body == seeded_body(seed, len), "step {step}: body mismatch");
                found.push((seed, marker));
            }
            found.sort();
            let mut expected: Vec<(u64, Option<u64>)> = model
                .iter()
                .filter(|((mk, _), _)| *mk == k)
                .map(|(_, v)| *v)
                .collect();
            expected.sort();
            assert_eq!(found, expected, "step {step}: {key} differs from the model");
        }
    }
}

/// The body length of the stored variant, from its `x-len` header.
async fn seeded_len<S: Store + ?Sized>(store: &S, key: &str, variant: &VariantId) -> usize {
    get(store, key)
        .await
        .into_iter()
        .find(|e| e.variant == *variant)
        .map(|e| header_u64(&e.response, "x-len") as usize)
        .expect("variant in the model is missing from the store")
}
