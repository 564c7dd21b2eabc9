//! Primary cache keys (RFC 9111 §2: "the request method and target URI", where the method
//! part is handled by the policy, which knows which stored methods answer which requests).

use std::fmt::Write as _;

use http::Uri;

/// The default primary key: the target URI's scheme and host in lowercase, the port unless it
/// is the scheme's default, the path and the query. The method is not part of the key: a stored
/// GET answers HEAD too, and the policy checks methods.
///
/// ```
/// use http::Uri;
/// use tower_http_cache::default_key;
///
/// assert_eq!(
///     default_key(&Uri::from_static("HTTP://Example.COM:80/a/b?q=1")),
///     "http://example.com/a/b?q=1"
/// );
/// assert_eq!(
///     default_key(&Uri::from_static("https://example.com:8443/")),
///     "https://example.com:8443/"
/// );
/// ```
pub fn default_key(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.host().unwrap_or_default();
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else {
        None
    };
    let path = uri.path();
    let query = uri.query();
    let mut key = String::with_capacity(
        scheme.len() + host.len() + path.len() + query.map_or(0, |q| q.len() + 1) + 10,
    );
    push_lowercase(&mut key, scheme);
    key.push_str("://");
    push_lowercase(&mut key, host);
    if let Some(port) = uri.port_u16().filter(|p| Some(*p) != default_port) {
        // Writing into the key allocates nothing more.
        let _ = write!(key, ":{port}");
    }
    key.push_str(path);
    if let Some(query) = query {
        key.push('?');
        key.push_str(query);
    }
    key
}

/// Appends `s` in ASCII lowercase (schemes and hosts compare case-insensitively, RFC 3986
/// §6.2.2.1), without a temporary string.
fn push_lowercase(key: &mut String, s: &str) {
    let start = key.len();
    key.push_str(s);
    key[start..].make_ascii_lowercase();
}
