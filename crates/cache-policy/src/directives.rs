//! RFC 9111 §5.2: the `Cache-Control` header field, parsed.
//!
//! The parser follows the grammar of §5.2 strictly:
//!
//! ```text
//! Cache-Control   = #cache-directive
//! cache-directive = token [ "=" ( token / quoted-string ) ]
//! ```
//!
//! Directive names compare case-insensitively. Quoted strings may contain commas
//! (`no-cache="Set-Cookie, Link"`). A directive whose syntax is broken is ignored, and parsing
//! resumes at the next comma outside a quoted string. Arguments are strict: `max-age=60s` or
//! `max-age=-1` are invalid, and an invalid or conflicting freshness directive makes the
//! response stale (§4.2.1: "caches are encouraged to consider responses that have invalid
//! freshness information ... to be stale"). Nothing here panics on any input.

use http::header::{HeaderName, HeaderValue};

use crate::syntax::{self, is_ows, is_tchar};

/// The largest delta-seconds value a cache must represent (RFC 9111 §1.2.2): larger values and
/// overflowing calculations are taken as 2^31.
pub const DELTA_SECONDS_MAX: u64 = 1 << 31;

/// One directive as it appears on the wire: a name and an optional argument, quotes and escapes
/// already removed from a quoted argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawDirective<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) argument: Option<Argument<'a>>,
}

/// A directive's argument. Quoted strings with escapes are rare, so they are unescaped lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Argument<'a> {
    /// A token, or a quoted string without backslash escapes (quotes removed).
    Plain(&'a [u8]),
    /// A quoted string containing backslash escapes (quotes removed, escapes kept).
    Escaped(&'a [u8]),
    /// The name was valid but what followed it was not: an argument that cannot be trusted,
    /// read in the most restrictive way.
    Invalid,
}

impl Argument<'_> {
    fn unescaped(&self) -> Vec<u8> {
        match self {
            Argument::Plain(bytes) => bytes.to_vec(),
            Argument::Invalid => Vec::new(),
            Argument::Escaped(bytes) => {
                let mut out = Vec::with_capacity(bytes.len());
                let mut escaped = false;
                for &b in *bytes {
                    if escaped || b != b'\\' {
                        out.push(b);
                        escaped = false;
                    } else {
                        escaped = true;
                    }
                }
                out
            }
        }
    }

    /// The argument as delta-seconds ([`syntax::delta_seconds`]); a quoted argument is not.
    fn delta_seconds(&self) -> Option<u64> {
        let Argument::Plain(digits) = self else {
            return None;
        };
        syntax::delta_seconds(digits)
    }
}

/// Splits one field line into directives. Broken directives are skipped.
pub(crate) struct Directives<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Directives<'a> {
    pub(crate) fn new(line: &'a [u8]) -> Self {
        Directives {
            input: line,
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while self.peek().is_some_and(is_ows) {
            self.pos += 1;
        }
    }

    fn token(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self.peek().is_some_and(is_tchar) {
            self.pos += 1;
        }
        &self.input[start..self.pos]
    }

    /// Reads a quoted string starting at the opening quote. `None` if it is not terminated.
    fn quoted(&mut self) -> Option<Argument<'a>> {
        self.pos += 1; // opening quote
        let start = self.pos;
        let mut has_escape = false;
        while let Some(b) = self.peek() {
            match b {
                b'"' => {
                    let content = &self.input[start..self.pos];
                    self.pos += 1;
                    return Some(if has_escape {
                        Argument::Escaped(content)
                    } else {
                        Argument::Plain(content)
                    });
                }
                b'\\' => {
                    has_escape = true;
                    self.pos += 2;
                }
                // qdtext excludes control characters other than HTAB.
                b if b < 0x20 && b != b'\t' || b == 0x7f => return None,
                _ => self.pos += 1,
            }
        }
        None
    }

    /// Skips to just after the next comma that is not inside a quoted string.
    fn recover(&mut self) {
        let mut in_quotes = false;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'\\' if in_quotes => self.pos += 1,
                b'"' => in_quotes = !in_quotes,
                b',' if !in_quotes => return,
                _ => {}
            }
        }
    }

    /// Reads one directive. `None` when the name is missing; a valid name followed by broken
    /// syntax yields the directive with [`Argument::Invalid`].
    fn directive(&mut self) -> Option<RawDirective<'a>> {
        let name = self.token();
        if name.is_empty() {
            return None;
        }
        let invalid = |this: &mut Self| {
            this.recover();
            Some(RawDirective {
                name,
                argument: Some(Argument::Invalid),
            })
        };
        self.skip_ows();
        let argument = if self.peek() == Some(b'=') {
            self.pos += 1;
            self.skip_ows();
            let argument = match self.peek() {
                Some(b'"') => self.quoted(),
                _ => Some(self.token())
                    .filter(|t| !t.is_empty())
                    .map(Argument::Plain),
            };
            match argument {
                Some(argument) => Some(argument),
                None => return invalid(self),
            }
        } else {
            None
        };
        self.skip_ows();
        match self.peek() {
            None => {}
            Some(b',') => self.pos += 1,
            Some(_) => return invalid(self),
        }
        Some(RawDirective { name, argument })
    }
}

impl<'a> Iterator for Directives<'a> {
    type Item = RawDirective<'a>;

    fn next(&mut self) -> Option<RawDirective<'a>> {
        loop {
            while self.peek().is_some_and(|b| is_ows(b) || b == b',') {
                self.pos += 1;
            }
            self.peek()?;
            match self.directive() {
                Some(directive) => return Some(directive),
                None => self.recover(),
            }
        }
    }
}

/// A delta-seconds directive argument seen once or several times.
///
/// Duplicates with the same value are harmless; conflicting or invalid values collapse to 0,
/// the most restrictive reading (RFC 9111 §4.2.1).
fn merge_seconds(slot: &mut Option<u64>, argument: Option<Argument<'_>>) {
    let value = argument.and_then(|a| a.delta_seconds()).unwrap_or(0);
    *slot = match *slot {
        None => Some(value),
        Some(previous) if previous == value => Some(value),
        Some(_) => Some(0),
    };
}

/// A field-name list argument, as in `no-cache="Set-Cookie"` (RFC 9111 §5.2.2.4, §5.2.2.7).
fn field_names(argument: &Argument<'_>) -> Vec<HeaderName> {
    argument
        .unescaped()
        .split(|&b| b == b',')
        .map(syntax::trim_ows)
        .filter_map(|name| HeaderName::from_bytes(name).ok())
        .collect()
}

/// Whether a response directive applies to the whole response or only to some fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FieldScope {
    /// The directive is absent.
    #[default]
    Absent,
    /// The directive is present without an argument: it applies to the whole response.
    Whole,
    /// The directive is present with a list of field names: it applies to those fields only.
    Fields(Vec<HeaderName>),
}

impl FieldScope {
    /// Whether the directive applies to the whole response.
    pub fn is_whole(&self) -> bool {
        matches!(self, FieldScope::Whole)
    }

    /// The field names of a qualified directive (empty when absent or unqualified).
    pub fn fields(&self) -> &[HeaderName] {
        match self {
            FieldScope::Fields(fields) => fields,
            _ => &[],
        }
    }

    fn merge(&mut self, argument: Option<Argument<'_>>) {
        let incoming = match argument {
            None | Some(Argument::Invalid) => FieldScope::Whole,
            Some(argument) => FieldScope::Fields(field_names(&argument)),
        };
        *self = match (std::mem::take(self), incoming) {
            (FieldScope::Absent, incoming) => incoming,
            // The unqualified form is the most restrictive and wins.
            (FieldScope::Whole, _) | (_, FieldScope::Whole) => FieldScope::Whole,
            (FieldScope::Fields(mut a), FieldScope::Fields(b)) => {
                a.extend(b);
                FieldScope::Fields(a)
            }
            (current, FieldScope::Absent) => current,
        };
    }
}

/// The cache directives of a response (RFC 9111 §5.2.2, RFC 5861, RFC 8246).
///
/// ```
/// use cache_policy::ResponseDirectives;
/// use http::HeaderValue;
///
/// let value = HeaderValue::from_static(r#"max-age=60, no-cache="set-cookie, link", public"#);
/// let cc = ResponseDirectives::parse([&value]);
/// assert_eq!(cc.max_age, Some(60));
/// assert!(cc.public);
/// assert_eq!(cc.no_cache.fields().len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ResponseDirectives {
    /// `max-age` in seconds (§5.2.2.1). Invalid or conflicting values are 0.
    pub max_age: Option<u64>,
    /// `s-maxage` in seconds (§5.2.2.10), for shared caches. Invalid or conflicting values are 0.
    pub s_maxage: Option<u64>,
    /// `no-cache`, whole or qualified with field names (§5.2.2.4).
    pub no_cache: FieldScope,
    /// `private`, whole or qualified with field names (§5.2.2.7).
    pub private: FieldScope,
    /// `no-store` (§5.2.2.5).
    pub no_store: bool,
    /// `no-transform` (§5.2.2.6).
    pub no_transform: bool,
    /// `must-revalidate` (§5.2.2.2).
    pub must_revalidate: bool,
    /// `proxy-revalidate` (§5.2.2.8).
    pub proxy_revalidate: bool,
    /// `must-understand` (§5.2.2.3).
    pub must_understand: bool,
    /// `public` (§5.2.2.9).
    pub public: bool,
    /// `immutable` (RFC 8246).
    pub immutable: bool,
    /// `stale-while-revalidate` in seconds (RFC 5861 §3).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error` in seconds (RFC 5861 §4).
    pub stale_if_error: Option<u64>,
}

impl ResponseDirectives {
    /// Parses every `Cache-Control` field line of a response, in order.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let mut cc = ResponseDirectives::default();
        for line in lines {
            cc.apply_line(line);
        }
        cc
    }

    /// Adds the directives of one more field line.
    pub(crate) fn apply_line(&mut self, line: &HeaderValue) {
        for directive in Directives::new(line.as_bytes()) {
            self.apply(directive);
        }
    }

    fn apply(&mut self, d: RawDirective<'_>) {
        let name = d.name;
        let is = |expected: &str| name.eq_ignore_ascii_case(expected.as_bytes());
        // Dispatch on the length first: this runs for every directive of every lookup.
        match name.len() {
            6 if is("public") => self.public = true,
            7 if is("max-age") => merge_seconds(&mut self.max_age, d.argument),
            7 if is("private") => self.private.merge(d.argument),
            8 if is("s-maxage") => merge_seconds(&mut self.s_maxage, d.argument),
            8 if is("no-cache") => self.no_cache.merge(d.argument),
            8 if is("no-store") => self.no_store = true,
            9 if is("immutable") => self.immutable = true,
            12 if is("no-transform") => self.no_transform = true,
            14 if is("stale-if-error") => merge_seconds(&mut self.stale_if_error, d.argument),
            15 if is("must-revalidate") => self.must_revalidate = true,
            15 if is("must-understand") => self.must_understand = true,
            16 if is("proxy-revalidate") => self.proxy_revalidate = true,
            22 if is("stale-while-revalidate") => {
                merge_seconds(&mut self.stale_while_revalidate, d.argument)
            }
            // Unknown extension directives are ignored (§5.2.3).
            _ => {}
        }
    }

    /// Whether any directive was recognised: an empty or unparseable field counts as absent
    /// (used by RFC 9213 targeted fields).
    pub fn is_empty(&self) -> bool {
        *self == ResponseDirectives::default()
    }
}

/// `max-stale` with or without a limit (RFC 9111 §5.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxStale {
    /// `max-stale` without an argument: any staleness is acceptable.
    Any,
    /// `max-stale=N`: staleness up to N seconds is acceptable.
    Seconds(u64),
}

/// The cache directives of a request (RFC 9111 §5.2.1, RFC 5861 §4).
///
/// ```
/// use cache_policy::RequestDirectives;
/// use http::HeaderMap;
///
/// let mut headers = HeaderMap::new();
/// headers.insert("pragma", "no-cache".parse().unwrap());
/// // RFC 9111 §5.4: Pragma: no-cache counts only when Cache-Control is absent.
/// assert!(RequestDirectives::from_headers(&headers).no_cache);
/// headers.insert("cache-control", "max-age=5".parse().unwrap());
/// assert!(!RequestDirectives::from_headers(&headers).no_cache);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RequestDirectives {
    /// `max-age` in seconds (§5.2.1.1): the client does not want a response older than this.
    pub max_age: Option<u64>,
    /// `max-stale` (§5.2.1.2): the client accepts stale responses.
    pub max_stale: Option<MaxStale>,
    /// `min-fresh` in seconds (§5.2.1.3): the response must stay fresh at least this long.
    pub min_fresh: Option<u64>,
    /// `no-cache` (§5.2.1.4), or `Pragma: no-cache` without `Cache-Control` (§5.4).
    pub no_cache: bool,
    /// `no-store` (§5.2.1.5).
    pub no_store: bool,
    /// `no-transform` (§5.2.1.6).
    pub no_transform: bool,
    /// `only-if-cached` (§5.2.1.7).
    pub only_if_cached: bool,
    /// `stale-if-error` in seconds (RFC 5861 §4).
    pub stale_if_error: Option<u64>,
}

impl RequestDirectives {
    /// Parses every `Cache-Control` field line of a request, in order.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let mut cc = RequestDirectives::default();
        for line in lines {
            for d in Directives::new(line.as_bytes()) {
                let is = |expected: &str| d.name.eq_ignore_ascii_case(expected.as_bytes());
                if is("max-age") {
                    merge_seconds(&mut cc.max_age, d.argument);
                } else if is("max-stale") {
                    cc.max_stale = match (cc.max_stale, d.argument) {
                        (Some(MaxStale::Seconds(_)) | None, None) => Some(MaxStale::Any),
                        (current, Some(argument)) => match argument.delta_seconds() {
                            // Conflicting limits: keep the smaller (more restrictive) one.
                            Some(s) => Some(match current {
                                Some(MaxStale::Seconds(previous)) => {
                                    MaxStale::Seconds(previous.min(s))
                                }
                                _ => MaxStale::Seconds(s),
                            }),
                            // An invalid limit does not grant any staleness.
                            None => current,
                        },
                        (current, None) => current,
                    };
                } else if is("min-fresh") {
                    // An invalid min-fresh is ignored rather than read as 0: 0 asks for nothing.
                    if let Some(seconds) = d.argument.and_then(|a| a.delta_seconds()) {
                        cc.min_fresh = Some(cc.min_fresh.map_or(seconds, |m| m.max(seconds)));
                    }
                } else if is("no-cache") {
                    cc.no_cache = true;
                } else if is("no-store") {
                    cc.no_store = true;
                } else if is("no-transform") {
                    cc.no_transform = true;
                } else if is("only-if-cached") {
                    cc.only_if_cached = true;
                } else if is("stale-if-error") {
                    merge_seconds(&mut cc.stale_if_error, d.argument);
                }
            }
        }
        cc
    }

    /// Parses a request's `Cache-Control`, falling back to `Pragma: no-cache` when
    /// `Cache-Control` is absent (RFC 9111 §5.4).
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let mut lines = headers
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .peekable();
        if lines.peek().is_some() {
            return RequestDirectives::parse(lines);
        }
        let pragma_no_cache = headers
            .get_all(http::header::PRAGMA)
            .iter()
            .flat_map(|line| Directives::new(line.as_bytes()))
            .any(|d| d.name.eq_ignore_ascii_case(b"no-cache"));
        RequestDirectives {
            no_cache: pragma_no_cache,
            ..RequestDirectives::default()
        }
    }
}

#[cfg(test)]
mod tests;
