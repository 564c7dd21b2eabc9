//! The filesystem store's read path on arbitrary entry files: the input becomes the file the
//! store reads for a key (at the path `FsStore::variant_paths` reports, replaced atomically
//! like the store's own writes), then `Store::get` reads it and every body is read to the end.
//!
//! The file is either raw bytes or a valid encoded entry (arbitrary key, metadata, body of up
//! to a few hundred KiB so that both the in-memory and the streamed read are exercised, expiry
//! in the past or the future) damaged by arbitrary edits, with or without a fixed-up header
//! checksum. Invariants, against `codec::decode_entry` of the same bytes:
//!
//! - `get` never panics and never fails (a damaged file is a miss);
//! - it returns at most the one entry, and only if the bytes decode as an entry of this key
//!   that has not expired; then its metadata is the decoded one, and its body reads to the
//!   end as exactly the decoded body;
//! - a valid, unexpired entry of this key is returned, and its body reads without error;
//! - a body that does not match (a streamed body damaged past the header) ends in an error,
//!   never in a complete-looking body.
//!
//! A current-thread tokio runtime drives the store (with one blocking thread, so that the
//! removal of a damaged file a body read schedules is done before the next input is written).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use cache_store::codec::{self, EntryMeta};
use cache_store::{FsStore, Store, StoredResponse, VariantId, WriteOptions};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use http_body_util::BodyExt;
use libfuzzer_sys::{arbitrary, fuzz_target};

const KEY: &str = "http://example.com/fuzz";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    /// Stores reading on the blocking pool and inline, and the entry file path of `KEY` in each.
    stores: Vec<(FsStore, PathBuf)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .build()
            .expect("runtime");
        let base = std::env::temp_dir().join(format!("entry-read-path-{}", std::process::id()));
        let stores = [false, true]
            .into_iter()
            .map(|inline| {
                let root = base.join(if inline { "inline" } else { "pool" });
                let _ = std::fs::remove_dir_all(&root);
                std::fs::create_dir_all(&root).expect("root");
                let store = FsStore::builder(&root)
                    .inline_reads(inline)
                    .build()
                    .expect("store");
                // One real write, to learn where the store keeps `KEY`'s (only) variant.
                runtime.block_on(async {
                    let response = response(Method::GET, HeaderMap::new());
                    let options = WriteOptions {
                        ttl: Duration::from_secs(3600),
                        content_length: None,
                    };
                    let mut writer = store.begin(KEY, response.into(), options).await.unwrap();
                    writer.write(bytes::Bytes::from_static(b"seed")).unwrap();
                    writer.commit().await.unwrap();
                });
                let paths = store.variant_paths(KEY).expect("variant paths");
                assert_eq!(paths.len(), 1);
                (store, paths[0].clone())
            })
            .collect();
        Fixture { runtime, stores }
    })
}

fn response(method: Method, headers: HeaderMap) -> StoredResponse {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    StoredResponse {
        method,
        uri: Uri::from_static("http://example.com/fuzz"),
        status: StatusCode::OK,
        headers,
        vary_request_headers: HeaderMap::new(),
        request_time: t,
        response_time: t,
    }
}

#[derive(Debug, arbitrary::Arbitrary)]
enum Input {
    Raw(Vec<u8>, bool),
    Entry(Entry),
}

#[derive(Debug, arbitrary::Arbitrary)]
struct Entry {
    other_key: bool,
    method: bool,
    variant: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Seconds from now; values near zero are moved away from it.
    expires: i32,
    body: Vec<u8>,
    /// The body is `body` repeated this many times (at most 512 KiB).
    repeat: u16,
    edits: Vec<Edit>,
    fix_header_crc: bool,
    inline: bool,
}

#[derive(Debug, arbitrary::Arbitrary)]
enum Edit {
    Flip(u32, u8),
    Truncate(u32),
    Append(Vec<u8>),
    Insert(u32, u8),
}

fn encode(entry: &Entry) -> Vec<u8> {
    let mut headers = HeaderMap::new();
    for (name, value) in entry.headers.iter().take(8) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    let method = if entry.method { Method::GET } else { Method::HEAD };
    let expires = match entry.expires {
        -9..=0 => -10,
        1..=9 => 10,
        s => s,
    };
    let now = SystemTime::now();
    let expires = if expires > 0 {
        now + Duration::from_secs(expires as u64)
    } else {
        now - Duration::from_secs(expires.unsigned_abs().into())
    };
    let mut body = Vec::new();
    if !entry.body.is_empty() {
        let times = usize::from(entry.repeat % 2048).max(1);
        while body.len() < 512 << 10 && times > body.len() / entry.body.len() {
            body.extend_from_slice(&entry.body);
        }
    }
    let meta = EntryMeta {
        key: if entry.other_key { "http://example.com/other".into() } else { KEY.into() },
        variant: VariantId::from_bytes(&entry.variant),
        response: response(method, headers),
        expires,
        body_len: 0,
    };
    let mut bytes = codec::encode_entry(&meta, &body).expect("encode");
    for edit in entry.edits.iter().take(4) {
        let len = bytes.len() as u32;
        match *edit {
            Edit::Flip(at, mask) if len > 0 => bytes[(at % len) as usize] ^= mask.max(1),
            Edit::Truncate(at) if len > 0 => bytes.truncate((at % len) as usize),
            Edit::Append(ref more) => bytes.extend_from_slice(more),
            Edit::Insert(at, b) => bytes.insert((at % (len + 1)) as usize, b),
            _ => {}
        }
    }
    if entry.fix_header_crc && bytes.len() >= codec::PRELUDE_LEN {
        let records_len = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        if let Some(records) = bytes.get(codec::PRELUDE_LEN..codec::PRELUDE_LEN + records_len) {
            let mut crc = crc32fast::Hasher::new();
            crc.update(&bytes[..12]);
            crc.update(records);
            let crc = crc.finalize().to_be_bytes();
            bytes[12..16].copy_from_slice(&crc);
        }
    }
    bytes
}

fuzz_target!(|input: Input| {
    let (bytes, inline) = match &input {
        Input::Raw(bytes, inline) => (bytes.clone(), *inline),
        Input::Entry(entry) => (encode(entry), entry.inline),
    };
    let fixture = fixture();
    let (store, path) = &fixture.stores[usize::from(inline)];

    // Replace the entry file atomically (a new inode, as the store's own writes do).
    let temp = path.with_file_name("fuzz-input");
    std::fs::write(&temp, &bytes).expect("write input");
    std::fs::rename(&temp, path).expect("rename input");

    let expected = codec::decode_entry(&bytes)
        .ok()
        .filter(|(meta, _)| meta.check_key(KEY).is_ok() && meta.expires > SystemTime::now());

    let read = fixture.runtime.block_on(async {
        let entries = store.get(KEY).await.expect("a damaged entry file is a miss, not an error");
        let mut out = Vec::new();
        for entry in entries.iter() {
            let body = entry.body().expect("a fresh read's body");
            let collected = body.collect().await.map(|c| c.to_bytes());
            out.push((entry.variant.clone(), entry.response.response().clone(), collected));
        }
        // The blocking pool has one thread: this runs after anything a read scheduled there
        // (the removal of a damaged file).
        let _ = tokio::task::spawn_blocking(|| ()).await;
        out
    });

    assert!(read.len() <= 1, "{} entries from one file", read.len());
    match (read.into_iter().next(), expected) {
        (None, None) => {}
        (None, Some((meta, _))) => panic!("a valid entry was not returned: {meta:?}"),
        (Some((_, _, Ok(body))), None) => {
            panic!("an invalid entry file yielded a complete body of {} bytes", body.len())
        }
        (Some((_, _, Err(_))), None) => {}
        (Some((variant, response, body)), Some((meta, expected_body))) => {
            let body = body.expect("a valid entry's body reads");
            assert_eq!(&body[..], expected_body, "body differs from the entry's");
            assert_eq!(variant, meta.variant);
            assert_eq!(response, meta.response);
        }
    }
});
