//! The decisions of the state machine: what the caller does next, and why.
//!
//! ```text
//!             request + stored candidates + now
//!                          │
//!                  CachePolicy::lookup
//!   ┌──────────┬───────────┼──────────────┬──────────────┬────────────────┐
//!   ▼          ▼           ▼              ▼              ▼                ▼
//! Fresh   NotModified    Stale       Revalidate       Forward      GatewayTimeout
//! (serve)  (serve 304)  (serve, maybe  (send the        (send the    (answer 504)
//!                        refresh in    conditional      request)
//!                        background)   request)
//!                                          │              │
//!                                          └──────┬───────┘
//!                   origin response + request/response times
//!                                                 │
//!                                    CachePolicy::after_response
//!   ┌──────────┬───────────┬─────────────────┬────┴────────┬──────────────┐
//!   ▼          ▼           ▼                 ▼             ▼              ▼
//! Store     Refresh    UpdateFromHead    ServeStale     Refetch     PassThrough
//!                                                   (+ URIs to invalidate, always)
//! ```

use crate::CacheStatusFwd;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode, Uri};

use crate::directives::DELTA_SECONDS_MAX;

use crate::{Freshness, ParsedResponse, StoredResponse};

/// A stored response chosen to answer the request.
///
/// The decision itself copies nothing: build the head to send with
/// [`Serve::response_head`] (which clones the stored header lines) or, when the caller owns the
/// stored response, [`Serve::into_response_head`] (which moves them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serve {
    /// The index of the chosen candidate in the slice given to the policy.
    pub index: usize,
    /// The freshness of the chosen response at the time of the decision; its `age` is the
    /// `Age` to send (RFC 9111 §5.1).
    pub freshness: Freshness,
    /// Whether to answer 304 (Not Modified) because the client's own conditional request is
    /// satisfied (§4.3.2), instead of the stored status.
    pub not_modified: bool,
}

/// The fields a 304 carries from the stored response (RFC 9110 §15.4.5).
const NOT_MODIFIED_FIELDS: [HeaderName; 6] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
];

impl Serve {
    /// The status and header lines to send, from the stored response this `Serve` chose: the
    /// stored ones with `Age` set, or a 304 with the fields RFC 9110 §15.4.5 requires. The body
    /// is the stored body, except for a 304 or a `HEAD` request, which get none.
    ///
    /// ```
    /// # use std::time::{Duration, SystemTime};
    /// # use cache_policy::{CachePolicy, Lookup, StoredResponse};
    /// # use http::{HeaderMap, Method, Request, StatusCode, Uri};
    /// # let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// # let mut headers = HeaderMap::new();
    /// # headers.insert("cache-control", "max-age=60".parse().unwrap());
    /// # let stored = vec![StoredResponse {
    /// #     method: Method::GET, uri: Uri::from_static("http://a/"), status: StatusCode::OK,
    /// #     headers, vary_request_headers: HeaderMap::new(), request_time: t0, response_time: t0,
    /// # }];
    /// let request = Request::get("http://a/").body(()).unwrap();
    /// let Lookup::Fresh(serve) = CachePolicy::default().lookup(&request, &stored, t0 + Duration::from_secs(7))
    /// else { panic!() };
    /// let head = serve.response_head(&stored[serve.index]);
    /// assert_eq!(head.status, StatusCode::OK);
    /// assert_eq!(head.headers["age"], "7");
    /// ```
    pub fn response_head(&self, stored: &StoredResponse) -> http::response::Parts {
        if self.not_modified {
            return self.not_modified_head(&stored.headers);
        }
        self.head(stored.status, stored.headers.clone())
    }

    /// Like [`response_head`](Serve::response_head), taking the stored header lines instead of
    /// copying them.
    pub fn into_response_head(&self, stored: StoredResponse) -> http::response::Parts {
        if self.not_modified {
            return self.not_modified_head(&stored.headers);
        }
        self.head(stored.status, stored.headers)
    }

    fn head(&self, status: StatusCode, mut headers: HeaderMap) -> http::response::Parts {
        let (mut head, ()) = http::Response::new(()).into_parts();
        head.status = status;
        headers.insert(header::AGE, self.age());
        head.headers = headers;
        head
    }

    fn not_modified_head(&self, stored: &HeaderMap) -> http::response::Parts {
        let mut headers = HeaderMap::new();
        for name in NOT_MODIFIED_FIELDS {
            for value in stored.get_all(&name) {
                headers.append(name.clone(), value.clone());
            }
        }
        self.head(StatusCode::NOT_MODIFIED, headers)
    }

    /// The `Age` value: delta-seconds, at most 2^31 (RFC 9111 §1.2.2).
    fn age(&self) -> HeaderValue {
        age_value(self.freshness.age.as_secs().min(DELTA_SECONDS_MAX))
    }
}

/// Ages below this many seconds (2 h 46 min) are slices of [`AGE_DIGITS`].
const STATIC_AGES: u64 = 10_000;

/// The length of [`AGE_DIGITS`]: 10 one-digit, 90 two-digit, 900 three-digit and 9000
/// four-digit numbers.
const AGE_DIGITS_LEN: usize = 10 + 90 * 2 + 900 * 3 + 9000 * 4;

/// `0123456789101112…9999`: every number below [`STATIC_AGES`] written out, so that the `Age`
/// of a hit points into static memory instead of allocating its digits.
static AGE_DIGITS: [u8; AGE_DIGITS_LEN] = age_digits();

const fn age_digits() -> [u8; AGE_DIGITS_LEN] {
    let mut out = [0u8; AGE_DIGITS_LEN];
    let (mut n, mut at) = (0, 0);
    while n < STATIC_AGES {
        let width = decimal_width(n);
        let (mut i, mut rest) = (width, n);
        while i > 0 {
            i -= 1;
            out[at + i] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        at += width;
        n += 1;
    }
    out
}

const fn decimal_width(n: u64) -> usize {
    match n {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        _ => 4,
    }
}

/// The header value for `seconds`.
fn age_value(seconds: u64) -> HeaderValue {
    if seconds < STATIC_AGES {
        // Where `seconds` starts in AGE_DIGITS: after all the shorter numbers.
        let start = match seconds {
            0..=9 => seconds,
            10..=99 => 10 + (seconds - 10) * 2,
            100..=999 => 190 + (seconds - 100) * 3,
            _ => 2890 + (seconds - 1000) * 4,
        } as usize;
        let digits = AGE_DIGITS.get(start..start + decimal_width(seconds));
        if let Some(Ok(digits)) = digits.map(std::str::from_utf8) {
            return HeaderValue::from_static(digits);
        }
    }
    HeaderValue::from(seconds)
}

/// A conditional request to send to the origin (RFC 9111 §4.3.1).
#[derive(Debug)]
pub struct Revalidation {
    /// The index of the candidate that would be served if the origin answers 304 for it.
    pub index: usize,
    /// Validators to set on the forwarded request, replacing any field of the same name:
    /// `If-None-Match` with the entity tags of the candidates, `If-Modified-Since` with the
    /// `Last-Modified` of the selected one. Empty when no candidate has a validator (the request
    /// is then unconditional, but the stale response may still serve on error, RFC 5861 §4).
    pub conditional_headers: HeaderMap,
    /// Why the stored response cannot be served without validation.
    pub reason: RevalidateReason,
    /// The freshness of the selected response.
    pub freshness: Freshness,
}

impl Revalidation {
    /// Sets the validators on the headers of the request to forward.
    ///
    /// ```
    /// # use cache_policy::*;
    /// # use http::HeaderMap;
    /// # fn example(revalidation: &Revalidation) {
    /// let mut outgoing = HeaderMap::new();
    /// revalidation.apply_to(&mut outgoing);
    /// # }
    /// ```
    pub fn apply_to(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.conditional_headers {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// Why a stored response must be validated before reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevalidateReason {
    /// The response is stale and may not be served stale (RFC 9111 §4.2.4).
    Stale,
    /// The response carries an unqualified `no-cache` (§5.2.2.4).
    ResponseNoCache,
    /// The request carries `no-cache` or `Pragma: no-cache` (§5.2.1.4, §5.4).
    RequestNoCache,
    /// The response is older than the request's `max-age` (§5.2.1.1).
    RequestMaxAge,
    /// The response would not stay fresh for the request's `min-fresh` (§5.2.1.3).
    RequestMinFresh,
    /// The cache is configured to revalidate every reuse.
    AlwaysRevalidate,
}

/// Why a stale response may be served (RFC 9111 §4.2.4, RFC 5861).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StaleReason {
    /// The request's `max-stale` accepts this staleness (§5.2.1.2).
    MaxStale,
    /// Within the `stale-while-revalidate` window (RFC 5861 §3): serve, and revalidate in the
    /// background.
    StaleWhileRevalidate,
    /// Within the `stale-if-error` window and the origin failed (RFC 5861 §4).
    StaleIfError,
}

/// Why the request goes to the origin without a usable stored response. Each reason maps to an
/// RFC 9211 `Cache-Status` `fwd` parameter ([`ForwardReason::cache_status_fwd`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardReason {
    /// The method is not cacheable, e.g. unsafe methods, which are written through (§4).
    Method,
    /// Nothing is stored for the target URI.
    UriMiss,
    /// Responses are stored for the URI, but none matches the request's `Vary` selecting
    /// fields (§4.1).
    VaryMiss,
    /// The request asks for a range; stored responses are not combined or sliced (§3.4).
    Range,
    /// The request carries a precondition the cache does not evaluate (`If-Match`,
    /// `If-Unmodified-Since`, `If-Range`).
    Precondition,
}

impl ForwardReason {
    /// The RFC 9211 §2.2 `fwd` value.
    ///
    /// ```
    /// use cache_policy::{CacheStatusFwd, ForwardReason};
    ///
    /// assert_eq!(ForwardReason::VaryMiss.cache_status_fwd(), CacheStatusFwd::VaryMiss);
    /// ```
    pub fn cache_status_fwd(&self) -> CacheStatusFwd {
        match self {
            ForwardReason::Method => CacheStatusFwd::Method,
            ForwardReason::UriMiss => CacheStatusFwd::UriMiss,
            ForwardReason::VaryMiss => CacheStatusFwd::VaryMiss,
            ForwardReason::Range => CacheStatusFwd::Partial,
            ForwardReason::Precondition => CacheStatusFwd::Request,
        }
    }
}

impl RevalidateReason {
    /// The RFC 9211 §2.2 `fwd` value.
    pub fn cache_status_fwd(&self) -> CacheStatusFwd {
        match self {
            RevalidateReason::Stale
            | RevalidateReason::ResponseNoCache
            | RevalidateReason::AlwaysRevalidate => CacheStatusFwd::Stale,
            RevalidateReason::RequestNoCache
            | RevalidateReason::RequestMaxAge
            | RevalidateReason::RequestMinFresh => CacheStatusFwd::Request,
        }
    }
}

/// What to do with a request, given the stored candidates (RFC 9111 §4).
#[must_use]
#[derive(Debug)]
#[non_exhaustive]
pub enum Lookup {
    /// §4.2: a fresh stored response satisfies the request: serve it.
    Fresh(Serve),
    /// §4.3.2: the client's own conditional request is satisfied by a fresh stored response:
    /// answer 304 (the `Serve` carries the 304 head).
    NotModified(Serve),
    /// §4.2.4: a stale stored response may be served. With `revalidate`, serve it and send that
    /// conditional request in the background (RFC 5861 §3).
    Stale {
        /// The response to serve.
        serve: Serve,
        /// Why serving stale is allowed.
        reason: StaleReason,
        /// The background revalidation to perform, for `stale-while-revalidate`.
        revalidate: Option<Revalidation>,
    },
    /// §4.3.1: the stored response must be validated: send the conditional request, then hand
    /// the answer to [`CachePolicy::after_response`](crate::CachePolicy::after_response).
    Revalidate(Revalidation),
    /// §4: no stored response can be used: send the request, then hand the answer to
    /// [`CachePolicy::after_response`](crate::CachePolicy::after_response).
    Forward(ForwardReason),
    /// §5.2.1.7: `only-if-cached` and nothing usable is stored: answer 504 (Gateway Timeout)
    /// without contacting the origin.
    GatewayTimeout,
}

/// A stored response refreshed by a 304 or a HEAD response (RFC 9111 §4.3.4, §4.3.5): write
/// `entry` over the candidate at `index`, keeping its body.
#[derive(Debug)]
pub struct Update {
    /// The index of the candidate to update.
    pub index: usize,
    /// The new metadata: merged header lines and the new request and response times, parsed
    /// (it dereferences to the [`StoredResponse`](crate::StoredResponse)) and shared, as
    /// stores keep it.
    pub entry: Arc<ParsedResponse>,
    /// The new physical TTL of the entry.
    pub ttl: Duration,
}

/// Why a response is not stored (RFC 9111 §3), for logs and `Cache-Status` `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotStorable {
    /// The request method is not cacheable (§3).
    Method,
    /// Responses to `HEAD` are never stored; they only refresh stored `GET` responses (§4.3.5).
    HeadResponse,
    /// The status is not final, or not one the cache stores (§3), or excluded by configuration.
    Status,
    /// 206 Partial Content is never stored as a full response (§3.3, §3.4).
    PartialContent,
    /// The request carries `no-store` (§5.2.1.5).
    RequestNoStore,
    /// The response carries `no-store` (§5.2.2.5).
    NoStore,
    /// `must-understand` with a status the cache does not understand (§5.2.2.3).
    MustUnderstand,
    /// `private` in a shared cache (§5.2.2.7).
    Private,
    /// The request carries `Authorization` and the response does not allow a shared cache to
    /// store it (§3.5).
    Authorization,
    /// `Vary: *` never matches a later request (§4.1).
    VaryStar,
    /// A `Vary` member is not a valid field name, so no later request can be compared on it
    /// (§4.1): the response never matches either.
    InvalidVary,
    /// Nothing makes the response reusable: no explicit freshness, no heuristics, no `public`
    /// or `private` (§3, "at least one of").
    NoFreshnessInformation,
    /// The request asked for a range (§3.4).
    Range,
    /// A shared cache does not store this response's `Set-Cookie` for other clients (see
    /// [`SharedCookies`](crate::SharedCookies)).
    SetCookie,
}

impl NotStorable {
    /// A short token for `Cache-Status` `detail` and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            NotStorable::Method => "method",
            NotStorable::HeadResponse => "head-response",
            NotStorable::Status => "status",
            NotStorable::PartialContent => "partial-content",
            NotStorable::RequestNoStore => "request-no-store",
            NotStorable::NoStore => "no-store",
            NotStorable::MustUnderstand => "must-understand",
            NotStorable::Private => "private",
            NotStorable::Authorization => "authorization",
            NotStorable::VaryStar => "vary-star",
            NotStorable::InvalidVary => "invalid-vary",
            NotStorable::NoFreshnessInformation => "no-freshness-information",
            NotStorable::Range => "range",
            NotStorable::SetCookie => "set-cookie",
        }
    }
}

/// What to do with the origin's response.
#[derive(Debug)]
#[non_exhaustive]
pub enum ResponseAction {
    /// §3: store the response (with these header lines and times) and serve it as received.
    Store {
        /// The metadata to store beside the body, parsed (it dereferences to the
        /// [`StoredResponse`](crate::StoredResponse)) and shared: stores keep it as it is,
        /// and handing it on moves a pointer, not the whole response.
        entry: Arc<ParsedResponse>,
        /// The physical TTL: freshness left, plus the stale windows, plus the time a response
        /// with validators is kept for revalidation. Zero means storing is pointless.
        ttl: Duration,
        /// The freshness of the new response when it was received.
        freshness: Freshness,
        /// Candidates to remove once it is stored: those it supersedes (they answered the same
        /// request), and the least recently stored beyond
        /// [`max_variants`](crate::PolicyOptions::max_variants).
        replaces: Vec<usize>,
    },
    /// §4.3.3, §4.3.4: a 304 validated stored responses: write the updates and serve `serve`
    /// from the store instead of the 304.
    Refresh {
        /// The stored responses to update: those the 304 validated, as storing allows them
        /// (it may leave out fields, or a whole update, that a shared cache would not store).
        updates: Vec<Update>,
        /// The stored response to serve, whose body goes with `head` (none for a 304 or HEAD).
        serve: Serve,
        /// The status and header lines to send: the chosen response freshened by the 304, as
        /// this client receives it (a 304 head if the client's own condition holds).
        head: http::response::Parts,
    },
    /// §4.3.5: a 200 response to HEAD: update the matching stored GET responses, remove those it
    /// contradicts, and pass the HEAD response through.
    UpdateFromHead {
        /// Stored responses to update.
        updates: Vec<Update>,
        /// Candidates to remove (their validators or length no longer match).
        remove: Vec<usize>,
    },
    /// RFC 5861 §4: the origin failed; serve this stale response instead of its answer.
    ServeStale(Serve),
    /// A 304 that matches no stored response, to a request the client did not make
    /// conditional: send the original request again without validators (§4.3.3).
    Refetch,
    /// Pass the response through without storing it.
    PassThrough(NotStorable),
}

/// The decision about an origin response: an action plus the URIs whose stored responses
/// must be invalidated (RFC 9111 §4.4).
#[must_use]
#[derive(Debug)]
pub struct AfterResponse {
    /// What to do with the response.
    pub action: ResponseAction,
    /// Target URIs whose stored responses to invalidate (remove). Empty except after an unsafe
    /// method with a non-error status.
    pub invalidate: Vec<Uri>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_values_from_the_static_table_are_the_decimal_numbers() {
        for seconds in (0..STATIC_AGES + 20).chain([DELTA_SECONDS_MAX]) {
            assert_eq!(
                age_value(seconds),
                seconds.to_string().as_str(),
                "{seconds}"
            );
        }
    }
}
