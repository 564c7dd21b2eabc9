//! The servers the shared-store tests use (set up by `scripts/test.sh`), and fresh prefixes
//! so that runs and tests never see each other's entries.

/// The URL in the environment variable `var`, or `None` (the test is skipped, with a
/// message) when it is unset; under `CI=true` a missing server is a failure.
pub(crate) fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "{var} is not set under CI: these tests need a server (scripts/test.sh starts one)"
            )
        }
        _ => {
            eprintln!("skipped: {var} not set (scripts/test.sh starts a server)");
            None
        }
    }
}

/// A prefix no other run or test uses, starting with `tag`.
pub(crate) fn fresh_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{tag}-{}-{nanos}", std::process::id())
}

/// `url` with a fresh `prefix` parameter (for Redis URLs).
pub(crate) fn with_fresh_prefix(url: &str, tag: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}prefix={}:", fresh_prefix(tag))
}
