//! What an [`Exchange`](crate::Exchange) tells its driver to do.

use std::sync::Arc;
use std::time::Duration;

use http::{StatusCode, Uri};

use crate::{CacheStatus, ParsedResponse};

/// One of the stored responses an exchange was given, named by the exchange: look it up with
/// [`Exchange::candidate`](crate::Exchange::candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CandidateId(pub(crate) usize);

/// What to do once the stored responses for the key are known
/// ([`Exchange::on_stored`](crate::Exchange::on_stored)).
#[must_use]
#[derive(Debug)]
pub enum Next {
    /// Answer with this, from the cache; the exchange is over.
    Reply(Reply),
    /// RFC 5861 §3: answer with this stale response, then refresh it in the background: send
    /// the request (prepared by [`Exchange::depart`](crate::Exchange::depart)) and feed the
    /// origin's answer to the exchange as for [`Next::Forward`]. The client has its answer
    /// already; the refresh's response is only stored, never served.
    ReplyAndRefresh(Reply),
    /// Send the request to the origin, prepared by
    /// [`Exchange::depart`](crate::Exchange::depart), and feed its answer to
    /// [`Exchange::on_response`](crate::Exchange::on_response) (or its failure to
    /// [`Exchange::on_error`](crate::Exchange::on_error)).
    Forward {
        /// Whether the request may join other requests for the same key already at the
        /// origin and reuse what they store. False when its answer cannot serve others: a
        /// method that is never stored, a mode that does not store, a forced reuse.
        coalesce: bool,
    },
}

/// The response the client gets, and the cache's account of it.
#[must_use]
#[derive(Debug)]
pub struct Reply {
    /// Where the response comes from.
    pub respond: Respond,
    /// What the cache did, for `Cache-Status` (RFC 9211) and the response's metadata.
    pub status: CacheStatus,
}

/// Where a response comes from.
#[derive(Debug)]
pub enum Respond {
    /// The origin's response, as it came (teed into the store when
    /// [`Effects::store`] says so).
    Origin,
    /// A stored response: send `head`, and the stored body of `body` (none for a 304 or a
    /// HEAD request).
    Stored {
        /// The status and header lines to send (with `Age`, RFC 9111 §5.1).
        head: http::response::Parts,
        /// The candidate whose stored body goes with the head.
        body: Option<CandidateId>,
    },
    /// An answer the cache makes itself, with an empty body: 504 for `only-if-cached` or an
    /// origin that timed out, 502 for a 304 that cannot be used.
    Generated(StatusCode),
}

/// The store calls an origin's answer asks for: first the invalidations (RFC 9111 §4.4), then
/// the write, the freshenings and the removals.
#[must_use]
#[derive(Debug, Default)]
pub struct Effects {
    /// Target URIs whose stored responses to remove, under the keys the cache derives from
    /// them: an unsafe method succeeded (§4.4).
    pub invalidate: Vec<Uri>,
    /// Whether to remove what is stored under this exchange's own key too: an unsafe request
    /// that succeeded with a key chosen by the caller, which names the same resource.
    pub invalidate_own_key: bool,
    /// Store the origin's response (its body as it streams to the client). Not boxed: most
    /// answers a driver acts on are a stored miss, which would allocate the box every time.
    pub store: Option<StoreResponse>,
    /// Freshen stored responses with new metadata, keeping their bodies (§4.3.4, §4.3.5).
    pub freshen: Vec<Freshen>,
    /// Remove stored responses a HEAD response contradicts (§4.3.5).
    pub remove: Vec<CandidateId>,
}

impl Effects {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.invalidate.is_empty()
            && !self.invalidate_own_key
            && self.store.is_none()
            && self.freshen.is_empty()
            && self.remove.is_empty()
    }
}

/// The origin's response to store under the exchange's key.
#[derive(Debug)]
pub struct StoreResponse {
    /// The metadata to store beside the body (with the TTL override applied).
    pub entry: Arc<ParsedResponse>,
    /// The physical TTL of the entry.
    pub ttl: Duration,
    /// The body length the response announced, if any.
    pub content_length: Option<u64>,
    /// Stored responses to remove once it is stored: those it supersedes, and the least
    /// recently stored beyond the variant cap. A store that keeps one entry per variant may
    /// find the new response among them (same variant): it overwrites that one instead.
    pub superseded: Vec<CandidateId>,
}

/// A stored response to freshen (RFC 9111 §4.3.4): write `entry` over it, keeping its body.
#[derive(Debug)]
pub struct Freshen {
    /// The stored response to freshen.
    pub candidate: CandidateId,
    /// Its new metadata: merged header lines and new request and response times.
    pub entry: Arc<ParsedResponse>,
    /// Its new physical TTL.
    pub ttl: Duration,
}

/// What to do with the origin's answer ([`Exchange::on_response`](crate::Exchange::on_response)).
#[must_use]
#[derive(Debug)]
pub struct Answer {
    /// What the client gets.
    pub reply: Reply,
    /// The store calls to make, before the reply when it is a stored response.
    pub effects: Effects,
}
