//! Feeds arbitrary bytes to the entry decoder: it must return a value or an error, never panic,
//! and whatever decodes must encode back to an entry that decodes the same.
#![no_main]

use cache_store::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = codec::header_len(data);
    if let Ok((meta, len)) = codec::decode_header(data) {
        assert!(len <= data.len());
        // Re-encoding what decoded must round-trip.
        let again = codec::encode_header(&meta).expect("re-encode");
        let (meta2, _) = codec::decode_header(&again).expect("decode re-encoded");
        assert_eq!(meta, meta2);
    }
    if let Ok((meta, body)) = codec::decode_entry(data) {
        assert_eq!(meta.body_len, body.len() as u64);
    }
});
