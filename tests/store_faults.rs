//! Issue 10: shared stores failing under load, through the whole layer. Sixteen tasks send
//! requests over 200 keys (one in ten has a 200 KiB body, streamed in chunks) while the store's
//! server is killed with SIGKILL mid-run and later started again on the same port:
//! - every request still gets a correct answer: a 200 with exactly its own key's body, from the
//!   store or from the origin; no request hangs;
//! - no torn or mixed-up body is ever served as complete: a stored body cut off by the kill
//!   ends in an error, never in a short or foreign body;
//! - caching resumes by itself once the server is back, with no restart of the cache.
//!
//! And a stored entry damaged in the server is a miss (or, for a body already streaming, an
//! error), is removed, and the next request stores it anew.
//!
//! The servers are this test's own (`support/redis_servers.rs`), so killing them disturbs no
//! other test.

#[path = "support/redis_servers.rs"]
mod redis_servers;
#[path = "support/s3_server.rs"]
#[allow(dead_code)] // `S3::url`: this test reaches the server through its relay
mod s3_server;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_workspace::origin::{self, full, LegacyClient, Origin};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};
use tower_http_cache::{CacheLayer, CacheOutcome, CacheService, CacheStatus};

use redis_servers::{Cluster, Standalone};

const KEYS: usize = 200;
const TASKS: usize = 16;

/// The body of `path`: its name over and over, 200 KiB for every tenth key, else 2 KiB, so a
/// body of another key or a cut-off one never passes [`expected`].
fn expected(path: &str) -> Bytes {
    let index: usize = path
        .rsplit('/')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let len = if index % 10 == 0 { 200 << 10 } else { 2 << 10 };
    let unit = format!("{path};");
    Bytes::from(unit.repeat(len / unit.len() + 1)[..len].to_owned())
}

async fn start_origin() -> Origin {
    Origin::start(|request| async move {
        Response::builder()
            .header("cache-control", "max-age=600")
            .body(full(expected(request.uri.path())))
            .expect("200")
    })
    .await
}

async fn cache(url: &str) -> CacheService<LegacyClient> {
    let store = tower_http_cache::store::open(url)
        .await
        .expect("store opens");
    tower::ServiceBuilder::new()
        .layer(CacheLayer::with_shared_store(store).shared(true))
        .service(origin::client())
}

/// What the requests that began in one phase saw.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    hits: AtomicU64,
    /// Stored bodies that ended in an error (the server died under them): allowed, counted.
    stored_bodies_cut_off: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }
}

/// One request and its checks.
async fn one(service: &mut CacheService<LegacyClient>, origin: &Origin, key: usize, tally: &Tally) {
    tally.requests.fetch_add(1, Ordering::Relaxed);
    let path = format!("/k/{key}");
    let request = Request::get(origin.url(&path))
        .body(Full::default())
        .expect("request");
    let response = match service.ready().await.expect("ready").call(request).await {
        Ok(response) => response,
        Err(error) => return tally.fail(format!("{path}: error {error}")),
    };
    let (parts, body) = response.into_parts();
    let outcome = parts.extensions.get::<CacheStatus>().map(|s| s.outcome);
    if parts.status != StatusCode::OK {
        return tally.fail(format!("{path}: status {} ({outcome:?})", parts.status));
    }
    let from_store = matches!(outcome, Some(CacheOutcome::Hit | CacheOutcome::Stale));
    if from_store {
        tally.hits.fetch_add(1, Ordering::Relaxed);
    }
    match body.collect().await.map(|body| body.to_bytes()) {
        Ok(body) if body == expected(&path) => {}
        Ok(body) => tally.fail(format!(
            "{path}: a wrong body of {} bytes served as complete ({outcome:?})",
            body.len()
        )),
        Err(_) if from_store => {
            tally.stored_bodies_cut_off.fetch_add(1, Ordering::Relaxed);
        }
        Err(error) => tally.fail(format!("{path}: origin body failed: {error}")),
    }
}

/// Load from `TASKS` tasks, each request counted in the phase it began in, until `stop`.
struct Load {
    phase: Arc<AtomicUsize>,
    tallies: Arc<[Tally; 3]>,
    stop: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(service: CacheService<LegacyClient>, origin: Arc<Origin>) -> Load {
        let phase = Arc::new(AtomicUsize::new(0));
        let tallies: Arc<[Tally; 3]> = Arc::new(Default::default());
        let stop = Arc::new(AtomicUsize::new(0));
        let tasks = (0..TASKS)
            .map(|task| {
                let (mut service, origin) = (service.clone(), origin.clone());
                let (phase, tallies, stop) = (phase.clone(), tallies.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut key = task * 13;
                    while stop.load(Ordering::Relaxed) == 0 {
                        key = (key * 7 + 11) % KEYS;
                        let tally = &tallies[phase.load(Ordering::Relaxed)];
                        let limit = Duration::from_secs(15);
                        let request = one(&mut service, &origin, key, tally);
                        if tokio::time::timeout(limit, request).await.is_err() {
                            tally.fail(format!("/k/{key}: no answer within {limit:?}"));
                        }
                    }
                })
            })
            .collect();
        Load {
            phase,
            tallies,
            stop,
            tasks,
        }
    }

    /// Waits (up to `limit`) until requests begun in the current phase have had `hits` hits.
    async fn wait_for_hits(&self, hits: u64, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let tally = &self.tallies[self.phase.load(Ordering::Relaxed)];
        while start.elapsed() < limit {
            if tally.hits.load(Ordering::Relaxed) >= hits {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    async fn finish(self, name: &str) {
        self.stop.store(1, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("no task panicked");
        }
        for (phase, tally) in ["before the kill", "server down", "server back"]
            .iter()
            .zip(self.tallies.iter())
        {
            let failures = tally.failures.lock().unwrap_or_else(|e| e.into_inner());
            println!(
                "{name}, {phase}: {} requests, {} hits, {} stored bodies cut off, {} failures",
                tally.requests.load(Ordering::Relaxed),
                tally.hits.load(Ordering::Relaxed),
                tally.stored_bodies_cut_off.load(Ordering::Relaxed),
                failures.len()
            );
            assert!(
                failures.is_empty(),
                "{name}, {phase}: {:#?}",
                &failures[..failures.len().min(10)]
            );
        }
        assert!(
            self.tallies[1].requests.load(Ordering::Relaxed) > 0,
            "{name}: no request was made while the server was down"
        );
    }
}

/// The scenario, with `kill` and `restart` acting on the server under test.
async fn kill_and_restart_under_load<Kill, Restart, Fut>(
    name: &str,
    url: &str,
    kill: Kill,
    restart: Restart,
) where
    Kill: FnOnce(),
    Restart: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let origin = Arc::new(start_origin().await);
    let load = Load::start(cache(url).await, origin.clone());
    assert!(
        load.wait_for_hits(200, Duration::from_secs(30))
            .await
            .is_some(),
        "{name}: no caching before the kill"
    );

    load.phase.store(1, Ordering::Relaxed);
    kill();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let down_at = origin.hits();
    restart().await;
    load.phase.store(2, Ordering::Relaxed);
    let resumed = load.wait_for_hits(100, Duration::from_secs(30)).await;
    println!(
        "{name}: origin answered {down_at} requests by the end of the outage; caching resumed \
         {resumed:?} after the restart"
    );
    load.finish(name).await;
    assert!(
        resumed.is_some(),
        "{name}: caching did not resume within 30 s of the server's return"
    );
}

fn prefixed(url: &str) -> String {
    format!("{url}?prefix=faults-{}:", std::process::id())
}

/// Fault: the Redis server is killed mid-run and comes back empty on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_server_killed_under_load_costs_only_hits_and_caching_resumes() {
    let Some(server) = Standalone::start().await else {
        return;
    };
    let server = Arc::new(tokio::sync::Mutex::new(server));
    let url = prefixed(&server.lock().await.url());
    let (a, b) = (server.clone(), server.clone());
    kill_and_restart_under_load(
        "redis",
        &url,
        move || a.try_lock().expect("not in use").node.kill(),
        move || async move { b.lock().await.node.start().await },
    )
    .await;
}

/// Fault: one of the three masters of a Redis Cluster is killed mid-run (its slots, and with
/// the default `cluster-require-full-coverage` the whole cluster, refuse commands) and comes
/// back empty with its old identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_node_killed_under_load_costs_only_hits_and_caching_resumes() {
    let Some(cluster) = Cluster::start().await else {
        return;
    };
    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
    let url = prefixed(&cluster.lock().await.url());
    let (a, b) = (cluster.clone(), cluster.clone());
    kill_and_restart_under_load(
        "redis cluster",
        &url,
        move || a.try_lock().expect("not in use").nodes[1].kill(),
        move || async move {
            let mut cluster = b.lock().await;
            cluster.nodes[1].start().await;
            cluster.wait_until_ok().await;
        },
    )
    .await;
}

/// Fault: the S3 server goes away mid-run (a relay in front of it refuses connections and cuts
/// the open ones) and comes back on the same address with its objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_server_gone_under_load_costs_only_hits_and_caching_resumes() {
    let Some(s3) = s3_server::S3::from_env() else {
        return;
    };
    let relay = s3_server::Relay::start(&s3.endpoint).await;
    let url = s3.url_via(&relay.endpoint(), &format!("faults-{}", std::process::id()));
    let relay = Arc::new(tokio::sync::Mutex::new(relay));
    let (a, b) = (relay.clone(), relay.clone());
    kill_and_restart_under_load(
        "s3",
        &url,
        move || a.try_lock().expect("not in use").down(),
        move || async move { b.lock().await.up().await },
    )
    .await;
}

/// Bad stored data: a stored entry whose body chunk is damaged in Redis (a byte flipped
/// through `redis-cli`) is never served as that key's body: the small one is a miss, the
/// streamed one ends in an error; both are removed, and the next request stores them anew.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_entry_in_redis_is_a_miss_and_is_removed() {
    let Some(server) = Standalone::start().await else {
        return;
    };
    let origin = start_origin().await;
    let prefix = format!("damaged-{}:", std::process::id());
    let mut service = cache(&format!("{}?prefix={prefix}", server.url())).await;
    let get = |path: &str| {
        Request::get(origin.url(path))
            .body(Full::default())
            .expect("request")
    };
    // Key 1 has a small body (one chunk), key 10 a 200 KiB one (several chunks).
    for path in ["/k/1", "/k/10"] {
        let stored = service
            .ready()
            .await
            .unwrap()
            .call(get(path))
            .await
            .unwrap();
        stored.into_body().collect().await.expect("body");
        let hit = service
            .ready()
            .await
            .unwrap()
            .call(get(path))
            .await
            .unwrap();
        assert_eq!(
            hit.extensions().get::<CacheStatus>().map(|s| s.outcome),
            Some(CacheOutcome::Hit)
        );
        hit.into_body().collect().await.expect("body");
    }
    // One byte flipped in every stored value of the prefix: the index records (which hold a
    // small body inline) and the chunks of the streamed body.
    let flip = r"
        local n = 0
        for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
            local function flipped(v)
                local at = #v - 100
                local c = string.sub(v, at, at) == '#' and '$' or '#'
                return string.sub(v, 1, at - 1) .. c .. string.sub(v, at + 1)
            end
            local kind = redis.call('TYPE', key).ok
            if kind == 'hash' and string.sub(key, -2) == ':i' then
                local all = redis.call('HGETALL', key)
                for i = 1, #all, 2 do
                    redis.call('HSET', key, all[i], flipped(all[i + 1]))
                    n = n + 1
                end
            elseif kind == 'string' and string.find(key, ':c:', 1, true) then
                redis.call('SET', key, flipped(redis.call('GET', key)), 'KEEPTTL')
                n = n + 1
            end
        end
        return n";
    let flipped = redis_servers::cli(
        server.node.port,
        &["eval", flip, "0", &format!("{prefix}*")],
    );
    let flipped: usize = flipped.trim().parse().expect("a count");
    assert!(flipped >= 3, "two index records and the chunks: {flipped}");

    let damaged_at = origin.requests().len();
    for path in ["/k/1", "/k/10"] {
        // Until a good copy is a hit again: at most three requests.
        let mut healed = false;
        for _ in 0..3 {
            let response = service
                .ready()
                .await
                .unwrap()
                .call(get(path))
                .await
                .unwrap();
            let outcome = response
                .extensions()
                .get::<CacheStatus>()
                .map(|s| s.outcome);
            match response.into_body().collect().await {
                Ok(body) => {
                    assert_eq!(body.to_bytes(), expected(path), "{path} ({outcome:?})");
                    if outcome == Some(CacheOutcome::Hit) {
                        healed = true;
                        break;
                    }
                }
                // Damage found while the body streamed: an error, never a short body.
                Err(_) => assert_eq!(outcome, Some(CacheOutcome::Hit), "{path}"),
            }
        }
        assert!(healed, "{path}: no good copy stored again after the damage");
        let refetched = origin.requests()[damaged_at..]
            .iter()
            .any(|r| r.uri.path() == path);
        assert!(
            refetched,
            "{path}: the damaged entry was served without going to the origin"
        );
    }
}
