//! Property tests of the entry format: round-trips of arbitrary metadata and bodies, and
//! decoding of arbitrary or damaged bytes never panics.

use std::time::{Duration, SystemTime};

use cache_store::codec::{self, DecodeError, EntryMeta};
use cache_store::{StoredResponse, VariantId};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use proptest::prelude::*;

/// Header values with any byte a `HeaderValue` allows: visible ASCII, SP, HTAB and obs-text
/// (0x80-0xFF).
fn header_value() -> impl Strategy<Value = HeaderValue> {
    let byte = prop_oneof![0x20u8..0x7f, Just(b'\t'), 0x80u8..=0xff];
    proptest::collection::vec(byte, 0..40)
        .prop_filter_map("valid value", |bytes| HeaderValue::from_bytes(&bytes).ok())
}

fn header_map(max: usize) -> impl Strategy<Value = HeaderMap> {
    // Few distinct names and many lines, so repeated fields are common.
    let name = prop_oneof![
        Just("set-cookie".to_owned()),
        Just("x-dup".to_owned()),
        "[a-z][a-z0-9-]{0,12}",
    ];
    proptest::collection::vec((name, header_value()), 0..max).prop_map(|lines| {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                map.append(name, value);
            }
        }
        map
    })
}

fn time() -> impl Strategy<Value = SystemTime> {
    prop_oneof![
        (0u64..4_000_000_000, 0u32..1_000_000_000)
            .prop_map(|(s, n)| SystemTime::UNIX_EPOCH + Duration::new(s, n)),
        (0u64..4_000_000_000, 0u32..1_000_000_000)
            .prop_map(|(s, n)| SystemTime::UNIX_EPOCH - Duration::new(s, n)),
    ]
}

fn meta() -> impl Strategy<Value = EntryMeta> {
    let method = prop_oneof![
        Just(Method::GET),
        Just(Method::HEAD),
        Just(Method::POST),
        "[A-Z]{1,10}".prop_filter_map("method", |m| Method::from_bytes(m.as_bytes()).ok()),
    ];
    let uri = prop_oneof![
        Just(Uri::from_static("/")),
        "[a-z0-9/._~-]{0,30}".prop_filter_map("uri", |p| {
            Uri::try_from(format!("https://example.com/{p}?q={p}")).ok()
        }),
    ];
    (
        "\\PC{0,40}",
        method,
        uri,
        100u16..1000,
        header_map(40),
        header_map(6),
        (time(), time(), time()),
        any::<u64>(),
    )
        .prop_map(
            |(key, method, uri, status, headers, vary, (req, resp, exp), body_len)| {
                let response = StoredResponse {
                    method,
                    uri,
                    status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                    headers,
                    vary_request_headers: vary,
                    request_time: req,
                    response_time: resp,
                };
                EntryMeta {
                    key,
                    variant: VariantId::of(&response),
                    response,
                    expires: exp,
                    body_len,
                }
            },
        )
}

/// Every line of a map in iteration order, as raw bytes: what must survive byte for byte.
fn lines(map: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn header_round_trips(meta in meta()) {
        let bytes = codec::encode_header(&meta).expect("encode");
        prop_assert_eq!(codec::header_len(&bytes), Ok(bytes.len()));
        let (decoded, len) = codec::decode_header(&bytes).expect("decode");
        prop_assert_eq!(len, bytes.len());
        prop_assert_eq!(lines(&decoded.response.headers), lines(&meta.response.headers));
        prop_assert_eq!(
            lines(&decoded.response.vary_request_headers),
            lines(&meta.response.vary_request_headers)
        );
        prop_assert_eq!(&decoded, &meta);
    }

    #[test]
    fn entry_round_trips(meta in meta(), body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let bytes = codec::encode_entry(&meta, &body).expect("encode");
        let (decoded, decoded_body) = codec::decode_entry(&bytes).expect("decode");
        prop_assert_eq!(decoded_body, &body[..]);
        prop_assert_eq!(decoded.body_len, body.len() as u64);
        prop_assert_eq!(decoded.response, meta.response);
        prop_assert_eq!(decoded.key, meta.key);
    }

    #[test]
    fn any_single_byte_flip_is_detected(
        meta in meta(),
        body in proptest::collection::vec(any::<u8>(), 1..256),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut bytes = codec::encode_entry(&meta, &body).expect("encode");
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        // CRC32 detects every single-bit error, so a flipped entry never decodes.
        prop_assert!(codec::decode_entry(&bytes).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode_entry(&bytes);
        let _ = codec::decode_header(&bytes);
    }

    #[test]
    fn arbitrary_records_behind_a_valid_prelude_never_panic(
        records in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        // A correct prelude and CRC over random records: exercises the record parser rather
        // than stopping at the checksum.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&codec::MAGIC);
        bytes.extend_from_slice(&codec::VERSION.to_be_bytes());
        bytes.extend_from_slice(&[0, 0]);
        bytes.extend_from_slice(&(records.len() as u32).to_be_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&bytes[..12]);
        crc.update(&records);
        bytes.extend_from_slice(&crc.finalize().to_be_bytes());
        bytes.extend_from_slice(&records);
        match codec::decode_header(&bytes) {
            Ok(_) | Err(DecodeError::Invalid(_)) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }
}
