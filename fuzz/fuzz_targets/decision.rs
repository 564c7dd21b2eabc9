//! The whole decision, on arbitrary request/response exchanges against a simulated store.
//!
//! Each input is a policy configuration, a few stored responses of arbitrary content ("raw":
//! what a store could hold, whatever wrote it) and a sequence of exchanges (a request with an
//! arbitrary method, target and header lines; an origin response with an arbitrary status and
//! header lines; times). For each exchange the target runs `lookup`, `on_error` and
//! `after_response` on the candidates stored under the request's primary key (the layer's
//! `default_key` of the target URI), and applies what `after_response` says to the store
//! (store, replace, refresh, update from HEAD, remove, invalidate), so that later exchanges see
//! what the policy stored. Invariants:
//!
//! - nothing panics;
//! - every index a decision names (`Serve`, `Revalidation`, `Update`, `replaces`, `remove`) is
//!   within the candidates, and `replaces` / `remove` have no duplicates;
//! - a candidate chosen to answer (served, served stale, revalidated, refreshed) was stored
//!   for a method that answers the request's (the same, or GET for HEAD; so never a stored
//!   HEAD for a GET), and under the request's primary key;
//! - a candidate with status 206 or 304, or stored for HEAD, written by the policy never
//!   exists; and none, raw ones included, is ever served as a full response (`STRICT_RAW`);
//! - the head served for a `Serve` is 304 only for a conditional GET or HEAD, otherwise the
//!   stored status, and carries one `Age` line;
//! - `Store` is only for a request that is not HEAD and a status that is final and not 206 or
//!   304; the entry's method is the request's and its URI has the request's primary key;
//! - a refresh keeps the method, URI and status of what it refreshes;
//! - every URI to invalidate is same-origin with the target URI, which comes first; none
//!   after a safe method.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use cache_policy::{
    CachePolicy, Heuristics, Lookup, ParsedResponse, PolicyOptions, ResponseAction, Serve,
    ServeStale, SharedCookies, StoredResponse,
};
use common::{at, header_map, origin, primary_key, Line};
use http::uri::Scheme;
use http::{header, Method, Request, Response, StatusCode, Uri};
use libfuzzer_sys::{arbitrary, fuzz_target};

/// Whether raw candidates (arbitrary stored content) must never be served as full responses
/// when their status is 206 or 304, like the policy's own.
const STRICT_RAW: bool = true;

#[derive(Debug, arbitrary::Arbitrary)]
struct Options {
    shared: bool,
    ignore_rules: bool,
    always_revalidate: bool,
    cdn_cache_control: bool,
    default_ttl: Option<u16>,
    max_ttl: Option<u16>,
    heuristics: bool,
    use_directives: bool,
    default_swr: u16,
    default_sie: u16,
    max_variants: u8,
    https: bool,
    shared_cookies: u8,
    cacheable_statuses: Option<Vec<u16>>,
    post_cacheable: bool,
}

#[derive(Debug, arbitrary::Arbitrary)]
enum UriChoice {
    Dict(u8),
    Raw(Vec<u8>),
}

#[derive(Debug, arbitrary::Arbitrary)]
struct Req {
    method: u8,
    uri: UriChoice,
    headers: Vec<Line>,
}

#[derive(Debug, arbitrary::Arbitrary)]
struct Resp {
    status: u16,
    headers: Vec<Line>,
}

#[derive(Debug, arbitrary::Arbitrary)]
struct Exchange {
    request: Req,
    response: Resp,
    /// Seconds since the previous exchange.
    step: u16,
    /// Seconds between sending the request and receiving the response.
    delay: u8,
}

#[derive(Debug, arbitrary::Arbitrary)]
struct Raw {
    method: u8,
    uri: UriChoice,
    status: u16,
    headers: Vec<Line>,
    vary_request_headers: Vec<Line>,
    request_time: i32,
    response_time: i32,
}

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    options: Options,
    raw: Vec<Raw>,
    exchanges: Vec<Exchange>,
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "X-Y"];

/// Targets: spellings of one primary key, its neighbours, and origin forms (which take the
/// authority from `Host`).
const URIS: &[&str] = &[
    "http://example.com/a",
    "HTTP://Example.COM:80/a",
    "http://example.com/a?x=1",
    "http://example.com/b",
    "https://example.com/a",
    "https://example.com:443/a",
    "http://example.com:8080/a",
    "http://other.example/a",
    "/a",
    "/a?x=1",
    "*",
];

fn method(choice: u8) -> Method {
    Method::from_bytes(METHODS[choice as usize % METHODS.len()].as_bytes()).unwrap()
}

fn uri(choice: &UriChoice) -> Option<Uri> {
    match choice {
        UriChoice::Dict(i) => Uri::from_static(URIS[*i as usize % URIS.len()]).into(),
        UriChoice::Raw(bytes) => Uri::try_from(bytes.as_slice()).ok(),
    }
}

fn policy(options: &Options) -> CachePolicy {
    let mut o = PolicyOptions::default()
        .shared(options.shared)
        .ignore_rules(options.ignore_rules)
        .always_revalidate(options.always_revalidate)
        .cdn_cache_control(options.cdn_cache_control)
        .heuristics(options.heuristics.then(Heuristics::default))
        .serve_stale(ServeStale {
            use_directives: options.use_directives,
            default_stale_while_revalidate: Duration::from_secs(options.default_swr.into()),
            default_stale_if_error: Duration::from_secs(options.default_sie.into()),
        })
        .max_variants(usize::from(options.max_variants % 20))
        .shared_cookies(match options.shared_cookies % 3 {
            0 => SharedCookies::Refuse,
            1 => SharedCookies::RequireExplicit,
            _ => SharedCookies::StripUnlessExplicit,
        });
    if options.https {
        o = o.origin_form_scheme(Scheme::HTTPS);
    }
    if let Some(ttl) = options.default_ttl {
        o = o.default_ttl(Duration::from_secs(ttl.into()));
    }
    if let Some(ttl) = options.max_ttl {
        o = o.max_ttl(Duration::from_secs(ttl.into()));
    }
    if let Some(statuses) = &options.cacheable_statuses {
        o = o.cacheable_statuses(
            statuses
                .iter()
                .take(4)
                .filter_map(|s| StatusCode::from_u16(*s).ok()),
        );
    }
    if options.post_cacheable {
        o = o.cacheable_methods([Method::GET, Method::HEAD, Method::POST]);
    }
    CachePolicy::new(o)
}

/// A stored response, with who wrote it.
struct Entry {
    key: String,
    response: Arc<ParsedResponse>,
    /// Written by the policy (`Store`, `Update`), not raw.
    by_policy: bool,
}

fn method_allows(stored: &Method, presented: &Method) -> bool {
    stored == presented || (*stored == Method::GET && *presented == Method::HEAD)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

/// The store's candidates for `key`: (index into the store, response).
fn candidates(store: &[Entry], key: Option<&str>) -> (Vec<usize>, Vec<Arc<ParsedResponse>>) {
    store
        .iter()
        .enumerate()
        .filter(|(_, e)| Some(e.key.as_str()) == key)
        .map(|(i, e)| (i, e.response.clone()))
        .unzip()
}

struct Context<'a> {
    request: &'a Request<()>,
    key: Option<&'a str>,
    candidates: &'a [Arc<ParsedResponse>],
    by_policy: Vec<bool>,
}

impl Context<'_> {
    /// A candidate chosen to answer the request.
    fn chosen(&self, index: usize, what: &str) -> &StoredResponse {
        assert!(index < self.candidates.len(), "{what}: index {index} of {}", self.candidates.len());
        let stored = self.candidates[index].response();
        assert!(
            method_allows(&stored.method, self.request.method()),
            "{what}: a {} response for a {}",
            stored.method,
            self.request.method()
        );
        assert_eq!(Some(primary_key(&stored.uri).as_str()), self.key, "{what}: another key");
        stored
    }

    /// A candidate served (as a full response, or as a 304 when `not_modified`).
    fn served(&self, serve: &Serve, what: &str) {
        let stored = self.chosen(serve.index, what);
        let head = serve.response_head(stored);
        if serve.not_modified {
            assert_eq!(head.status, StatusCode::NOT_MODIFIED);
            assert!(matches!(*self.request.method(), Method::GET | Method::HEAD));
            let conditional = self.request.headers().contains_key(header::IF_NONE_MATCH)
                || self.request.headers().contains_key(header::IF_MODIFIED_SINCE);
            assert!(conditional, "{what}: 304 for an unconditional request");
        } else {
            assert_eq!(head.status, stored.status);
            if STRICT_RAW || self.by_policy[serve.index] {
                assert!(
                    !matches!(stored.status.as_u16(), 206 | 304),
                    "{what}: a stored {} served as a full response",
                    stored.status
                );
            }
        }
        assert_eq!(head.headers.get_all(header::AGE).iter().count(), 1, "{what}: Age lines");
    }
}

fn check_indices(indices: &[usize], len: usize, what: &str) {
    for (i, index) in indices.iter().enumerate() {
        assert!(*index < len, "{what}: index {index} of {len}");
        assert!(!indices[..i].contains(index), "{what}: duplicate {index}");
    }
}

fuzz_target!(|input: Input| {
    let policy = policy(&input.options);
    let mut store: Vec<Entry> = Vec::new();
    for raw in input.raw.iter().take(4) {
        let Some(uri) = uri(&raw.uri).filter(|u| u.scheme().is_some() && u.authority().is_some())
        else {
            continue;
        };
        let Ok(status) = StatusCode::from_u16(raw.status) else {
            continue;
        };
        let response = StoredResponse {
            method: method(raw.method),
            uri: uri.clone(),
            status,
            headers: header_map(&raw.headers),
            vary_request_headers: header_map(&raw.vary_request_headers),
            request_time: at(raw.request_time.into()),
            response_time: at(raw.response_time.into()),
        };
        store.push(Entry {
            key: primary_key(&uri),
            response: Arc::new(response.into()),
            by_policy: false,
        });
    }

    let mut clock: i64 = 0;
    for exchange in input.exchanges.iter().take(6) {
        clock += i64::from(exchange.step);
        let (request_time, response_time) = (at(clock), at(clock + i64::from(exchange.delay)));
        let Some(target) = uri(&exchange.request.uri) else {
            continue;
        };
        let mut request = Request::builder()
            .method(method(exchange.request.method))
            .uri(target)
            .body(())
            .unwrap();
        *request.headers_mut() = header_map(&exchange.request.headers);
        let Ok(status) = StatusCode::from_u16(exchange.response.status) else {
            continue;
        };
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.headers_mut() = header_map(&exchange.response.headers);

        let target_uri = policy.target_uri(&request);
        let key = target_uri.as_ref().map(primary_key);
        let (store_indices, cands) = candidates(&store, key.as_deref());
        let context = Context {
            request: &request,
            key: key.as_deref(),
            candidates: &cands,
            by_policy: store_indices.iter().map(|&i| store[i].by_policy).collect(),
        };

        match policy.lookup(&request, &cands, request_time) {
            Lookup::Fresh(serve) => context.served(&serve, "fresh"),
            Lookup::NotModified(serve) => {
                assert!(serve.not_modified);
                context.served(&serve, "not modified")
            }
            Lookup::Stale { serve, revalidate, .. } => {
                context.served(&serve, "stale");
                if let Some(revalidation) = revalidate {
                    context.chosen(revalidation.index, "background revalidation");
                }
            }
            Lookup::Revalidate(revalidation) => {
                context.chosen(revalidation.index, "revalidation");
            }
            Lookup::Forward(_) | Lookup::GatewayTimeout => {}
            other => panic!("unknown lookup {other:?}"),
        }
        if let Some(serve) = policy.on_error(&request, &cands, response_time) {
            context.served(&serve, "on error");
        }

        let decision =
            policy.after_response(&request, &response, request_time, response_time, &cands);
        if !decision.invalidate.is_empty() {
            assert!(!is_safe(request.method()), "invalidation after a safe method");
            let target_uri = target_uri.as_ref().expect("invalidation without a target URI");
            assert_eq!(decision.invalidate.first(), Some(target_uri));
            for uri in &decision.invalidate {
                assert_eq!(origin(uri), origin(target_uri), "invalidate {uri} for {target_uri}");
            }
        }
        // What to remove from the store (indices into it) and to add.
        let mut remove: Vec<usize> = Vec::new();
        let mut add: Vec<Arc<ParsedResponse>> = Vec::new();
        match decision.action {
            ResponseAction::Store { entry, replaces, .. } => {
                assert_ne!(*request.method(), Method::HEAD, "a HEAD response stored");
                assert!(
                    !matches!(status.as_u16(), 206 | 304) && !status.is_informational(),
                    "a {status} stored"
                );
                assert_eq!(entry.status, status);
                assert_eq!(&entry.method, request.method());
                if let Some(key) = &key {
                    assert_eq!(&primary_key(&entry.uri), key, "stored under another key");
                }
                check_indices(&replaces, cands.len(), "replaces");
                if key.is_some() {
                    remove.extend(replaces.iter().map(|&i| store_indices[i]));
                    add.push(entry);
                }
            }
            ResponseAction::Refresh { updates, serve, head } => {
                assert_eq!(status, StatusCode::NOT_MODIFIED);
                let indices: Vec<usize> = updates.iter().map(|u| u.index).collect();
                check_indices(&indices, cands.len(), "refresh");
                for update in &updates {
                    let old = context.chosen(update.index, "refreshed");
                    assert_eq!(
                        (&update.entry.method, &update.entry.uri, update.entry.status),
                        (&old.method, &old.uri, old.status),
                        "a refresh changed what it refreshes"
                    );
                }
                // The head is built from the refreshed copy of the candidate.
                let stored = context.chosen(serve.index, "served after 304");
                if serve.not_modified {
                    assert_eq!(head.status, StatusCode::NOT_MODIFIED);
                } else {
                    assert_eq!(head.status, stored.status);
                    if STRICT_RAW || context.by_policy[serve.index] {
                        assert!(!matches!(stored.status.as_u16(), 206 | 304), "served {}", stored.status);
                    }
                }
                for update in updates {
                    let at = store_indices[update.index];
                    store[at].response = update.entry;
                    store[at].by_policy = true;
                }
            }
            ResponseAction::UpdateFromHead { updates, remove: gone } => {
                assert_eq!(*request.method(), Method::HEAD);
                let indices: Vec<usize> = updates.iter().map(|u| u.index).collect();
                check_indices(&indices, cands.len(), "head updates");
                check_indices(&gone, cands.len(), "head removals");
                for update in &updates {
                    let old = context.chosen(update.index, "updated from HEAD");
                    assert_eq!(update.entry.method, old.method);
                    assert_eq!(update.entry.status, old.status);
                }
                for update in updates {
                    let at = store_indices[update.index];
                    store[at].response = update.entry;
                    store[at].by_policy = true;
                }
                remove.extend(gone.iter().map(|&i| store_indices[i]));
            }
            ResponseAction::ServeStale(serve) => {
                assert!(status.is_server_error());
                context.served(&serve, "stale on error");
            }
            ResponseAction::Refetch | ResponseAction::PassThrough(_) => {}
            other => panic!("unknown action {other:?}"),
        }
        // Invalidation removes every variant of each URI's key.
        let invalidated: Vec<String> = decision.invalidate.iter().map(primary_key).collect();
        remove.extend(
            store
                .iter()
                .enumerate()
                .filter(|(_, e)| invalidated.contains(&e.key))
                .map(|(i, _)| i),
        );
        remove.sort_unstable();
        remove.dedup();
        for i in remove.into_iter().rev() {
            store.remove(i);
        }
        for entry in add {
            assert!(!matches!(entry.status.as_u16(), 206 | 304));
            assert_ne!(entry.method, Method::HEAD);
            store.push(Entry {
                key: key.clone().unwrap(),
                response: entry,
                by_policy: true,
            });
        }
    }
});
