//! The operations behind [`RedisStore`](super::RedisStore)'s [`Store`](crate::Store) methods.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cache_policy::{ParsedResponse, StoredResponse};

use super::body::ChunkBody;
use super::layout::{self, Record};
use super::scripts;
use super::Inner;
use crate::codec::{self, BodyChecksum, EntryMeta};
use crate::{Entries, StoreError, StoredBody, StoredEntry, VariantId};

/// How often an update retries its check-and-set when the record changed under it.
const UPDATE_TRIES: usize = 3;

/// Which records a removal takes.
pub(super) enum Removal<'a> {
    All,
    One(&'a [u8]),
    /// The variant, only while its record starts with these bytes (its write id, or the whole
    /// damaged record).
    If(&'a [u8], &'a [u8]),
}

pub(super) fn expiry(ttl: Duration) -> SystemTime {
    let now = SystemTime::now();
    now.checked_add(ttl)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

impl Inner {
    fn bounded(&self) -> &'static str {
        if self.max_size.is_some() {
            "1"
        } else {
            "0"
        }
    }

    pub(super) async fn get(self: &Arc<Self>, key: &str) -> Result<Entries, StoreError> {
        let index = self.keys.index(key);
        let fields: Vec<(Vec<u8>, Vec<u8>)> = self
            .conn
            .query(
                self.timeout,
                "HGETALL (read)",
                redis::cmd("HGETALL").arg(&index),
            )
            .await?;
        let now = SystemTime::now();
        let mut out = Vec::with_capacity(fields.len());
        let mut doomed: Vec<(Vec<u8>, Bytes)> = Vec::new();
        for (field, raw) in fields {
            let raw = Bytes::from(raw);
            match Record::parse(raw.clone()) {
                Ok(record) if record.meta.expires <= now => {
                    doomed.push((field, Bytes::from(record.write_id.into_bytes())));
                }
                Ok(record) => match self.entry_of(key, &field, record) {
                    Some(entry) => out.push(entry),
                    None => doomed.push((field, raw)),
                },
                Err(_) => doomed.push((field, raw)),
            }
        }
        for (field, expected) in &doomed {
            // What cannot be removed now is met (and skipped) again by the next read.
            // Boxed: inline, this rare branch more than doubled every read's future.
            let _ = Box::pin(self.remove(key, Removal::If(field, expected))).await;
        }
        if !out.is_empty() && self.max_size.is_some() {
            let [order, _, _] = self.keys.accounting();
            // Access order only steers eviction: failing to record it is no failed read.
            let _: Result<redis::Value, _> = self
                .conn
                .query(
                    self.timeout,
                    "ZADD (access order)",
                    redis::cmd("ZADD")
                        .arg(&order)
                        .arg("XX")
                        .arg(layout::access_tick())
                        .arg(key),
                )
                .await;
        }
        Ok(out.into())
    }

    /// The entry of a record read under `key` and `field`; `None` if it is damaged.
    fn entry_of(self: &Arc<Self>, key: &str, field: &[u8], record: Record) -> Option<StoredEntry> {
        record.meta.check_key(key).ok()?;
        if record.meta.variant.as_bytes() != field {
            return None;
        }
        let body = if record.chunks == 0 {
            let data = record.inline_body();
            let mut check = BodyChecksum::new();
            check.update(&data);
            check.verify(&record.crc).ok()?;
            StoredBody::full(data)
        } else {
            let len = record.body_len;
            let body = ChunkBody::new(
                self.clone(),
                key.to_owned(),
                field.to_vec(),
                record.write_id.clone(),
                record.chunks,
                len,
                record.crc,
            );
            StoredBody::stream(body, Some(len))
        };
        let response = Arc::new(ParsedResponse::new(record.meta.response));
        Some(StoredEntry::new(record.meta.variant, response, body))
    }

    /// Runs a removal script and brings the size bound's bookkeeping up to date.
    pub(super) async fn remove(&self, key: &str, what: Removal<'_>) -> Result<(), StoreError> {
        let (mode, field, expected): (&str, &[u8], &[u8]) = match what {
            Removal::All => ("all", b"", b""),
            Removal::One(field) => ("one", field, b""),
            Removal::If(field, expected) => ("if", field, expected),
        };
        let mut invocation = scripts::REMOVE.prepare_invoke();
        invocation
            .key(self.keys.index(key))
            .arg(mode)
            .arg(self.keys.chunk_base(key))
            .arg(layout::ttl_ms(self.grace, Duration::ZERO))
            .arg(self.bounded())
            .arg(field)
            .arg(expected);
        let size: i64 = self
            .conn
            .invoke(self.timeout, "remove script", &invocation)
            .await?;
        self.account(key, size).await
    }

    /// Records the size of `key`'s entry (0: gone) for the size bound, and evicts the least
    /// recently used entries while the total is over it. A no-op without a bound.
    pub(super) async fn account(&self, key: &str, size: i64) -> Result<(), StoreError> {
        let Some(bound) = self.max_size else {
            return Ok(());
        };
        let [order, sizes, total] = self.keys.accounting();
        let mut invocation = scripts::ACCOUNT.prepare_invoke();
        invocation
            .key(order)
            .key(sizes)
            .key(total)
            .arg(key)
            .arg(size.max(0))
            .arg(bound)
            .arg(layout::access_tick());
        let victims: Vec<String> = self
            .conn
            .invoke(self.timeout, "size accounting script", &invocation)
            .await?;
        for victim in victims {
            // Another process may have written the victim meanwhile: eviction is
            // approximate, and removing a fresh entry costs one miss.
            Box::pin(self.remove(&victim, Removal::All)).await?;
        }
        Ok(())
    }

    pub(super) async fn update(
        &self,
        key: &str,
        variant: &VariantId,
        response: StoredResponse,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let index = self.keys.index(key);
        for _ in 0..UPDATE_TRIES {
            let raw: Option<Vec<u8>> = self
                .conn
                .query(
                    self.timeout,
                    "HGET (update)",
                    redis::cmd("HGET").arg(&index).arg(variant.as_bytes()),
                )
                .await?;
            let Some(raw) = raw else {
                return Ok(());
            };
            let raw = Bytes::from(raw);
            let record = match Record::parse(raw.clone()) {
                Ok(record)
                    if record.meta.check_key(key).is_ok() && record.meta.variant == *variant =>
                {
                    record
                }
                _ => {
                    let removal = Removal::If(variant.as_bytes(), &raw);
                    return self.remove(key, removal).await;
                }
            };
            if !crate::update_applies(&record.meta.response, record.body_len, &response) {
                return Ok(());
            }
            let meta = EntryMeta {
                key: key.to_owned(),
                variant: variant.clone(),
                response: response.clone(),
                expires: expiry(ttl),
                body_len: record.body_len,
            };
            let header = codec::encode_header(&meta)?;
            let new = layout::encode_record(
                &record.write_id,
                record.chunks,
                record.body_len,
                record.crc,
                &header,
                &record.inline_body(),
            );
            let mut invocation = scripts::UPDATE.prepare_invoke();
            invocation
                .key(&index)
                .arg(variant.as_bytes())
                .arg(&record.raw[..])
                .arg(new)
                .arg(layout::ttl_ms(ttl, self.min_ttl))
                .arg(self.keys.chunk_base(key))
                .arg(self.bounded());
            let size: i64 = self
                .conn
                .invoke(self.timeout, "update script", &invocation)
                .await?;
            if size >= 0 {
                return self.account(key, size).await;
            }
            // The record changed between the read and the script: decide again on the new one.
        }
        Ok(())
    }

    pub(super) async fn clear(&self) -> Result<(), StoreError> {
        let timeout = self.timeout;
        let conn = self.conn.clone();
        self.conn
            .scan_each(timeout, &self.keys.scan_pattern(), |keys| {
                let conn = conn.clone();
                async move {
                    for batch in keys.chunks(100) {
                        let _: i64 = conn
                            .query(timeout, "UNLINK (clear)", redis::cmd("UNLINK").arg(batch))
                            .await?;
                    }
                    Ok(())
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size_of_output<F, Fut>(_: F) -> usize
    where
        F: FnOnce(&'static Arc<Inner>, &'static str) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every read allocates its future: above 1 KiB the allocator leaves its per-thread cache
    /// (about 1 400 instructions more per hit, measured). The rare removal of a damaged or
    /// expired record is boxed so that it does not size the hit's future (it made it 1 392).
    #[test]
    fn a_read_future_stays_within_the_allocators_fast_sizes() {
        let size = size_of_output(Inner::get);
        assert!(size <= 1024, "Inner::get's future is {size} bytes");
    }
}
