//! The store's operations on objects: read a key's variants, update one, remove, clear, sweep.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_policy::{ParsedResponse, StoredResponse};
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    UpdateVersion,
};

use super::read::{self, Head, ObjectBody, Refusal};
use super::{layout, upload, Inner};
use crate::codec::{self, EntryMeta, PRELUDE_LEN};
use crate::{update_applies, Entries, StoreError, StoredBody, StoredEntry, VariantId};

/// How often an update retries after another writer changed the object under it.
const UPDATE_ATTEMPTS: usize = 3;

/// What [`S3Store::sweep`](super::S3Store::sweep) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sweep {
    /// Entry objects looked at.
    pub scanned: u64,
    /// Expired entries removed.
    pub expired: u64,
    /// Damaged or unreadable entries removed.
    pub damaged: u64,
    /// Abandoned staging objects removed (older than the staging TTL).
    pub staging: u64,
}

impl Inner {
    pub(super) fn failure(&self, what: &str, error: object_store::Error) -> StoreError {
        super::config::failure(&self.shown, what, error)
    }

    /// The objects directly under `dir`.
    async fn list(&self, dir: &Path) -> Result<Vec<ObjectMeta>, StoreError> {
        self.store
            .list(Some(dir))
            .try_collect()
            .await
            .map_err(|e| self.failure("listing entries", e))
    }

    /// Deletes `paths`, many per request where the server allows.
    async fn delete_all(&self, paths: Vec<Path>) -> Result<(), StoreError> {
        if paths.is_empty() {
            return Ok(());
        }
        let stream = futures_util::stream::iter(paths.into_iter().map(Ok)).boxed();
        let mut results = self.store.delete_stream(stream);
        while let Some(result) = results.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.failure("deleting entries", e)),
            }
        }
        Ok(())
    }

    /// Removes a damaged or expired object if it is still the version read (`e_tag`). Best
    /// effort: S3 has no conditional delete, so a write landing between the check and the
    /// delete is lost (a miss later, never wrong data).
    pub(super) async fn remove_damaged(&self, path: &Path, e_tag: Option<&str>) {
        if let Some(e_tag) = e_tag {
            match self.store.head(path).await {
                Ok(meta) if meta.e_tag.as_deref() == Some(e_tag) => {}
                _ => return,
            }
        }
        let _ = self.store.delete(path).await;
    }

    /// The variants of `key`: the objects listed under its directory.
    ///
    /// Most keys have one variant, a response without `Vary`, whose object name is known
    /// without listing: its GET goes out together with the LIST, so that reading such a key
    /// costs one round trip instead of two. A listing is then reused for
    /// [`listing_reuse`](super::S3StoreBuilder::listing_reuse): the reads meanwhile GET the
    /// variants it named, with no LIST. (For a key with `Vary`, and for a miss, the GET of the
    /// Vary-less name is one more request, answered "not found".)
    pub(super) async fn get(self: &Arc<Self>, key: &str) -> Result<Entries, StoreError> {
        let dir = self.layout.key_dir(key);
        let dir_name = dir.to_string();
        let plain = self.layout.variant(key, &VariantId::from_bytes(&[]));
        let (plain_opened, others) = match self.listings.recent(&dir_name) {
            Some(others) => {
                let (plain_opened, others) = futures_util::future::join(
                    self.open(key, plain.clone()),
                    self.open_all(key, others),
                )
                .await;
                (plain_opened, others)
            }
            None => {
                let listing_began = std::time::Instant::now();
                let (listed, plain_opened) =
                    futures_util::future::join(self.list(&dir), self.open(key, plain.clone()))
                        .await;
                let listed = listed?;
                let plain_opened = match plain_opened {
                    // The early GET is a shortcut, and the listing has the last word: a GET
                    // that failed where the LIST went through (the circuit breaker lets one
                    // request probe a server back from an outage, and refuses the other) is
                    // made again if the LIST shows the object.
                    Err(_) if listed.iter().any(|object| object.location == plain) => {
                        self.open(key, plain.clone()).await
                    }
                    Err(_) => Ok(None),
                    opened => opened,
                };
                let others: Vec<Path> = listed
                    .into_iter()
                    .map(|object| object.location)
                    .filter(|path| *path != plain)
                    .collect();
                self.listings
                    .listed(dir_name.clone(), listing_began, others.clone());
                (plain_opened, self.open_all(key, others).await)
            }
        };
        let mut entries = Vec::new();
        // The GET of the plain variant answers for it whether or not a listing showed it: an
        // object written in between is the newest, and one removed in between is gone.
        for (path, opened) in std::iter::once((plain, plain_opened)).chain(others) {
            match opened? {
                Some((entry, size)) => {
                    self.account(|a| a.record(&dir_name, path.as_ref(), size));
                    entries.push(entry);
                }
                None => {
                    self.account(|a| a.forget_object(&dir_name, path.as_ref()));
                    self.listings.removed(&dir_name, Some(&path));
                }
            }
        }
        Ok(entries.into())
    }

    /// Opens `paths` (variants of `key`), their GETs sent together.
    async fn open_all(
        self: &Arc<Self>,
        key: &str,
        paths: Vec<Path>,
    ) -> Vec<(Path, Result<Option<(StoredEntry, u64)>, StoreError>)> {
        let opened = paths.into_iter().map(|path| async move {
            let opened = self.open(key, path.clone()).await;
            (path, opened)
        });
        futures_util::future::join_all(opened).await
    }

    /// Opens one variant's object: its header now, its body small and whole or streamed;
    /// with the object's size. `None` (and the object removed) when it is damaged or
    /// expired, or not there.
    async fn open(
        self: &Arc<Self>,
        key: &str,
        path: Path,
    ) -> Result<Option<(StoredEntry, u64)>, StoreError> {
        let got = match self.store.get(&path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.failure("reading an entry", e)),
        };
        let (size, e_tag) = (got.meta.size, got.meta.e_tag.clone());
        let head = read::read_head(self, key, &path, size, e_tag.clone(), got.into_stream()).await;
        let mut head = match head {
            Ok(head) => head,
            Err(refusal) => return self.refused(&path, e_tag.as_deref(), refusal).await,
        };
        let body = if head.meta.body_len <= self.inline_body as u64 {
            match read::read_small(self, &mut head).await {
                Ok(bytes) => StoredBody::full(bytes),
                Err(refusal) => return self.refused(&path, e_tag.as_deref(), refusal).await,
            }
        } else {
            let len = head.meta.body_len;
            let variant = head.meta.variant.clone();
            let response = head.meta.response.clone();
            let body = ObjectBody::new(self.clone(), path, head);
            let body = StoredBody::stream(body, Some(len));
            return Ok(Some((entry(variant, response, body), size)));
        };
        Ok(Some((
            entry(head.meta.variant, head.meta.response, body),
            size,
        )))
    }

    async fn refused<T>(
        &self,
        path: &Path,
        e_tag: Option<&str>,
        refusal: Refusal,
    ) -> Result<Option<T>, StoreError> {
        match refusal {
            Refusal::Failed(error) => Err(error),
            Refusal::Unusable(_) => {
                self.remove_damaged(path, e_tag).await;
                Ok(None)
            }
        }
    }

    /// See [`Store::update`](crate::Store::update): a read-modify-write of the whole object
    /// (S3 objects cannot be changed in place), conditional on the version read.
    pub(super) async fn update(
        &self,
        key: &str,
        variant: &VariantId,
        response: StoredResponse,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let path = self.layout.variant(key, variant);
        for _ in 0..UPDATE_ATTEMPTS {
            let got = match self.store.get(&path).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(self.failure("reading an entry to update", e)),
            };
            let size = got.meta.size;
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            let e_tag = got.meta.e_tag.clone();
            let head = read::read_head(self, key, &path, size, e_tag.clone(), got.into_stream());
            let head = match head.await {
                Ok(head) => head,
                Err(refusal) => {
                    self.refused::<()>(&path, e_tag.as_deref(), refusal).await?;
                    return Ok(());
                }
            };
            if !update_applies(&head.meta.response, head.meta.body_len, &response) {
                return Ok(());
            }
            let meta = EntryMeta {
                response: response.clone(),
                expires: layout::expiry(ttl),
                ..head.meta.clone()
            };
            match self.rewrite(&path, &meta, head, version).await {
                Err(StoreError::Unavailable(e)) if e.to_string().contains(RACED) => continue,
                Ok(size) => {
                    let dir = self.layout.key_dir(key).to_string();
                    self.account(|a| a.record(&dir, path.as_ref(), size));
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        // The variant keeps changing under us: the newer writes win, and this update is moot.
        Ok(())
    }

    /// Writes `meta`'s header and `head`'s body (and trailer) as the new object at `path`.
    /// One conditional PUT when it fits a part (of the version read; a lost race says
    /// [`RACED`]); else a multipart copy, which S3 cannot make conditional: a replacement
    /// landing meanwhile is overwritten by the updated old version (whole, never mixed).
    async fn rewrite(
        &self,
        path: &Path,
        meta: &EntryMeta,
        mut head: Head,
        version: UpdateVersion,
    ) -> Result<u64, StoreError> {
        let header = codec::encode_header(meta)?;
        let size = meta.encoded_len(header.len());
        if size > self.part_size as u64 {
            let check = None;
            let rest = std::mem::take(&mut head.rest);
            let source = futures_util::stream::once(async move { Ok(rest) })
                .chain(head.stream)
                .boxed();
            // The copy's own checksum is not known here (it includes the trailer): the
            // object's trailer travels with the body, and readers verify both.
            upload::copy(self, path, &header, source, &[], check).await?;
            return Ok(size);
        }
        let body = match read::read_small(self, &mut head).await {
            Ok(body) => body,
            Err(Refusal::Failed(e)) => return Err(e),
            Err(Refusal::Unusable(why)) => return Err(StoreError::Corrupt(why)),
        };
        let mut crc = codec::BodyChecksum::new();
        crc.update(&body);
        let parts = [
            Bytes::from(header),
            body,
            Bytes::copy_from_slice(&crc.trailer()),
        ];
        let payload: PutPayload = parts.into_iter().collect();
        let mode = match version.e_tag {
            Some(_) => PutMode::Update(version),
            None => PutMode::Overwrite,
        };
        let options = PutOptions::from(mode);
        match self.store.put_opts(path, payload, options).await {
            Ok(_) => Ok(size),
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => Err(StoreError::unavailable(RACED)),
            Err(e) => Err(self.failure("storing an updated entry", e)),
        }
    }

    pub(super) async fn remove(
        &self,
        key: &str,
        variant: Option<&VariantId>,
    ) -> Result<(), StoreError> {
        let dir = self.layout.key_dir(key);
        match variant {
            Some(variant) => {
                let path = self.layout.variant(key, variant);
                self.account(|a| a.forget_object(dir.as_ref(), path.as_ref()));
                self.listings.removed(dir.as_ref(), Some(&path));
                self.delete_all(vec![path]).await
            }
            None => self.remove_dir(&dir).await,
        }
    }

    /// Deletes every object under `dir` (a key's variants).
    pub(super) async fn remove_dir(&self, dir: &Path) -> Result<(), StoreError> {
        self.account(|a| a.forget_dir(dir.as_ref()));
        self.listings.removed(dir.as_ref(), None);
        let objects = self.list(dir).await?;
        self.delete_all(objects.into_iter().map(|o| o.location).collect())
            .await
    }

    pub(super) async fn clear(&self) -> Result<(), StoreError> {
        self.account(|a| a.clear());
        self.listings.clear();
        let objects = self.list(self.layout.root()).await?;
        self.delete_all(objects.into_iter().map(|o| o.location).collect())
            .await
    }

    /// Reads the header of every entry (a ranged GET each) and removes the expired and the
    /// damaged ones, and staging objects older than the staging TTL.
    pub(super) async fn sweep(&self) -> Result<Sweep, StoreError> {
        let mut sweep = Sweep::default();
        let now = SystemTime::now();
        let stale = chrono_age(now, self.staging_ttl);
        let mut doomed = Vec::new();
        for object in self.list(&self.layout.staging_dir()).await? {
            if object.last_modified.timestamp() <= stale {
                sweep.staging += 1;
                doomed.push(object.location);
            }
        }
        for object in self.list(&self.layout.entries()).await? {
            sweep.scanned += 1;
            match self.peek(&object).await? {
                Peek::Gone => {}
                Peek::Expires(at) if at > now => {}
                Peek::Expires(_) => {
                    sweep.expired += 1;
                    doomed.push(object.location);
                }
                Peek::Damaged => {
                    sweep.damaged += 1;
                    doomed.push(object.location);
                }
            }
        }
        self.account(|a| {
            for path in &doomed {
                if let Some(dir) = path.parent() {
                    a.forget_object(dir.as_ref(), path.as_ref());
                }
            }
        });
        self.delete_all(doomed).await?;
        Ok(sweep)
    }

    /// An object's expiry, from its header read by ranged GETs of its start.
    async fn peek(&self, object: &ObjectMeta) -> Result<Peek, StoreError> {
        let mut want = (4096u64).min(object.size);
        loop {
            if want < PRELUDE_LEN as u64 {
                return Ok(Peek::Damaged);
            }
            let options = GetOptions {
                range: Some(GetRange::Bounded(0..want)),
                ..GetOptions::default()
            };
            let bytes = match self.store.get_opts(&object.location, options).await {
                Ok(got) => got.bytes().await,
                Err(e) => Err(e),
            };
            let bytes = match bytes {
                Ok(bytes) => bytes,
                Err(object_store::Error::NotFound { .. }) => return Ok(Peek::Gone),
                Err(e) => return Err(self.failure("reading an entry's header", e)),
            };
            let Ok(len) = codec::header_len(&bytes) else {
                return Ok(Peek::Damaged);
            };
            let len = len as u64;
            if len > bytes.len() as u64 {
                if len > object.size || len <= want {
                    return Ok(Peek::Damaged);
                }
                want = len;
                continue;
            }
            return Ok(match codec::decode_header(&bytes) {
                Ok((meta, len)) if meta.encoded_len(len) == object.size => {
                    Peek::Expires(meta.expires)
                }
                _ => Peek::Damaged,
            });
        }
    }
}

/// What the sweep found in one object.
enum Peek {
    /// Deleted meanwhile.
    Gone,
    /// Intact, expiring then.
    Expires(SystemTime),
    /// Does not decode, or its length disagrees with its header.
    Damaged,
}

/// The marker of an update that lost a race (another write changed the object under it).
const RACED: &str = "the entry changed while it was being updated";

/// `now - age` in Unix seconds, for comparing with object timestamps.
fn chrono_age(now: SystemTime, age: Duration) -> i64 {
    let secs = now
        .checked_sub(age)
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs).unwrap_or(i64::MAX)
}

fn entry(variant: VariantId, response: StoredResponse, body: StoredBody) -> StoredEntry {
    StoredEntry::new(variant, Arc::new(ParsedResponse::new(response)), body)
}
