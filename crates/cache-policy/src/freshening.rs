//! RFC 9111 §4.3.3 to §4.3.5: freshening stored responses with the header lines of a 304 to a
//! conditional request or of a 200 to HEAD.

use std::time::SystemTime;

use http::header::{self, AUTHORIZATION};
use http::HeaderMap;

use crate::decision::{NotStorable, ResponseAction, Update};
use crate::directives::ResponseDirectives;
use crate::freshness::date_value;
use crate::headers::{http_date, update_stored_headers};
use crate::parsed::ParsedResponse;
use crate::{validation, vary, CachePolicy, RequestHead, ResponseHead, StoredResponse};

/// A stored response freshened by a 304 or a HEAD response.
struct Freshened {
    /// What the client whose request brought the new header lines receives.
    served: ParsedResponse,
    /// What is written back for later requests, if storing allows it.
    update: Option<Update>,
}

fn is_conditional(headers: &HeaderMap) -> bool {
    headers.contains_key(header::IF_NONE_MATCH) || headers.contains_key(header::IF_MODIFIED_SINCE)
}

impl CachePolicy {
    /// RFC 9111 §4.3.3 and §4.3.4: a 304 from the origin.
    pub(crate) fn on_not_modified(
        &self,
        request: RequestHead<'_>,
        response: ResponseHead<'_>,
        request_time: SystemTime,
        response_time: SystemTime,
        usable: &[(usize, &StoredResponse)],
    ) -> ResponseAction {
        let stored: Vec<&StoredResponse> = usable.iter().map(|(_, c)| *c).collect();
        let mut selected = validation::select_for_update(response.headers, &stored);
        if selected.is_empty()
            && response.headers.get(header::ETAG).is_none()
            && response.headers.get(header::LAST_MODIFIED).is_none()
        {
            // A bare 304 (RFC 9110 §15.4.5 does not require a 304 to repeat Last-Modified, and
            // common servers omit it) answers the conditional request built from the stored
            // response this request selects: that one is validated. The strict reading of
            // §4.3.4 would refetch instead, for nothing.
            selected.extend(
                stored
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| vary::matches(c, request.headers))
                    .max_by_key(|(_, c)| (date_value(c), c.response_time))
                    .map(|(i, _)| i),
            );
        }
        let freshened: Vec<(usize, Freshened)> = selected
            .into_iter()
            .map(|i| {
                let (index, candidate) = usable[i];
                let freshened = self.freshen(
                    request,
                    index,
                    candidate,
                    response.headers,
                    request_time,
                    response_time,
                );
                (index, freshened)
            })
            .collect();
        // Serve the most recent refreshed response that matches this request. When none does,
        // the origin still selected one of them for this request (the validators it was sent
        // cover every candidate, §4.3.1): that one answers it (§4.3.3), as the most recent.
        let most_recent =
            |(_, f): &&(usize, Freshened)| (date_value(&f.served), f.served.response_time);
        let chosen = freshened
            .iter()
            .filter(|(_, f)| vary::matches(&f.served, request.headers))
            .max_by_key(most_recent)
            .or_else(|| freshened.iter().max_by_key(most_recent));
        match chosen {
            Some((index, chosen)) => {
                let served = &chosen.served;
                let freshness = self.freshness_of(served, served.facts(), response_time);
                let serve = self.serve_or_not_modified(request, *index, served, freshness);
                let head = serve.response_head(served);
                let updates = freshened
                    .into_iter()
                    .filter_map(|(_, f)| f.update)
                    .collect();
                ResponseAction::Refresh {
                    updates,
                    serve,
                    head,
                }
            }
            None if is_conditional(request.headers) => {
                ResponseAction::PassThrough(NotStorable::Status)
            }
            None => ResponseAction::Refetch,
        }
    }

    /// RFC 9111 §4.3.5: a 200 response to HEAD refreshes or invalidates stored GET responses.
    pub(crate) fn on_head(
        &self,
        request: RequestHead<'_>,
        response: ResponseHead<'_>,
        request_time: SystemTime,
        response_time: SystemTime,
        usable: &[(usize, &StoredResponse)],
    ) -> ResponseAction {
        let mut updates = Vec::new();
        let mut remove = Vec::new();
        if self.options.shared && request.headers.contains_key(AUTHORIZATION) {
            // §3.5: what a request with credentials learns changes nothing that other clients
            // get, unless the response allows a shared cache to reuse it.
            let cc = ResponseDirectives::parse(response.headers.get_all(header::CACHE_CONTROL));
            if !(cc.must_revalidate || cc.public || cc.s_maxage.is_some()) {
                return ResponseAction::UpdateFromHead { updates, remove };
            }
        }
        for &(index, candidate) in usable {
            if !vary::matches(candidate, request.headers) {
                continue;
            }
            if validation::head_matches(response.headers, candidate) {
                let freshened = self.freshen(
                    request,
                    index,
                    candidate,
                    response.headers,
                    request_time,
                    response_time,
                );
                updates.extend(freshened.update);
            } else {
                remove.push(index);
            }
        }
        ResponseAction::UpdateFromHead { updates, remove }
    }

    /// RFC 9111 §3.2, §4.3.4: `stored` with the header lines of a 304 (or of a HEAD
    /// response, §4.3.5) and the new exchange's times.
    fn freshen(
        &self,
        request: RequestHead<'_>,
        index: usize,
        stored: &StoredResponse,
        new_headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Freshened {
        let mut entry = stored.clone();
        update_stored_headers(&mut entry.headers, new_headers);
        if !new_headers.contains_key(header::DATE) {
            // The stored Date would make the refreshed response look old (RFC 9110 §6.6.1).
            entry.headers.insert(header::DATE, http_date(response_time));
        }
        if !new_headers.contains_key(header::AGE) {
            // The Age of the old exchange does not apply to the new one.
            entry.headers.remove(header::AGE);
            crate::headers::reserve_age(&mut entry.headers);
        }
        entry.request_time = request_time;
        entry.response_time = response_time;
        let served = ParsedResponse::new(entry);
        let update = self.update_to_store(request, index, &served);
        Freshened { served, update }
    }
}
