//! Primary cache keys (RFC 9111 §2: "the request method and target URI", where the method
//! part is handled by the policy, which knows which stored methods answer which requests).

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
    let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
    let host = uri.host().unwrap_or_default().to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    let mut key = String::with_capacity(scheme.len() + host.len() + uri.path().len() + 16);
    key.push_str(&scheme);
    key.push_str("://");
    key.push_str(&host);
    if let Some(port) = uri.port_u16().filter(|p| Some(*p) != default_port) {
        key.push(':');
        key.push_str(&port.to_string());
    }
    key.push_str(uri.path());
    if let Some(query) = uri.query() {
        key.push('?');
        key.push_str(query);
    }
    key
}
