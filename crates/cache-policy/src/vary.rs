//! RFC 9111 §4.1: calculating cache keys with the `Vary` header field.

use http::header::VARY;
use http::{HeaderMap, HeaderValue};

use crate::syntax::{is_token, trim_ows};
use crate::{NotStorable, StoredResponse};

/// The members of a comma-separated list spread over several field lines, with optional
/// whitespace around each member removed and empty members skipped (RFC 9110 §5.6.1).
///
/// Comparing two fields member by member is the whitespace-normalized, line-combining comparison
/// that RFC 9111 §4.1 allows.
pub(crate) fn list_members<'a>(
    lines: impl Iterator<Item = &'a http::HeaderValue> + 'a,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    lines
        .flat_map(|line| line.as_bytes().split(|&b| b == b','))
        .map(trim_ows)
        .filter(|member| !member.is_empty())
}

/// The field names listed by every `Vary` line of `headers`, as written (compare them
/// case-insensitively).
pub(crate) fn vary_names(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    list_members(headers.get_all(VARY).iter())
}

/// Why a response's `Vary` can never match a later request, if it cannot: `Vary: *` (RFC 9111
/// §4.1), or a member that is not a field name, which no request can be compared on either
/// ([`matches`]). Such a response is not worth storing.
pub(crate) fn unmatchable(headers: &HeaderMap) -> Option<NotStorable> {
    let mut reason = None;
    for name in vary_names(headers) {
        if name == b"*" {
            return Some(NotStorable::VaryStar);
        }
        if !is_field_name(name) {
            reason = Some(NotStorable::InvalidVary);
        }
    }
    reason
}

/// A field name (RFC 9110 §5.1: a token); `*` is not one here.
fn is_field_name(name: &[u8]) -> bool {
    name != b"*" && is_token(name)
}

/// Whether two sets of field lines for one field carry the same values.
fn same_values(
    stored: http::header::GetAll<'_, HeaderValue>,
    presented: http::header::GetAll<'_, HeaderValue>,
) -> bool {
    let (mut a, mut b) = (stored.iter(), presented.iter());
    match (a.next(), b.next()) {
        (None, None) => return true,
        // "If a header field is absent from a request, it can only match another request if
        // it is also absent there" (§4.1), even when present with an empty value.
        (None, Some(_)) | (Some(_), None) => return false,
        // The usual case, one identical line on both sides, needs no normalization.
        (Some(x), Some(y)) if x == y && a.next().is_none() && b.next().is_none() => return true,
        _ => {}
    }
    let mut stored = list_members(stored.iter());
    let mut presented = list_members(presented.iter());
    loop {
        match (stored.next(), presented.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == b => continue,
            _ => return false,
        }
    }
}

/// Whether the values of one selecting header field are the same in two requests.
fn same_field(name: &[u8], stored: &HeaderMap, presented: &HeaderMap) -> bool {
    // The stored selecting fields are few and already parsed: finding the name among them
    // avoids parsing it again for each lookup in both maps.
    if let Some(key) = stored
        .keys()
        .find(|key| key.as_str().as_bytes().eq_ignore_ascii_case(name))
    {
        return same_values(stored.get_all(key), presented.get_all(key));
    }
    // Absent from the stored request: it must be absent from this one too.
    std::str::from_utf8(name).is_ok_and(|name| !presented.contains_key(name))
}

/// RFC 9111 §4.1: whether the selecting header fields of the request that produced `stored`
/// match those of the presented request. `Vary: *` never matches, nor does a member that is
/// not a field name; field names compare case-insensitively; values compare after removing
/// whitespace around list members and combining field lines.
pub(crate) fn matches(stored: &StoredResponse, presented: &HeaderMap) -> bool {
    // Plain loops rather than `vary_names`: this runs for every candidate of every lookup.
    for line in stored.headers.get_all(VARY) {
        for member in line.as_bytes().split(|&b| b == b',') {
            let name = trim_ows(member);
            if name.is_empty() {
                continue;
            }
            if !(is_field_name(name) && same_field(name, &stored.vary_request_headers, presented)) {
                return false;
            }
        }
    }
    true
}

/// The request header fields named by the response's `Vary`, copied from the request: what a
/// [`StoredResponse`] keeps in `vary_request_headers`.
pub(crate) fn selecting_headers(response_headers: &HeaderMap, request: &HeaderMap) -> HeaderMap {
    let mut selected = HeaderMap::new();
    for name in vary_names(response_headers) {
        let Ok(name) = http::HeaderName::from_bytes(name) else {
            continue;
        };
        if selected.contains_key(&name) {
            continue;
        }
        for value in request.get_all(&name) {
            selected.append(name.clone(), value.clone());
        }
    }
    selected
}

impl StoredResponse {
    /// A canonical byte string identifying this response's variant: its `Vary` field names
    /// (lowercased, sorted, without duplicates) with the normalized request values it was
    /// selected by. Responses without `Vary` share the empty key; two stored responses with the
    /// same key answer exactly the same requests, so the newer replaces the older.
    ///
    /// The encoding is stable: stores may persist it or hash it into file names.
    pub fn variant_key(&self) -> Vec<u8> {
        let mut names: Vec<Vec<u8>> = vary_names(&self.headers)
            .map(|name| name.to_ascii_lowercase())
            .collect();
        if names.is_empty() {
            return Vec::new();
        }
        names.sort();
        names.dedup();
        let mut key = Vec::new();
        for name in names {
            key.extend_from_slice(&name);
            key.push(b'\n');
            let Ok(name) = std::str::from_utf8(&name) else {
                continue;
            };
            let mut values = self.vary_request_headers.get_all(name).iter().peekable();
            if values.peek().is_none() {
                key.push(0);
            } else {
                key.push(1);
                for (i, member) in list_members(values).enumerate() {
                    if i > 0 {
                        key.push(b',');
                    }
                    key.extend_from_slice(member);
                }
            }
            key.push(b'\n');
        }
        key
    }
}
