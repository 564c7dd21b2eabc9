//! Where an entry's object lives, and small helpers shared by the reading and writing sides.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use object_store::path::Path;

use crate::VariantId;

/// The object names of one store: everything under its prefix.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    root: Path,
}

impl Layout {
    pub(super) fn new(root: Path) -> Self {
        Layout { root }
    }

    pub(super) fn root(&self) -> &Path {
        &self.root
    }

    /// `PREFIX/e/`: every entry.
    pub(super) fn entries(&self) -> Path {
        self.root.clone().join("e")
    }

    /// `PREFIX/s/`: bodies of unknown length being staged (see the module documentation).
    pub(super) fn staging_dir(&self) -> Path {
        self.root.clone().join("s")
    }

    /// `PREFIX/e/<xxh3-128 of the key>`: the variants of one key.
    pub(super) fn key_dir(&self, key: &str) -> Path {
        self.entries().join(hash_hex(key.as_bytes()))
    }

    /// `PREFIX/e/<key hash>/<xxh3-128 of the variant id>`: one variant.
    pub(super) fn variant(&self, key: &str, variant: &VariantId) -> Path {
        self.key_dir(key).join(variant_name(variant))
    }

    /// `PREFIX/s/<write id>`.
    pub(super) fn staging(&self, write_id: &str) -> Path {
        self.staging_dir().join(write_id)
    }
}

/// The last segment of a variant's object name.
pub(super) fn variant_name(variant: &VariantId) -> String {
    hash_hex(variant.as_bytes())
}

fn hash_hex(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// A name no other write uses: the time, the process, a counter and an address, hashed.
pub(super) fn write_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let local = 0u8;
    let seed = format!(
        "{nanos}:{}:{n}:{:p}",
        std::process::id(),
        std::ptr::addr_of!(local)
    );
    hash_hex(seed.as_bytes())
}

/// The expiry of an entry written now with `ttl` (a century for a TTL past the clock's end).
pub(super) fn expiry(ttl: Duration) -> SystemTime {
    let now = SystemTime::now();
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}
