//! The conformance suite and filesystem-specific checks for [`FsStore`].

use std::sync::Mutex;

use cache_store::conformance::{Harness, Limits};
use cache_store::FsStore;
use tempfile::TempDir;

/// Makes each store in a fresh temporary directory, kept until the harness is dropped.
#[derive(Default)]
struct Fs {
    dirs: Mutex<Vec<TempDir>>,
}

impl Harness for Fs {
    type Store = FsStore;

    fn new_store(&self, limits: Limits) -> FsStore {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FsStore::builder(dir.path())
            .max_size_bytes(limits.max_total_bytes)
            .max_body_size(limits.max_body_size)
            .build()
            .expect("build");
        self.dirs.lock().expect("lock").push(dir);
        store
    }

    fn corrupt(&self, store: &FsStore, key: &str) -> bool {
        let paths = store.variant_paths(key).expect("list");
        assert!(!paths.is_empty(), "nothing to corrupt");
        for path in paths {
            let mut bytes = std::fs::read(&path).expect("read");
            // Inside the header records (the primary key record starts at 16).
            bytes[30] ^= 0x55;
            std::fs::write(&path, bytes).expect("write");
        }
        true
    }
}

mod conformance {
    cache_store::conformance_tests!(super::Fs::default());
}
