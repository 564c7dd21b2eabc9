//! The lazy index of entry files (sizes, access order) behind the size bound, and its scan.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::files::ignore_not_found;
use super::{Inner, ENTRY_SUFFIX, TEMP_PREFIX};

/// What the lazy index knows of one entry file.
#[derive(Debug, Clone, Copy)]
pub(super) struct Known {
    size: u64,
    tick: u64,
}

/// Sizes and access order of the entry files, for the size bound.
#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) files: HashMap<PathBuf, Known>,
    pub(super) by_age: BTreeMap<u64, PathBuf>,
    pub(super) total: u64,
    pub(super) next_tick: u64,
}

impl Index {
    pub(super) fn touch(&mut self, path: &Path, size: u64) {
        let tick = self.next_tick;
        self.next_tick += 1;
        if let Some(old) = self.files.insert(path.to_owned(), Known { size, tick }) {
            self.by_age.remove(&old.tick);
            self.total -= old.size;
        }
        self.by_age.insert(tick, path.to_owned());
        self.total += size;
    }

    pub(super) fn forget(&mut self, path: &Path) {
        if let Some(old) = self.files.remove(path) {
            self.by_age.remove(&old.tick);
            self.total -= old.size;
        }
    }

    /// Deletes least recently used files until the total is within `max`.
    pub(super) fn evict(&mut self, max: u64) {
        while self.total > max {
            let Some((_, path)) = self.by_age.pop_first() else {
                break;
            };
            if let Some(old) = self.files.remove(&path) {
                self.total -= old.size;
            }
            // Already gone (removed by another process) is as good as deleted.
            let _ = ignore_not_found(fs::remove_file(&path));
        }
    }
}

impl Inner {
    /// The index, scanning the directory on first use. Call from blocking contexts only.
    pub(super) fn index(&self) -> MutexGuard<'_, Index> {
        self.index
            .get_or_init(|| Mutex::new(self.scan()))
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The index if it was already built: reads use this, so that a read never waits for the
    /// first directory scan (which will see the files anyway).
    pub(super) fn index_if_built(&self) -> Option<MutexGuard<'_, Index>> {
        self.index.get().map(|index| {
            index
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        })
    }

    /// Calls `f(path, file name)` for every file in the two fan-out levels.
    pub(super) fn walk(&self, mut f: impl FnMut(&Path, &str)) -> io::Result<()> {
        for level1 in fs::read_dir(&self.root)? {
            let level1 = level1?;
            if !level1.file_type()?.is_dir() {
                continue;
            }
            for level2 in fs::read_dir(level1.path())? {
                let level2 = level2?;
                if !level2.file_type()?.is_dir() {
                    continue;
                }
                let files = match fs::read_dir(level2.path()) {
                    Ok(files) => files,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for file in files {
                    let file = file?;
                    if let Some(name) = file.file_name().to_str() {
                        f(&file.path(), name);
                    }
                }
            }
        }
        Ok(())
    }

    /// Builds the index from the directory and deletes stale temporary files.
    pub(super) fn scan(&self) -> Index {
        let now = SystemTime::now();
        let mut found = Vec::new();
        // A failed walk leaves an index that only knows later writes; the store still works.
        let _ = self.walk(|path, name| {
            let Ok(meta) = fs::metadata(path) else {
                return;
            };
            let modified = meta.modified().unwrap_or(now);
            if name.starts_with(TEMP_PREFIX) {
                let age = now.duration_since(modified).unwrap_or_default();
                if age >= self.stale_temp_age {
                    let _ = fs::remove_file(path);
                }
            } else if name.ends_with(ENTRY_SUFFIX) {
                found.push((modified, path.to_owned(), meta.len()));
            }
        });
        found.sort();
        let mut index = Index::default();
        for (_, path, size) in found {
            index.touch(&path, size);
        }
        index
    }
}
