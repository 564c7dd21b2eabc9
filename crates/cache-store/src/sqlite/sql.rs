//! The SQL helpers of the SQLite backend: the schema, opening connections, and the
//! statements shared by several operations (deletion, expiry, the size bound).

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OpenFlags, Params, Transaction};

use crate::StoreError;

/// The schema version this crate writes (`PRAGMA user_version`).
pub(super) const SCHEMA_VERSION: i64 = 1;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT    NOT NULL,
    variant     BLOB    NOT NULL,
    committed   INTEGER NOT NULL DEFAULT 0,
    header      BLOB    NOT NULL,
    body_len    INTEGER NOT NULL DEFAULT 0,
    body_crc    BLOB    NOT NULL DEFAULT x'',
    expires_ms  INTEGER NOT NULL,
    last_access INTEGER NOT NULL DEFAULT 0,
    size        INTEGER NOT NULL DEFAULT 0,
    started_ms  INTEGER NOT NULL
);
-- Lookups by key name this index (INDEXED BY): without statistics the planner would take one
-- of the two below, whose first column is `committed`, and scan every published entry.
CREATE UNIQUE INDEX IF NOT EXISTS entries_published ON entries (key, variant) WHERE committed = 1;
CREATE INDEX IF NOT EXISTS entries_lru ON entries (committed, last_access, size);
CREATE INDEX IF NOT EXISTS entries_expiry ON entries (committed, expires_ms);
CREATE TABLE IF NOT EXISTS chunks (
    entry_id INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    data     BLOB    NOT NULL,
    PRIMARY KEY (entry_id, seq)
);
-- The size of the published entries, kept by triggers (so every writer, in every process,
-- keeps it) instead of summed over all entries by every commit that checks the size bound.
CREATE TABLE IF NOT EXISTS totals (
    id             INTEGER PRIMARY KEY CHECK (id = 0),
    published_size INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals (id, published_size)
    SELECT 0, COALESCE(SUM(size), 0) FROM entries WHERE committed = 1;
CREATE TRIGGER IF NOT EXISTS totals_insert AFTER INSERT ON entries WHEN NEW.committed = 1
BEGIN
    UPDATE totals SET published_size = published_size + NEW.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS totals_delete AFTER DELETE ON entries WHEN OLD.committed = 1
BEGIN
    UPDATE totals SET published_size = published_size - OLD.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS totals_update AFTER UPDATE OF committed, size ON entries
    WHEN OLD.committed = 1 OR NEW.committed = 1
BEGIN
    UPDATE totals SET published_size = published_size
        + (CASE WHEN NEW.committed = 1 THEN NEW.size ELSE 0 END)
        - (CASE WHEN OLD.committed = 1 THEN OLD.size ELSE 0 END)
    WHERE id = 0;
END;
";

/// `execute` and `query_row` through the connection's statement cache: commits run the same
/// few statements every time, and preparing one costs more than running it.
pub(super) trait Cached {
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;

    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// Turns rusqlite's errors into [`StoreError::Unavailable`].
pub(super) trait OrUnavailable<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T> OrUnavailable<T> for rusqlite::Result<T> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(StoreError::unavailable)
    }
}

/// Locks a mutex, recovering it if a panic poisoned it: a connection's open transaction is
/// rolled back when the panicking code drops it, so the connection is usable again.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since the Unix epoch (0 before it, saturated far in the future).
pub(super) fn unix_ms(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

pub(super) fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn open_file(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).db()?;
    conn.busy_timeout(busy_timeout).db()?;
    // Room for every statement of the store (the default is 16).
    conn.set_prepared_statement_cache_capacity(64);
    // With WAL, NORMAL syncs only at checkpoints: a power loss may drop the last commits,
    // never tear one.
    conn.pragma_update(None, "synchronous", "NORMAL").db()?;
    Ok(conn)
}

/// Creates the database file, readable and writable by its owner only, if it does not exist
/// (SQLite gives its `-wal` and `-shm` files the same permissions): a cached response may
/// hold one user's data.
pub(super) fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The access tick after every one handed out so far (a logical clock shared through the
/// database, so that processes sharing the file agree on the order).
pub(super) fn next_tick(tx: &Transaction<'_>) -> Result<i64, StoreError> {
    tx.query_row_cached(
        "SELECT COALESCE(MAX(last_access), 0) + 1 FROM entries WHERE committed = 1",
        [],
        |r| r.get(0),
    )
    .db()
}

pub(super) fn ids_of(
    tx: &Transaction<'_>,
    key: &str,
    variant: Option<&[u8]>,
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT id FROM entries INDEXED BY entries_published
             WHERE key = ?1 AND committed = 1 AND (?2 IS NULL OR variant = ?2)",
        )
        .db()?;
    let ids = stmt.query_map(params![key, variant], |r| r.get(0)).db()?;
    ids.collect::<rusqlite::Result<Vec<i64>>>().db()
}

/// How long the chunks of a replaced, removed or evicted entry stay for readers that are still
/// streaming them; they are swept after that.
pub(super) const RETIRED_GRACE_MS: i64 = 60_000;

/// Takes a published entry out of reads (`committed = 2`), keeping its chunks for readers
/// already streaming it: a replacement never makes a body being read end in an error.
pub(super) fn retire_entry(tx: &Transaction<'_>, id: i64) -> Result<(), StoreError> {
    tx.execute_cached(
        "UPDATE entries SET committed = 2, started_ms = ?2 WHERE id = ?1 AND committed = 1",
        params![id, now_ms()],
    )
    .db()?;
    Ok(())
}

/// Deletes the entries retired [`RETIRED_GRACE_MS`] ago or earlier, with their chunks.
pub(super) fn sweep_retired(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let before = now_ms().saturating_sub(RETIRED_GRACE_MS);
    tx.execute_cached(
        "DELETE FROM chunks WHERE entry_id IN
             (SELECT id FROM entries WHERE committed = 2 AND started_ms <= ?1)",
        [before],
    )
    .db()?;
    tx.execute_cached(
        "DELETE FROM entries WHERE committed = 2 AND started_ms <= ?1",
        [before],
    )
    .db()?;
    Ok(())
}

/// Deletes an entry and its chunks at once (a damaged one: nobody can read it whole).
pub(super) fn delete_entry(tx: &Transaction<'_>, id: i64) -> Result<(), StoreError> {
    tx.execute_cached("DELETE FROM chunks WHERE entry_id = ?1", [id])
        .db()?;
    tx.execute_cached("DELETE FROM entries WHERE id = ?1", [id])
        .db()?;
    Ok(())
}

/// The size of the published entries, from the trigger-kept total.
pub(super) fn total_size(conn: &Connection) -> Result<u64, StoreError> {
    let total: i64 = conn
        .prepare_cached("SELECT published_size FROM totals WHERE id = 0")
        .db()?
        .query_row([], |r| r.get(0))
        .db()?;
    Ok(u64::try_from(total).unwrap_or(0))
}

/// Deletes the published entries whose expiry has passed; returns the bytes freed.
pub(super) fn delete_expired(tx: &Transaction<'_>) -> Result<u64, StoreError> {
    let expired: Vec<(i64, i64)> = {
        let mut stmt = tx
            .prepare_cached("SELECT id, size FROM entries WHERE committed = 1 AND expires_ms <= ?1")
            .db()?;
        let rows = stmt
            .query_map([now_ms()], |r| Ok((r.get(0)?, r.get(1)?)))
            .db()?;
        rows.collect::<rusqlite::Result<_>>().db()?
    };
    let mut freed = 0u64;
    for (id, size) in expired {
        retire_entry(tx, id)?;
        freed = freed.saturating_add(u64::try_from(size).unwrap_or(0));
    }
    Ok(freed)
}

/// While the published entries take more than `max_size` bytes, deletes the expired ones,
/// then the least recently accessed.
pub(super) fn enforce_bound(tx: &Transaction<'_>, max_size: u64) -> Result<(), StoreError> {
    let mut total = total_size(tx)?;
    if total <= max_size {
        return Ok(());
    }
    total = total.saturating_sub(delete_expired(tx)?);
    if total <= max_size {
        return Ok(());
    }
    let mut victims = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT id, size FROM entries WHERE committed = 1 ORDER BY last_access, id",
            )
            .db()?;
        let mut rows = stmt.query([]).db()?;
        while total > max_size {
            let Some(row) = rows.next().db()? else {
                break;
            };
            let (id, size): (i64, i64) = (row.get(0).db()?, row.get(1).db()?);
            victims.push(id);
            total = total.saturating_sub(u64::try_from(size).unwrap_or(0));
        }
    }
    for id in victims {
        retire_entry(tx, id)?;
    }
    Ok(())
}
