//! RFC 9111 §4.3: validation. Entity tags (RFC 9110 §8.8.3), conditional requests sent to the
//! origin (§4.3.1), conditional requests answered from the cache (§4.3.2) and the choice of
//! stored responses a 304 refreshes (§4.3.4).

use http::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::freshness::{date_value, parse_date};
use crate::syntax::trim_ows;
use crate::{RequestHead, StoredResponse};

/// An entity tag: `W/"xyzzy"` or `"xyzzy"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EntityTag<'a> {
    pub(crate) weak: bool,
    /// The opaque tag, quotes included.
    pub(crate) opaque: &'a [u8],
}

impl<'a> EntityTag<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Option<Self> {
        let bytes = trim_ows(bytes);
        let (weak, opaque) = match bytes.strip_prefix(b"W/") {
            Some(rest) => (true, rest),
            None => (false, bytes),
        };
        let valid = opaque.len() >= 2
            && opaque[0] == b'"'
            && opaque[opaque.len() - 1] == b'"'
            && opaque[1..opaque.len() - 1]
                .iter()
                .all(|&c| c == 0x21 || (0x23..=0x7e).contains(&c) || c >= 0x80);
        valid.then_some(EntityTag { weak, opaque })
    }

    /// The `ETag` of a response, if valid.
    pub(crate) fn of(headers: &'a HeaderMap) -> Option<Self> {
        EntityTag::parse(headers.get(ETAG)?.as_bytes())
    }

    /// RFC 9110 §8.8.3.2 weak comparison: the opaque tags match.
    pub(crate) fn weak_eq(&self, other: &EntityTag<'_>) -> bool {
        self.opaque == other.opaque
    }

    /// RFC 9110 §8.8.3.2 strong comparison: both strong, opaque tags match.
    pub(crate) fn strong_eq(&self, other: &EntityTag<'_>) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }
}

/// The entity tags of an `If-None-Match` list; `None` for `*`.
fn if_none_match_tags(line: &HeaderValue) -> Option<impl Iterator<Item = EntityTag<'_>>> {
    if trim_ows(line.as_bytes()) == b"*" {
        return None;
    }
    Some(split_tags(line.as_bytes()).filter_map(EntityTag::parse))
}

/// Splits a list of entity tags on commas outside quotes (an opaque tag may contain commas).
fn split_tags(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut in_quotes = false;
        let mut end = rest.len();
        for (i, &b) in rest.iter().enumerate() {
            match b {
                b'"' => in_quotes = !in_quotes,
                b',' if !in_quotes => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        let item = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or(&[]);
        Some(item)
    })
}

/// RFC 9111 §4.3.2 with RFC 9110 §13.1.2 and §13.1.3: whether a conditional GET or HEAD is
/// satisfied by a stored response, so the cache answers 304. `None` when the request carries
/// neither `If-None-Match` nor `If-Modified-Since`.
pub(crate) fn client_condition_met(
    request: RequestHead<'_>,
    stored: &StoredResponse,
) -> Option<bool> {
    // Only a stored 200 is evaluated (RFC 9111 §4.3.2), and only for GET and HEAD: for other
    // methods a failed If-None-Match means 412, and If-Modified-Since is ignored (RFC 9110
    // §13.1.2, §13.1.3); such requests are served or forwarded as if unconditional.
    if stored.status != StatusCode::OK
        || !(*request.method == Method::GET || *request.method == Method::HEAD)
    {
        return None;
    }
    let request = request.headers;
    let mut if_none_match = request.get_all(IF_NONE_MATCH).iter().peekable();
    if if_none_match.peek().is_some() {
        let stored_tag = EntityTag::of(&stored.headers);
        for line in if_none_match {
            match if_none_match_tags(line) {
                None => return Some(true),
                Some(mut tags) => {
                    if let Some(stored_tag) = stored_tag {
                        if tags.any(|tag| tag.weak_eq(&stored_tag)) {
                            return Some(true);
                        }
                    }
                }
            }
        }
        return Some(false);
    }
    // If-Modified-Since is evaluated only without If-None-Match (RFC 9110 §13.1.3).
    let since = request.get(IF_MODIFIED_SINCE)?;
    let Some(since) = parse_date(since) else {
        // An invalid date makes the condition ignored (RFC 9110 §13.1.3).
        return None;
    };
    let modified = stored
        .headers
        .get(LAST_MODIFIED)
        .and_then(parse_date)
        .unwrap_or_else(|| date_value(stored));
    Some(modified <= since)
}

/// RFC 9111 §4.3.1: the validators to send when revalidating. `If-None-Match` lists the entity
/// tags of every candidate (the origin may pick any of them); `If-Modified-Since` carries the
/// `Last-Modified` of the selected response.
pub(crate) fn conditional_headers<'a>(
    selected: &StoredResponse,
    candidates: impl Iterator<Item = &'a StoredResponse>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    // The first tag is sent as stored (a reference-counted clone); a list is built only when
    // candidates have several distinct tags.
    let mut first: Option<(&HeaderValue, &[u8])> = None;
    let mut more: Vec<&[u8]> = Vec::new();
    for candidate in candidates {
        if let Some(value) = candidate.headers.get(ETAG) {
            let tag = trim_ows(value.as_bytes());
            if EntityTag::parse(tag).is_none() {
                continue;
            }
            match first {
                None => first = Some((value, tag)),
                Some((_, first_tag)) if first_tag == tag || more.contains(&tag) => {}
                Some(_) => more.push(tag),
            }
        }
    }
    if let Some((value, tag)) = first {
        let value = if more.is_empty() && tag.len() == value.len() {
            Some(value.clone())
        } else {
            let mut joined = tag.to_vec();
            for tag in more {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(tag);
            }
            HeaderValue::from_bytes(&joined).ok()
        };
        if let Some(value) = value {
            headers.insert(IF_NONE_MATCH, value);
        }
    }
    if let Some(last_modified) = selected.headers.get(LAST_MODIFIED) {
        if parse_date(last_modified).is_some() {
            headers.insert(IF_MODIFIED_SINCE, last_modified.clone());
        }
    }
    headers
}

/// Whether a stored response has any validator.
pub(crate) fn has_validator(stored: &StoredResponse) -> bool {
    EntityTag::of(&stored.headers).is_some()
        || stored
            .headers
            .get(LAST_MODIFIED)
            .and_then(parse_date)
            .is_some()
}

fn most_recent<'a>(
    candidates: impl Iterator<Item = (usize, &'a StoredResponse)>,
) -> Option<(usize, &'a StoredResponse)> {
    candidates.max_by_key(|(_, c)| (date_value(c), c.response_time))
}

/// RFC 9111 §4.3.4: which stored responses a 304 (with these headers) refreshes.
pub(crate) fn select_for_update(
    not_modified: &HeaderMap,
    candidates: &[&StoredResponse],
) -> Vec<usize> {
    let new_tag = EntityTag::of(not_modified);
    if let Some(tag) = new_tag.filter(|t| !t.weak) {
        // A strong validator identifies every stored response with the same strong validator;
        // none matching means nothing is updated.
        return candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| EntityTag::of(&c.headers).is_some_and(|s| s.strong_eq(&tag)))
            .map(|(i, _)| i)
            .collect();
    }
    let new_last_modified = not_modified.get(LAST_MODIFIED).and_then(parse_date);
    if new_tag.is_some() || new_last_modified.is_some() {
        // Weak validators: the most recent matching stored response.
        let matching = candidates.iter().copied().enumerate().filter(|(_, c)| {
            let tag_ok = match (new_tag, EntityTag::of(&c.headers)) {
                (Some(new), Some(stored)) => new.weak_eq(&stored),
                (Some(_), None) => false,
                (None, _) => true,
            };
            let modified_ok = match new_last_modified {
                Some(new) => c.headers.get(LAST_MODIFIED).and_then(parse_date) == Some(new),
                None => true,
            };
            tag_ok && modified_ok
        });
        return most_recent(matching).map(|(i, _)| i).into_iter().collect();
    }
    // No validator at all: only a single stored response without validators.
    match candidates {
        [only] if !has_validator(only) => vec![0],
        _ => Vec::new(),
    }
}

/// RFC 9111 §4.3.5: whether a 200 response to HEAD is consistent with a stored GET response:
/// every validator it carries matches, and so does its `Content-Length` if present.
pub(crate) fn head_matches(head: &HeaderMap, stored: &StoredResponse) -> bool {
    let same = |name: http::HeaderName| match head.get(&name) {
        None => true,
        Some(value) => stored.headers.get(&name) == Some(value),
    };
    same(ETAG) && same(LAST_MODIFIED) && same(http::header::CONTENT_LENGTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc9110_8_8_3_entity_tag_syntax_and_comparison() {
        let strong = EntityTag::parse(b"\"xyzzy\"").unwrap();
        let weak = EntityTag::parse(b"W/\"xyzzy\"").unwrap();
        assert!(!strong.weak && weak.weak);
        assert!(strong.weak_eq(&weak));
        assert!(!strong.strong_eq(&weak));
        assert!(strong.strong_eq(&strong));
        assert!(EntityTag::parse(b"xyzzy").is_none());
        assert!(EntityTag::parse(b"\"a\"b\"").is_none());
        assert!(EntityTag::parse(b"\"").is_none());
    }

    #[test]
    fn split_tags_keeps_commas_inside_quotes() {
        let tags: Vec<_> = split_tags(b"\"a,b\", W/\"c\"").collect();
        assert_eq!(tags, [&b"\"a,b\""[..], &b" W/\"c\""[..]]);
    }
}
