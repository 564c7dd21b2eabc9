//! Target URIs (RFC 9110 §7.1) and the URI references that invalidation follows (RFC 9111
//! §4.4).

use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, Uri};

/// RFC 9112 §3.2.2: the target's authority wins over `Host`. A request in absolute form goes
/// to the origin with the `Host` its target names (without user information), so that the
/// origin answers for the host the response is keyed by, and a client cannot have one host's
/// answer stored under another's URL. A request without `Host` is left to the client, which
/// adds it from the target.
///
/// ```
/// let mut request = http::Request::get("http://a.example/page")
///     .header("host", "b.example")
///     .body(())
///     .unwrap();
/// cache_policy::align_host(&mut request);
/// assert_eq!(request.headers()["host"], "a.example");
/// ```
pub fn align_host<B>(request: &mut http::Request<B>) {
    let Some(authority) = request.uri().authority() else {
        return;
    };
    let mut lines = request.headers().get_all(HOST).iter();
    // Most requests in absolute form carry no `Host` (the client adds it): looked at first,
    // so that they skip the search for user information.
    let (Some(line), second) = (lines.next(), lines.next()) else {
        return;
    };
    let host = match authority.as_str().rsplit_once('@') {
        Some((_user_info, host)) => host,
        None => authority.as_str(),
    };
    let agrees = second.is_none() && line.as_bytes().eq_ignore_ascii_case(host.as_bytes());
    if !agrees {
        if let Ok(value) = http::HeaderValue::from_str(host) {
            request.headers_mut().insert(HOST, value);
        }
    }
}

/// The target URI of a request (RFC 9110 §7.1): the request-target itself when it is in
/// absolute form (client side), or rebuilt from the `Host` header for origin-form targets
/// (server side, proxies). The scheme of an origin-form target is `http`; see
/// [`CachePolicy::target_uri`](crate::CachePolicy::target_uri) for a server that serves
/// `https`.
///
/// Returns `None` when no authority is known, and when `Host` cannot name one: more than one
/// `Host` line, or a value that is not a host and port (RFC 9112 §3.2: such a request is
/// answered 400, and must not be keyed by a guess).
///
/// ```
/// use cache_policy::effective_uri;
/// use http::{HeaderMap, Uri};
///
/// let absolute = Uri::from_static("https://example.com/a?b");
/// assert_eq!(effective_uri(&absolute, &HeaderMap::new()), Some(absolute.clone()));
///
/// let mut headers = HeaderMap::new();
/// headers.insert("host", "example.com:8080".parse().unwrap());
/// let uri = effective_uri(&Uri::from_static("/a?b"), &headers).unwrap();
/// assert_eq!(uri, "http://example.com:8080/a?b");
///
/// headers.append("host", "other.example".parse().unwrap());
/// assert_eq!(effective_uri(&Uri::from_static("/a?b"), &headers), None);
/// ```
pub fn effective_uri(uri: &Uri, headers: &HeaderMap) -> Option<Uri> {
    target_uri(uri, headers, &Scheme::HTTP)
}

/// [`effective_uri`] with `origin_form_scheme` as the scheme of origin-form targets.
pub(crate) fn target_uri(
    uri: &Uri,
    headers: &HeaderMap,
    origin_form_scheme: &Scheme,
) -> Option<Uri> {
    if uri.scheme().is_some() && uri.authority().is_some() {
        return Some(uri.clone());
    }
    let authority = match uri.authority() {
        Some(authority) => authority.clone(),
        None => host_authority(headers)?,
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(uri.scheme().unwrap_or(origin_form_scheme).clone());
    parts.authority = Some(authority);
    parts.path_and_query = Some(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts).ok()
}

/// The authority the `Host` field names: one line, a host and optional port (RFC 9110 §7.2),
/// without user information, which `Host` cannot carry and which would hide the real host.
fn host_authority(headers: &HeaderMap) -> Option<Authority> {
    let mut lines = headers.get_all(HOST).iter();
    let host = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    let authority = Authority::try_from(host.as_bytes()).ok()?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return None;
    }
    Some(authority)
}

fn port_of(uri: &Uri) -> Option<u16> {
    uri.port_u16().or(match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
        Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
        _ => None,
    })
}

/// Whether two absolute URIs share scheme, host and port (RFC 6454 origin).
pub(crate) fn same_origin(a: &Uri, b: &Uri) -> bool {
    let scheme = |u: &Uri| u.scheme_str().map(str::to_ascii_lowercase);
    let host = |u: &Uri| u.host().map(str::to_ascii_lowercase);
    scheme(a).is_some() && scheme(a) == scheme(b) && host(a) == host(b) && port_of(a) == port_of(b)
}

/// RFC 3986 §5.2.4: removes `.` and `..` segments from a path.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {
                if i == last {
                    output.push("");
                }
            }
            ".." => {
                if output.len() > 1 {
                    output.pop();
                }
                if i == last {
                    output.push("");
                }
            }
            s => output.push(s),
        }
    }
    let joined = output.join("/");
    if path.starts_with('/') && !joined.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

/// Whether a URI reference starts with a scheme (RFC 3986 §3.1: `ALPHA *( ALPHA / DIGIT / "+" /
/// "-" / "." ) ":"`), which makes it an absolute URI rather than a relative reference.
fn has_scheme(reference: &str) -> bool {
    let Some((scheme, _)) = reference.split_once(':') else {
        return false;
    };
    let mut bytes = scheme.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// RFC 3986 §5.2: resolves a URI reference (as found in `Location` or `Content-Location`)
/// against an absolute base URI. Fragments are dropped.
pub(crate) fn resolve(base: &Uri, reference: &[u8]) -> Option<Uri> {
    let reference = std::str::from_utf8(reference).ok()?.trim();
    let reference = reference.split('#').next().unwrap_or_default();
    if has_scheme(reference) {
        // An absolute URI (RFC 3986 §4.3): usable only if it parses with an authority;
        // otherwise it is garbage, not a relative path.
        return reference
            .parse::<Uri>()
            .ok()
            .filter(|uri| uri.scheme().is_some() && uri.authority().is_some());
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    let (target, query) = if let Some(rest) = reference.strip_prefix("//") {
        return format!("{scheme}://{rest}").parse().ok();
    } else if reference.is_empty() {
        return Some(base.clone());
    } else if let Some(query) = reference.strip_prefix('?') {
        // RFC 3986 §5.2.2: an empty-path reference keeps the base path as it is, dot segments
        // included.
        let path = match base.path() {
            "" => "/",
            path => path,
        };
        return format!("{scheme}://{authority}{path}?{query}").parse().ok();
    } else {
        let (path, query) = match reference.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (reference, None),
        };
        let merged = if path.starts_with('/') {
            path.to_owned()
        } else {
            let base_path = base.path();
            let directory = &base_path[..base_path.rfind('/').map_or(0, |i| i + 1)];
            format!("{directory}{path}")
        };
        (merged, query)
    };
    let path = remove_dot_segments(&target);
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let uri = match query {
        Some(query) => format!("{scheme}://{authority}{path}?{query}"),
        None => format!("{scheme}://{authority}{path}"),
    };
    uri.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `Host` lines of `target` with `hosts` after [`align_host`].
    fn aligned(target: &str, hosts: &[&str]) -> Vec<String> {
        let mut request = http::Request::get(target);
        for host in hosts {
            request = request.header(HOST, *host);
        }
        let mut request = request.body(()).expect("request");
        align_host(&mut request);
        request
            .headers()
            .get_all(HOST)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    }

    #[test]
    fn rfc9112_3_2_2_the_target_authority_wins_over_host() {
        // No `Host`: left to the client.
        assert!(aligned("http://a.example/", &[]).is_empty());
        // One that agrees (hosts compare without case) is kept as it is.
        assert_eq!(aligned("http://a.example/", &["A.Example"]), ["A.Example"]);
        // One that disagrees, or several, become the target's authority.
        assert_eq!(aligned("http://a.example/", &["b.example"]), ["a.example"]);
        assert_eq!(
            aligned("http://a.example:8080/", &["a.example:8080", "b.example"]),
            ["a.example:8080"]
        );
        // Without user information.
        assert_eq!(
            aligned("http://user:pw@a.example/", &["b.example"]),
            ["a.example"]
        );
        assert_eq!(
            aligned("http://user@a.example/", &["a.example"]),
            ["a.example"]
        );
        // An origin-form target names no authority: `Host` stays.
        assert_eq!(aligned("/page", &["b.example"]), ["b.example"]);
    }

    #[test]
    fn rfc3986_5_4_reference_resolution() {
        let base = Uri::from_static("http://a/b/c/d;p?q");
        let cases = [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("g#s", "http://a/b/c/g"),
            ("..", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("http://other/x", "http://other/x"),
        ];
        for (reference, expected) in cases {
            let resolved = resolve(&base, reference.as_bytes()).unwrap();
            assert_eq!(resolved, expected, "{reference}");
        }
    }

    /// Found by the `location` fuzz target: a query-only reference keeps the base path as it
    /// is (RFC 3986 §5.2.2), dot segments included.
    #[test]
    fn rfc3986_5_2_2_a_query_only_reference_keeps_the_base_path_unchanged() {
        let base = Uri::from_static("http://a/../../g");
        assert_eq!(resolve(&base, b"?").unwrap(), "http://a/../../g?");
        assert_eq!(resolve(&base, b"?x=1").unwrap(), "http://a/../../g?x=1");
        let bare = Uri::from_static("http://a");
        assert_eq!(resolve(&bare, b"?y").unwrap(), "http://a/?y");
    }

    #[test]
    fn same_origin_compares_scheme_host_and_default_ports() {
        let a = Uri::from_static("http://Example.com/a");
        assert!(same_origin(
            &a,
            &Uri::from_static("http://example.com:80/b")
        ));
        assert!(!same_origin(&a, &Uri::from_static("https://example.com/b")));
        assert!(!same_origin(&a, &Uri::from_static("http://example.org/b")));
        assert!(!same_origin(
            &a,
            &Uri::from_static("http://example.com:8080/b")
        ));
    }
}
