//! What the cache holds and waits for stays bounded whatever clients and origins do: variants
//! per key, background refreshes, the time an origin may take. Real loopback origins and
//! hyper-util's legacy client; times from a manual clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache_workspace::answer::Answer;
use cache_workspace::clock::ManualClock;
use cache_workspace::origin::{self, full, LegacyClient, Origin};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::Full;
use tower::{Service, ServiceExt};
use tower_http_cache::{
    default_key, CacheLayer, CacheOutcome, CacheService, CacheStatusDetail, MemoryStore, Store,
};

async fn send(service: &mut CacheService<LegacyClient>, request: Request<Full<Bytes>>) -> Answer {
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("response");
    Answer::read(response).await
}

/// RFC 9111 §4.1: `Vary: User-Agent` with values clients choose freely must not grow a key,
/// or the lookups over it, without limit.
#[tokio::test]
async fn vary_on_client_chosen_values_cannot_grow_a_key_without_limit() {
    let origin = Origin::start(|request| async move {
        let agent = request
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        Response::builder()
            .header("cache-control", "max-age=600")
            .header("vary", "user-agent")
            .body(full(format!("for {agent}")))
            .expect("response")
    })
    .await;
    let store = Arc::new(MemoryStore::default());
    let mut service = tower::ServiceBuilder::new()
        .layer(
            CacheLayer::with_shared_store(store.clone())
                .shared(true)
                .max_variants(4),
        )
        .service(origin::client());
    let url = origin.url("/page");
    for i in 0..50 {
        let request = Request::get(&url)
            .header("user-agent", format!("agent-{i}"))
            .body(Full::default())
            .expect("request");
        let answer = send(&mut service, request).await;
        assert_eq!(answer.body, format!("for agent-{i}"));
    }
    // Removals of superseded variants run after each commit: let them land.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let key = default_key(&url.parse::<Uri>().expect("uri"));
    let stored = store.get(&key).await.expect("get");
    assert!(stored.len() <= 4, "{} variants kept", stored.len());
    // The most recent ones are those kept.
    let request = Request::get(&url)
        .header("user-agent", "agent-49")
        .body(Full::default())
        .expect("request");
    assert_eq!(
        send(&mut service, request).await.cache.outcome,
        CacheOutcome::Hit
    );
}

/// An origin whose first answer is quick and whose later ones take 5 s.
async fn slowing_origin(clock: &ManualClock, cache_control: &'static str) -> Origin {
    let calls = Arc::new(AtomicUsize::new(0));
    let clock = clock.clone();
    Origin::start(move |_request| {
        let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
        let date = clock.http_date();
        async move {
            if !first {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Response::builder()
                .header("date", date)
                .header("cache-control", cache_control)
                .body(full("page"))
                .expect("response")
        }
    })
    .await
}

#[tokio::test]
async fn an_origin_that_does_not_answer_in_time_gets_a_504_without_a_stale_response() {
    let clock = ManualClock::new();
    let origin = slowing_origin(&clock, "max-age=1").await;
    let mut service = tower::ServiceBuilder::new()
        .layer(
            CacheLayer::new(MemoryStore::default())
                .clock(clock.clone())
                .origin_timeout(Duration::from_millis(200)),
        )
        .service(origin::client());
    let url = origin.url("/page");
    send(
        &mut service,
        Request::get(&url).body(Full::default()).unwrap(),
    )
    .await;
    clock.advance(Duration::from_secs(10));
    let answer = send(
        &mut service,
        Request::get(&url).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(answer.cache.outcome, CacheOutcome::Generated);
    assert_eq!(answer.cache.detail, Some(CacheStatusDetail::OriginTimeout));
}

/// RFC 5861 §4: a response that allows `stale-if-error` is served stale when the origin does
/// not answer in time.
#[tokio::test]
async fn an_origin_that_does_not_answer_in_time_gets_a_stale_response_where_allowed() {
    let clock = ManualClock::new();
    let origin = slowing_origin(&clock, "max-age=1, stale-if-error=600").await;
    let mut service = tower::ServiceBuilder::new()
        .layer(
            CacheLayer::new(MemoryStore::default())
                .clock(clock.clone())
                .origin_timeout(Duration::from_millis(200)),
        )
        .service(origin::client());
    let url = origin.url("/page");
    send(
        &mut service,
        Request::get(&url).body(Full::default()).unwrap(),
    )
    .await;
    clock.advance(Duration::from_secs(10));
    let answer = send(
        &mut service,
        Request::get(&url).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.cache.outcome, CacheOutcome::Stale);
    assert_eq!(answer.body, "page");
}

/// RFC 5861 §3: stale-while-revalidate refreshes run in the background, but no more of them
/// at once than configured, however many stale keys clients ask for.
#[tokio::test]
async fn background_refreshes_are_bounded() {
    let clock = ManualClock::new();
    let origin_clock = clock.clone();
    let refreshes = Arc::new(AtomicUsize::new(0));
    let seen = refreshes.clone();
    let origin = Origin::start(move |request| {
        let date = origin_clock.http_date();
        let refresh = request.headers.contains_key("if-none-match");
        if refresh {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            if refresh {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Response::builder()
                .header("date", date)
                .header("etag", "\"v\"")
                .header("cache-control", "max-age=1, stale-while-revalidate=600")
                .body(full("page"))
                .expect("response")
        }
    })
    .await;
    let mut service = tower::ServiceBuilder::new()
        .layer(
            CacheLayer::new(MemoryStore::default())
                .clock(clock.clone())
                .max_background_refreshes(2),
        )
        .service(origin::client());
    for i in 0..10 {
        let url = origin.url(&format!("/page/{i}"));
        send(
            &mut service,
            Request::get(&url).body(Full::default()).unwrap(),
        )
        .await;
    }
    clock.advance(Duration::from_secs(10));
    for i in 0..10 {
        let url = origin.url(&format!("/page/{i}"));
        let answer = send(
            &mut service,
            Request::get(&url).body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!(answer.cache.outcome, CacheOutcome::Stale, "/page/{i}");
    }
    // The refreshes that got a slot reach the origin (and stay there 2 s each); the others
    // were skipped: no third one comes.
    for _ in 0..250 {
        if refreshes.load(Ordering::SeqCst) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(refreshes.load(Ordering::SeqCst), 2);
}

/// Coalescing: a leader whose client reads slowly holds its followers only
/// `coalesce_streaming_wait` once its response is being stored; they then go to the origin
/// themselves, while the leader's client is still reading.
#[tokio::test]
async fn a_slowly_read_leader_does_not_hold_its_followers() {
    let origin = Origin::start(|_request| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Response::builder()
            .header("cache-control", "max-age=600")
            .body(full(Bytes::from(vec![b'x'; 4 << 20])))
            .expect("response")
    })
    .await;
    let service = tower::ServiceBuilder::new()
        .layer(
            CacheLayer::new(MemoryStore::builder().max_capacity_bytes(64 << 20).build())
                .coalesce(Some(Duration::from_secs(60)))
                .coalesce_streaming_wait(Duration::from_millis(200)),
        )
        .service(origin::client());
    let url = origin.url("/big");
    let mut leader = service.clone();
    let leader_request = Request::get(&url).body(Full::default()).unwrap();
    let leader = leader
        .ready()
        .await
        .unwrap()
        .call(leader_request)
        .await
        .unwrap();
    // The leader's client takes one frame, then stops reading.
    let mut leader_body = leader.into_body();
    let _ = http_body_util::BodyExt::frame(&mut leader_body).await;
    let followers: Vec<_> = (0..5)
        .map(|_| {
            let mut service = service.clone();
            let url = url.clone();
            tokio::spawn(async move {
                send(
                    &mut service,
                    Request::get(&url).body(Full::default()).unwrap(),
                )
                .await
            })
        })
        .collect();
    for follower in followers {
        let answer = tokio::time::timeout(Duration::from_secs(20), follower)
            .await
            .expect("a follower waited for the leader's slow client")
            .expect("task");
        assert_eq!(answer.body.len(), 4 << 20);
    }
    drop(leader_body);
}

/// Coalescing: when the leader fails, one follower tries again for the others, which then
/// get its stored answer: two origin requests for ten clients, not a stampede of nine.
#[tokio::test]
async fn a_failed_leader_hands_over_to_one_new_leader_not_a_stampede() {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let origin = Origin::start(move |_request| {
        let call = seen.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if call == 0 {
                return Response::builder()
                    .status(StatusCode::SERVICE_UNAVAILABLE)
                    .body(full("try again"))
                    .expect("503");
            }
            Response::builder()
                .header("cache-control", "max-age=600")
                .body(full("page"))
                .expect("200")
        }
    })
    .await;
    let service = tower::ServiceBuilder::new()
        .layer(CacheLayer::new(MemoryStore::default()))
        .service(origin::client());
    let url = origin.url("/page");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let mut service = service.clone();
            let url = url.clone();
            tokio::spawn(async move {
                send(
                    &mut service,
                    Request::get(&url).body(Full::default()).unwrap(),
                )
                .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("task").status);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        9,
        "{statuses:?}"
    );
}
