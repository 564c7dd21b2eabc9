//! What the benchmarks share: the requests they send, an in-process origin, and the timed
//! loop around one exchange (a request through a service, its body collected).

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use criterion::{BenchmarkGroup, Criterion};
use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, DATE, ETAG, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue, Request, Response, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use tokio::runtime::Runtime;
use tower::util::ServiceFn;
use tower::{Service, ServiceExt};

/// The body sizes every hit is measured at.
pub const SIZES: [(usize, &str); 2] = [(1024, "1KiB"), (1024 * 1024, "1MiB")];
/// The URL of every hit.
pub const URL: &str = "http://example.com/assets/app.js?v=3";

/// The request body of every benchmark request.
pub type ReqBody = Empty<Bytes>;
/// The future of the origin and limit services: ready at once.
pub type Reply = Ready<Result<Response<Full<Bytes>>, Infallible>>;

/// Every request the benchmarks send: a plain GET with an absolute URI (client side).
pub fn request(uri: Uri) -> Request<ReqBody> {
    Request::get(uri)
        .header("accept", "*/*")
        .body(Empty::new())
        .expect("request")
}

/// A request for [`URL`].
pub fn hit_request() -> Request<ReqBody> {
    request(Uri::from_static(URL))
}

/// A request for a URL never requested before.
pub fn miss_request(counter: &AtomicU64) -> Request<ReqBody> {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    let uri = format!("http://example.com/assets/app.js?n={n}");
    request(Uri::try_from(uri).expect("uri"))
}

/// The header lines of every origin response.
pub fn origin_headers(len: usize) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let date = httpdate::fmt_http_date(SystemTime::now());
    for (name, value) in [
        (
            CONTENT_TYPE,
            HeaderValue::from_static("application/javascript"),
        ),
        (CONTENT_LENGTH, HeaderValue::from(len)),
        (CACHE_CONTROL, HeaderValue::from_static("max-age=3600")),
        (DATE, HeaderValue::from_str(&date).expect("date")),
        (ETAG, HeaderValue::from_static("\"5f2b-1a2b3c\"")),
        (
            LAST_MODIFIED,
            HeaderValue::from_static("Mon, 13 Nov 2023 10:00:00 GMT"),
        ),
    ] {
        headers.insert(name, value);
    }
    headers
}

/// The in-process origin: a response with the prebuilt headers and body, cloned per call.
pub fn origin(
    size: usize,
) -> ServiceFn<impl FnMut(Request<ReqBody>) -> Reply + Clone + Send + 'static> {
    let body = Bytes::from(vec![b'x'; size]);
    let headers = origin_headers(size);
    tower::service_fn(move |_request: Request<ReqBody>| {
        let mut response = Response::new(Full::new(body.clone()));
        *response.headers_mut() = headers.clone();
        ready(Ok(response))
    })
}

/// One request through `service`, body collected: the unit of work of every benchmark.
pub async fn exchange<S, B>(service: &mut S, request: Request<ReqBody>) -> usize
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("call");
    let body = response.into_body().collect().await.expect("body");
    black_box(body.to_bytes()).len()
}

/// Like [`exchange`], returning the response's head for the sanity checks.
pub async fn exchange_head<S, B>(
    service: &mut S,
    request: Request<ReqBody>,
) -> (http::response::Parts, usize)
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    let response = service
        .ready()
        .await
        .expect("ready")
        .call(request)
        .await
        .expect("call");
    let (parts, body) = response.into_parts();
    let len = body.collect().await.expect("body").to_bytes().len();
    (parts, len)
}

/// Times `service` answering one request after another, each made by `make_request`, in
/// one `block_on` of `rt` around the whole loop.
pub fn bench_sequential<S, B>(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    name: &str,
    service: &mut S,
    mut make_request: impl FnMut() -> Request<ReqBody>,
) where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(exchange(&mut *service, make_request()).await);
                }
                start.elapsed()
            })
        })
    });
}

/// A benchmark group of 50 samples.
pub fn new_group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group.sample_size(50);
    group
}
