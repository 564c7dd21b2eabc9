//! Unit tests of the entry codec.

use super::*;

fn meta() -> EntryMeta {
    let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123);
    let mut headers = HeaderMap::new();
    headers.append("vary", HeaderValue::from_static("accept-encoding"));
    headers.append("x-a", HeaderValue::from_static("1"));
    headers.append("x-a", HeaderValue::from_static("2"));
    let mut vary = HeaderMap::new();
    vary.append("accept-encoding", HeaderValue::from_static("gzip"));
    let response = StoredResponse {
        method: Method::GET,
        uri: Uri::from_static("http://example.com/x?y=1"),
        status: StatusCode::OK,
        headers,
        vary_request_headers: vary,
        request_time: t,
        response_time: t + Duration::from_millis(5),
    };
    EntryMeta {
        key: "http://example.com/x?y=1".into(),
        variant: VariantId::of(&response),
        response,
        expires: t + Duration::from_secs(10),
        body_len: 0,
    }
}

#[test]
fn round_trip_and_distinct_errors() {
    let meta = meta();
    let bytes = encode_entry(&meta, b"body!").expect("encode");
    let (decoded, body) = decode_entry(&bytes).expect("decode");
    assert_eq!(body, b"body!");
    assert_eq!(decoded.body_len, 5);
    assert_eq!(decoded.response, meta.response);
    assert_eq!(decoded.check_key("other"), Err(DecodeError::KeyMismatch));
    assert_eq!(decoded.check_key(&meta.key), Ok(()));

    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert_eq!(decode_entry(&bad).err(), Some(DecodeError::BadMagic));
    let mut bad = bytes.clone();
    bad[5] = 2;
    assert_eq!(
        decode_entry(&bad).err(),
        Some(DecodeError::UnsupportedVersion(2))
    );
    let mut bad = bytes.clone();
    bad[20] ^= 0x40;
    assert_eq!(decode_entry(&bad).err(), Some(DecodeError::HeaderChecksum));
    let mut bad = bytes.clone();
    let n = bad.len();
    bad[n - 5] ^= 1;
    assert_eq!(decode_entry(&bad).err(), Some(DecodeError::BodyChecksum));
    assert_eq!(
        decode_entry(&bytes[..bytes.len() - 1]).err(),
        Some(DecodeError::Truncated)
    );
    for cut in 0..bytes.len() {
        assert!(decode_entry(&bytes[..cut]).is_err());
    }
}

#[test]
fn unknown_tags_are_skipped() {
    let meta = meta();
    let mut bytes = encode_header(&meta).expect("encode");
    // A record with an unknown tag, as a newer writer would add.
    push_record(&mut bytes, 999, b"new");
    seal(&mut bytes);
    let (decoded, len) = decode_header(&bytes).expect("decode");
    assert_eq!(len, bytes.len());
    assert_eq!(decoded, meta);
}

/// Appends a record; [`seal`] then fixes up the records length and CRC, as a writer would.
fn push_record(bytes: &mut Vec<u8>, tag: u16, value: &[u8]) {
    bytes.extend_from_slice(&tag.to_be_bytes());
    bytes.extend_from_slice(&(value.len() as u32).to_be_bytes());
    bytes.extend_from_slice(value);
}

fn seal(bytes: &mut [u8]) {
    let records_len = (bytes.len() - PRELUDE_LEN) as u32;
    bytes[8..12].copy_from_slice(&records_len.to_be_bytes());
    let crc = header_crc(&bytes[..12], &bytes[PRELUDE_LEN..]);
    bytes[12..16].copy_from_slice(&crc.to_be_bytes());
}

/// Hardening: an entry with a valid checksum and more distinct header names than a
/// `HeaderMap` holds is an error, not a panic inside `HeaderMap::append`.
#[test]
fn an_entry_with_25_000_distinct_header_names_is_an_error_not_a_panic() {
    for tag in [TAG_RESPONSE_HEADER, TAG_VARY_HEADER] {
        let mut bytes = encode_header(&meta()).expect("encode");
        for i in 0..40_000u32 {
            let name = format!("x-{i}");
            let mut line = (name.len() as u32).to_be_bytes().to_vec();
            line.extend_from_slice(name.as_bytes());
            line.extend_from_slice(b"v");
            push_record(&mut bytes, tag, &line);
        }
        seal(&mut bytes);
        assert_eq!(decode_header(&bytes), Err(TOO_MANY_LINES), "tag {tag}");
    }
}

/// An entry holds at most `MAX_HEADER_LINES` lines, counted over both maps: the writer
/// refuses more (the response goes uncached) and the reader rejects an entry with more.
#[test]
fn header_lines_are_bounded_on_write_and_on_read() {
    let with_lines = |response_lines: usize, vary_lines: usize| {
        let mut meta = meta();
        meta.response.headers.clear();
        meta.response.vary_request_headers.clear();
        for i in 0..response_lines {
            let name = HeaderName::try_from(format!("x-r{i}")).expect("name");
            meta.response
                .headers
                .append(name, HeaderValue::from_static("1"));
        }
        for i in 0..vary_lines {
            let name = HeaderName::try_from(format!("x-v{i}")).expect("name");
            meta.response
                .vary_request_headers
                .append(name, HeaderValue::from_static("1"));
        }
        meta
    };
    let at_limit = with_lines(MAX_HEADER_LINES - 10, 10);
    let bytes = encode_header(&at_limit).expect("at the limit encodes");
    assert_eq!(decode_header(&bytes).map(|(m, _)| m), Ok(at_limit));
    assert!(matches!(
        encode_header(&with_lines(MAX_HEADER_LINES - 10, 11)),
        Err(StoreError::TooManyHeaderLines {
            limit: MAX_HEADER_LINES
        })
    ));

    // A hand-made entry one line over the limit, with a valid checksum.
    let mut bytes = encode_header(&with_lines(MAX_HEADER_LINES, 0)).expect("encode");
    let mut line = 3u32.to_be_bytes().to_vec();
    line.extend_from_slice(b"x-vv");
    push_record(&mut bytes, TAG_VARY_HEADER, &line);
    seal(&mut bytes);
    assert_eq!(decode_header(&bytes).err(), Some(TOO_MANY_LINES));
}

#[test]
fn times_before_the_epoch_round_trip() {
    for t in [
        SystemTime::UNIX_EPOCH - Duration::new(5, 1),
        SystemTime::UNIX_EPOCH - Duration::new(5, 0),
        SystemTime::UNIX_EPOCH - Duration::new(0, 999_999_999),
        SystemTime::UNIX_EPOCH,
    ] {
        assert_eq!(decode_time(&encode_time(t)), Ok(t));
    }
}

/// What a hit pays for decoding a head: the response map is sized once, and every value sits
/// in one shared buffer, so a hit copying the stored head into its response only counts
/// references (before, 7 lines cost 14 allocations: a copy and a promotion per value).
#[test]
fn decoded_values_share_one_buffer_in_a_map_sized_once() {
    let meta = meta();
    let bytes = encode_header(&meta).expect("encode");
    let (decoded, _) = decode_header(&bytes).expect("decode");
    assert_eq!(decoded.response, meta.response);
    let headers = &decoded.response.headers;
    assert_eq!(
        headers.capacity(),
        HeaderMap::<HeaderValue>::with_capacity(headers.len()).capacity(),
        "sized for its lines up front"
    );
    // The values follow one another in one buffer, in record order, the Vary map's too.
    let values: Vec<&HeaderValue> = headers
        .values()
        .chain(decoded.response.vary_request_headers.values())
        .collect();
    assert_eq!(values.len(), 4);
    for pair in values.windows(2) {
        let (a, b) = (pair[0].as_bytes(), pair[1].as_bytes());
        assert_eq!(
            a.as_ptr().wrapping_add(a.len()),
            b.as_ptr(),
            "{a:?} then {b:?}"
        );
    }
}
