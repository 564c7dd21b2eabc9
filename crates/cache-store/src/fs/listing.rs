//! Finding a key's variant files: directory listings, reused while a directory is unchanged.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::files::{dir_metadata, would_block, Wait};
use super::{Inner, KeyHash, ENTRY_SUFFIX};

/// How long a directory must have been unchanged before a listing of it is reused; more than
/// the timestamp granularity of any common filesystem.
const LISTING_SETTLE: Duration = Duration::from_secs(2);

/// Directory listings kept for reads, at most (one per fan-out directory at most).
const MAX_LISTINGS: usize = 1 << 16;

/// Entry file names per fan-out directory, with the directory's modification time.
pub(super) type Listings = HashMap<PathBuf, (SystemTime, Vec<String>)>;

/// The names of the entry files in `dir`.
fn read_entry_names(dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Ok(name) = entry?.file_name().into_string() {
            if name.ends_with(ENTRY_SUFFIX) {
                names.push(name);
            }
        }
    }
    names.sort();
    Ok(names)
}

/// The paths of the variant files of `key` among the entry file `names` of `dir`.
fn variants_of(dir: &Path, key: &KeyHash, names: &[String]) -> Vec<PathBuf> {
    names
        .iter()
        .filter(|name| {
            name.len() > key.0.len()
                && name.starts_with(&key.0)
                && name.as_bytes()[key.0.len()] == b'-'
        })
        .map(|name| dir.join(name))
        .collect()
}

impl Inner {
    /// The variant files of `key`, listed from the directory.
    pub(super) fn list_variants(&self, key: &KeyHash) -> io::Result<Vec<PathBuf>> {
        let dir = self.dir_of(key);
        let names = match read_entry_names(&dir) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(variants_of(&dir, key, &names))
    }

    /// The variant files of `key` for a read: like [`Inner::list_variants`], but reusing this
    /// process's last listing of the directory while the directory is unchanged, which costs
    /// one `stat` instead of reading the directory.
    ///
    /// A listing is only reused if, when it was taken, the directory's modification time was
    /// [`LISTING_SETTLE`] older than the clock: any later change to the directory then carries
    /// a later modification time, even on filesystems with coarse timestamps, so an unchanged
    /// time means unchanged contents. (A stale listing could only cause a miss anyway: every
    /// file is opened and checked.)
    ///
    /// With [`Wait::Never`], only a reused listing is an answer: reading a directory may wait.
    pub(super) fn list_variants_for_read(
        &self,
        key: &KeyHash,
        wait: Wait,
    ) -> io::Result<Vec<PathBuf>> {
        let dir = self.dir_of(key);
        let modified = match dir_metadata(&dir, wait) {
            Ok(meta) => meta.modified().ok(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let Some(modified) = modified else {
            return match wait {
                Wait::Allowed => self.list_variants(key),
                Wait::Never => Err(would_block()),
            };
        };
        let listings = self
            .listings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, names)) = listings.get(&dir) {
            if *at == modified {
                return Ok(variants_of(&dir, key, names));
            }
        }
        drop(listings);
        if wait == Wait::Never {
            return Err(would_block());
        }
        let names = match read_entry_names(&dir) {
            Ok(names) => names,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let out = variants_of(&dir, key, &names);
        let settled = SystemTime::now()
            .duration_since(modified)
            .is_ok_and(|age| age >= LISTING_SETTLE);
        if settled {
            let mut listings = self
                .listings
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Bounded: forgetting listings only costs a directory read.
            if listings.len() >= MAX_LISTINGS {
                listings.clear();
            }
            listings.insert(dir, (modified, names));
        }
        Ok(out)
    }
}
