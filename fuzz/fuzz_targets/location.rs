//! Target URIs and the URI references invalidation follows.
//!
//! 1. `effective_uri` / `CachePolicy::target_uri` with arbitrary request targets and `Host`
//!    lines (RFC 9110 §7.1, §7.2, RFC 9112 §3.2, §3.3): an absolute-form target is returned
//!    as it is; an origin-form one gets exactly one `Host` line's authority (never with user
//!    information, never an empty host, never from two lines) and the configured scheme, and
//!    keeps its path and query.
//! 2. Invalidation after an unsafe method (RFC 9111 §4.4): nothing after a safe method or an
//!    error status; otherwise the target URI first, then the `Location` and
//!    `Content-Location` URIs resolved against it, each same-origin with the target, none
//!    equal to it, no duplicates, no fragments.
//! 3. Resolution against a reference implementation of RFC 3986 §5.2 (see
//!    `ref_resolve`) for references made of URI characters only.
//!
//! No panic.
#![no_main]

#[path = "../common/mod.rs"]
mod common;

use cache_policy::{effective_uri, CachePolicy, PolicyOptions};
use common::{origin, Value};
use http::uri::Scheme;
use http::{header, HeaderMap, Method, Request, Response, Uri};
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    target: Target,
    hosts: Vec<Value>,
    method: u8,
    status: u16,
    location: Option<Value>,
    content_location: Option<Value>,
    https: bool,
}

#[derive(Debug, arbitrary::Arbitrary)]
enum Target {
    /// `scheme://authority` + path.
    Absolute(u8, Value, Value),
    /// Any request-target bytes.
    Raw(Vec<u8>),
    /// `/` + path.
    Origin(Value),
}

const SCHEMES: &[&str] = &["http", "https", "HTTP", "HtTpS", "ftp", "x-y+z"];
const METHODS: &[&str] = &["POST", "PUT", "DELETE", "PATCH", "GET", "HEAD", "OPTIONS", "X-UNSAFE"];

fn text(value: &Value) -> String {
    value
        .build()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

/// RFC 3986 §5.2.4.
fn remove_dot_segments(input: &str) -> String {
    let mut input = input.to_owned();
    let mut output = String::new();
    while !input.is_empty() {
        if let Some(rest) = input.strip_prefix("../") {
            input = rest.to_owned();
        } else if let Some(rest) = input.strip_prefix("./") {
            input = rest.to_owned();
        } else if input.starts_with("/./") {
            input = input[2..].to_owned();
        } else if input == "/." {
            input = "/".to_owned();
        } else if input.starts_with("/../") || input == "/.." {
            input = format!("/{}", &input[if input == "/.." { 3 } else { 4 }..]);
            match output.rfind('/') {
                Some(i) => output.truncate(i),
                None => output.clear(),
            }
        } else if input == "." || input == ".." {
            input.clear();
        } else {
            let start = usize::from(input.starts_with('/'));
            let end = input[start..].find('/').map_or(input.len(), |i| i + start);
            output.push_str(&input[..end]);
            input = input[end..].to_owned();
        }
    }
    output
}

/// RFC 3986 §5.2.2 (strict), with the reference split by the regular expression of
/// appendix B; fragments dropped. `None` when the base lacks a scheme or authority.
fn ref_resolve(base: &Uri, reference: &str) -> Option<String> {
    let base_scheme = base.scheme_str()?;
    let base_authority = base.authority()?.as_str();
    let reference = reference.split('#').next().unwrap_or_default();
    let (scheme, rest) = match reference.find([':', '/', '?', '#']) {
        Some(i) if i > 0 && reference.as_bytes()[i] == b':' => {
            (Some(&reference[..i]), &reference[i + 1..])
        }
        _ => (None, reference),
    };
    let (authority, rest) = match rest.strip_prefix("//") {
        Some(after) => {
            let end = after.find(['/', '?']).unwrap_or(after.len());
            (Some(&after[..end]), &after[end..])
        }
        None => (None, rest),
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    let (t_scheme, t_authority, t_path, t_query);
    if let Some(scheme) = scheme {
        t_scheme = scheme.to_owned();
        t_authority = authority?.to_owned();
        t_path = remove_dot_segments(path);
        t_query = query.map(str::to_owned);
    } else {
        t_scheme = base_scheme.to_owned();
        if let Some(authority) = authority {
            t_authority = authority.to_owned();
            t_path = remove_dot_segments(path);
            t_query = query.map(str::to_owned);
        } else {
            t_authority = base_authority.to_owned();
            if path.is_empty() {
                t_path = base.path().to_owned();
                t_query = query.or(base.query()).map(str::to_owned);
            } else {
                t_path = if path.starts_with('/') {
                    remove_dot_segments(path)
                } else {
                    // §5.2.3 merge: the base has an authority.
                    let base_path = base.path();
                    let merged = match base_path.rfind('/') {
                        Some(i) => format!("{}{path}", &base_path[..=i]),
                        None => format!("/{path}"),
                    };
                    remove_dot_segments(&merged)
                };
                t_query = query.map(str::to_owned);
            }
        }
    }
    let path = if t_path.is_empty() { "/".to_owned() } else { t_path };
    Some(match t_query {
        Some(q) => format!("{t_scheme}://{t_authority}{path}?{q}"),
        None => format!("{t_scheme}://{t_authority}{path}"),
    })
}

/// Whether a reference is made of URI characters only (RFC 3986 §2), with a valid scheme if it
/// has one: the references for which RFC 3986 defines the result.
fn plain_reference(reference: &str) -> bool {
    let uri_char = |b: u8| {
        b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
    };
    if reference.is_empty() || !reference.bytes().all(uri_char) {
        return false;
    }
    match reference.find([':', '/', '?', '#']) {
        Some(i) if reference.as_bytes()[i] == b':' => {
            let scheme = &reference.as_bytes()[..i];
            scheme.first().is_some_and(u8::is_ascii_alphabetic)
                && scheme
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        }
        Some(0) => true,
        _ => true,
    }
}

fuzz_target!(|input: Input| {
    let target = match &input.target {
        Target::Absolute(scheme, authority, path) => format!(
            "{}://{}{}",
            SCHEMES[*scheme as usize % SCHEMES.len()],
            text(authority),
            text(path)
        ),
        Target::Raw(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Target::Origin(path) => format!("/{}", text(path)),
    };
    let Ok(uri) = target.parse::<Uri>() else {
        return;
    };
    let mut headers = HeaderMap::new();
    for host in input.hosts.iter().take(3).filter_map(Value::build) {
        headers.append(header::HOST, host);
    }

    // 1. The target URI.
    let scheme = if input.https { Scheme::HTTPS } else { Scheme::HTTP };
    let policy = CachePolicy::new(PolicyOptions::default().origin_form_scheme(scheme.clone()));
    let request = {
        let mut request = Request::builder()
            .method(Method::from_bytes(
                METHODS[input.method as usize % METHODS.len()].as_bytes(),
            ).unwrap())
            .uri(uri.clone())
            .body(())
            .unwrap();
        *request.headers_mut() = headers.clone();
        request
    };
    let effective = effective_uri(&uri, &headers);
    let target_uri = policy.target_uri(&request);
    if uri.scheme().is_some() && uri.authority().is_some() {
        assert_eq!(effective.as_ref(), Some(&uri));
        assert_eq!(target_uri.as_ref(), Some(&uri));
    }
    for (result, scheme) in [(&effective, Scheme::HTTP), (&target_uri, scheme)] {
        let Some(result) = result else { continue };
        assert!(result.scheme().is_some() && result.authority().is_some(), "{result}");
        if uri.scheme().is_some() && uri.authority().is_some() {
            continue;
        }
        assert_eq!(result.scheme(), Some(&scheme));
        let expected_path = uri.path_and_query().map_or("/", |p| p.as_str());
        assert_eq!(result.path_and_query().unwrap().as_str(), expected_path);
        if uri.authority().is_none() {
            let lines: Vec<_> = headers.get_all(header::HOST).iter().collect();
            assert_eq!(lines.len(), 1, "target from {} Host lines", lines.len());
            let authority = result.authority().unwrap().as_str();
            assert_eq!(authority.as_bytes(), lines[0].as_bytes());
            assert!(!authority.contains('@'), "user information in {result}");
            assert!(!result.host().unwrap_or_default().is_empty(), "empty host");
        }
    }

    // 2. Invalidation.
    let mut response = Response::builder().status(input.status % 1000);
    if let Some(location) = input.location.as_ref().and_then(Value::build) {
        response = response.header(header::LOCATION, location);
    }
    if let Some(content_location) = input.content_location.as_ref().and_then(Value::build) {
        response = response.header(header::CONTENT_LOCATION, content_location);
    }
    let Ok(response) = response.body(()) else {
        return;
    };
    let none: [cache_policy::StoredResponse; 0] = [];
    let t = common::at(0);
    let decision = policy.after_response(&request, &response, t, t, &none);
    let unsafe_method = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let status = response.status();
    if !unsafe_method || !(status.is_success() || status.is_redirection()) {
        assert!(decision.invalidate.is_empty(), "{:?}", decision.invalidate);
        return;
    }
    let Some(target_uri) = target_uri else {
        assert!(decision.invalidate.is_empty());
        return;
    };
    assert_eq!(decision.invalidate.first(), Some(&target_uri));
    assert!(decision.invalidate.len() <= 3);
    for (i, uri) in decision.invalidate.iter().enumerate() {
        assert_eq!(origin(uri), origin(&target_uri), "{uri} for target {target_uri}");
        assert!(!uri.to_string().contains('#'), "fragment in {uri}");
        if i > 0 {
            assert_ne!(uri, &target_uri);
            assert!(!decision.invalidate[..i].contains(uri), "duplicate {uri}");
        }
    }

    // 3. Resolution against RFC 3986, when one of the two fields is present.
    let fields: Vec<_> = [header::LOCATION, header::CONTENT_LOCATION]
        .into_iter()
        .filter_map(|name| response.headers().get(&name).map(|value| (name, value)))
        .collect();
    let [(name, value)] = fields.as_slice() else {
        return;
    };
    let Ok(reference) = value.to_str() else {
        return;
    };
    let reference = reference.trim();
    if !plain_reference(reference) {
        return;
    }
    let Some(expected) = ref_resolve(&target_uri, reference) else {
        return;
    };
    let Ok(expected) = expected.parse::<Uri>() else {
        return;
    };
    let listed = if origin(&expected) == origin(&target_uri) && expected != target_uri {
        vec![expected.clone()]
    } else {
        Vec::new()
    };
    assert_eq!(
        &decision.invalidate[1..],
        listed.as_slice(),
        "{name}: {reference:?} against {target_uri} resolves to {expected}"
    );
});
