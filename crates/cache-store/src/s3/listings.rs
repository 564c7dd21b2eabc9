//! This process's recent listings of keys' variants, reused for a short while so that a read
//! does not wait for a LIST (see [`S3StoreBuilder::listing_reuse`](super::S3StoreBuilder::listing_reuse)).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use object_store::path::Path;

/// Listings kept at most; forgetting them only costs a LIST each.
const MAX_LISTINGS: usize = 1 << 16;

/// The variant objects (other than the Vary-less one, which is read by its name) last listed
/// under each key directory, with when.
pub(super) struct Listings {
    reuse: Duration,
    known: Mutex<HashMap<String, (Instant, Vec<Path>)>>,
}

impl Listings {
    pub(super) fn new(reuse: Duration) -> Self {
        Listings {
            reuse,
            known: Mutex::new(HashMap::new()),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Vec<Path>)>> {
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The objects listed under `dir` less than the reuse period ago.
    pub(super) fn recent(&self, dir: &str) -> Option<Vec<Path>> {
        if self.reuse.is_zero() {
            return None;
        }
        let known = self.known();
        let (at, objects) = known.get(dir)?;
        (at.elapsed() < self.reuse).then(|| objects.clone())
    }

    /// Records what a LIST of `dir` that began at `at` found.
    pub(super) fn listed(&self, dir: String, at: Instant, objects: Vec<Path>) {
        if self.reuse.is_zero() {
            return;
        }
        let mut known = self.known();
        if known.len() >= MAX_LISTINGS {
            known.clear();
        }
        known.insert(dir, (at, objects));
    }

    /// This process committed `object` under `dir`: a listing kept of `dir` names it too.
    pub(super) fn committed(&self, dir: &str, object: &Path) {
        if let Some((_, objects)) = self.known().get_mut(dir) {
            if !objects.contains(object) {
                objects.push(object.clone());
            }
        }
    }

    /// `object` under `dir` is gone (or, for `None`, everything under `dir`).
    pub(super) fn removed(&self, dir: &str, object: Option<&Path>) {
        let mut known = self.known();
        match object {
            Some(object) => {
                if let Some((_, objects)) = known.get_mut(dir) {
                    objects.retain(|o| o != object);
                }
            }
            None => {
                known.remove(dir);
            }
        }
    }

    pub(super) fn clear(&self) {
        self.known().clear();
    }
}
