//! A valid entry whose header section holds many header-line records (up to twice
//! `MAX_HEADER_LINES`): decoding returns the entry with every line when there are at most
//! `MAX_HEADER_LINES`, an error when there are more, and never panics.
//!
//! Input: `[count: u16 LE] [distinct names: u8] [vary: u8] [name-len: u8] name value`.
#![no_main]

use std::time::{Duration, SystemTime};

use cache_store::codec::{self, EntryMeta};
use cache_store::{StoredResponse, VariantId};
use http::{HeaderMap, Method, StatusCode, Uri};
use libfuzzer_sys::fuzz_target;

fn record(out: &mut Vec<u8>, tag: u16, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&(len as u32).to_be_bytes());
    for part in parts {
        out.extend_from_slice(part);
    }
}

fuzz_target!(|data: &[u8]| {
    let [c0, c1, distinct, vary, name_len, rest @ ..] = data else {
        return;
    };
    let count = usize::from(u16::from_le_bytes([*c0, *c1])) % (2 * codec::MAX_HEADER_LINES + 1);
    let name_len = usize::from(*name_len).min(rest.len());
    let (name, value) = rest.split_at(name_len);

    // A valid entry with no header lines, then its records section grown by `count` lines.
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let response = StoredResponse {
        method: Method::GET,
        uri: Uri::from_static("http://example.com/"),
        status: StatusCode::OK,
        headers: HeaderMap::new(),
        vary_request_headers: HeaderMap::new(),
        request_time: t,
        response_time: t,
    };
    let meta = EntryMeta {
        key: "http://example.com/".into(),
        variant: VariantId::of(&response),
        response,
        expires: t,
        body_len: 0,
    };
    let mut bytes = codec::encode_header(&meta).expect("encode");
    let tag = if *vary & 1 == 1 { 9 } else { 8 };
    for i in 0..count {
        let distinct_name;
        let name: &[u8] = if *distinct & 1 == 1 {
            distinct_name = format!("x-{i}");
            distinct_name.as_bytes()
        } else {
            name
        };
        record(&mut bytes, tag, &[&(name.len() as u32).to_be_bytes(), name, value]);
    }
    let records_len = bytes.len() - codec::PRELUDE_LEN;
    bytes[8..12].copy_from_slice(&(records_len as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..12]);
    crc.update(&bytes[codec::PRELUDE_LEN..]);
    let crc = crc.finalize();
    bytes[12..16].copy_from_slice(&crc.to_be_bytes());
    bytes.extend_from_slice(&crc32fast::hash(b"").to_be_bytes());

    match codec::decode_entry(&bytes) {
        Ok((decoded, body)) => {
            assert!(body.is_empty());
            let map = if tag == 9 {
                &decoded.response.vary_request_headers
            } else {
                &decoded.response.headers
            };
            assert_eq!(map.len(), count, "every line decoded");
            assert!(count <= codec::MAX_HEADER_LINES, "more lines than an entry holds");
        }
        Err(_) => {}
    }
});
