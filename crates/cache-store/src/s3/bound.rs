//! The optional size bound: an account, in this process, of the entries it wrote, read or
//! found at start, with their sizes and last use, so that a commit over the bound evicts the
//! least recently used keys.

use std::collections::{BTreeMap, HashMap};

use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

use super::Inner;
use crate::StoreError;

/// Sizes and last uses, by key directory (`P/e/<key hash>`) and object.
#[derive(Debug, Default)]
pub(super) struct Account {
    max: u64,
    total: u64,
    tick: u64,
    dirs: HashMap<String, Dir>,
    /// Last use -> key directory, oldest first.
    order: BTreeMap<u64, String>,
}

#[derive(Debug, Default)]
struct Dir {
    tick: u64,
    size: u64,
    objects: HashMap<String, u64>,
}

impl Account {
    pub(super) fn new(max: u64) -> Self {
        Account {
            max,
            ..Account::default()
        }
    }

    fn touch_dir(&mut self, dir: &str) -> &mut Dir {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.dirs.entry(dir.to_owned()).or_default();
        self.order.remove(&entry.tick);
        entry.tick = tick;
        self.order.insert(tick, dir.to_owned());
        entry
    }

    /// The object `object` of `dir` is `size` bytes, and `dir` was just used.
    pub(super) fn record(&mut self, dir: &str, object: &str, size: u64) {
        let entry = self.touch_dir(dir);
        let old = entry.objects.insert(object.to_owned(), size).unwrap_or(0);
        entry.size = entry.size - old + size;
        self.total = self.total - old + size;
    }

    /// The object is gone.
    pub(super) fn forget_object(&mut self, dir: &str, object: &str) {
        let Some(entry) = self.dirs.get_mut(dir) else {
            return;
        };
        if let Some(size) = entry.objects.remove(object) {
            entry.size -= size;
            self.total -= size;
        }
        if entry.objects.is_empty() {
            self.forget_dir(dir);
        }
    }

    /// Every object of `dir` is gone.
    pub(super) fn forget_dir(&mut self, dir: &str) {
        if let Some(entry) = self.dirs.remove(dir) {
            self.order.remove(&entry.tick);
            self.total -= entry.size;
        }
    }

    pub(super) fn clear(&mut self) {
        *self = Account::new(self.max);
    }

    /// The least recently used key directories (never `keep`) to evict to get back under the
    /// bound, taken out of the account.
    pub(super) fn evict(&mut self, keep: &str) -> Vec<String> {
        let mut doomed = Vec::new();
        let mut spared = None;
        while self.total > self.max {
            let Some((_, dir)) = self.order.pop_first() else {
                break;
            };
            if dir == keep {
                spared = self.dirs.get(&dir).map(|d| (d.tick, dir));
                continue;
            }
            if let Some(entry) = self.dirs.remove(&dir) {
                self.total -= entry.size;
            }
            doomed.push(dir);
        }
        if let Some((tick, dir)) = spared {
            self.order.insert(tick, dir);
        }
        doomed
    }

    #[cfg(test)]
    fn total(&self) -> u64 {
        self.total
    }
}

impl Inner {
    /// Runs `f` on the account, when the store has a size bound.
    pub(super) fn account(&self, f: impl FnOnce(&mut Account)) {
        if let Some(account) = &self.account {
            f(&mut account
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()));
        }
    }

    /// Records a committed object of `size` bytes and evicts the least recently used keys
    /// over the bound. Eviction is best effort: an entry it fails to delete stays, out of the
    /// account until it is read again.
    pub(super) async fn committed(&self, key: &str, path: &Path, size: u64) {
        let dir = self.layout.key_dir(key).to_string();
        let mut doomed = Vec::new();
        self.account(|account| {
            account.record(&dir, path.as_ref(), size);
            doomed = account.evict(&dir);
        });
        for dir in doomed {
            let _ = self.remove_dir(&Path::from(dir)).await;
        }
    }

    /// Seeds the account with every entry in the bucket, oldest first (by last change).
    pub(super) async fn seed_account(&self) -> Result<(), StoreError> {
        if self.account.is_none() {
            return Ok(());
        }
        let mut objects: Vec<ObjectMeta> = self
            .store
            .list(Some(&self.layout.entries()))
            .try_collect()
            .await
            .map_err(|e| self.failure("listing entries for the size bound", e))?;
        objects.sort_by_key(|o| o.last_modified);
        self.account(|account| {
            for object in &objects {
                if let Some(dir) = object.location.parent() {
                    account.record(dir.as_ref(), object.location.as_ref(), object.size);
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_least_recently_used_keys_but_the_one_just_written() {
        let mut account = Account::new(100);
        account.record("a", "a/1", 40);
        account.record("b", "b/1", 40);
        account.record("a", "a/2", 10);
        account.record("c", "c/1", 40);
        assert_eq!(account.total(), 130);
        assert_eq!(account.evict("c"), ["b"]);
        assert_eq!(account.total(), 90);
        account.record("c", "c/1", 200);
        assert_eq!(account.evict("c"), ["a"]);
        assert_eq!(
            account.total(),
            200,
            "the newest entry stays even alone over the bound"
        );
        account.forget_object("c", "c/1");
        assert_eq!(account.total(), 0);
        assert!(account.evict("x").is_empty());
    }
}
