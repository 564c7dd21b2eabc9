//! RFC 9111 §3.1 (storing header fields) and §3.2 (updating stored header fields).

use std::fmt::Write;
use std::time::SystemTime;

use bytes::BytesMut;
use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;

use crate::directives::ResponseDirectives;
use crate::parsed::Scan;
use crate::vary::list_members;

/// Fields that apply to one connection or one proxy hop and are never stored or replayed
/// (RFC 9111 §3.1; RFC 9110 §7.6.1 and §11.7).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authentication-info",
    "proxy-authorization",
];

/// Fields a 304 must not change in a stored response, because the stored body depends on them
/// (RFC 9111 §3.2: `Content-Length` always; the content coding and range of the stored bytes
/// "to assure integrity of the stored response").
const BODY_DEPENDENT: [HeaderName; 3] = [
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
];

/// The names listed by `Connection`, which are hop-by-hop too (RFC 9110 §7.6.1).
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    list_members(headers.get_all(header::CONNECTION).iter())
        .filter_map(|name| HeaderName::from_bytes(name).ok())
        .collect()
}

/// Removes the hop-by-hop fields; says whether there were any.
fn remove_hop_by_hop(headers: &mut HeaderMap) -> bool {
    // Most responses carry none of these: one pass over the names saves the removals.
    if !headers
        .keys()
        .any(|name| HOP_BY_HOP.contains(&name.as_str()))
    {
        return false;
    }
    for name in connection_listed(headers) {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    true
}

/// Whether a field may be carried from a 304 (or a HEAD response) into a stored response.
fn is_updatable(name: &HeaderName, connection: &[HeaderName]) -> bool {
    !HOP_BY_HOP.contains(&name.as_str())
        && !BODY_DEPENDENT.contains(name)
        && !connection.contains(name)
}

/// The header lines to store for a response (RFC 9111 §3.1): hop-by-hop and
/// `Connection`-listed fields removed, fields named by a qualified `no-cache` removed, fields
/// named by a qualified `private` removed in a shared cache, `Set-Cookie` removed when
/// `strip_cookies`, a `Date` added when the origin sent none (RFC 9110 §6.6.1), and `Age: 0`
/// when it sent no `Age`. Repeated fields stay separate lines in their order.
///
/// `scan` is what `Facts::scan` found in `response`.
pub(crate) fn headers_to_store(
    response: &HeaderMap,
    cc: &ResponseDirectives,
    shared: bool,
    strip_cookies: bool,
    scan: &Scan<'_>,
    response_time: SystemTime,
) -> HeaderMap {
    // A copy with room for the `Date` and `Age` this function may add: a clone has no spare
    // room, and growing it (new indices, the entries moved) was a tenth of a miss.
    let mut headers = match HeaderMap::try_with_capacity(response.len() + 2) {
        Ok(mut headers) => {
            for (name, value) in response {
                headers.append(name.clone(), value.clone());
            }
            headers
        }
        // More lines than a map can reserve room for (about 24 000): a plain copy, which
        // `HeaderMap` grows as it can.
        Err(_) => response.clone(),
    };
    let mut removed = remove_hop_by_hop(&mut headers);
    for name in cc.no_cache.fields() {
        removed |= headers.remove(name).is_some();
    }
    if shared {
        for name in cc.private.fields() {
            removed |= headers.remove(name).is_some();
        }
    }
    if strip_cookies {
        headers.remove(header::SET_COOKIE);
    }
    // A removal may have taken `Date` or `Age` (`Connection: date`, `no-cache="age"`): then
    // look again at what is left.
    let (valid_date, age) = if removed {
        (
            scan.valid_date && headers.contains_key(header::DATE),
            headers.contains_key(header::AGE),
        )
    } else {
        (scan.valid_date, scan.age)
    };
    // RFC 9110 §6.6.1: a cache adds a missing `Date`, and may replace an invalid one with the
    // time the response was received, so that what it serves is a valid HTTP-date.
    if !valid_date {
        headers.insert(header::DATE, http_date(response_time));
    }
    if !age {
        headers.insert(header::AGE, HeaderValue::from_static("0"));
    }
    headers
}

/// Replaces every value of `headers` by a copy of its bytes, all copies in one new buffer (one
/// allocation), so that the map keeps no memory of the message its values came from.
pub(crate) fn copy_values(headers: &mut HeaderMap) {
    if headers.is_empty() {
        return;
    }
    let mut buffer = BytesMut::with_capacity(headers.values().map(HeaderValue::len).sum());
    for value in headers.values() {
        buffer.extend_from_slice(value.as_bytes());
    }
    let mut rest = buffer.freeze();
    for value in headers.values_mut() {
        let bytes = rest.split_to(value.len());
        // The bytes are those of a valid value, so the copy is valid; were it not, the value
        // would stay as it is.
        if let Ok(mut copy) = HeaderValue::from_maybe_shared(bytes) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
    }
}

/// An absent `Age` is stored as `Age: 0`: the same `age_value` (RFC 9111 §4.2.3 reads a
/// missing Age as 0), and a slot that serving overwrites in place, so that the served copy of
/// the headers never has to grow.
pub(crate) fn reserve_age(headers: &mut HeaderMap) {
    if !headers.contains_key(header::AGE) {
        headers.insert(header::AGE, HeaderValue::from_static("0"));
    }
}

/// RFC 9111 §3.2: updates stored header lines with those of a 304 (or of a HEAD response,
/// §4.3.5). Every field the new response carries replaces all lines of that field; repeated
/// fields arrive as separate lines and stay so.
pub(crate) fn update_stored_headers(stored: &mut HeaderMap, new: &HeaderMap) {
    let connection = connection_listed(new);
    for name in new.keys() {
        if !is_updatable(name, &connection) {
            continue;
        }
        stored.remove(name);
        for value in new.get_all(name) {
            stored.append(name.clone(), value.clone());
        }
    }
}

/// The length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
const IMF_FIXDATE_LEN: usize = 29;

/// The last instant an IMF-fixdate can express: 9999-12-31T23:59:59Z.
const LAST_HTTP_DATE: u64 = 253_402_300_799;

/// An IMF-fixdate (RFC 9110 §5.6.7). Times outside what the format can express (before 1970 or
/// after 9999) are clamped: `httpdate` panics on them, and the times come from the caller.
pub(crate) fn http_date(time: SystemTime) -> HeaderValue {
    let last = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(LAST_HTTP_DATE);
    let time = time.clamp(SystemTime::UNIX_EPOCH, last);
    // Written straight into the value's bytes: one allocation, where formatting a `String`
    // and copying it into the value made two. An IMF-fixdate is 29 bytes, and always a valid
    // header value.
    let mut date = BytesMut::with_capacity(IMF_FIXDATE_LEN);
    match write!(date, "{}", httpdate::HttpDate::from(time)) {
        Ok(()) => HeaderValue::from_maybe_shared(date.freeze()),
        Err(_) => HeaderValue::from_str(&httpdate::fmt_http_date(time)),
    }
    .unwrap_or_else(|_| HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `headers_to_store` with the scan its caller would have made.
    fn stored_lines(
        response: &HeaderMap,
        cc: &ResponseDirectives,
        shared: bool,
        response_time: SystemTime,
    ) -> HeaderMap {
        let scan = crate::parsed::Facts::scan(response, response_time, response_time);
        headers_to_store(response, cc, shared, false, &scan, response_time)
    }

    fn map(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn rfc9111_3_1_hop_by_hop_and_connection_listed_fields_are_not_stored() {
        let response = map(&[
            ("connection", "x-session, close"),
            ("x-session", "abc"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("proxy-authenticate", "Basic"),
            ("content-type", "text/plain"),
            ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        let stored = stored_lines(
            &response,
            &ResponseDirectives::default(),
            false,
            SystemTime::UNIX_EPOCH,
        );
        let names: Vec<_> = stored.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["content-type", "date", "age"]);
    }

    #[test]
    fn a_response_with_more_lines_than_a_map_reserves_is_stored_whole() {
        // `HeaderMap::with_capacity` panics past about 24 000; the copy must not.
        let mut response = map(&[("date", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        for _ in 0..25_000 {
            response.append("x-a", HeaderValue::from_static("1"));
        }
        let stored = stored_lines(
            &response,
            &ResponseDirectives::default(),
            false,
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(stored.get_all("x-a").iter().count(), 25_000);
        assert_eq!(stored.get_all("age").iter().count(), 1);
    }

    #[test]
    fn rfc9111_3_1_repeated_fields_stay_separate_lines() {
        let response = map(&[
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("link", "</a>; rel=preload"),
            ("link", "</b>; rel=preload"),
        ]);
        let stored = stored_lines(
            &response,
            &ResponseDirectives::default(),
            false,
            SystemTime::UNIX_EPOCH,
        );
        let cookies: Vec<_> = stored.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(stored.get_all("link").iter().count(), 2);
    }

    #[test]
    fn rfc9110_6_6_1_date_added_when_a_valid_one_is_removed_as_connection_listed() {
        let response = map(&[
            ("connection", "date"),
            ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_778);
        let stored = stored_lines(&response, &ResponseDirectives::default(), false, time);
        assert_eq!(stored["date"], "Sun, 06 Nov 1994 08:49:38 GMT");
    }

    #[test]
    fn rfc9110_6_6_1_date_added_when_missing() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let stored = stored_lines(
            &HeaderMap::new(),
            &ResponseDirectives::default(),
            false,
            time,
        );
        assert_eq!(stored["date"], "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn rfc9110_5_6_7_http_date_is_an_imf_fixdate_clamped_to_what_it_can_express() {
        let cases = [
            (SystemTime::UNIX_EPOCH, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (
                SystemTime::UNIX_EPOCH - Duration::from_secs(1),
                "Thu, 01 Jan 1970 00:00:00 GMT",
            ),
            (
                SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777),
                "Sun, 06 Nov 1994 08:49:37 GMT",
            ),
            (
                SystemTime::UNIX_EPOCH + Duration::from_secs(LAST_HTTP_DATE + 86_400),
                "Fri, 31 Dec 9999 23:59:59 GMT",
            ),
        ];
        for (time, expected) in cases {
            let value = http_date(time);
            assert_eq!(value, expected);
            assert_eq!(value.len(), IMF_FIXDATE_LEN);
        }
    }

    #[test]
    fn rfc9111_5_2_2_qualified_no_cache_and_private_fields_are_stripped() {
        let response = map(&[
            (
                "cache-control",
                r#"max-age=60, no-cache="set-cookie", private="x-user""#,
            ),
            ("set-cookie", "a=1"),
            ("x-user", "alice"),
            ("etag", "\"1\""),
        ]);
        let cc = ResponseDirectives::parse(response.get_all("cache-control"));
        let private = stored_lines(&response, &cc, false, SystemTime::UNIX_EPOCH);
        assert!(!private.contains_key("set-cookie"));
        assert!(
            private.contains_key("x-user"),
            "a private cache may keep private fields"
        );
        let shared = stored_lines(&response, &cc, true, SystemTime::UNIX_EPOCH);
        assert!(!shared.contains_key("set-cookie") && !shared.contains_key("x-user"));
        assert!(shared.contains_key("etag"));
    }

    #[test]
    fn rfc9111_3_2_update_replaces_fields_keeps_body_dependent_ones() {
        let mut stored = map(&[
            ("content-length", "10"),
            ("content-encoding", "gzip"),
            ("cache-control", "max-age=1"),
            ("link", "</old>"),
            ("x-kept", "yes"),
        ]);
        let not_modified = map(&[
            ("content-length", "0"),
            ("content-encoding", "br"),
            ("cache-control", "max-age=60"),
            ("link", "</a>"),
            ("link", "</b>"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
        ]);
        update_stored_headers(&mut stored, &not_modified);
        assert_eq!(stored["content-length"], "10");
        assert_eq!(stored["content-encoding"], "gzip");
        assert_eq!(stored["cache-control"], "max-age=60");
        let links: Vec<_> = stored.get_all("link").iter().collect();
        assert_eq!(links, ["</a>", "</b>"]);
        assert_eq!(stored["x-kept"], "yes");
        assert!(!stored.contains_key("x-hop") && !stored.contains_key("connection"));
    }
}
