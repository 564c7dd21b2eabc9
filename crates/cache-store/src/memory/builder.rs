//! [`MemoryStoreBuilder`]: the configuration of a [`MemoryStore`].

use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::{Inner, Lru, MemoryStore};

/// Configures a [`MemoryStore`]; see [`MemoryStore::builder`].
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    max_capacity_bytes: u64,
    max_body_size: Option<u64>,
    copy_bytes: bool,
}

impl MemoryStoreBuilder {
    /// The total size the store keeps, in bytes: bodies, header lines with the room their
    /// maps keep, keys, and a fixed overhead per variant (see [`MemoryStore`], "What the bound
    /// counts"). Default: 256 MiB.
    pub fn max_capacity_bytes(mut self, bytes: u64) -> Self {
        self.max_capacity_bytes = bytes;
        self
    }

    /// The largest body stored; a larger one makes [`EntryWriter::write`](crate::EntryWriter::write) fail with
    /// [`StoreError::TooLarge`](crate::StoreError::TooLarge). Default: 1/8 of the capacity. Never more than the capacity,
    /// nor 4 GiB.
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = Some(bytes);
        self
    }

    /// Whether the store copies the bytes it keeps (header values, target URIs, and bodies of
    /// one chunk up to 64 KiB; see [`ParsedResponse::copy_bytes`](cache_policy::ParsedResponse::copy_bytes)) instead of sharing those it
    /// is given. Default: `false`.
    ///
    /// With copies, an entry keeps no memory of the connection it was read from, and the
    /// bound holds for small entries read through hyper (see [`MemoryStore`], "What the bound
    /// counts"). The copies cost each write one allocation for the header values and one for
    /// the body (measured in README's BENCHMARKS section).
    pub fn copy_bytes(mut self, copy: bool) -> Self {
        self.copy_bytes = copy;
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        let max_body_size = self
            .max_body_size
            .unwrap_or(self.max_capacity_bytes / 8)
            .min(self.max_capacity_bytes)
            .min(u64::from(u32::MAX) - 64 * 1024);
        // Plain LRU: an admission filter (TinyLFU) would drop most freshly written responses
        // of a cold cache, which is wasted work for a cache that has just fetched them.
        let lru = Lru {
            map: LruCache::unbounded(),
            weight: 0,
        };
        MemoryStore {
            inner: Arc::new(Inner {
                lru: Mutex::new(lru),
                max_body_size,
                max_capacity: self.max_capacity_bytes,
                copy_bytes: self.copy_bytes,
            }),
        }
    }
}

impl MemoryStore {
    /// A builder with the defaults: 256 MiB in total, bodies up to 32 MiB.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_capacity_bytes: 256 << 20,
            max_body_size: None,
            copy_bytes: false,
        }
    }
}
