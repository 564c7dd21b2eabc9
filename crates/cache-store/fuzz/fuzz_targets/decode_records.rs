//! Feeds arbitrary bytes to the decoder as the records section behind a valid prelude and
//! header checksum, so the fuzzer explores the record parser instead of stopping at the CRC.
#![no_main]

use cache_store::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|records: &[u8]| {
    let mut bytes = Vec::with_capacity(codec::PRELUDE_LEN + records.len());
    bytes.extend_from_slice(&codec::MAGIC);
    bytes.extend_from_slice(&codec::VERSION.to_be_bytes());
    bytes.extend_from_slice(&[0, 0]);
    bytes.extend_from_slice(&(records.len() as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..12]);
    crc.update(records);
    bytes.extend_from_slice(&crc.finalize().to_be_bytes());
    bytes.extend_from_slice(records);
    if let Ok((meta, len)) = codec::decode_header(&bytes) {
        assert_eq!(len, bytes.len());
        // Whatever decodes must encode back to the same metadata.
        let again = codec::encode_header(&meta).expect("re-encode");
        let (meta2, _) = codec::decode_header(&again).expect("decode re-encoded");
        assert_eq!(meta, meta2);
    }
});
