//! Stored responses with their header values parsed once: [`ParsedResponse`], and the
//! [`Candidate`] trait through which the policy reads stored responses of either kind.

use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

use crate::directives::ResponseDirectives;
use crate::freshness::{age_value, expires_lifetime, parse_date, since};
use crate::validation::EntityTag;
use crate::{PolicyOptions, StoredResponse};

/// The RFC 9213 targeted field for CDNs.
pub(crate) const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

/// What every lookup reads from a stored response's header lines (RFC 9111 §4.2), parsed.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    /// `Cache-Control` (§5.2).
    cache_control: ResponseDirectives,
    /// RFC 9213 `CDN-Cache-Control`, when present.
    cdn_cache_control: Option<ResponseDirectives>,
    /// `date_value` (§4.2.3): `Date`, or the response time when it is missing or invalid.
    pub(crate) date: SystemTime,
    /// `corrected_initial_age` (§4.2.3), which does not change while the response is stored.
    corrected_initial_age: Duration,
    /// The lifetime `Expires` gives (§5.3), when present.
    pub(crate) expires: Option<Duration>,
    /// Whether `Vary` is present: without it, every request matches (§4.1).
    pub(crate) vary: bool,
}

/// What one pass over a response's header lines finds: its [`Facts`], and the presence of the
/// fields that decide how it is stored. One pass over the lines costs less than a lookup for
/// each of the nine fields, and this runs for every response stored.
pub(crate) struct Scan<'h> {
    pub(crate) facts: Facts,
    /// Whether `Date` was valid (when it is not, a stored copy gets a new one, RFC 9110
    /// §6.6.1).
    pub(crate) valid_date: bool,
    /// `Connection` is present (the fields it names are not stored).
    pub(crate) connection: bool,
    /// `Age` is present.
    pub(crate) age: bool,
    /// The first `ETag` and `Last-Modified` lines, parsed only when storing asks
    /// ([`has_validator`](Self::has_validator)).
    etag: Option<&'h HeaderValue>,
    last_modified: Option<&'h HeaderValue>,
    /// `Set-Cookie` is present.
    pub(crate) set_cookie: bool,
}

impl Scan<'_> {
    /// Whether an `ETag` or `Last-Modified` line is present (whether it parses is not checked).
    pub(crate) fn saw_validator(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }

    /// [`validation::has_validator`](crate::validation::has_validator) of the scanned lines,
    /// without looking them up again.
    pub(crate) fn has_validator(&self) -> bool {
        self.etag
            .is_some_and(|etag| EntityTag::parse(etag.as_bytes()).is_some())
            || self.last_modified.and_then(parse_date).is_some()
    }
}

impl Facts {
    pub(crate) fn of(stored: &StoredResponse) -> Self {
        Facts::scan(&stored.headers, stored.request_time, stored.response_time).facts
    }

    /// The facts of a response with these header lines and times, and what else decides how
    /// it is stored.
    pub(crate) fn scan(
        headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Scan<'_> {
        let mut cache_control = ResponseDirectives::default();
        let mut cdn_cache_control: Option<ResponseDirectives> = None;
        let (mut date, mut age, mut expires) = (None, None, None);
        // RFC 9111 §5.3: several differing `Expires` lines mean "already expired".
        let mut expires_differ = false;
        let (mut connection, mut vary) = (false, false);
        let (mut etag, mut last_modified) = (None, None);
        let mut set_cookie = false;
        for (name, value) in headers {
            if *name == header::CACHE_CONTROL {
                cache_control.apply_line(value);
            } else if *name == header::DATE {
                date = date.or(Some(value));
            } else if *name == header::AGE {
                age = age.or(Some(value));
            } else if *name == header::EXPIRES {
                match expires {
                    None => expires = Some(value),
                    Some(first) => expires_differ |= first != value,
                }
            } else if *name == header::ETAG {
                etag = etag.or(Some(value));
            } else if *name == header::LAST_MODIFIED {
                last_modified = last_modified.or(Some(value));
            } else if *name == header::VARY {
                vary = true;
            } else if *name == header::CONNECTION {
                connection = true;
            } else if *name == header::SET_COOKIE {
                set_cookie = true;
            } else if *name == CDN_CACHE_CONTROL {
                cdn_cache_control
                    .get_or_insert_with(Default::default)
                    .apply_line(value);
            }
        }
        let valid_date = date.and_then(parse_date);
        let date = valid_date.unwrap_or(response_time);
        let apparent_age = since(response_time, date);
        let response_delay = since(response_time, request_time);
        let corrected_age_value = age
            .and_then(age_value)
            .unwrap_or(Duration::ZERO)
            .saturating_add(response_delay);
        let expires = match expires {
            Some(_) if expires_differ => Some(Duration::ZERO),
            Some(first) => Some(expires_lifetime(first, date)),
            None => None,
        };
        Scan {
            facts: Facts {
                cache_control,
                cdn_cache_control,
                date,
                corrected_initial_age: apparent_age.max(corrected_age_value),
                expires,
                vary,
            },
            valid_date: valid_date.is_some(),
            connection,
            age: age.is_some(),
            etag,
            last_modified,
            set_cookie,
        }
    }

    /// The directives that govern the response under `options`, and whether `Expires` counts:
    /// a valid RFC 9213 `CDN-Cache-Control`, when enabled for a shared cache, replaces
    /// `Cache-Control` and `Expires`.
    pub(crate) fn directives(&self, options: &PolicyOptions) -> (&ResponseDirectives, bool) {
        match &self.cdn_cache_control {
            Some(cdn) if options.cdn_cache_control && options.shared && !cdn.is_empty() => {
                (cdn, false)
            }
            _ => (&self.cache_control, true),
        }
    }

    /// `current_age` (§4.2.3): `corrected_initial_age + resident_time`.
    pub(crate) fn current_age(&self, stored: &StoredResponse, now: SystemTime) -> Duration {
        let resident_time = since(now, stored.response_time);
        self.corrected_initial_age.saturating_add(resident_time)
    }
}

/// A [`StoredResponse`] with the header values every lookup reads (`Cache-Control`, `Date`,
/// `Age`, `Expires`) parsed once, for stores that keep responses in memory and hand the same
/// one to many lookups.
///
/// It dereferences to the [`StoredResponse`], which it keeps unchanged and never lets anyone
/// change: to change the header lines, take the response out with
/// [`into_response`](ParsedResponse::into_response) and parse it again.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use cache_policy::{CachePolicy, Lookup, ParsedResponse, StoredResponse};
/// use http::{HeaderMap, Method, Request, StatusCode, Uri};
///
/// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// let mut headers = HeaderMap::new();
/// headers.insert("cache-control", "max-age=60".parse().unwrap());
/// let parsed = ParsedResponse::new(StoredResponse {
///     method: Method::GET, uri: Uri::from_static("http://example.com/"),
///     status: StatusCode::OK, headers, vary_request_headers: HeaderMap::new(),
///     request_time: t0, response_time: t0,
/// });
/// let request = Request::get("http://example.com/").body(()).unwrap();
/// let later = t0 + Duration::from_secs(10);
/// assert!(matches!(CachePolicy::default().lookup(&request, &[parsed], later), Lookup::Fresh(_)));
/// ```
#[derive(Debug, Clone)]
pub struct ParsedResponse {
    response: StoredResponse,
    facts: Facts,
}

impl ParsedResponse {
    /// Parses the header values of `response` that lookups read.
    pub fn new(response: StoredResponse) -> Self {
        let facts = Facts::of(&response);
        ParsedResponse { response, facts }
    }

    /// The stored response.
    #[inline]
    pub fn response(&self) -> &StoredResponse {
        &self.response
    }

    /// [`StoredResponse::variant_key`], without reading the header lines when the response
    /// has no `Vary` (the empty key).
    pub fn variant_key(&self) -> Vec<u8> {
        if self.facts.vary {
            self.response.variant_key()
        } else {
            Vec::new()
        }
    }

    /// Copies the bytes the response may share with the messages it came from (the values of
    /// its header lines and of the request fields `Vary` selected, and its target URI) into
    /// memory of its own. They are the same bytes, so nothing parsed changes.
    ///
    /// For a store that keeps responses in memory: what is read from a connection may be a
    /// slice of the connection's read buffer (hyper's header values, and a server's request
    /// targets, are), and keeping a slice keeps that whole buffer alive. The header values
    /// are copied into one buffer (one allocation).
    ///
    /// ```
    /// use std::time::SystemTime;
    /// use cache_policy::{ParsedResponse, StoredResponse};
    /// use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
    ///
    /// let read_buffer = bytes::Bytes::from_static(b"max-age=60 and much more");
    /// let mut headers = HeaderMap::new();
    /// let value = HeaderValue::from_maybe_shared(read_buffer.slice(0..10)).unwrap();
    /// headers.insert("cache-control", value);
    /// let mut parsed = ParsedResponse::new(StoredResponse {
    ///     method: Method::GET, uri: Uri::from_static("http://example.com/"),
    ///     status: StatusCode::OK, headers, vary_request_headers: HeaderMap::new(),
    ///     request_time: SystemTime::UNIX_EPOCH, response_time: SystemTime::UNIX_EPOCH,
    /// });
    /// parsed.copy_bytes();
    /// let copied = &parsed.response().headers["cache-control"];
    /// assert_eq!(copied, "max-age=60");
    /// assert_ne!(copied.as_bytes().as_ptr(), read_buffer.as_ptr());
    /// assert_eq!(parsed.response().uri, "http://example.com/");
    /// ```
    pub fn copy_bytes(&mut self) {
        crate::headers::copy_values(&mut self.response.headers);
        crate::headers::copy_values(&mut self.response.vary_request_headers);
        // A URI that does not parse again (it always does) is kept as it is.
        if let Ok(uri) = self.response.uri.to_string().parse() {
            self.response.uri = uri;
        }
    }

    /// The stored response, to change or persist.
    pub fn into_response(self) -> StoredResponse {
        self.response
    }

    #[inline]
    pub(crate) fn facts(&self) -> &Facts {
        &self.facts
    }

    /// A response whose facts the caller parsed from the same header lines and times.
    pub(crate) fn from_parts(response: StoredResponse, facts: Facts) -> Self {
        ParsedResponse { response, facts }
    }
}

impl From<StoredResponse> for ParsedResponse {
    fn from(response: StoredResponse) -> Self {
        ParsedResponse::new(response)
    }
}

/// Stores take entries shared ([`ResponseAction::Store`](crate::ResponseAction::Store)
/// hands them out so): `response.into()` parses and shares a response in one step.
impl From<StoredResponse> for Arc<ParsedResponse> {
    fn from(response: StoredResponse) -> Self {
        Arc::new(ParsedResponse::new(response))
    }
}

impl Deref for ParsedResponse {
    type Target = StoredResponse;

    #[inline]
    fn deref(&self) -> &StoredResponse {
        &self.response
    }
}

impl AsRef<StoredResponse> for ParsedResponse {
    #[inline]
    fn as_ref(&self) -> &StoredResponse {
        &self.response
    }
}

/// Two parsed responses are equal when their stored responses are: the parsed values follow
/// from them.
impl PartialEq for ParsedResponse {
    fn eq(&self, other: &Self) -> bool {
        self.response == other.response
    }
}

/// A stored response as [`CachePolicy`](crate::CachePolicy) reads it: a [`StoredResponse`],
/// or a [`ParsedResponse`] whose header values the policy does not parse again.
///
/// Implemented for both, for references and smart pointers to them, and by stores for their
/// own entry types.
pub trait Candidate {
    /// The stored response.
    fn stored_response(&self) -> &StoredResponse;

    /// The same response with its header values parsed, when the caller keeps one.
    #[inline]
    fn parsed_response(&self) -> Option<&ParsedResponse> {
        None
    }
}

impl Candidate for StoredResponse {
    #[inline]
    fn stored_response(&self) -> &StoredResponse {
        self
    }
}

impl Candidate for ParsedResponse {
    #[inline]
    fn stored_response(&self) -> &StoredResponse {
        &self.response
    }

    #[inline]
    fn parsed_response(&self) -> Option<&ParsedResponse> {
        Some(self)
    }
}

impl<T: Candidate + ?Sized> Candidate for &T {
    #[inline]
    fn stored_response(&self) -> &StoredResponse {
        (**self).stored_response()
    }

    #[inline]
    fn parsed_response(&self) -> Option<&ParsedResponse> {
        (**self).parsed_response()
    }
}

impl<T: Candidate + ?Sized> Candidate for Arc<T> {
    #[inline]
    fn stored_response(&self) -> &StoredResponse {
        (**self).stored_response()
    }

    #[inline]
    fn parsed_response(&self) -> Option<&ParsedResponse> {
        (**self).parsed_response()
    }
}

impl<T: Candidate + ?Sized> Candidate for Box<T> {
    #[inline]
    fn stored_response(&self) -> &StoredResponse {
        (**self).stored_response()
    }

    #[inline]
    fn parsed_response(&self) -> Option<&ParsedResponse> {
        (**self).parsed_response()
    }
}

/// The facts of a candidate: borrowed when it was parsed, else parsed now.
// It lives on the stack for one decision: boxing the owned facts would cost an allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum FactsOf<'a> {
    Borrowed(&'a Facts),
    Owned(Facts),
}

impl<'a> FactsOf<'a> {
    pub(crate) fn of<C: Candidate + ?Sized>(candidate: &'a C) -> Self {
        match candidate.parsed_response() {
            Some(parsed) => FactsOf::Borrowed(parsed.facts()),
            None => FactsOf::Owned(Facts::of(candidate.stored_response())),
        }
    }
}

impl Deref for FactsOf<'_> {
    type Target = Facts;

    #[inline]
    fn deref(&self) -> &Facts {
        match self {
            FactsOf::Borrowed(facts) => facts,
            FactsOf::Owned(facts) => facts,
        }
    }
}
