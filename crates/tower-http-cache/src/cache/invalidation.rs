//! RFC 9111 §4.4 against races: what a request began before an invalidation of its key (a
//! miss being stored, a 304 or HEAD freshening being applied) must not bring back what the
//! invalidation removed.
//!
//! Each key falls in one of a fixed number of stripes, each with a generation that an
//! invalidation bumps before it removes anything. A request notes its key's generation before
//! it reads the store; its writes check the note before and after they land, and a write that
//! an invalidation overtook is abandoned, or removed again once it has landed. Two keys that
//! share a stripe only cost each other a write now and then; memory stays fixed.
//!
//! The generations live in this process: across processes that share a store, the store's
//! own order of operations decides.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// The number of stripes: 4096 × 8 bytes.
const STRIPES: usize = 4096;

/// The invalidation generations of one cache.
pub(crate) struct Invalidations {
    generations: Box<[AtomicU64]>,
    hasher: foldhash::quality::RandomState,
}

/// A key's generation as a request saw it before reading the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generation {
    stripe: usize,
    seen: u64,
}

impl Default for Invalidations {
    fn default() -> Self {
        Invalidations {
            generations: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::quality::RandomState::default(),
        }
    }
}

impl Invalidations {
    fn stripe(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) as usize) % STRIPES
    }

    /// The current generation of `key`.
    pub(crate) fn generation(&self, key: &str) -> Generation {
        let stripe = self.stripe(key);
        Generation {
            stripe,
            seen: self.generations[stripe].load(Ordering::Acquire),
        }
    }

    /// Starts an invalidation of `key`: call it before removing what is stored.
    pub(crate) fn invalidate(&self, key: &str) {
        self.generations[self.stripe(key)].fetch_add(1, Ordering::AcqRel);
    }

    /// Whether no invalidation of the key (or of a key in its stripe) began since `generation`
    /// was noted.
    pub(crate) fn unchanged_since(&self, generation: Generation) -> bool {
        self.generations[generation.stripe].load(Ordering::Acquire) == generation.seen
    }
}

impl std::fmt::Debug for Invalidations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invalidations").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalidation_changes_the_generation_of_its_key_only_in_its_stripe() {
        let invalidations = Invalidations::default();
        let a = invalidations.generation("https://a.example/");
        assert!(invalidations.unchanged_since(a));
        invalidations.invalidate("https://a.example/");
        assert!(!invalidations.unchanged_since(a));
        let after = invalidations.generation("https://a.example/");
        assert!(invalidations.unchanged_since(after));
        // Keys in other stripes are not disturbed.
        let others: Vec<Generation> = (0..64)
            .map(|i| format!("https://b.example/{i}"))
            .map(|key| invalidations.generation(&key))
            .filter(|g| g.stripe != after.stripe)
            .collect();
        invalidations.invalidate("https://a.example/");
        assert!(others.iter().all(|g| invalidations.unchanged_since(*g)));
    }
}
