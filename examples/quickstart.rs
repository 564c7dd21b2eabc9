//! Caching end to end: a local origin with artificial latency, hyper-util's legacy client
//! wrapped in the cache layer, and a few requests that show hits, misses, `Vary` and a
//! revalidation.
//!
//! ```text
//! cargo run --example quickstart            # filesystem store in a temporary directory
//! cargo run --example quickstart -- --memory
//! cargo run --example quickstart --features sqlite -- --store sqlite:/tmp/quickstart.db
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_workspace::origin::{self, full, Origin};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_http_cache::{CacheLayer, CacheStatus, FsStore, MemoryStore, Store};

/// The origin's answer time: what a cache hit saves.
const LATENCY: Duration = Duration::from_millis(250);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let use_memory = args.iter().any(|arg| arg == "--memory");
    // `--store URL`: any store URL (`sqlite:PATH`, `redis://...`; see `cache_store::open`).
    let store_url = args
        .iter()
        .position(|arg| arg == "--store")
        .and_then(|at| args.get(at + 1))
        .cloned();
    let version = Arc::new(AtomicU32::new(1));
    let origin = start_origin(version.clone()).await;
    println!("origin listening on http://{}", origin.addr());

    let dir = std::env::temp_dir().join(format!(
        "tower-http-cache-quickstart-{}",
        std::process::id()
    ));
    let (store, store_name): (Arc<dyn Store>, String) = if let Some(url) = store_url {
        (tower_http_cache::store::open(&url).await?, url)
    } else if use_memory {
        let store = MemoryStore::builder().max_capacity_bytes(64 << 20).build();
        (Arc::new(store), "memory".into())
    } else {
        let store = FsStore::builder(&dir).max_size_bytes(256 << 20).build()?;
        (Arc::new(store), format!("filesystem at {}", dir.display()))
    };
    println!("store: {store_name}\n");

    // The one line that adds caching to an existing client.
    let mut client = ServiceBuilder::new()
        .layer(CacheLayer::with_shared_store(store.clone()).cache_status_header(true))
        .service(origin::client());

    let steps: [(&str, &str, Option<&str>); 8] = [
        ("first request: the origin answers", "/articles/1", None),
        ("same URL again: served from the cache", "/articles/1", None),
        (
            "HEAD of a stored GET: served from the cache",
            "/articles/1",
            None,
        ),
        ("Vary: Accept-Language, English", "/greeting", Some("en")),
        (
            "Vary: Accept-Language, French (another variant)",
            "/greeting",
            Some("fr"),
        ),
        (
            "English again: its variant is still stored",
            "/greeting",
            Some("en"),
        ),
        ("no-cache response: revalidated with a 304", "/news", None),
        (
            "revalidated again after the origin changed: a new 200",
            "/news",
            None,
        ),
    ];
    // Warm /news so that the steps below revalidate it. A response is stored once its body
    // has been read to the end.
    let warm = send(&mut client, "GET", &origin.url("/news"), None).await?;
    warm.into_body().collect().await?;

    for (i, (what, path, language)) in steps.into_iter().enumerate() {
        if i == 7 {
            version.store(2, Ordering::SeqCst);
        }
        let method = if i == 2 { "HEAD" } else { "GET" };
        let started = Instant::now();
        let response = send(&mut client, method, &origin.url(path), language).await?;
        let elapsed = started.elapsed();
        let status = response.extensions().get::<CacheStatus>().cloned();
        let header = response
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned();
        let body = response.into_body().collect().await?.to_bytes();
        println!("{:>2}. {what}", i + 1);
        println!(
            "    {method} {path} -> {:?} in {:>6.1} ms, body {:?}",
            status.map(|s| s.outcome),
            elapsed.as_secs_f64() * 1000.0,
            String::from_utf8_lossy(&body),
        );
        println!("    Cache-Status: {header}");
    }
    println!("\nthe origin saw {} requests for 9 sent", origin.hits());
    // The example's cache directory is temporary.
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn send<S>(
    client: &mut S,
    method: &str,
    url: &str,
    language: Option<&str>,
) -> Result<S::Response, S::Error>
where
    S: Service<Request<Full<Bytes>>>,
{
    let mut request = Request::builder().method(method).uri(url);
    if let Some(language) = language {
        request = request.header("accept-language", language);
    }
    let request = request.body(Full::default()).expect("valid request");
    client.ready().await?.call(request).await
}

async fn start_origin(version: Arc<AtomicU32>) -> Origin {
    Origin::start(move |request| {
        let version = version.load(Ordering::SeqCst);
        async move {
            tokio::time::sleep(LATENCY).await;
            let path = request.uri.path().to_owned();
            let response = Response::builder();
            match path.as_str() {
                "/articles/1" => response
                    .header("cache-control", "max-age=60")
                    .header("content-type", "text/plain")
                    .body(full("Article one")),
                "/greeting" => {
                    let french = request
                        .headers
                        .get("accept-language")
                        .is_some_and(|v| v.as_bytes().starts_with(b"fr"));
                    response
                        .header("cache-control", "max-age=60")
                        .header("vary", "accept-language")
                        .body(full(if french { "Bonjour" } else { "Hello" }))
                }
                "/news" => {
                    let etag = format!("\"news-v{version}\"");
                    let matches = request
                        .headers
                        .get("if-none-match")
                        .is_some_and(|v| v.to_str().unwrap_or("").contains(&etag));
                    let response = response
                        .header("cache-control", "no-cache")
                        .header("etag", &etag);
                    if matches {
                        response
                            .status(StatusCode::NOT_MODIFIED)
                            .body(origin::empty())
                    } else {
                        response.body(full(format!("News, edition {version}")))
                    }
                }
                _ => response.status(StatusCode::NOT_FOUND).body(origin::empty()),
            }
            .expect("valid response")
        }
    })
    .await
}
