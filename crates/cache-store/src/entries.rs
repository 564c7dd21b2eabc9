//! [`Entries`]: the variants one read returns.

use std::ops::{Deref, DerefMut};

use smallvec::SmallVec;

use crate::StoredEntry;

/// The variants a [`Store::get_now`](crate::Store::get_now) read returns. Most keys have one
/// variant (no `Vary`), which is kept inline: a read from memory allocates nothing for the
/// list. It dereferences to a slice, which the policy takes as its candidates.
///
/// ```
/// use cache_store::{Entries, MemoryStore, Store};
///
/// let store = MemoryStore::default();
/// let entries: Entries = store.get_now("https://example.com/").expect("in memory").unwrap();
/// assert!(entries.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct Entries(SmallVec<[StoredEntry; 1]>);

impl Entries {
    /// No entries: a miss.
    pub fn new() -> Self {
        Entries::default()
    }
}

impl Deref for Entries {
    type Target = [StoredEntry];

    fn deref(&self) -> &[StoredEntry] {
        &self.0
    }
}

impl DerefMut for Entries {
    fn deref_mut(&mut self) -> &mut [StoredEntry] {
        &mut self.0
    }
}

impl From<Vec<StoredEntry>> for Entries {
    fn from(entries: Vec<StoredEntry>) -> Self {
        Entries(SmallVec::from_vec(entries))
    }
}

impl FromIterator<StoredEntry> for Entries {
    fn from_iter<I: IntoIterator<Item = StoredEntry>>(entries: I) -> Self {
        Entries(entries.into_iter().collect())
    }
}

impl IntoIterator for Entries {
    type Item = StoredEntry;
    type IntoIter = IntoIter;

    fn into_iter(self) -> IntoIter {
        IntoIter(self.0.into_iter())
    }
}

/// The iterator of [`Entries`], by value.
#[derive(Debug)]
pub struct IntoIter(smallvec::IntoIter<[StoredEntry; 1]>);

impl Iterator for IntoIter {
    type Item = StoredEntry;

    fn next(&mut self) -> Option<StoredEntry> {
        self.0.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}
