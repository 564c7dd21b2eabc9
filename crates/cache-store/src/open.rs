//! Opening a store from a URL, so that examples, command lines and configuration files name
//! every backend in one syntax.

use std::sync::Arc;

use crate::{Store, StoreError};

/// The URL forms [`open`] takes, for messages.
const FORMS: &str = "memory, fs:PATH, sqlite:PATH (or sqlite::memory:), \
                     redis://HOST:PORT/DB?prefix=P, redis+cluster://H1:P1,H2:P2?prefix=P, \
                     s3://BUCKET/PREFIX?endpoint=URL&region=R";

/// Opens the store that `url` names, with that backend's default limits:
///
/// | URL | store | cargo feature |
/// |---|---|---|
/// | `memory` | [`MemoryStore`](crate::MemoryStore), 256 MiB | `memory` |
/// | `fs:PATH` | [`FsStore`](crate::FsStore) in the directory `PATH` | `fs` |
/// | `sqlite:PATH`, `sqlite::memory:` | [`SqliteStore`](crate::SqliteStore) in the file `PATH` | `sqlite` |
/// | `redis://HOST:PORT/DB?prefix=P` | `RedisStore` | `redis` |
/// | `redis+cluster://H1:P1,H2:P2,...?prefix=P` | `RedisStore` on a cluster | `redis-cluster` |
/// | `s3://BUCKET/PREFIX?endpoint=URL&region=R` | `S3Store` (settings also from `AWS_*`) | `s3` (`s3-tls` for https) |
///
/// An error says what is wrong and what to do: an unknown scheme lists the forms, a backend
/// this build lacks names the feature to enable, a server that cannot be reached says so.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = cache_store::open("memory").await.expect("a memory store");
/// let entries = store.get("https://example.com/").await.expect("read");
/// assert!(entries.is_empty());
///
/// let error = cache_store::open("ftp://example.com/").await.err().expect("refused");
/// assert!(error.to_string().contains("fs:PATH"), "{error}");
/// # }
/// ```
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let url = url.trim();
    if url == "memory" {
        return memory();
    }
    if let Some(path) = url.strip_prefix("fs:") {
        return fs(path);
    }
    if let Some(path) = url.strip_prefix("sqlite:") {
        return sqlite(path);
    }
    if url.starts_with("redis://") || url.starts_with("redis+cluster://") {
        return redis(url).await;
    }
    if url.starts_with("s3://") {
        return s3(url).await;
    }
    Err(StoreError::InvalidUrl(format!(
        "{url:?} names no store; use one of: {FORMS}"
    )))
}

fn missing_feature(url: &str, feature: &str) -> StoreError {
    let url = redact(url);
    StoreError::InvalidUrl(format!(
        "{url:?}: this build has no {feature} store; enable the cache-store feature `{feature}`"
    ))
}

/// `url` with its secrets replaced by `***`, for logs and messages: the password of
/// `scheme://user:password@host`, and query parameters whose names contain `secret` or
/// `token` (`secret_access_key`, `session_token`).
///
/// ```
/// let shown = cache_store::redact("s3://b/p?access_key_id=AK&secret_access_key=SK&region=r");
/// assert_eq!(shown, "s3://b/p?access_key_id=AK&secret_access_key=***&region=r");
/// assert_eq!(cache_store::redact("redis://me:pw@host:6379/0"), "redis://me:***@host:6379/0");
/// ```
pub fn redact(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    };
    let head = match head.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => match rest[..at].split_once(':') {
                    Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
                    None => head.to_owned(),
                },
                None => head.to_owned(),
            }
        }
        None => head.to_owned(),
    };
    let Some(query) = query else {
        return head;
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if name.contains("secret") || name.contains("token") => {
                format!("{name}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{head}?{}", pairs.join("&"))
}

fn memory() -> Result<Arc<dyn Store>, StoreError> {
    #[cfg(feature = "memory")]
    {
        Ok(Arc::new(
            crate::MemoryStore::builder()
                .max_capacity_bytes(256 << 20)
                .build(),
        ))
    }
    #[cfg(not(feature = "memory"))]
    Err(missing_feature("memory", "memory"))
}

fn fs(path: &str) -> Result<Arc<dyn Store>, StoreError> {
    if path.is_empty() {
        return Err(StoreError::InvalidUrl(
            "\"fs:\" needs a directory, as in fs:/var/cache/http".to_owned(),
        ));
    }
    #[cfg(feature = "fs")]
    {
        Ok(Arc::new(crate::FsStore::builder(path).build()?))
    }
    #[cfg(not(feature = "fs"))]
    Err(missing_feature(&format!("fs:{path}"), "fs"))
}

fn sqlite(path: &str) -> Result<Arc<dyn Store>, StoreError> {
    if path.is_empty() {
        return Err(StoreError::InvalidUrl(
            "\"sqlite:\" needs a file, as in sqlite:/var/cache/http.db or sqlite::memory:"
                .to_owned(),
        ));
    }
    #[cfg(feature = "sqlite")]
    {
        Ok(Arc::new(crate::SqliteStore::builder(path).build()?))
    }
    #[cfg(not(feature = "sqlite"))]
    Err(missing_feature(&format!("sqlite:{path}"), "sqlite"))
}

async fn redis(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    #[cfg(feature = "redis")]
    {
        if url.starts_with("redis+cluster://") && !cfg!(feature = "redis-cluster") {
            return Err(missing_feature(url, "redis-cluster"));
        }
        Ok(Arc::new(crate::RedisStore::open(url).await?))
    }
    #[cfg(not(feature = "redis"))]
    Err(missing_feature(url, "redis"))
}

async fn s3(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    #[cfg(feature = "s3")]
    {
        Ok(Arc::new(crate::S3Store::open(url).await?))
    }
    #[cfg(not(feature = "s3"))]
    Err(missing_feature(url, "s3"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        match runtime.block_on(open(url)) {
            Ok(_) => panic!("{url:?} opened"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn unknown_and_incomplete_urls_say_what_to_write() {
        for url in ["", "mem", "ftp://x", "http://example.com/"] {
            let message = refused(url);
            assert!(
                message.contains("fs:PATH") && message.contains("redis://"),
                "{message}"
            );
        }
        assert!(refused("fs:").contains("needs a directory"));
        assert!(refused("sqlite:").contains("needs a file"));
        if cfg!(feature = "s3") {
            assert!(refused("s3://").contains("bucket is missing"));
        } else {
            assert!(refused("s3://bucket/prefix").contains("`s3`"));
        }
    }
}
