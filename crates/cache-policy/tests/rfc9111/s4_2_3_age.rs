//! RFC 9111 §4.2.3 (calculating age) and §5.1 (Age).

use std::time::{Duration, SystemTime};

use cache_policy::StoredResponse;

use crate::helpers::*;

/// A `max-age=100000` response with these extra lines, requested at `at(sent)`, received at
/// `at(received)`.
fn entry(lines: &[(&str, &str)], sent: u64, received: u64) -> StoredResponse {
    let mut all = vec![("cache-control", "max-age=100000")];
    all.extend_from_slice(lines);
    store_times(
        &private(),
        &get(&[]),
        &resp(200, &all),
        at(sent),
        at(received),
    )
}

fn age(entry: &StoredResponse, now: u64) -> u64 {
    private().freshness(entry, at(now)).age.as_secs()
}

#[test]
fn rfc9111_4_2_3_age_uses_request_and_response_time() {
    // (label, lines, request_time, response_time, now, expected age)
    let table: &[(&str, Vec<(&str, String)>, u64, u64, u64, u64)] = &[
        (
            "nothing: resident time only",
            vec![("date", date(0))],
            0,
            0,
            25,
            25,
        ),
        (
            "Age header",
            vec![("date", date(0)), ("age", "30".into())],
            0,
            0,
            0,
            30,
        ),
        (
            "Age header plus resident time",
            vec![("date", date(0)), ("age", "30".into())],
            0,
            0,
            10,
            40,
        ),
        (
            "apparent age from Date",
            vec![("date", date(-100))],
            0,
            0,
            0,
            100,
        ),
        (
            "apparent age plus resident time",
            vec![("date", date(-100))],
            0,
            0,
            7,
            107,
        ),
        (
            "Date in the future: apparent age 0",
            vec![("date", date(500))],
            0,
            0,
            3,
            3,
        ),
        (
            "response delay added to Age",
            vec![("date", date(5)), ("age", "10".into())],
            0,
            5,
            5,
            15,
        ),
        ("response delay alone", vec![("date", date(5))], 0, 5, 5, 5),
        (
            "apparent age larger than corrected Age",
            vec![("date", date(-100)), ("age", "10".into())],
            0,
            2,
            2,
            102,
        ),
        (
            "corrected Age larger than apparent age",
            vec![("date", date(-10)), ("age", "60".into())],
            0,
            2,
            2,
            62,
        ),
        (
            "invalid Age ignored",
            vec![("date", date(0)), ("age", "abc".into())],
            0,
            0,
            4,
            4,
        ),
        (
            "negative Age ignored",
            vec![("date", date(0)), ("age", "-50".into())],
            0,
            0,
            4,
            4,
        ),
        (
            "fractional Age ignored",
            vec![("date", date(0)), ("age", "1.5".into())],
            0,
            0,
            4,
            4,
        ),
        (
            "Age list: first member",
            vec![("date", date(0)), ("age", "10, 20".into())],
            0,
            0,
            0,
            10,
        ),
        (
            "Age with whitespace",
            vec![("date", date(0)), ("age", " 10 ".into())],
            0,
            0,
            0,
            10,
        ),
        (
            "invalid Date: response time stands in",
            vec![("date", "yesterday".into())],
            0,
            0,
            9,
            9,
        ),
    ];
    for (label, lines, sent, received, now, expected) in table {
        let lines: Vec<(&str, &str)> = lines.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(
            age(&entry(&lines, *sent, *received), *now),
            *expected,
            "{label}"
        );
    }
}

#[test]
fn rfc9111_4_2_3_huge_age_is_capped_not_overflowing() {
    let e = entry(&[("age", "99999999999999999999999999999")], 0, 0);
    assert_eq!(age(&e, 0), 1 << 31);
    let serve = private().lookup(&get(&[]), &[e], at(0));
    assert_eq!(kind(&serve), "revalidate");
}

#[test]
fn rfc9111_5_1_generated_age_is_delta_seconds() {
    let policy = private();
    let e = entry(&[("date", &date(-3)), ("age", "2")], 0, 1);
    let serve = fresh(policy.lookup(&get(&[]), std::slice::from_ref(&e), at(61)));
    let values = values(&serve.response_head(&e).headers, "age");
    assert_eq!(values, ["64"]);
    assert!(values[0].bytes().all(|b| b.is_ascii_digit()));
    // A response whose age does not fit is served with Age 2^31 (§1.2.2).
    let policy = with(
        cache_policy::PolicyOptions::default()
            .ignore_rules(true)
            .default_ttl(Duration::MAX),
    );
    let e = store(&policy, &get(&[]), &resp(200, &[("age", "99999999999")]));
    let serve = fresh(policy.lookup(&get(&[]), std::slice::from_ref(&e), at(0)));
    assert_eq!(serve.response_head(&e).headers["age"], "2147483648");
}

fn is_imf_fixdate(value: &str) -> bool {
    // Sun, 06 Nov 1994 08:49:37 GMT
    let b = value.as_bytes();
    b.len() == 29
        && ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&&value[..3])
        && &value[3..5] == ", "
        && b[5..7].iter().all(u8::is_ascii_digit)
        && [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ]
        .contains(&&value[8..11])
        && b[12..16].iter().all(u8::is_ascii_digit)
        && value.ends_with(" GMT")
        && httpdate::parse_http_date(value).is_ok()
}

#[test]
fn rfc9110_6_6_1_generated_date_is_an_imf_fixdate_of_the_response_time() {
    let e = store_times(
        &private(),
        &get(&[]),
        &resp(200, &[("cache-control", "max-age=60")]),
        at(0),
        at(2),
    );
    let value = e.headers["date"].to_str().unwrap();
    assert!(is_imf_fixdate(value), "{value}");
    assert_eq!(httpdate::parse_http_date(value).unwrap(), at(2));
    // A Date the origin sent is kept as sent.
    let e = entry(&[("date", "Sunday, 06-Nov-94 08:49:37 GMT")], 0, 0);
    assert_eq!(e.headers["date"], "Sunday, 06-Nov-94 08:49:37 GMT");
    // An unparseable Date is replaced by the response time, so what is served is valid.
    let e = entry(&[("date", "yesterday")], 0, 4);
    let value = e.headers["date"].to_str().unwrap();
    assert!(is_imf_fixdate(value), "{value}");
    assert_eq!(httpdate::parse_http_date(value).unwrap(), at(4));
}

#[test]
fn rfc9110_6_6_1_times_outside_the_http_date_range_do_not_panic() {
    for time in [
        SystemTime::UNIX_EPOCH - secs(1),
        SystemTime::UNIX_EPOCH + secs(400_000_000_000),
    ] {
        let response = resp(
            200,
            &[("cache-control", "max-age=60"), ("last-modified", &date(0))],
        );
        let decision = private().after_response(&get(&[]), &response, time, time, NONE);
        if let cache_policy::ResponseAction::Store { entry, .. } = decision.action {
            let value = entry.headers["date"].to_str().unwrap().to_owned();
            assert!(is_imf_fixdate(&value), "{value}");
            let _ = private().lookup(&get(&[]), &[entry], time);
        }
    }
}
