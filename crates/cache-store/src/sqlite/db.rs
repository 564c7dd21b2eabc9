//! The connections of the SQLite backend and the operations it runs on them.
//!
//! Everything here blocks; the caller runs it on the blocking pool (or a thread of its own).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::sql::{
    create_private_file, delete_entry, delete_expired, enforce_bound, ids_of, lock, next_tick,
    now_ms, open_file, retire_entry, sweep_retired, to_i64, total_size, Cached, OrUnavailable,
    SCHEMA, SCHEMA_VERSION,
};
use crate::StoreError;

/// Idle reader connections kept per store (file databases only).
const MAX_IDLE_READERS: usize = 4;

/// Reads whose access times are remembered before a read writes them itself.
const MAX_PENDING_TOUCHES: usize = 1024;

/// What a read finds of one published entry.
pub(super) struct Row {
    pub(super) id: i64,
    pub(super) variant: Vec<u8>,
    pub(super) header: Vec<u8>,
    pub(super) body_len: i64,
    pub(super) body_crc: Vec<u8>,
    pub(super) expires_ms: i64,
    /// The first chunk, when the body fits in one.
    pub(super) first_chunk: Option<Vec<u8>>,
}

/// A complete write, ready to publish.
pub(super) struct Finished {
    pub(super) key: String,
    pub(super) variant: Vec<u8>,
    pub(super) header: Vec<u8>,
    pub(super) body_len: u64,
    pub(super) body_crc: [u8; 4],
    pub(super) expires_ms: i64,
    /// The staging row holding the chunks written so far, if any.
    pub(super) staged: Option<i64>,
    /// The sequence number of `tail`.
    pub(super) tail_seq: i64,
    /// The last (partial) chunk, not yet stored.
    pub(super) tail: bytes::Bytes,
}

/// The connections of one store.
pub(super) struct Db {
    /// Every write of this process goes through this connection, one at a time; for
    /// `:memory:` it is the only connection, and reads use it too.
    writer: Mutex<Connection>,
    /// Idle read connections (file databases); `None` for `:memory:`.
    readers: Option<Mutex<Vec<Connection>>>,
    path: Option<PathBuf>,
    busy_timeout: Duration,
    /// Entries read since the last write, oldest first: their access times are recorded by
    /// the next write transaction, so that a hit costs no write of its own.
    touched: Mutex<Vec<i64>>,
}

impl Db {
    /// Opens (creating if needed) the database at `path`, or a private in-memory database for
    /// `None`; creates the schema and sweeps staged writes older than `stale_age`.
    pub(super) fn open(
        path: Option<&Path>,
        busy_timeout: Duration,
        stale_age: Duration,
    ) -> Result<Db, StoreError> {
        let writer = match path {
            None => {
                let conn = Connection::open_in_memory().db()?;
                conn.set_prepared_statement_cache_capacity(64);
                conn
            }
            Some(path) => {
                create_private_file(path)?;
                let conn = open_file(path, busy_timeout)?;
                // WAL: readers never block the writer nor each other; it is persistent in the
                // file, so reader connections need not set it.
                let mode: String = conn
                    .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
                    .db()?;
                if !mode.eq_ignore_ascii_case("wal") {
                    return Err(StoreError::unavailable(format!(
                        "SQLite refused WAL journal mode (got {mode:?})"
                    )));
                }
                conn
            }
        };
        let db = Db {
            writer: Mutex::new(writer),
            readers: path.map(|_| Mutex::new(Vec::new())),
            path: path.map(Path::to_owned),
            busy_timeout,
            touched: Mutex::new(Vec::new()),
        };
        db.write(|tx| {
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).db()?;
            if version > SCHEMA_VERSION {
                return Err(StoreError::unavailable(format!(
                    "the database has schema version {version}; this crate reads {SCHEMA_VERSION}"
                )));
            }
            tx.execute_batch(SCHEMA).db()?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .db()?;
            Ok(())
        })?;
        db.sweep(stale_age)?;
        Ok(db)
    }

    /// Runs `f` on a read connection.
    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (Some(pool), Some(path)) = (&self.readers, &self.path) else {
            return f(&lock(&self.writer));
        };
        let idle = lock(pool).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_file(path, self.busy_timeout)?,
        };
        let result = f(&conn);
        let mut pool = lock(pool);
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        result
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`: the write lock is taken up front,
    /// so the transaction never fails half-way for another writer), committed if `f` succeeds.
    pub(super) fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .db()?;
        let out = f(&tx)?;
        tx.commit().db()?;
        Ok(out)
    }

    /// The published rows of `key`, with the first chunk of bodies of up to `small` bytes.
    pub(super) fn published(&self, key: &str, small: usize) -> Result<Vec<Row>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT e.id, e.variant, e.header, e.body_len, e.body_crc, e.expires_ms, c.data
                     FROM entries e INDEXED BY entries_published
                     LEFT JOIN chunks c ON c.entry_id = e.id AND c.seq = 0 AND e.body_len <= ?2
                     WHERE e.key = ?1 AND e.committed = 1",
                )
                .db()?;
            let rows = stmt
                .query_map(params![key, small as i64], |r| {
                    Ok(Row {
                        id: r.get(0)?,
                        variant: r.get(1)?,
                        header: r.get(2)?,
                        body_len: r.get(3)?,
                        body_crc: r.get(4)?,
                        expires_ms: r.get(5)?,
                        first_chunk: r.get(6)?,
                    })
                })
                .db()?;
            rows.collect::<rusqlite::Result<Vec<_>>>().db()
        })
    }

    /// Chunks `from..to` of an entry, in order (missing ones are simply not there).
    pub(super) fn chunks(
        &self,
        id: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT seq, data FROM chunks
                     WHERE entry_id = ?1 AND seq >= ?2 AND seq < ?3 ORDER BY seq",
                )
                .db()?;
            let rows = stmt
                .query_map(params![id, from, to], |r| Ok((r.get(0)?, r.get(1)?)))
                .db()?;
            rows.collect::<rusqlite::Result<Vec<_>>>().db()
        })
    }

    /// Remembers that entries were read, for the LRU order. Written by the next write
    /// transaction, or now when many reads are pending.
    pub(super) fn touch(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let full = {
            let mut touched = lock(&self.touched);
            touched.extend_from_slice(ids);
            touched.len() >= MAX_PENDING_TOUCHES
        };
        if full {
            self.write(|tx| self.apply_touches(tx))?;
        }
        Ok(())
    }

    /// Gives the entries read since the last write increasing access ticks, in read order.
    fn apply_touches(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let touched = std::mem::take(&mut *lock(&self.touched));
        if touched.is_empty() {
            return Ok(());
        }
        let first = next_tick(tx)?;
        let mut stmt = tx
            .prepare_cached("UPDATE entries SET last_access = ?2 WHERE id = ?1 AND committed = 1")
            .db()?;
        for (tick, id) in (first..).zip(touched) {
            stmt.execute(params![id, tick]).db()?;
        }
        Ok(())
    }

    /// Creates the staging row of a write whose body needs more than one chunk.
    pub(super) fn stage(
        &self,
        key: &str,
        variant: &[u8],
        header: &[u8],
    ) -> Result<i64, StoreError> {
        self.write(|tx| {
            tx.execute_cached(
                "INSERT INTO entries (key, variant, committed, header, expires_ms, started_ms)
                 VALUES (?1, ?2, 0, ?3, 0, ?4)",
                params![key, variant, header, now_ms()],
            )
            .db()?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Stores one chunk of a staged write.
    pub(super) fn insert_chunk(&self, id: i64, seq: i64, data: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute_cached(
                "INSERT INTO chunks (entry_id, seq, data) VALUES (?1, ?2, ?3)",
                params![id, seq, data],
            )
            .db()?;
            Ok(())
        })
    }

    /// Deletes a staged write that will not be committed (its chunks and its staging row).
    pub(super) fn discard(&self, id: i64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute_cached("DELETE FROM chunks WHERE entry_id = ?1", [id])
                .db()?;
            tx.execute_cached("DELETE FROM entries WHERE id = ?1 AND committed = 0", [id])
                .db()?;
            Ok(())
        })
    }

    /// Publishes a complete write in one transaction: the older entry of the same key and
    /// variant goes, the new one becomes visible, and the size bound is enforced.
    pub(super) fn publish(&self, done: Finished, max_size: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            self.apply_touches(tx)?;
            sweep_retired(tx)?;
            let old = ids_of(tx, &done.key, Some(&done.variant))?;
            for id in old {
                retire_entry(tx, id)?;
            }
            let tick = next_tick(tx)?;
            let size = (done.header.len() as u64).saturating_add(done.body_len);
            let (body_len, size) = (to_i64(done.body_len), to_i64(size));
            let id = match done.staged {
                Some(id) => {
                    let updated = tx
                        .execute_cached(
                            "UPDATE entries SET committed = 1, header = ?2, body_len = ?3,
                                 body_crc = ?4, expires_ms = ?5, last_access = ?6, size = ?7
                             WHERE id = ?1 AND committed = 0",
                            params![
                                id,
                                done.header,
                                body_len,
                                done.body_crc,
                                done.expires_ms,
                                tick,
                                size
                            ],
                        )
                        .db()?;
                    if updated == 0 {
                        return Err(StoreError::unavailable(
                            "the staged SQLite write was swept before its commit \
                             (it lasted longer than the stale write age)",
                        ));
                    }
                    id
                }
                None => {
                    tx.execute_cached(
                        "INSERT INTO entries (key, variant, committed, header, body_len,
                             body_crc, expires_ms, last_access, size, started_ms)
                         VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        params![
                            done.key,
                            done.variant,
                            done.header,
                            body_len,
                            done.body_crc,
                            done.expires_ms,
                            tick,
                            size,
                            now_ms()
                        ],
                    )
                    .db()?;
                    tx.last_insert_rowid()
                }
            };
            if !done.tail.is_empty() {
                tx.execute_cached(
                    "INSERT INTO chunks (entry_id, seq, data) VALUES (?1, ?2, ?3)",
                    params![id, done.tail_seq, &done.tail[..]],
                )
                .db()?;
            }
            enforce_bound(tx, max_size)
        })
    }

    /// Runs `f` on the published entry of `key` and `variant` (id, header, body length) in a
    /// write transaction; `f` returns the new header and expiry to store, if any. Then
    /// enforces the size bound (a header may grow).
    pub(super) fn update(
        &self,
        key: &str,
        variant: &[u8],
        max_size: u64,
        f: impl FnOnce(&[u8], u64) -> Update,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            let row: Option<(i64, Vec<u8>, i64)> = tx
                .query_row_cached(
                    "SELECT id, header, body_len FROM entries
                     WHERE key = ?1 AND variant = ?2 AND committed = 1",
                    params![key, variant],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .db()?;
            let Some((id, header, body_len)) = row else {
                return Ok(());
            };
            match f(&header, u64::try_from(body_len).unwrap_or(0)) {
                Update::Keep => return Ok(()),
                Update::Damaged => return delete_entry(tx, id),
                Update::Replace { header, expires_ms } => {
                    let size = to_i64(header.len() as u64).saturating_add(body_len);
                    tx.execute_cached(
                        "UPDATE entries SET header = ?2, expires_ms = ?3, size = ?4 WHERE id = ?1",
                        params![id, header, expires_ms, size],
                    )
                    .db()?;
                }
            }
            self.apply_touches(tx)?;
            enforce_bound(tx, max_size)
        })
    }

    /// Deletes published entries by id.
    pub(super) fn delete(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.write(|tx| {
            for &id in ids {
                delete_entry(tx, id)?;
            }
            Ok(())
        })
    }

    /// Deletes one variant of `key`, or all of them.
    pub(super) fn remove(&self, key: &str, variant: Option<&[u8]>) -> Result<(), StoreError> {
        self.write(|tx| {
            for id in ids_of(tx, key, variant)? {
                retire_entry(tx, id)?;
            }
            Ok(())
        })
    }

    /// Deletes every published entry (writes in progress stay, and publish later).
    pub(super) fn clear(&self) -> Result<(), StoreError> {
        lock(&self.touched).clear();
        self.write(|tx| {
            tx.execute_cached(
                "UPDATE entries SET committed = 2, started_ms = ?1 WHERE committed = 1",
                [now_ms()],
            )
            .db()?;
            Ok(())
        })
    }

    /// Records pending access times, deletes expired entries and enforces the size bound.
    pub(super) fn maintain(&self, max_size: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            self.apply_touches(tx)?;
            sweep_retired(tx)?;
            delete_expired(tx)?;
            enforce_bound(tx, max_size)
        })
    }

    /// Deletes staged writes started `stale_age` ago or earlier (left by crashed processes),
    /// chunks that belong to no entry, and expired entries.
    pub(super) fn sweep(&self, stale_age: Duration) -> Result<(), StoreError> {
        let age = i64::try_from(stale_age.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(age);
        self.write(|tx| {
            tx.execute_cached(
                "DELETE FROM entries WHERE committed = 0 AND started_ms <= ?1",
                [before],
            )
            .db()?;
            tx.execute_cached(
                "DELETE FROM chunks WHERE entry_id NOT IN (SELECT id FROM entries)",
                [],
            )
            .db()?;
            sweep_retired(tx)?;
            delete_expired(tx).map(drop)
        })
    }

    /// The total size of the published entries (header and body bytes).
    pub(super) fn size_bytes(&self) -> Result<u64, StoreError> {
        self.read(total_size)
    }
}

/// What [`Db::update`] does with the entry it found.
pub(super) enum Update {
    /// Leave it as it is.
    Keep,
    /// Its header does not decode: delete it.
    Damaged,
    /// Store this header and expiry.
    Replace { header: Vec<u8>, expires_ms: i64 },
}
