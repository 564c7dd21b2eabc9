//! The `s3://BUCKET/PREFIX?...` URL, the object_store client it configures, and the
//! messages for what goes wrong.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::StoreError;

/// What a URL names: the bucket, the prefix and the settings given in its query.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) bucket: String,
    pub(super) prefix: Path,
    /// `(key, value)` settings from the query, in order (later ones win).
    settings: Vec<(AmazonS3ConfigKey, String)>,
}

/// The query parameters a URL may carry, and the object_store setting each one is.
const PARAMETERS: &str = "endpoint, region, access_key_id, secret_access_key, session_token, \
                          virtual_hosted_style_request, skip_signature";

impl Target {
    /// Parses `s3://BUCKET[/PREFIX][?endpoint=URL&region=R&...]`.
    pub(super) fn parse(url: &str) -> Result<Target, StoreError> {
        let bad = |why: String| {
            StoreError::InvalidUrl(format!(
                "{:?}: {why}; write s3://BUCKET/PREFIX?endpoint=http://HOST:PORT&region=REGION",
                redact(url)
            ))
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not an s3:// URL".into()))?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err(bad("the bucket is missing".into()));
        }
        // S3's bucket naming rules, enough to catch a host:port or a typo early.
        let valid_bucket = bucket.len() >= 3
            && bucket.len() <= 63
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(bad(format!(
                "{bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '-' or '.'; \
                 the endpoint goes in ?endpoint=)"
            )));
        }
        let prefix = prefix.trim_end_matches('/');
        let prefix = Path::parse(prefix).map_err(|e| {
            bad(format!(
                "the prefix {prefix:?} is not a valid object path ({e})"
            ))
        })?;
        let mut settings = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).ok_or_else(|| {
                bad(format!(
                    "the value of {name:?} is not valid percent-encoding"
                ))
            })?;
            let key = match name {
                "endpoint"
                | "endpoint_url"
                | "region"
                | "access_key_id"
                | "secret_access_key"
                | "session_token"
                | "virtual_hosted_style_request"
                | "skip_signature" => name
                    .parse::<AmazonS3ConfigKey>()
                    .map_err(|e| bad(format!("the parameter {name:?} is not understood ({e})")))?,
                _ => {
                    return Err(bad(format!(
                        "unknown parameter {name:?} (known: {PARAMETERS})"
                    )))
                }
            };
            settings.push((key, value));
        }
        Ok(Target {
            bucket: bucket.to_owned(),
            prefix,
            settings,
        })
    }

    /// The client: the AWS_* environment variables, then the URL's settings, with our timeouts
    /// and a short retry budget, so that an unreachable server fails an operation in about
    /// `timeout` rather than object_store's default three minutes of retries.
    pub(super) fn client(
        &self,
        timeout: Duration,
    ) -> Result<(Arc<dyn ObjectStore>, String), StoreError> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&self.bucket);
        for (key, value) in &self.settings {
            builder = builder.with_config(*key, value);
        }
        let endpoint = builder
            .get_config_value(&AmazonS3ConfigKey::Endpoint)
            .unwrap_or_default();
        let region = builder.get_config_value(&AmazonS3ConfigKey::Region);
        if endpoint.is_empty() && region.is_none() {
            return Err(StoreError::InvalidUrl(format!(
                "s3://{}: no endpoint and no region; add ?endpoint=http://HOST:PORT&region=us-east-1 \
                 (or set AWS_ENDPOINT_URL and AWS_REGION)",
                self.bucket
            )));
        }
        let plain = endpoint.starts_with("http://");
        if !plain && !cfg!(feature = "s3-tls") {
            let shown = if endpoint.is_empty() {
                "AWS's https endpoint"
            } else {
                &endpoint
            };
            return Err(StoreError::InvalidUrl(format!(
                "s3://{}: {shown} needs TLS, which this build lacks; enable the cache-store \
                 feature `s3-tls`, or use a plain http:// endpoint",
                self.bucket
            )));
        }
        // No limit on a whole request: a streamed body is read at its reader's pace. The wait
        // for each read is bounded instead (object_store's reqwest client with TLS; our plain
        // client bounds it the same way).
        let options = ClientOptions::new()
            .with_allow_http(plain)
            .with_connect_timeout(timeout)
            .with_timeout_disabled()
            .with_read_timeout(timeout.saturating_mul(4));
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(500),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: timeout,
        };
        // Without TLS, object_store's reqwest client is not built: ours sends plain HTTP.
        #[cfg(not(feature = "s3-tls"))]
        let connector = super::http::PlainConnector { timeout };
        #[cfg(feature = "s3-tls")]
        let connector = object_store::client::ReqwestConnector::default();
        let store = builder
            .with_http_connector(super::guard::Guarded {
                connector,
                breaker: std::sync::Arc::new(crate::breaker::Breaker::new()),
            })
            .with_client_options(options)
            .with_retry(retry)
            .build()
            .map_err(|e| {
                StoreError::InvalidUrl(format!(
                    "s3://{}: the S3 settings are invalid: {e}",
                    self.bucket
                ))
            })?;
        let shown = if endpoint.is_empty() {
            format!(
                "s3://{} (region {})",
                self.bucket,
                region.unwrap_or_default()
            )
        } else {
            format!("s3://{} at {endpoint}", self.bucket)
        };
        Ok((Arc::new(store), shown))
    }
}

pub(super) use crate::open::redact;

/// `%XX` decoded; `+` stays `+` (secret keys contain it).
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A [`StoreError::Unavailable`] for a failed `what`, saying what to do where the cause is
/// recognisable: credentials refused, bucket missing, server unreachable. (object_store
/// reports some of these only as text, in a generic error, so the text is looked at too.)
pub(super) fn failure(shown: &str, what: &str, error: object_store::Error) -> StoreError {
    use object_store::Error as E;
    let text = tidy(&chain(&error));
    let refused = [
        "403 Forbidden",
        "401 Unauthorized",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AccessDenied",
    ];
    let hint = if text.contains("169.254.169.254") || text.contains("169.254.170.2") {
        // object_store fell back to the instance metadata service for credentials.
        " (no credentials were given, and none came from the instance metadata service: set \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the URL's access_key_id and \
         secret_access_key)"
    } else if matches!(
        error,
        E::PermissionDenied { .. } | E::Unauthenticated { .. }
    ) || refused.iter().any(|code| text.contains(code))
    {
        " (the server refused the credentials: check AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY, or the URL's access_key_id and secret_access_key, and that \
         they may use the bucket)"
    } else if text.contains("NoSuchBucket") {
        " (the bucket does not exist: create it first)"
    } else if is_unreachable(&text) {
        " (the S3 server cannot be reached: is it running, and is the endpoint (?endpoint= or \
         AWS_ENDPOINT_URL) right?)"
    } else {
        ""
    };
    StoreError::unavailable(format!("S3 {shown}: {what} failed: {text}{hint}"))
}

/// An S3 error document in `text` shortened to its code and message.
fn tidy(text: &str) -> String {
    let Some(at) = text.find("<?xml") else {
        return text.to_owned();
    };
    let field = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = text[at..].find(&open)? + at + open.len();
        let end = text[start..].find(&close)? + start;
        Some(text[start..end].to_owned())
    };
    match (field("Code"), field("Message")) {
        (Some(code), Some(message)) => format!("{}{code}: {message}", &text[..at]),
        (Some(code), None) => format!("{}{code}", &text[..at]),
        _ => text.to_owned(),
    }
}

/// Whether `text` tells of a connection failure (refused, reset, timed out) rather than an answer.
fn is_unreachable(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "connect",
        "connection",
        "timed out",
        "timeout",
        "dns",
        "error sending request",
        "unreachable",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// The error and its sources, one after the other.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_or_say_what_is_wrong() {
        let t =
            Target::parse("s3://my-bucket/a/b/?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu")
                .expect("valid");
        assert_eq!(t.bucket, "my-bucket");
        assert_eq!(t.prefix.as_ref(), "a/b");
        assert_eq!(t.settings.len(), 2);
        assert_eq!(t.settings[0].1, "http://127.0.0.1:9000");
        for (url, says) in [
            ("s3://", "bucket is missing"),
            ("s3:///prefix", "bucket is missing"),
            ("s3://127.0.0.1:9000/x", "not a bucket name"),
            ("s3://Bucket/x", "not a bucket name"),
            ("s3://bucket/a//b", "not a valid object path"),
            ("s3://bucket/x?colour=red", "unknown parameter"),
            ("s3://bucket/x?endpoint=%zz", "percent-encoding"),
        ] {
            let error = Target::parse(url).expect_err(url).to_string();
            assert!(error.contains(says), "{url}: {error}");
            assert!(error.contains("s3://BUCKET/PREFIX"), "{url}: {error}");
        }
    }

    #[test]
    fn secrets_are_not_shown() {
        let shown = redact("s3://b/p?access_key_id=AK&secret_access_key=SECRET&region=r");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("access_key_id=AK"), "{shown}");
    }
}
