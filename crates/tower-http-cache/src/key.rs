//! Primary cache keys (RFC 9111 §2: "the request method and target URI", where the method
//! part is handled by the policy, which knows which stored methods answer which requests).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::Arc;

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
    let mut key = String::new();
    write_default_key(uri, &mut key);
    key
}

/// [`default_key`] as the shared string a request's cache status carries, built in a
/// per-thread buffer so that the key costs one allocation.
pub(crate) fn shared_default_key(uri: &Uri) -> Arc<str> {
    thread_local! {
        static BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
    }
    let shared = BUFFER.try_with(|buffer| {
        let mut buffer = buffer.try_borrow_mut().ok()?;
        buffer.clear();
        write_default_key(uri, &mut buffer);
        Some(Arc::from(buffer.as_str()))
    });
    // Without the buffer (a thread being torn down): the plain way.
    shared
        .ok()
        .flatten()
        .unwrap_or_else(|| Arc::from(default_key(uri)))
}

fn write_default_key(uri: &Uri, key: &mut String) {
    let scheme = uri.scheme_str().unwrap_or("http");
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else {
        None
    };
    let path = uri.path();
    let query = uri.query();
    key.reserve(
        scheme.len()
            + 3
            + uri.authority().map_or(0, |a| a.as_str().len())
            + path.len()
            + query.map_or(0, |q| q.len() + 1),
    );
    push_lowercase(key, scheme);
    key.push_str("://");
    match uri.authority() {
        // The common authority, a host without user information or port, is written as it is
        // (an IPv6 literal, which has colons, takes the general way below).
        Some(authority) if !authority.as_str().bytes().any(|b| b == b'@' || b == b':') => {
            push_lowercase(key, authority.as_str());
        }
        _ => {
            push_lowercase(key, uri.host().unwrap_or_default());
            if let Some(port) = uri.port_u16().filter(|p| Some(*p) != default_port) {
                // Writing into the key allocates nothing more.
                let _ = write!(key, ":{port}");
            }
        }
    }
    key.push_str(path);
    if let Some(query) = query {
        key.push('?');
        key.push_str(query);
    }
}

/// Appends `s` in ASCII lowercase (schemes and hosts compare case-insensitively, RFC 3986
/// §6.2.2.1), without a temporary string.
fn push_lowercase(key: &mut String, s: &str) {
    let start = key.len();
    key.push_str(s);
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        key[start..].make_ascii_lowercase();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_key_normalizes_scheme_host_and_default_port() {
        for (uri, key) in [
            (
                "HTTP://Example.COM:80/a/b?q=1",
                "http://example.com/a/b?q=1",
            ),
            ("http://example.com", "http://example.com/"),
            ("https://example.com:443/x", "https://example.com/x"),
            ("https://example.com:8443/", "https://example.com:8443/"),
            ("http://example.com:443/", "http://example.com:443/"),
            (
                "http://user:pw@Example.com:80/p?Q=A",
                "http://example.com/p?Q=A",
            ),
            ("http://user@example.com:8080/", "http://example.com:8080/"),
            ("http://[::1]:80/v6", "http://[::1]/v6"),
            ("http://[::1]:8080/v6", "http://[::1]:8080/v6"),
            ("http://127.0.0.1:3000/?", "http://127.0.0.1:3000/?"),
            ("http://example.com:080/", "http://example.com/"),
            ("http://[::1]/", "http://[::1]/"),
            ("http://example.com?x", "http://example.com/?x"),
            ("http://example.com:/x", "http://example.com/x"),
            ("http://example.com:08080/x", "http://example.com:8080/x"),
            ("http://example.com:0080/x", "http://example.com/x"),
        ] {
            let uri = Uri::try_from(uri).expect("uri");
            assert_eq!(default_key(&uri), key, "{uri}");
            assert_eq!(&*shared_default_key(&uri), key, "{uri}");
        }
    }
}
