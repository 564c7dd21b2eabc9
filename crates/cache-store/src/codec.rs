//! The binary entry format used by backends that serialize entries (the filesystem backend,
//! and any shared backend that wants it).
//!
//! An encoded entry is a *header section* followed by the body and a 4-byte *trailer*:
//!
//! ```text
//! offset  size  field
//! 0       4     magic "HCSE"
//! 4       2     format version (big endian), currently 1
//! 6       2     flags (none defined yet; readers ignore unknown bits)
//! 8       4     length R of the records that follow
//! 12      4     CRC32 of bytes 0..12 followed by the R record bytes
//! 16      R     records: tag (u16), length (u32), value; all integers big endian
//! 16+R    N     body (N is the BODY_LEN record)
//! 16+R+N  4     CRC32 of the body
//! ```
//!
//! Records (a tag's meaning never changes; new fields get new tags; readers skip unknown tags so
//! a newer writer stays readable by an older reader; the version is bumped only for an
//! incompatible change, and an unknown version is a miss):
//!
//! | tag | record | value |
//! |-----|--------|-------|
//! | 1 | primary key | UTF-8 bytes |
//! | 2 | variant id | [`VariantId::as_bytes`] |
//! | 3 | status | u16 |
//! | 4 | method | bytes |
//! | 5 | URI | bytes |
//! | 6 | request time | i64 Unix seconds, u32 nanoseconds |
//! | 7 | response time | i64 Unix seconds, u32 nanoseconds |
//! | 8 | response header line (repeated, in order) | u32 name length, name, value bytes |
//! | 9 | Vary-selected request header line (repeated, in order) | as tag 8 |
//! | 10 | expiry time | i64 Unix seconds, u32 nanoseconds |
//! | 11 | body length | u64 |
//!
//! The body length is a fixed-size record, so a writer that streams a body of unknown length can
//! write a placeholder header first and rewrite it, at the same size, once the body is complete.
//!
//! Decoding never panics: any input either decodes or yields a [`DecodeError`], which backends
//! turn into a miss (and drop the entry).
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use cache_store::codec::{self, EntryMeta};
//! use cache_store::{StoredResponse, VariantId};
//! use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
//!
//! let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let mut headers = HeaderMap::new();
//! headers.append("set-cookie", HeaderValue::from_static("a=1"));
//! headers.append("set-cookie", HeaderValue::from_bytes(b"b=\xff").unwrap());
//! let response = StoredResponse {
//!     method: Method::GET,
//!     uri: Uri::from_static("https://example.com/a?b"),
//!     status: StatusCode::OK,
//!     headers,
//!     vary_request_headers: HeaderMap::new(),
//!     request_time: t,
//!     response_time: t,
//! };
//! let meta = EntryMeta {
//!     key: "https://example.com/a?b".into(),
//!     variant: VariantId::of(&response),
//!     response,
//!     expires: t + Duration::from_secs(60),
//!     body_len: 5,
//! };
//! let bytes = codec::encode_entry(&meta, b"hello").unwrap();
//! let (decoded, body) = codec::decode_entry(&bytes).unwrap();
//! assert_eq!(decoded, meta);
//! assert_eq!(body, b"hello");
//!
//! // A flipped body byte is detected.
//! let mut damaged = bytes.clone();
//! let at = damaged.len() - 6;
//! damaged[at] ^= 1;
//! assert_eq!(codec::decode_entry(&damaged).unwrap_err(), codec::DecodeError::BodyChecksum);
//! ```

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use cache_policy::StoredResponse;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};

use crate::{StoreError, VariantId};

/// The four bytes every encoded entry starts with.
pub const MAGIC: [u8; 4] = *b"HCSE";
/// The format version this crate writes and reads.
pub const VERSION: u16 = 1;
/// Length of the fixed part of the header section (magic, version, flags, records length,
/// header CRC).
pub const PRELUDE_LEN: usize = 16;
/// Length of the trailer after the body (the body CRC).
pub const TRAILER_LEN: usize = 4;
/// Largest records section a reader accepts. It bounds how much a reader allocates for a
/// damaged length field; real headers are far smaller.
pub const MAX_RECORDS_LEN: usize = 16 << 20;
/// Most header lines an entry holds, its response's and its `Vary` request headers'
/// together. Real responses have a few dozen (hyper's client refuses more than 100 by
/// default); the bound keeps the work of decoding one damaged or hostile entry small, and
/// far below the 32 768 lines past which an `http::HeaderMap` refuses more.
pub const MAX_HEADER_LINES: usize = 1024;

const TAG_KEY: u16 = 1;
const TAG_VARIANT: u16 = 2;
const TAG_STATUS: u16 = 3;
const TAG_METHOD: u16 = 4;
const TAG_URI: u16 = 5;
const TAG_REQUEST_TIME: u16 = 6;
const TAG_RESPONSE_TIME: u16 = 7;
const TAG_RESPONSE_HEADER: u16 = 8;
const TAG_VARY_HEADER: u16 = 9;
const TAG_EXPIRES: u16 = 10;
const TAG_BODY_LEN: u16 = 11;

/// Everything stored about one variant besides its body.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryMeta {
    /// The primary key the entry was stored under. Compared on read, so that two keys whose
    /// hashes collide never answer for each other.
    pub key: String,
    /// The variant of the primary key.
    pub variant: VariantId,
    /// The stored response metadata.
    pub response: StoredResponse,
    /// When the entry expires physically (its TTL ceiling).
    pub expires: SystemTime,
    /// Length of the body in bytes.
    pub body_len: u64,
}

impl EntryMeta {
    /// [`DecodeError::KeyMismatch`] unless the entry was stored under `key`.
    pub fn check_key(&self, key: &str) -> Result<(), DecodeError> {
        if self.key == key {
            Ok(())
        } else {
            Err(DecodeError::KeyMismatch)
        }
    }

    /// Total encoded length of an entry with this metadata: header, body and trailer.
    pub fn encoded_len(&self, header_len: usize) -> u64 {
        header_len as u64 + self.body_len + TRAILER_LEN as u64
    }
}

/// Why bytes could not be decoded as an entry. Every one of them means "miss".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends before the entry does.
    Truncated,
    /// The input does not start with [`MAGIC`].
    BadMagic,
    /// The entry was written in a format version this crate does not read.
    UnsupportedVersion(u16),
    /// The header section does not match its checksum.
    HeaderChecksum,
    /// The body does not match its checksum.
    BodyChecksum,
    /// The entry is intact but was stored under another primary key (a hash collision).
    KeyMismatch,
    /// The header section is intact but its content is invalid (a missing or malformed record,
    /// or trailing bytes).
    Invalid(&'static str),
}

impl DecodeError {
    fn describe(self) -> &'static str {
        match self {
            DecodeError::Truncated => "entry is truncated",
            DecodeError::BadMagic => "not an entry (bad magic)",
            DecodeError::UnsupportedVersion(_) => "unsupported entry format version",
            DecodeError::HeaderChecksum => "header checksum mismatch",
            DecodeError::BodyChecksum => "body checksum mismatch",
            DecodeError::KeyMismatch => "entry belongs to another key",
            DecodeError::Invalid(what) => what,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "unsupported entry format version {v}")
            }
            other => f.write_str(other.describe()),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<DecodeError> for StoreError {
    fn from(error: DecodeError) -> Self {
        StoreError::Corrupt(error.describe())
    }
}

/// A running CRC32 of a body, for writers that stream it and readers that verify it.
#[derive(Debug, Clone, Default)]
pub struct BodyChecksum(crc32fast::Hasher);

impl BodyChecksum {
    /// A checksum of no bytes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next bytes of the body.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The trailer to write after the body.
    pub fn trailer(self) -> [u8; TRAILER_LEN] {
        self.0.finalize().to_be_bytes()
    }

    /// Checks the body read so far against the trailer read after it.
    pub fn verify(self, trailer: &[u8]) -> Result<(), DecodeError> {
        if trailer.len() != TRAILER_LEN {
            return Err(DecodeError::Truncated);
        }
        if self.trailer() == trailer {
            Ok(())
        } else {
            Err(DecodeError::BodyChecksum)
        }
    }
}

/// Encodes the header section of an entry (prelude and records). The body and then
/// [`BodyChecksum::trailer`] follow it.
///
/// Fails only for metadata too large to encode (a header line over 4 GiB, or records over
/// [`MAX_RECORDS_LEN`]).
pub fn encode_header(meta: &EntryMeta) -> Result<Vec<u8>, StoreError> {
    let too_large = StoreError::TooLarge {
        limit: MAX_RECORDS_LEN as u64,
    };
    let response = &meta.response;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    // Records length and CRC are filled in below.
    out.extend_from_slice(&[0; 8]);

    let mut rec = Records(&mut out);
    rec.put(TAG_KEY, &[meta.key.as_bytes()])?;
    rec.put(TAG_VARIANT, &[meta.variant.as_bytes()])?;
    rec.put(TAG_STATUS, &[&response.status.as_u16().to_be_bytes()])?;
    rec.put(TAG_METHOD, &[response.method.as_str().as_bytes()])?;
    let uri = response.uri.to_string();
    rec.put(TAG_URI, &[uri.as_bytes()])?;
    rec.put(TAG_REQUEST_TIME, &[&encode_time(response.request_time)])?;
    rec.put(TAG_RESPONSE_TIME, &[&encode_time(response.response_time)])?;
    let lines = response.headers.len() + response.vary_request_headers.len();
    if lines > MAX_HEADER_LINES {
        return Err(StoreError::TooManyHeaderLines {
            limit: MAX_HEADER_LINES,
        });
    }
    for (tag, map) in [
        (TAG_RESPONSE_HEADER, &response.headers),
        (TAG_VARY_HEADER, &response.vary_request_headers),
    ] {
        // `HeaderMap::iter` yields every line, keeping the order of lines with the same name.
        for (name, value) in map {
            let name_len = u32::try_from(name.as_str().len()).map_err(|_| too_large_err())?;
            rec.put(
                tag,
                &[
                    &name_len.to_be_bytes(),
                    name.as_str().as_bytes(),
                    value.as_bytes(),
                ],
            )?;
        }
    }
    rec.put(TAG_EXPIRES, &[&encode_time(meta.expires)])?;
    rec.put(TAG_BODY_LEN, &[&meta.body_len.to_be_bytes()])?;

    let records_len = out.len() - PRELUDE_LEN;
    if records_len > MAX_RECORDS_LEN {
        return Err(too_large);
    }
    out[8..12].copy_from_slice(&(records_len as u32).to_be_bytes());
    let crc = header_crc(&out[..12], &out[PRELUDE_LEN..]);
    out[12..16].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Encodes a whole entry: header section, body, trailer. `meta.body_len` is taken from `body`.
pub fn encode_entry(meta: &EntryMeta, body: &[u8]) -> Result<Vec<u8>, StoreError> {
    let meta = EntryMeta {
        body_len: body.len() as u64,
        ..meta.clone()
    };
    let mut out = encode_header(&meta)?;
    out.reserve(body.len() + TRAILER_LEN);
    out.extend_from_slice(body);
    let mut crc = BodyChecksum::new();
    crc.update(body);
    out.extend_from_slice(&crc.trailer());
    Ok(out)
}

/// The length of the header section, read from its first [`PRELUDE_LEN`] bytes; lets a
/// reader that has only the start of an entry know how much more to read before
/// [`decode_header`].
pub fn header_len(prelude: &[u8]) -> Result<usize, DecodeError> {
    let prelude = prelude.get(..PRELUDE_LEN).ok_or(DecodeError::Truncated)?;
    if prelude[..4] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    let version = u16::from_be_bytes([prelude[4], prelude[5]]);
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let records_len = u32::from_be_bytes([prelude[8], prelude[9], prelude[10], prelude[11]]);
    let records_len = records_len as usize;
    if records_len > MAX_RECORDS_LEN {
        return Err(DecodeError::Invalid("header section too large"));
    }
    Ok(PRELUDE_LEN + records_len)
}

/// Decodes the header section at the start of `buf` (which may continue with the body).
/// Returns the metadata and the length of the header section, i.e. the offset of the body.
pub fn decode_header(buf: &[u8]) -> Result<(EntryMeta, usize), DecodeError> {
    let len = header_len(buf)?;
    let header = buf.get(..len).ok_or(DecodeError::Truncated)?;
    let stored_crc = u32::from_be_bytes([header[12], header[13], header[14], header[15]]);
    let records = &header[PRELUDE_LEN..];
    if header_crc(&header[..12], records) != stored_crc {
        return Err(DecodeError::HeaderChecksum);
    }
    Ok((decode_records(records)?, len))
}

/// Decodes a whole entry (header section, body, trailer, nothing after), checking both
/// checksums. Returns the metadata and the body.
pub fn decode_entry(buf: &[u8]) -> Result<(EntryMeta, &[u8]), DecodeError> {
    let (meta, header_len) = decode_header(buf)?;
    let rest = &buf[header_len..];
    let body_len = usize::try_from(meta.body_len).map_err(|_| DecodeError::Truncated)?;
    let end = body_len
        .checked_add(TRAILER_LEN)
        .ok_or(DecodeError::Truncated)?;
    if rest.len() < end {
        return Err(DecodeError::Truncated);
    }
    if rest.len() > end {
        return Err(DecodeError::Invalid("bytes after the trailer"));
    }
    let (body, trailer) = rest.split_at(body_len);
    let mut crc = BodyChecksum::new();
    crc.update(body);
    crc.verify(trailer)?;
    Ok((meta, body))
}

fn header_crc(prelude: &[u8], records: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(prelude);
    crc.update(records);
    crc.finalize()
}

fn too_large_err() -> StoreError {
    StoreError::TooLarge {
        limit: u32::MAX as u64,
    }
}

struct Records<'a>(&'a mut Vec<u8>);

impl Records<'_> {
    fn put(&mut self, tag: u16, parts: &[&[u8]]) -> Result<(), StoreError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let len = u32::try_from(len).map_err(|_| too_large_err())?;
        self.0.extend_from_slice(&tag.to_be_bytes());
        self.0.extend_from_slice(&len.to_be_bytes());
        for part in parts {
            self.0.extend_from_slice(part);
        }
        Ok(())
    }
}

fn encode_time(time: SystemTime) -> [u8; 12] {
    let (secs, nanos) = match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            d.subsec_nanos(),
        ),
        Err(e) => {
            // Before the epoch: floor the seconds so the nanoseconds stay in 0..1e9.
            let d = e.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (-secs, 0),
                n => (-secs - 1, 1_000_000_000 - n),
            }
        }
    };
    let mut out = [0; 12];
    out[..8].copy_from_slice(&secs.to_be_bytes());
    out[8..].copy_from_slice(&nanos.to_be_bytes());
    out
}

fn decode_time(value: &[u8]) -> Result<SystemTime, DecodeError> {
    let bad = DecodeError::Invalid("malformed time record");
    let value: &[u8; 12] = value.try_into().map_err(|_| bad)?;
    let mut secs = [0; 8];
    secs.copy_from_slice(&value[..8]);
    let secs = i64::from_be_bytes(secs);
    let nanos = u32::from_be_bytes([value[8], value[9], value[10], value[11]]);
    if nanos >= 1_000_000_000 {
        return Err(bad);
    }
    let time = if secs >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(secs.unsigned_abs(), nanos))
    } else {
        SystemTime::UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))
            .and_then(|t| t.checked_add(Duration::from_nanos(nanos.into())))
    };
    time.ok_or(bad)
}

/// Decodes a header-line record. The value's bytes go to the end of `values` and are split
/// off it, so every value of an entry shares one buffer: cloning them later (each hit copies
/// the stored head into its response) counts references instead of allocating.
fn decode_header_line(
    value: &[u8],
    values: &mut BytesMut,
) -> Result<(HeaderName, HeaderValue), DecodeError> {
    let bad = DecodeError::Invalid("malformed header line record");
    let (len, rest) = split_u32(value).ok_or(bad)?;
    if rest.len() < len as usize {
        return Err(bad);
    }
    let (name, value) = rest.split_at(len as usize);
    let name = HeaderName::from_bytes(name).map_err(|_| bad)?;
    values.extend_from_slice(value);
    let value = HeaderValue::from_maybe_shared(values.split().freeze()).map_err(|_| bad)?;
    Ok((name, value))
}

fn split_u32(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let (head, rest) = bytes.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*head), rest))
}

/// Sets a record that must appear once.
fn once<T>(slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
    if slot.replace(value).is_some() {
        return Err(DecodeError::Invalid("duplicate record"));
    }
    Ok(())
}

const TOO_MANY_LINES: DecodeError = DecodeError::Invalid("more header lines than an entry holds");

/// In the well-formed start of `records`: how many response header lines there are (at most
/// `MAX_HEADER_LINES`, the decoder rejects more) and how many bytes all header-line records
/// hold (at least what their values need).
fn header_lines(mut records: &[u8]) -> (usize, usize) {
    let (mut lines, mut bytes) = (0, 0);
    while let Some((head, rest)) = records.split_first_chunk::<6>() {
        let tag = u16::from_be_bytes([head[0], head[1]]);
        let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
        if lines > MAX_HEADER_LINES || rest.len() < len {
            break;
        }
        if tag == TAG_RESPONSE_HEADER {
            lines += 1;
        }
        if tag == TAG_RESPONSE_HEADER || tag == TAG_VARY_HEADER {
            bytes += len;
        }
        records = &rest[len..];
    }
    (lines.min(MAX_HEADER_LINES), bytes)
}

fn decode_records(mut records: &[u8]) -> Result<EntryMeta, DecodeError> {
    let mut key = None;
    let mut variant = None;
    let mut status = None;
    let mut method = None;
    let mut uri = None;
    let mut request_time = None;
    let mut response_time = None;
    // Sized up front: growing a map on the way rehashes it (a hit's 7 lines grew it once).
    let (lines, line_bytes) = header_lines(records);
    let mut headers = HeaderMap::with_capacity(lines);
    let mut values = BytesMut::with_capacity(line_bytes);
    let mut vary_request_headers = HeaderMap::new();
    let mut expires = None;
    let mut body_len = None;

    while !records.is_empty() {
        let (tag, rest) = records
            .split_first_chunk::<2>()
            .ok_or(DecodeError::Invalid("truncated record"))?;
        let tag = u16::from_be_bytes(*tag);
        let (len, rest) = split_u32(rest).ok_or(DecodeError::Invalid("truncated record"))?;
        let len = len as usize;
        if rest.len() < len {
            return Err(DecodeError::Invalid("truncated record"));
        }
        let (value, rest) = rest.split_at(len);
        records = rest;
        match tag {
            TAG_KEY => {
                let k = std::str::from_utf8(value)
                    .map_err(|_| DecodeError::Invalid("key is not UTF-8"))?;
                once(&mut key, k.to_owned())?;
            }
            TAG_VARIANT => once(&mut variant, VariantId::from_bytes(value))?,
            TAG_STATUS => {
                let bad = DecodeError::Invalid("malformed status record");
                let code: [u8; 2] = value.try_into().map_err(|_| bad)?;
                let code = StatusCode::from_u16(u16::from_be_bytes(code)).map_err(|_| bad)?;
                once(&mut status, code)?;
            }
            TAG_METHOD => {
                let m = Method::from_bytes(value)
                    .map_err(|_| DecodeError::Invalid("malformed method record"))?;
                once(&mut method, m)?;
            }
            TAG_URI => {
                let u = Uri::try_from(value)
                    .map_err(|_| DecodeError::Invalid("malformed URI record"))?;
                once(&mut uri, u)?;
            }
            TAG_REQUEST_TIME => once(&mut request_time, decode_time(value)?)?,
            TAG_RESPONSE_TIME => once(&mut response_time, decode_time(value)?)?,
            // `HeaderMap::append` panics past its size limit (32 768 lines, fewer with many
            // distinct names): a stored entry, checksum or not, must not be able to do that.
            // `MAX_HEADER_LINES` stops far sooner; `try_append` stays as the second guard.
            TAG_RESPONSE_HEADER | TAG_VARY_HEADER
                if headers.len() + vary_request_headers.len() >= MAX_HEADER_LINES =>
            {
                return Err(TOO_MANY_LINES);
            }
            TAG_RESPONSE_HEADER => {
                let (name, value) = decode_header_line(value, &mut values)?;
                headers
                    .try_append(name, value)
                    .map_err(|_| TOO_MANY_LINES)?;
            }
            TAG_VARY_HEADER => {
                let (name, value) = decode_header_line(value, &mut values)?;
                vary_request_headers
                    .try_append(name, value)
                    .map_err(|_| TOO_MANY_LINES)?;
            }
            TAG_EXPIRES => once(&mut expires, decode_time(value)?)?,
            TAG_BODY_LEN => {
                let bad = DecodeError::Invalid("malformed body length record");
                let len: [u8; 8] = value.try_into().map_err(|_| bad)?;
                once(&mut body_len, u64::from_be_bytes(len))?;
            }
            // A record from a newer writer: skipping it is what makes adding fields compatible.
            _ => {}
        }
    }

    let missing = DecodeError::Invalid("missing required record");
    Ok(EntryMeta {
        key: key.ok_or(missing)?,
        variant: variant.ok_or(missing)?,
        response: StoredResponse {
            method: method.ok_or(missing)?,
            uri: uri.ok_or(missing)?,
            status: status.ok_or(missing)?,
            headers,
            vary_request_headers,
            request_time: request_time.ok_or(missing)?,
            response_time: response_time.ok_or(missing)?,
        },
        expires: expires.ok_or(missing)?,
        body_len: body_len.ok_or(missing)?,
    })
}

#[cfg(test)]
mod tests;
