//! Storage for HTTP caches.
//!
//! A [`Store`] keeps, under one *primary key* (the layer derives it from scheme, authority, path
//! and query), several *variants*: one stored response per set of request header values selected
//! by `Vary` (RFC 9111 §4.1). Each variant is a [`StoredResponse`] (the metadata the policy
//! reasons about) plus a body.
//!
//! The contract every backend honours:
//!
//! - **Streaming in both directions.** Writing takes body chunks as they arrive from the origin
//!   ([`EntryWriter::write`]); reading yields chunks ([`StoredBody`] is an [`http_body::Body`])
//!   without loading a large body into memory. Memory backends hand out `Bytes` without copying.
//! - **Visible only when complete.** A variant appears in [`Store::get`] only after
//!   [`EntryWriter::commit`] succeeded. Dropping a writer, or any write error, leaves nothing
//!   behind. A committed variant replaces the variant with the same [`VariantId`] atomically:
//!   readers see the old entry or the new one, never a mix of the two.
//! - **Reads are snapshots.** A read returns [`Entries`], an immutable shared list: a memory
//!   backend hands out the same list to every reader until the key changes (a hit clones one
//!   reference count), and a reader keeps its version of each variant whatever is written
//!   after. A body held in memory can be taken by every reader of the list; a streamed one
//!   ([`StoredEntry::body`]) once.
//! - **Header-only updates** after a 304 ([`Store::update`]) keep the body as it is.
//! - **Physical expiry.** Each write and update carries a TTL; an expired variant is never
//!   returned.
//! - **Errors are values.** A backend that is down, a corrupt entry or a full disk is a
//!   [`StoreError`] the caller can log and fall back from; a corrupt entry is simply not
//!   returned (a miss). Nothing panics.
//!
//! # Backends
//!
//! - [`MemoryStore`] (feature `memory`, default): bounded by bytes, least recently used keys
//!   evicted, bodies served as shared [`bytes::Bytes`] without copying.
//! - [`FsStore`] (feature `fs`): one file per variant, written to a temporary file and renamed
//!   into place (crash-safe, shareable between processes), checksummed, size-bounded, bodies
//!   streamed from the open file. See [`fs`] for the layout.
//! - `SqliteStore` (feature `sqlite`): one database file (or `:memory:`), WAL, bodies in
//!   64 KiB chunks published in one transaction, size-bounded, shareable between processes.
//! - `RedisStore` (features `redis`, `redis-cluster`): a Redis server or cluster shared by a
//!   fleet; every key of an entry under one hash tag, chunks published by one script, expiry
//!   by Redis TTL, reconnecting by itself.
//! - `S3Store` (features `s3`, `s3-tls`): an S3 bucket (or any S3-compatible server) shared by
//!   a fleet; one object per variant under a prefix, published whole by a PUT or a multipart
//!   upload, checksummed, expiry checked on read and swept.
//!
//! [`open`] opens any of them from a URL (`memory`, `fs:PATH`, `sqlite:PATH`,
//! `redis://HOST:PORT/DB?prefix=P`, `redis+cluster://H1:P1,H2:P2?prefix=P`,
//! `s3://BUCKET/PREFIX?endpoint=URL&region=R`).
//!
//! Backends that serialize entries can use the versioned, checksummed [`codec`]. Every backend
//! should pass the [`conformance`] suite (feature `conformance`).
//!
//! # Feature flags
//!
//! | feature | default | what |
//! |---------|---------|------|
//! | `memory` | yes | [`MemoryStore`] (`lru`, `coarsetime`) |
//! | `fs` | no | [`FsStore`] (tokio's blocking pool; `xxhash-rust` for file names) |
//! | `sqlite` | no | `SqliteStore` (rusqlite with a bundled SQLite; tokio's blocking pool) |
//! | `redis` | no | `RedisStore` (redis-rs with tokio, a reconnecting connection manager) |
//! | `redis-cluster` | no | Redis Cluster for `RedisStore` (redis-rs `cluster-async`) |
//! | `s3` | no | `S3Store` (object_store's S3 client over plain HTTP through hyper; no TLS) |
//! | `s3-tls` | no | HTTPS for `S3Store` (object_store's reqwest client, rustls, aws-lc-rs) |
//! | `conformance` | no | the backend test suite, [`conformance`] (tokio) |
//!
//! The default build pulls no async runtime.

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(feature = "fs", feature = "sqlite"))]
mod blocking;
mod body;
#[cfg(any(feature = "redis", feature = "s3"))]
mod breaker;
#[cfg(any(feature = "sqlite", feature = "redis"))]
mod chunk_queue;
pub mod codec;
#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;
mod entry;
mod error;
#[cfg(feature = "fs")]
#[cfg_attr(docsrs, doc(cfg(feature = "fs")))]
pub mod fs;
#[cfg(feature = "memory")]
mod memory;
mod open;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "s3")]
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
pub mod s3;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub mod sqlite;
mod store;
mod variant;

pub use body::StoredBody;
pub use cache_policy::{ParsedResponse, StoredResponse};
pub use entry::{Entries, StoredEntry};
pub use error::StoreError;
#[cfg(feature = "fs")]
#[cfg_attr(docsrs, doc(cfg(feature = "fs")))]
pub use fs::{FsStore, FsStoreBuilder};
#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub use memory::{MemoryStore, MemoryStoreBuilder};
pub use open::{open, redact};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{RedisStore, RedisStoreBuilder};
#[cfg(feature = "s3")]
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
pub use s3::{S3Store, S3StoreBuilder};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::{SqliteStore, SqliteStoreBuilder};
pub use store::{update_applies, BoxFuture, EntryWriter, Store, WriteOptions};
pub use variant::VariantId;
