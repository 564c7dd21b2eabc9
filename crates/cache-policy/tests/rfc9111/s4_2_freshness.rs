//! RFC 9111 §4.2.1 (calculating freshness lifetime) and §4.2.2 (heuristic freshness).

use std::time::Duration;

use cache_policy::{CachePolicy, FreshnessSource, Heuristics, PolicyOptions};

use crate::helpers::*;

/// The (lifetime in seconds, source) of a response stored at `at(0)` under `policy`.
fn lifetime(policy: &CachePolicy, status: u16, lines: &[(&str, &str)]) -> (u64, FreshnessSource) {
    let entry = store(policy, &get(&[]), &resp(status, lines));
    let f = policy.freshness(&entry, at(0));
    (f.lifetime.as_secs(), f.source)
}

#[test]
fn rfc9111_4_2_fresh_while_lifetime_exceeds_age() {
    let policy = private();
    let entry = store(
        &policy,
        &get(&[]),
        &resp(200, &[("cache-control", "max-age=60"), ("date", &date(0))]),
    );
    let table = [
        (0, "fresh"),
        (59, "fresh"),
        (60, "revalidate"),
        (61, "revalidate"),
    ];
    for (s, expected) in table {
        assert_eq!(
            kind(&policy.lookup(&get(&[]), std::slice::from_ref(&entry), at(s))),
            expected,
            "at {s}"
        );
    }
}

#[test]
fn rfc9111_4_2_1_and_5_2_2_1_max_age() {
    assert_eq!(
        lifetime(&private(), 200, &[("cache-control", "max-age=60")]),
        (60, FreshnessSource::MaxAge)
    );
    assert_eq!(
        lifetime(&private(), 200, &[("cache-control", "max-age=0")]),
        (0, FreshnessSource::MaxAge)
    );
    // max-age takes precedence over Expires.
    assert_eq!(
        lifetime(
            &private(),
            200,
            &[
                ("cache-control", "max-age=60"),
                ("date", &date(0)),
                ("expires", &date(1000))
            ]
        ),
        (60, FreshnessSource::MaxAge)
    );
}

#[test]
fn rfc9111_4_2_1_and_5_2_2_10_s_maxage_only_in_a_shared_cache() {
    let lines = &[("cache-control", "max-age=10, s-maxage=100")];
    assert_eq!(
        lifetime(&shared(), 200, lines),
        (100, FreshnessSource::SMaxAge)
    );
    assert_eq!(
        lifetime(&private(), 200, lines),
        (10, FreshnessSource::MaxAge)
    );
    // s-maxage takes precedence over Expires in a shared cache; a private cache uses Expires.
    let lines = &[
        ("cache-control", "s-maxage=100"),
        ("date", &date(0)),
        ("expires", &date(30)),
    ];
    assert_eq!(
        lifetime(&shared(), 200, lines),
        (100, FreshnessSource::SMaxAge)
    );
    assert_eq!(
        lifetime(&private(), 200, lines),
        (30, FreshnessSource::Expires)
    );
}

#[test]
fn rfc9111_4_2_1_and_5_3_expires_minus_date() {
    let table: &[(&str, Vec<(&str, String)>, u64)] = &[
        (
            "Expires 100 s after Date",
            vec![("date", date(0)), ("expires", date(100))],
            100,
        ),
        (
            "Date in the past: lifetime is still Expires - Date",
            vec![("date", date(-50)), ("expires", date(50))],
            100,
        ),
        (
            "Expires before Date",
            vec![("date", date(0)), ("expires", date(-10))],
            0,
        ),
        (
            "Expires equal to Date",
            vec![("date", date(0)), ("expires", date(0))],
            0,
        ),
        (
            "obsolete RFC 850 format",
            vec![
                ("date", "Sunday, 06-Nov-94 08:49:37 GMT".into()),
                ("expires", "Sunday, 06-Nov-94 08:50:37 GMT".into()),
            ],
            60,
        ),
        (
            "asctime format",
            vec![
                ("date", "Sun Nov  6 08:49:37 1994".into()),
                ("expires", "Sun Nov  6 08:51:37 1994".into()),
            ],
            120,
        ),
        // No Date: the response time stands in (§4.2.1, the cache adds a Date when storing).
        ("no Date", vec![("expires", date(40))], 40),
    ];
    for (label, lines, expected) in table {
        let lines: Vec<(&str, &str)> = lines.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(
            lifetime(&private(), 200, &lines),
            (*expected, FreshnessSource::Expires),
            "{label}"
        );
    }
    // The age counts from Date: with Date 50 s old, 50 s are left.
    let policy = private();
    let entry = store(
        &policy,
        &get(&[]),
        &resp(200, &[("date", &date(-50)), ("expires", &date(50))]),
    );
    assert_eq!(policy.freshness(&entry, at(0)).time_to_live(), secs(50));
}

#[test]
fn rfc9111_5_3_invalid_expires_means_already_expired() {
    for invalid in [
        "0",
        "-1",
        "never",
        "Thu, 32 Jan 2099 00:00:00 GMT",
        "",
        "Thu, 01 Jan 2099 00:00:00 PST",
    ] {
        let lines = [
            ("date", date(0)),
            ("expires", invalid.to_owned()),
            ("last-modified", date(-100_000)),
        ];
        let lines: Vec<(&str, &str)> = lines.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let policy = private();
        assert_eq!(
            lifetime(&policy, 200, &lines),
            (0, FreshnessSource::Expires),
            "{invalid:?}"
        );
        let entry = store(&policy, &get(&[]), &resp(200, &lines));
        assert_eq!(
            kind(&policy.lookup(&get(&[]), &[entry], at(0))),
            "revalidate",
            "{invalid:?}"
        );
    }
    // Several differing Expires lines are invalid too.
    let lines = [
        ("date", date(0)),
        ("expires", date(100)),
        ("expires", date(200)),
    ];
    let lines: Vec<(&str, &str)> = lines.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(
        lifetime(&private(), 200, &lines),
        (0, FreshnessSource::Expires)
    );
}

#[test]
fn rfc9111_4_2_1_duplicate_and_malformed_freshness_directives() {
    let table = [
        ("max-age=60, max-age=60", 60),
        ("max-age=60, max-age=120", 0),
        ("max-age=abc", 0),
        ("max-age=-1", 0),
        ("max-age=60s", 0),
        ("max-age=6 0", 0),
        ("max-age=", 0),
        ("max-age", 0),
        ("max-age=1.5", 0),
        ("max-age=\"60\"", 60),
        ("MAX-AGE=60", 60),
        ("max-age = 60", 60),
        ("max-age=99999999999999999999999", 1 << 31),
    ];
    for (value, expected) in table {
        let (lifetime, source) = lifetime(&private(), 200, &[("cache-control", value)]);
        assert_eq!(
            (lifetime, source),
            (expected, FreshnessSource::MaxAge),
            "{value}"
        );
    }
    // Two field lines are one list: a conflict across lines is still a conflict.
    assert_eq!(
        lifetime(
            &private(),
            200,
            &[
                ("cache-control", "max-age=60"),
                ("cache-control", "max-age=30")
            ]
        )
        .0,
        0
    );
    // An invalid s-maxage in a shared cache makes the response stale too.
    assert_eq!(
        lifetime(
            &shared(),
            200,
            &[("cache-control", "max-age=60, s-maxage=x")]
        )
        .0,
        0
    );
}

#[test]
fn rfc9111_4_2_2_heuristic_is_ten_percent_of_the_time_since_last_modified() {
    let lines = &[("date", &*date(0)), ("last-modified", &*date(-1000))];
    assert_eq!(
        lifetime(&private(), 200, lines),
        (100, FreshnessSource::Heuristic)
    );
    assert_eq!(
        lifetime(&shared(), 404, lines),
        (100, FreshnessSource::Heuristic)
    );
    // Capped at one day by default.
    let old = &[
        ("date", &*date(0)),
        ("last-modified", &*date(-100 * 86_400)),
    ];
    assert_eq!(
        lifetime(&private(), 200, old),
        (86_400, FreshnessSource::Heuristic)
    );
    // Last-Modified after Date: no heuristic lifetime.
    assert_eq!(
        lifetime(
            &private(),
            200,
            &[("date", &*date(0)), ("last-modified", &*date(10))]
        )
        .0,
        0
    );
    // No Last-Modified: nothing to base it on.
    assert_eq!(
        lifetime(&private(), 200, &[("date", &*date(0))]),
        (0, FreshnessSource::None)
    );
}

#[test]
fn rfc9111_4_2_2_heuristic_not_used_with_explicit_freshness_or_uncacheable_status() {
    let lm = ("last-modified", date(-10_000));
    let lm = (lm.0, lm.1.as_str());
    assert_eq!(
        lifetime(&private(), 200, &[("cache-control", "max-age=5"), lm]),
        (5, FreshnessSource::MaxAge)
    );
    assert_eq!(
        lifetime(&private(), 200, &[("expires", "0"), lm]),
        (0, FreshnessSource::Expires)
    );
    // 302 is not heuristically cacheable; marked public it is (§4.2.2).
    assert_eq!(
        lifetime(&private(), 302, &[("cache-control", "private"), lm]),
        (0, FreshnessSource::None)
    );
    assert_eq!(
        lifetime(&private(), 302, &[("cache-control", "public"), lm]),
        (1000, FreshnessSource::Heuristic)
    );
}

#[test]
fn rfc9111_4_2_2_heuristic_fraction_cap_and_disabling_are_options() {
    let lines = &[("date", &*date(0)), ("last-modified", &*date(-1000))];
    let half = with(PolicyOptions::default().heuristics(Some(Heuristics {
        fraction: 0.5,
        max: secs(86_400),
    })));
    assert_eq!(
        lifetime(&half, 200, lines),
        (500, FreshnessSource::Heuristic)
    );
    let capped = with(PolicyOptions::default().heuristics(Some(Heuristics {
        fraction: 0.1,
        max: secs(60),
    })));
    assert_eq!(
        lifetime(&capped, 200, lines),
        (60, FreshnessSource::Heuristic)
    );
    let off = with(PolicyOptions::default().heuristics(None));
    assert_eq!(lifetime(&off, 200, lines), (0, FreshnessSource::None));
    // Out-of-range fractions are clamped rather than trusted.
    for fraction in [-1.0, f64::NAN, f64::INFINITY, 7.0] {
        let odd = with(PolicyOptions::default().heuristics(Some(Heuristics {
            fraction,
            max: secs(86_400),
        })));
        let (l, _) = lifetime(&odd, 200, lines);
        assert!(l <= 1000, "{fraction}: {l}");
    }
}

#[test]
fn rfc9111_4_2_freshness_reports_lifetime_age_and_time_to_live() {
    let policy = private();
    let entry = store(
        &policy,
        &get(&[]),
        &resp(200, &[("cache-control", "max-age=100"), ("date", &date(0))]),
    );
    let f = policy.freshness(&entry, at(30));
    assert_eq!(
        (f.lifetime, f.age, f.time_to_live(), f.staleness()),
        (secs(100), secs(30), secs(70), Duration::ZERO)
    );
    let f = policy.freshness(&entry, at(130));
    assert!(!f.is_fresh());
    assert_eq!(f.staleness(), secs(30));
}

#[test]
fn rfc9111_5_3_several_differing_expires_lines_mean_already_expired() {
    let (d, later, latest) = (date(0), date(100), date(200));
    // Identical repeated lines are one value: 100 s.
    let same = [
        ("date", d.as_str()),
        ("expires", &later),
        ("expires", &later),
    ];
    assert_eq!(
        lifetime(&private(), 200, &same),
        (100, FreshnessSource::Expires)
    );
    // Lines that differ, even with other fields between them: already expired.
    let differing = [
        ("date", d.as_str()),
        ("expires", &later),
        ("content-type", "text/plain"),
        ("expires", &latest),
    ];
    assert_eq!(
        lifetime(&private(), 200, &differing),
        (0, FreshnessSource::Expires)
    );
}

#[test]
fn rfc9111_5_2_cache_control_lines_apart_are_one_field() {
    // §5.2 (and RFC 9110 §5.3): the lines of one field combine, whatever lies between them.
    let lines = [
        ("cache-control", "public"),
        ("date", &date(0)),
        ("content-type", "text/plain"),
        ("cache-control", "max-age=30"),
        ("cdn-cache-control", "max-age=5"),
    ];
    assert_eq!(
        lifetime(&private(), 200, &lines),
        (30, FreshnessSource::MaxAge)
    );
}
