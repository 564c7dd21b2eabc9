//! What a read returns: [`Entries`], a shared list of [`StoredEntry`].

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cache_policy::{Candidate, ParsedResponse, StoredResponse};

use crate::{StoredBody, VariantId};

/// One complete variant read from a store: its metadata and its body.
///
/// The body belongs to exactly this version of the variant: if the variant is replaced or
/// removed after [`Store::get`](crate::Store::get) returned, reading the body still yields this
/// version's bytes or an error, never another version's bytes.
///
/// ```
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use cache_store::{StoredBody, StoredEntry, StoredResponse, VariantId};
/// # use std::time::SystemTime;
/// # use http::{HeaderMap, Method, StatusCode, Uri};
/// # let response = StoredResponse {
/// #     method: Method::GET, uri: Uri::from_static("http://example.com/"),
/// #     status: StatusCode::OK, headers: HeaderMap::new(), vary_request_headers: HeaderMap::new(),
/// #     request_time: SystemTime::UNIX_EPOCH, response_time: SystemTime::UNIX_EPOCH,
/// # };
///
/// let body = StoredBody::full(Bytes::from_static(b"hello"));
/// let entry = StoredEntry::new(VariantId::of(&response), Arc::new(response.into()), body);
/// // A body held in memory can be read by every reader of the entry.
/// assert!(entry.body().is_some());
/// assert!(entry.body().is_some());
/// ```
pub struct StoredEntry {
    /// Which variant of the primary key this is.
    pub variant: VariantId,
    /// The stored response metadata, parsed once for the policy's lookups and shared: a memory
    /// store hands out the same allocation to every reader. It dereferences to the
    /// [`StoredResponse`].
    pub response: Arc<ParsedResponse>,
    body: EntryBody,
}

enum EntryBody {
    /// Held in memory: every reader gets the same bytes, without a copy.
    Bytes(Bytes),
    /// Streamed from storage (an open file, a connection): handed out once. The lock makes a
    /// read's list shareable; it is taken once per entry, never contended on a hit.
    Once(Mutex<Option<StoredBody>>),
}

impl StoredEntry {
    /// An entry of `variant`, with its metadata and body.
    ///
    /// A body held in memory ([`StoredBody::full`]) can be read any number of times through
    /// [`body`](Self::body); a streamed one ([`StoredBody::stream`]) once.
    pub fn new(variant: VariantId, response: Arc<ParsedResponse>, body: StoredBody) -> Self {
        let body = match body.into_bytes() {
            Ok(bytes) => EntryBody::Bytes(bytes),
            Err(stream) => EntryBody::Once(Mutex::new(Some(stream))),
        };
        StoredEntry {
            variant,
            response,
            body,
        }
    }

    /// An entry whose body is held in memory, as [`StoredEntry::new`] with
    /// [`StoredBody::full`].
    pub fn in_memory(variant: VariantId, response: Arc<ParsedResponse>, body: Bytes) -> Self {
        StoredEntry {
            variant,
            response,
            body: EntryBody::Bytes(body),
        }
    }

    /// The entry's body. A body held in memory is handed out to every caller (a cheap
    /// reference-counted clone); a streamed body is handed out to the first caller only, and
    /// later calls return `None`.
    #[inline]
    pub fn body(&self) -> Option<StoredBody> {
        match &self.body {
            EntryBody::Bytes(bytes) => Some(StoredBody::full(bytes.clone())),
            EntryBody::Once(once) => once
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take(),
        }
    }
}

impl fmt::Debug for StoredEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("StoredEntry");
        out.field("variant", &self.variant)
            .field("response", &self.response);
        match &self.body {
            EntryBody::Bytes(bytes) => out.field("body_len", &bytes.len()).finish(),
            EntryBody::Once(_) => out.field("streamed", &true).finish(),
        }
    }
}

impl AsRef<StoredResponse> for StoredEntry {
    #[inline]
    fn as_ref(&self) -> &StoredResponse {
        self.response.response()
    }
}

/// So that the candidates read from a store can be handed to the policy as they are, without
/// parsing their header values again.
impl Candidate for StoredEntry {
    #[inline]
    fn stored_response(&self) -> &StoredResponse {
        self.response.response()
    }

    #[inline]
    fn parsed_response(&self) -> Option<&ParsedResponse> {
        Some(&self.response)
    }
}

/// The complete, unexpired variants a read found under one key; empty on a miss.
///
/// A cheap handle on an immutable list: cloning it, or a memory store handing out the list
/// it keeps, costs one reference count. It dereferences to a slice of [`StoredEntry`], which
/// the policy takes as its candidates.
///
/// ```
/// use cache_store::{Entries, StoredEntry};
///
/// let entries = Entries::default();
/// assert!(entries.is_empty());
/// let entries: Entries = Vec::<StoredEntry>::new().into();
/// assert_eq!(entries.len(), 0);
/// ```
#[derive(Clone, Default)]
pub struct Entries(Option<Arc<[StoredEntry]>>);

impl Entries {
    /// The shared list, when it is not empty.
    fn list(&self) -> &[StoredEntry] {
        self.0.as_deref().unwrap_or_default()
    }
}

impl Deref for Entries {
    type Target = [StoredEntry];

    #[inline]
    fn deref(&self) -> &[StoredEntry] {
        self.list()
    }
}

impl From<Vec<StoredEntry>> for Entries {
    fn from(entries: Vec<StoredEntry>) -> Self {
        // An empty read (every miss) allocates nothing.
        if entries.is_empty() {
            Entries(None)
        } else {
            Entries(Some(entries.into()))
        }
    }
}

impl FromIterator<StoredEntry> for Entries {
    fn from_iter<I: IntoIterator<Item = StoredEntry>>(entries: I) -> Self {
        entries.into_iter().collect::<Vec<_>>().into()
    }
}

impl<'a> IntoIterator for &'a Entries {
    type Item = &'a StoredEntry;
    type IntoIter = std::slice::Iter<'a, StoredEntry>;

    fn into_iter(self) -> Self::IntoIter {
        self.list().iter()
    }
}

impl fmt::Debug for Entries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.list()).finish()
    }
}
