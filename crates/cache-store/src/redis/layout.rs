//! Key names and the index record format (see the module documentation of [`super`]).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::codec::{self, EntryMeta};
use crate::StoreError;

/// Length of the fixed part of a record: write id (16 hex digits), chunk count (8 hex digits),
/// body length (16 hex digits), body CRC (4 bytes).
pub(super) const RECORD_PRELUDE: usize = 16 + 8 + 16 + 4;

/// The key names of one store (one prefix).
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: String) -> Self {
        Keys { prefix }
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P{<xxh3-128 of the primary key, 32 hex digits>}` and then `suffix`: what every key
    /// of the entry starts with, its hash tag naming one cluster slot.
    fn tagged(&self, primary_key: &str, suffix: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let hash = xxhash_rust::xxh3::xxh3_128(primary_key.as_bytes());
        // Written out by hand: `format!("{hash:032x}")` cost a hit about 2 000 instructions.
        let mut out = String::with_capacity(self.prefix.len() + 34 + suffix.len());
        out.push_str(&self.prefix);
        out.push('{');
        for byte in hash.to_be_bytes() {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 15)]));
        }
        out.push('}');
        out.push_str(suffix);
        out
    }

    /// The index hash of a primary key: variant -> record.
    pub(super) fn index(&self, primary_key: &str) -> String {
        self.tagged(primary_key, ":i")
    }

    /// What the chunk keys of a primary key start with; a chunk is `<base><write id>:<n>`.
    pub(super) fn chunk_base(&self, primary_key: &str) -> String {
        self.tagged(primary_key, ":c:")
    }

    /// The keys of the size bound's bookkeeping, all in the slot of the tag `{lru}`: the
    /// access order (sorted set), the sizes (hash) and the total (string).
    pub(super) fn accounting(&self) -> [String; 3] {
        let tag = format!("{}{{lru}}", self.prefix);
        [
            format!("{tag}:order"),
            format!("{tag}:sizes"),
            format!("{tag}:total"),
        ]
    }

    /// A `SCAN MATCH` pattern for every key of this prefix (and no other prefix: every key
    /// continues with the `{` of its hash tag).
    pub(super) fn scan_pattern(&self) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 3);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str("{*");
        out
    }
}

/// A fresh write id: 64 random bits (from the standard library's randomly keyed hasher, a
/// process-wide counter and the clock), as 16 hex digits.
pub(super) fn write_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    hasher.write_u128(nanos);
    format!("{:016x}", hasher.finish())
}

/// A logical access time for the size bound's LRU order: Unix microseconds, strictly
/// increasing within the process.
pub(super) fn access_tick() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64;
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// A TTL in whole milliseconds for `PX`/`PEXPIRE`, at least `floor` and at least 1 ms.
pub(super) fn ttl_ms(ttl: Duration, floor: Duration) -> u64 {
    let ms = ttl.max(floor).as_millis();
    u64::try_from(ms)
        .unwrap_or(u64::MAX / 2)
        .clamp(1, i64::MAX as u64 / 2)
}

/// One index record, parsed.
#[derive(Debug, Clone)]
pub(super) struct Record {
    /// The raw bytes, as read (compared by the update's check-and-set).
    pub(super) raw: Bytes,
    /// The write id, 16 hex digits.
    pub(super) write_id: String,
    /// Number of chunk keys; 0 when the body is inline.
    pub(super) chunks: u32,
    pub(super) body_len: u64,
    pub(super) crc: [u8; 4],
    pub(super) meta: EntryMeta,
    /// Where the header ends and an inline body starts.
    pub(super) header_end: usize,
}

impl Record {
    /// Parses a record: prelude, codec header (checksummed), and for an inline body its exact
    /// length. The body itself is not verified here.
    pub(super) fn parse(raw: Bytes) -> Result<Record, StoreError> {
        let bad = StoreError::Corrupt("malformed index record");
        let prelude = raw
            .get(..RECORD_PRELUDE)
            .ok_or(StoreError::Corrupt("index record is truncated"))?;
        let hex = |range: std::ops::Range<usize>| -> Option<u64> {
            let text = std::str::from_utf8(&prelude[range]).ok()?;
            u64::from_str_radix(text, 16).ok()
        };
        let write_id = std::str::from_utf8(&prelude[..16])
            .ok()
            .filter(|id| id.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_owned);
        let (Some(write_id), Some(chunks), Some(body_len)) = (write_id, hex(16..24), hex(24..40))
        else {
            return Err(bad);
        };
        let chunks = u32::try_from(chunks).map_err(|_| StoreError::Corrupt("chunk count"))?;
        let mut crc = [0; 4];
        crc.copy_from_slice(&prelude[40..44]);
        let (meta, header_len) = codec::decode_header(&raw[RECORD_PRELUDE..])?;
        let header_end = RECORD_PRELUDE + header_len;
        let inline_len = (raw.len() - header_end) as u64;
        let consistent = meta.body_len == body_len
            && if chunks == 0 {
                inline_len == body_len
            } else {
                inline_len == 0 && body_len >= u64::from(chunks)
            };
        if !consistent {
            return Err(StoreError::Corrupt(
                "index record disagrees with its header",
            ));
        }
        Ok(Record {
            raw,
            write_id,
            chunks,
            body_len,
            crc,
            meta,
            header_end,
        })
    }

    /// The inline body (empty for a chunked one), sharing the record's bytes.
    pub(super) fn inline_body(&self) -> Bytes {
        self.raw.slice(self.header_end..)
    }
}

/// Encodes a record: the prelude, `header` (a codec header section) and the inline body
/// (empty when `chunks > 0`).
pub(super) fn encode_record(
    write_id: &str,
    chunks: u32,
    body_len: u64,
    crc: [u8; 4],
    header: &[u8],
    inline: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_PRELUDE + header.len() + inline.len());
    out.extend_from_slice(format!("{write_id:0>16}{chunks:08x}{body_len:016x}").as_bytes());
    out.extend_from_slice(&crc);
    out.extend_from_slice(header);
    out.extend_from_slice(inline);
    out
}

#[cfg(test)]
mod tests {
    use super::Keys;

    /// Key names are shared by every process on the server: they must not change with how
    /// they are built.
    #[test]
    fn key_names_are_the_prefix_the_hash_tag_and_the_role() {
        let keys = Keys::new("app:".into());
        for key in ["http://example.com/", "", "http://a/\u{e9}?q=1"] {
            let hash = xxhash_rust::xxh3::xxh3_128(key.as_bytes());
            assert_eq!(keys.index(key), format!("app:{{{hash:032x}}}:i"));
            assert_eq!(keys.chunk_base(key), format!("app:{{{hash:032x}}}:c:"));
        }
        assert_eq!(
            Keys::new(String::new()).index("x").len(),
            "{}:i".len() + 32,
            "32 hex digits, zero-padded"
        );
    }
}
