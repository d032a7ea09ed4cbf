//! The session index: one row per recording, for search, retention and the admin API.
//!
//! [`Index`] is the interface (a PostgreSQL implementation can follow); [`SqliteIndex`] is the
//! embedded default. The index is a cache of what the recordings say: it can be rebuilt from the
//! manifests and transcripts, except for `legal_hold` and the last integrity result.
//!
//! Besides the rows, the index holds each sealed recording's searchable text (see
//! [`crate::search`] for what of a transcript that is) in an SQLite FTS5 full-text index:
//! contentless (only the index of the words is stored, not the text itself), tokenized by
//! `unicode61` with diacritics removed, so searches ignore case and accents.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension, Row};
use time::OffsetDateTime;

use crate::manifest::{Manifest, RecordingState};

/// Errors of the session index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The database failed.
    #[error("session index database: {0}")]
    Database(#[from] rusqlite::Error),
    /// The database holds something this version cannot interpret.
    #[error("session index is inconsistent: {0}")]
    Corrupt(String),
    /// A value does not fit the database column.
    #[error("session index value out of range: {0}")]
    OutOfRange(String),
}

/// Outcome of the last integrity check of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityStatus {
    /// Not verified yet.
    Unknown,
    /// Verified without problems.
    Ok,
    /// Verification found problems.
    Failed,
}

impl IntegrityStatus {
    /// The name stored in the index.
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrityStatus::Unknown => "unknown",
            IntegrityStatus::Ok => "ok",
            IntegrityStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "unknown" => IntegrityStatus::Unknown,
            "ok" => IntegrityStatus::Ok,
            "failed" => IntegrityStatus::Failed,
            _ => return None,
        })
    }
}

/// The last integrity result of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrity {
    /// Outcome.
    pub status: IntegrityStatus,
    /// Summary (for example the first problem).
    pub message: Option<String>,
    /// When the check ran.
    pub verified_at: Option<OffsetDateTime>,
}

impl Integrity {
    /// Not verified yet.
    pub fn unknown() -> Self {
        Integrity {
            status: IntegrityStatus::Unknown,
            message: None,
            verified_at: None,
        }
    }
}

/// One indexed recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Session id.
    pub id: String,
    /// Recording folder, relative to the storage root.
    pub dir: String,
    /// Protocol.
    pub protocol: String,
    /// Gateway user.
    pub user: String,
    /// Target name.
    pub target: String,
    /// Client address.
    pub client_addr: String,
    /// Session start.
    pub started_at: OffsetDateTime,
    /// Session end, once sealed.
    pub ended_at: Option<OffsetDateTime>,
    /// Duration, once sealed.
    pub duration_ms: Option<u64>,
    /// Stored bytes.
    pub bytes: u64,
    /// Lifecycle state.
    pub state: RecordingState,
    /// Last integrity result.
    pub integrity: Integrity,
    /// Legal hold: never deleted by retention while set.
    pub legal_hold: bool,
    /// When the row was first created.
    pub created: OffsetDateTime,
}

impl SessionRow {
    /// A row describing `manifest` stored in `dir` with `bytes` stored bytes.
    pub fn from_manifest(manifest: &Manifest, dir: &str, bytes: u64, now: OffsetDateTime) -> Self {
        SessionRow {
            id: manifest.session_id.clone(),
            dir: dir.to_owned(),
            protocol: manifest.protocol.clone(),
            user: manifest.user.clone(),
            target: manifest.target.clone(),
            client_addr: manifest.client_addr.clone(),
            started_at: manifest.started_at,
            ended_at: manifest.ended_at,
            duration_ms: manifest.duration_ms,
            bytes,
            state: manifest.state,
            integrity: Integrity::unknown(),
            legal_hold: false,
            created: now,
        }
    }
}

/// Filter for [`Index::list`]. `None` fields do not filter. Rows are returned newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Exact user.
    pub user: Option<String>,
    /// Exact target.
    pub target: Option<String>,
    /// Exact protocol.
    pub protocol: Option<String>,
    /// Exact state.
    pub state: Option<RecordingState>,
    /// Sessions started at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Sessions started before this time.
    pub until: Option<OffsetDateTime>,
    /// Words the recording's searchable text must all contain (the last one as a prefix), as a
    /// user typed them: see [`crate::search::fts_query`]. Text without any letter or digit
    /// matches no recording. Only sealed recordings have text. Matches come newest first by
    /// the millisecond: sessions that started within a few milliseconds of each other come in
    /// the order their text was stored.
    pub text: Option<String>,
    /// The targets whose sessions may be returned (`None`: every target). Applied before
    /// `limit` and `offset`, so pages are full and offsets count only these targets' sessions;
    /// an empty set matches no session. Any number of targets can be given (they are passed to
    /// the database as one value, not one parameter each).
    pub allowed_targets: Option<BTreeSet<String>>,
    /// At most this many rows.
    pub limit: Option<u32>,
    /// Skip this many rows.
    pub offset: Option<u32>,
}

/// A session index.
pub trait Index: Send + Sync {
    /// Inserts or updates a row. On update, `legal_hold` and `created` keep their stored values
    /// (legal hold changes only through [`Index::set_legal_hold`]).
    fn upsert(&self, row: &SessionRow) -> Result<(), IndexError>;
    /// The row of session `id`.
    fn get(&self, id: &str) -> Result<Option<SessionRow>, IndexError>;
    /// Rows matching `filter`, newest first.
    fn list(&self, filter: &ListFilter) -> Result<Vec<SessionRow>, IndexError>;
    /// Records an integrity result. Returns whether the row exists.
    fn set_integrity(&self, id: &str, integrity: &Integrity) -> Result<bool, IndexError>;
    /// Sets or clears the legal hold. Returns whether the row exists.
    fn set_legal_hold(&self, id: &str, hold: bool) -> Result<bool, IndexError>;
    /// Removes a row (and its searchable text). Returns whether it existed.
    fn remove(&self, id: &str) -> Result<bool, IndexError>;
    /// Stores the searchable text of session `id`, replacing what was stored; text past
    /// [`crate::search::MAX_TEXT_BYTES`] is cut off. Returns whether the row exists (nothing is
    /// stored for a session the index does not hold).
    fn set_text(&self, id: &str, text: &str) -> Result<bool, IndexError>;
    /// Sealed sessions (state other than `recording`) with no searchable text stored, oldest
    /// first.
    fn without_text(&self) -> Result<Vec<SessionRow>, IndexError>;
    /// Sessions per integrity status and the bytes of all sessions, counted by the index.
    fn stats(&self) -> Result<IndexStats, IndexError>;
    /// The bytes of every session `filter` selects (its `text`, `limit` and `offset` aside):
    /// what a caller's sessions occupy, for storage growth.
    fn stored_bytes(&self, filter: &ListFilter) -> Result<u64, IndexError>;
}

/// What [`Index::stats`] counts over the whole index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Sessions per integrity status (as [`IntegrityStatus::as_str`] names it), by name.
    pub by_integrity: Vec<(String, u64)>,
    /// Bytes of all sessions.
    pub bytes: u64,
}

/// Schema migrations, applied in order; the index of a migration + 1 is its version.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE sessions (
    id                TEXT PRIMARY KEY NOT NULL,
    dir               TEXT NOT NULL,
    protocol          TEXT NOT NULL,
    user              TEXT NOT NULL,
    target            TEXT NOT NULL,
    client_addr       TEXT NOT NULL,
    started_at        INTEGER NOT NULL,   -- unix time, nanoseconds, UTC
    ended_at          INTEGER,
    duration_ms       INTEGER,
    bytes             INTEGER NOT NULL,
    state             TEXT NOT NULL,
    integrity         TEXT NOT NULL DEFAULT 'unknown',
    integrity_message TEXT,
    verified_at       INTEGER,
    legal_hold        INTEGER NOT NULL DEFAULT 0,
    created           INTEGER NOT NULL
);
CREATE INDEX sessions_started_at ON sessions (started_at);
CREATE INDEX sessions_user ON sessions (user);
CREATE INDEX sessions_target ON sessions (target);
"#,
    r#"
-- Searchable text of sealed recordings. session_fts is contentless: it stores the word index,
-- not the text. Its rowid is session_text.doc: the session's start in milliseconds, moved up by
-- one while taken, so full-text matches come out newest first (sessions that started within a
-- few milliseconds of each other in the order their text was stored).
CREATE TABLE session_text (
    doc        INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL UNIQUE,
    bytes      INTEGER NOT NULL
);
CREATE VIRTUAL TABLE session_fts USING fts5(
    text,
    content = '',
    contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);
-- Listing one user's, target's or protocol's sessions newest first, and counting them, without
-- sorting or reading the table.
DROP INDEX sessions_user;
DROP INDEX sessions_target;
CREATE INDEX sessions_user ON sessions (user, started_at);
CREATE INDEX sessions_target ON sessions (target, started_at);
CREATE INDEX sessions_protocol ON sessions (protocol, started_at);
"#,
];

const COLUMNS: &str = "id, dir, protocol, user, target, client_addr, started_at, ended_at, \
     duration_ms, bytes, state, integrity, integrity_message, verified_at, legal_hold, created";

/// [`COLUMNS`] of the table named `table` in a join.
fn qualified_columns(table: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{table}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How far above its session's start a document's rowid may be moved while the rowids of
/// sessions that started in the same millisecond are taken.
const DOC_SLACK: i64 = 1_000_000;

/// The first rowid a session that started at `nanos` may take in the full-text index: its
/// start in milliseconds (milliseconds keep the index smaller than nanoseconds would: a word's
/// list of documents stores rowid differences).
fn doc_of(nanos: i64) -> i64 {
    nanos.div_euclid(1_000_000)
}

/// Page cache of the index connection, KiB.
const CACHE_KIB: i64 = 32 * 1024;

/// The embedded SQLite index (WAL mode, versioned schema).
#[derive(Debug)]
pub struct SqliteIndex {
    conn: Mutex<Connection>,
    /// Below this many sessions passing the filters other than the text, a text search starts
    /// from those sessions ([`FEW_SESSIONS`]; tests change it to compare the two plans).
    few_sessions: u64,
}

impl SqliteIndex {
    /// Opens (creating if needed) the index database at `path` and migrates its schema.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        let conn = crate::sqlite::open_wal(path)?;
        Self::init(conn)
    }

    /// An in-memory index (for tests and tools).
    pub fn open_in_memory() -> Result<Self, IndexError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, IndexError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Text searches read a word's list of documents; SQLite's default page cache (2 MiB)
        // would read most of those pages again on every search.
        conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
        migrate(&mut conn)?;
        Ok(SqliteIndex {
            conn: Mutex::new(conn),
            few_sessions: FEW_SESSIONS,
        })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, IndexError> {
        current_version(&self.lock())
    }

    /// The same index with another threshold between the two text-search plans.
    #[cfg(test)]
    fn with_few_sessions(mut self, few_sessions: u64) -> Self {
        self.few_sessions = few_sessions;
        self
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite itself inconsistent (statements are
        // atomic), so the connection stays usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn current_version(conn: &Connection) -> Result<u32, IndexError> {
    let v: Option<i64> = conn.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
        r.get(0)
    })?;
    u32::try_from(v.unwrap_or(0)).map_err(|_| IndexError::Corrupt("negative schema version".into()))
}

fn migrate(conn: &mut Connection) -> Result<(), IndexError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY NOT NULL,
             applied_at TEXT NOT NULL
         );",
    )?;
    // One write transaction from reading the version to the last migration, so concurrent
    // openers of a new database never apply a migration twice (the second waits, then finds
    // nothing to do).
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current = current_version(&tx)?;
    let known = MIGRATIONS.len() as u32;
    if current > known {
        return Err(IndexError::Corrupt(format!(
            "schema version {current} is newer than this gateway supports ({known})"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)?;
        let now = OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![i as i64 + 1, now],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn to_nanos(t: OffsetDateTime) -> Result<i64, IndexError> {
    i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| IndexError::OutOfRange(format!("timestamp {t} out of range")))
}

/// A filter's time bound in nanoseconds; times beyond what the index can store are clamped
/// (every stored time is within the range, so the filter means the same).
fn bound_nanos(t: OffsetDateTime) -> i64 {
    t.unix_timestamp_nanos()
        .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn from_nanos(n: i64) -> Result<OffsetDateTime, IndexError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(n))
        .map_err(|e| IndexError::Corrupt(format!("timestamp {n}: {e}")))
}

fn to_i64(v: u64, what: &str) -> Result<i64, IndexError> {
    i64::try_from(v).map_err(|_| IndexError::OutOfRange(format!("{what} {v} too large")))
}

fn to_u64(v: i64, what: &str) -> Result<u64, IndexError> {
    u64::try_from(v).map_err(|_| IndexError::Corrupt(format!("negative {what} {v}")))
}

/// Raw column values of one row, converted to a [`SessionRow`] outside the rusqlite callback.
struct RawRow {
    id: String,
    dir: String,
    protocol: String,
    user: String,
    target: String,
    client_addr: String,
    started_at: i64,
    ended_at: Option<i64>,
    duration_ms: Option<i64>,
    bytes: i64,
    state: String,
    integrity: String,
    integrity_message: Option<String>,
    verified_at: Option<i64>,
    legal_hold: bool,
    created: i64,
}

impl RawRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawRow {
            id: r.get(0)?,
            dir: r.get(1)?,
            protocol: r.get(2)?,
            user: r.get(3)?,
            target: r.get(4)?,
            client_addr: r.get(5)?,
            started_at: r.get(6)?,
            ended_at: r.get(7)?,
            duration_ms: r.get(8)?,
            bytes: r.get(9)?,
            state: r.get(10)?,
            integrity: r.get(11)?,
            integrity_message: r.get(12)?,
            verified_at: r.get(13)?,
            legal_hold: r.get(14)?,
            created: r.get(15)?,
        })
    }

    fn into_row(self) -> Result<SessionRow, IndexError> {
        Ok(SessionRow {
            state: RecordingState::parse(&self.state)
                .ok_or_else(|| IndexError::Corrupt(format!("unknown state {:?}", self.state)))?,
            integrity: Integrity {
                status: IntegrityStatus::parse(&self.integrity).ok_or_else(|| {
                    IndexError::Corrupt(format!("unknown integrity {:?}", self.integrity))
                })?,
                message: self.integrity_message,
                verified_at: self.verified_at.map(from_nanos).transpose()?,
            },
            started_at: from_nanos(self.started_at)?,
            ended_at: self.ended_at.map(from_nanos).transpose()?,
            duration_ms: self
                .duration_ms
                .map(|d| to_u64(d, "duration_ms"))
                .transpose()?,
            bytes: to_u64(self.bytes, "bytes")?,
            created: from_nanos(self.created)?,
            id: self.id,
            dir: self.dir,
            protocol: self.protocol,
            user: self.user,
            target: self.target,
            client_addr: self.client_addr,
            legal_hold: self.legal_hold,
        })
    }
}

impl Index for SqliteIndex {
    fn upsert(&self, row: &SessionRow) -> Result<(), IndexError> {
        let conn = self.lock();
        conn.execute(
            &format!(
                "INSERT INTO sessions ({COLUMNS}) VALUES
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                 ON CONFLICT (id) DO UPDATE SET
                     dir = excluded.dir, protocol = excluded.protocol, user = excluded.user,
                     target = excluded.target, client_addr = excluded.client_addr,
                     started_at = excluded.started_at, ended_at = excluded.ended_at,
                     duration_ms = excluded.duration_ms, bytes = excluded.bytes,
                     state = excluded.state, integrity = excluded.integrity,
                     integrity_message = excluded.integrity_message,
                     verified_at = excluded.verified_at"
            ),
            params![
                row.id,
                row.dir,
                row.protocol,
                row.user,
                row.target,
                row.client_addr,
                to_nanos(row.started_at)?,
                row.ended_at.map(to_nanos).transpose()?,
                row.duration_ms
                    .map(|d| to_i64(d, "duration_ms"))
                    .transpose()?,
                to_i64(row.bytes, "bytes")?,
                row.state.as_str(),
                row.integrity.status.as_str(),
                row.integrity.message,
                row.integrity.verified_at.map(to_nanos).transpose()?,
                row.legal_hold,
                to_nanos(row.created)?,
            ],
        )?;
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Option<SessionRow>, IndexError> {
        let conn = self.lock();
        let raw = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"),
                [id],
                RawRow::from_row,
            )
            .optional()?;
        raw.map(RawRow::into_row).transpose()
    }

    fn list(&self, filter: &ListFilter) -> Result<Vec<SessionRow>, IndexError> {
        if filter
            .allowed_targets
            .as_ref()
            .is_some_and(BTreeSet::is_empty)
        {
            return Ok(Vec::new());
        }
        let conditions = Conditions::of(filter)?;
        let conn = self.lock();
        let Some(words) = &filter.text else {
            let conditions = if scan_newest_first(&conn, filter, &conditions)? {
                conditions.with_targets_scanned()
            } else {
                conditions
            };
            let sql = format!(
                "SELECT {COLUMNS} FROM sessions{} ORDER BY started_at DESC, id LIMIT ? OFFSET ?",
                conditions.where_clause()
            );
            let mut values = conditions.values.clone();
            values.extend(page(filter));
            return query_rows(&conn, &sql, values);
        };
        let Some(query) = crate::search::fts_query(words) else {
            return Ok(Vec::new());
        };
        // Both plans read the matches in the full-text index's order (rowid descending, which
        // is newest first: see MIGRATIONS). With only a time range (or nothing) besides the
        // text, or filters that many sessions pass, the index's matches are read newest first
        // until the page is full. Selective filters (a user, a target) would leave that reading
        // many matches that fail them: then the sessions that pass the filters are taken and
        // kept when the text matches.
        if conditions.selective.is_empty()
            || count_capped(&conn, &conditions, self.few_sessions + 1)? > self.few_sessions
        {
            matches_newest_first(&conn, filter, &conditions, &query)
        } else {
            matches_among_filtered(&conn, filter, &conditions, &query)
        }
    }

    fn stored_bytes(&self, filter: &ListFilter) -> Result<u64, IndexError> {
        if filter
            .allowed_targets
            .as_ref()
            .is_some_and(BTreeSet::is_empty)
        {
            return Ok(0);
        }
        let conditions = Conditions::of(filter)?;
        let sql = format!(
            "SELECT COALESCE(SUM(bytes), 0) FROM sessions{}",
            conditions.where_clause()
        );
        let conn = self.lock();
        let n: i64 = conn.query_row(&sql, rusqlite::params_from_iter(conditions.values), |r| {
            r.get(0)
        })?;
        to_u64(n, "bytes")
    }

    fn set_integrity(&self, id: &str, integrity: &Integrity) -> Result<bool, IndexError> {
        let conn = self.lock();
        let n = conn.execute(
            "UPDATE sessions SET integrity = ?2, integrity_message = ?3, verified_at = ?4
             WHERE id = ?1",
            params![
                id,
                integrity.status.as_str(),
                integrity.message,
                integrity.verified_at.map(to_nanos).transpose()?,
            ],
        )?;
        Ok(n > 0)
    }

    fn set_legal_hold(&self, id: &str, hold: bool) -> Result<bool, IndexError> {
        let conn = self.lock();
        let n = conn.execute(
            "UPDATE sessions SET legal_hold = ?2 WHERE id = ?1",
            params![id, hold],
        )?;
        Ok(n > 0)
    }

    fn remove(&self, id: &str) -> Result<bool, IndexError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        delete_text(&tx, id)?;
        let n = tx.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn set_text(&self, id: &str, text: &str) -> Result<bool, IndexError> {
        let text = crate::search::truncate(text, crate::search::MAX_TEXT_BYTES);
        let bytes = to_i64(text.len() as u64, "text bytes")?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let started: Option<i64> = tx
            .query_row("SELECT started_at FROM sessions WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(started) = started else {
            return Ok(false);
        };
        delete_text(&tx, id)?;
        let first = doc_of(started);
        let mut doc = first;
        while tx
            .query_row("SELECT 1 FROM session_text WHERE doc = ?1", [doc], |_| {
                Ok(())
            })
            .optional()?
            .is_some()
        {
            doc = doc
                .checked_add(1)
                .filter(|d| d - first <= DOC_SLACK)
                .ok_or_else(|| {
                    IndexError::OutOfRange(format!(
                        "too many sessions started at the same time as {id}"
                    ))
                })?;
        }
        tx.execute(
            "INSERT INTO session_text (doc, session_id, bytes) VALUES (?1, ?2, ?3)",
            params![doc, id, bytes],
        )?;
        tx.execute(
            "INSERT INTO session_fts (rowid, text) VALUES (?1, ?2)",
            params![doc, text],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn without_text(&self) -> Result<Vec<SessionRow>, IndexError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE state <> 'recording' \
             AND id NOT IN (SELECT session_id FROM session_text) ORDER BY started_at, id"
        ))?;
        let raws = stmt
            .query_map([], RawRow::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(RawRow::into_row).collect()
    }

    fn stats(&self) -> Result<IndexStats, IndexError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT integrity, COUNT(*), COALESCE(SUM(bytes), 0) FROM sessions \
             GROUP BY integrity ORDER BY integrity",
        )?;
        let mut stats = IndexStats::default();
        let groups = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (status, n, bytes) in groups {
            stats
                .by_integrity
                .push((status, u64::try_from(n).unwrap_or(0)));
            stats.bytes = stats
                .bytes
                .saturating_add(u64::try_from(bytes).unwrap_or(0));
        }
        Ok(stats)
    }
}

/// Below this many sessions passing the filters other than the text, a text search starts
/// from those sessions (see [`Index::list`] of [`SqliteIndex`]).
const FEW_SESSIONS: u64 = 5000;

/// The SQL conditions of a [`ListFilter`] other than its text, on `sessions` columns.
struct Conditions {
    /// Conditions on user, target, allowed targets, protocol and state.
    selective: Vec<&'static str>,
    /// All conditions: those and the time range.
    all: Vec<&'static str>,
    /// Values of `all`, in order.
    values: Vec<Value>,
    /// The time range in nanoseconds.
    since: Option<i64>,
    until: Option<i64>,
}

/// The condition of [`ListFilter::allowed_targets`]: the allowed targets are bound as one JSON
/// array (SQLite limits the number of parameters of a statement, not the length of a value).
const ALLOWED_TARGETS: &str = "target IN (SELECT value FROM json_each(?))";

/// [`ALLOWED_TARGETS`] as a condition the database checks on the rows it reads rather than
/// looks up in the index on `target` (the unary `+` makes the column an expression).
const ALLOWED_TARGETS_CHECKED: &str = "+target IN (SELECT value FROM json_each(?))";

impl Conditions {
    fn of(filter: &ListFilter) -> Result<Self, IndexError> {
        let mut c = Conditions {
            selective: Vec::new(),
            all: Vec::new(),
            values: Vec::new(),
            since: filter.since.map(bound_nanos),
            until: filter.until.map(bound_nanos),
        };
        let state = filter.state.map(|s| s.as_str().to_owned());
        for (clause, value) in [
            ("user = ?", &filter.user),
            ("target = ?", &filter.target),
            ("protocol = ?", &filter.protocol),
            ("state = ?", &state),
        ] {
            if let Some(v) = value {
                c.selective.push(clause);
                c.all.push(clause);
                c.values.push(Value::Text(v.clone()));
            }
        }
        if let Some(targets) = &filter.allowed_targets {
            let list = serde_json::to_string(targets)
                .map_err(|e| IndexError::OutOfRange(format!("allowed targets: {e}")))?;
            c.selective.push(ALLOWED_TARGETS);
            c.all.push(ALLOWED_TARGETS);
            c.values.push(Value::Text(list));
        }
        if let Some(since) = c.since {
            c.all.push("started_at >= ?");
            c.values.push(Value::Integer(since));
        }
        if let Some(until) = c.until {
            c.all.push("started_at < ?");
            c.values.push(Value::Integer(until));
        }
        Ok(c)
    }

    /// The same conditions, with the allowed targets checked on the rows read rather than
    /// looked up in the index on `target` (see [`scan_newest_first`]).
    fn with_targets_scanned(mut self) -> Self {
        for clause in &mut self.all {
            if *clause == ALLOWED_TARGETS {
                *clause = ALLOWED_TARGETS_CHECKED;
            }
        }
        self
    }

    /// ` WHERE …` of all conditions, or nothing.
    fn where_clause(&self) -> String {
        if self.all.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.all.join(" AND "))
        }
    }

    /// Bounds on full-text rowids implied by the time range, as SQL on `session_fts.rowid`.
    fn rowid_bounds(&self) -> (Vec<&'static str>, Vec<Value>) {
        let mut clauses = Vec::new();
        let mut values = Vec::new();
        if let Some(since) = self.since {
            clauses.push("session_fts.rowid >= ?");
            values.push(Value::Integer(doc_of(since)));
        }
        if let Some(until) = self.until {
            // A document's rowid is at most DOC_SLACK above its session's start.
            clauses.push("session_fts.rowid < ?");
            values.push(Value::Integer(
                doc_of(until).saturating_add(DOC_SLACK).saturating_add(1),
            ));
        }
        (clauses, values)
    }
}

/// `LIMIT` and `OFFSET` values of a filter.
fn page(filter: &ListFilter) -> [Value; 2] {
    [
        Value::Integer(filter.limit.map_or(-1, i64::from)),
        Value::Integer(filter.offset.map_or(0, i64::from)),
    ]
}

fn query_rows(
    conn: &Connection,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<SessionRow>, IndexError> {
    let mut stmt = conn.prepare(sql)?;
    let raws = stmt
        .query_map(rusqlite::params_from_iter(values), RawRow::from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raws.into_iter().map(RawRow::into_row).collect()
}

/// How many sessions pass `conditions`, counting no further than `cap`.
fn count_capped(conn: &Connection, conditions: &Conditions, cap: u64) -> Result<u64, IndexError> {
    let sql = format!(
        "SELECT COUNT(*) FROM (SELECT 1 FROM sessions{} LIMIT ?)",
        conditions.where_clause()
    );
    let mut values = conditions.values.clone();
    values.push(Value::Integer(to_i64(cap, "count")?));
    let n: i64 = conn.query_row(&sql, rusqlite::params_from_iter(values), |r| r.get(0))?;
    to_u64(n, "count")
}

/// Whether a listing without text, limited to some targets, should read the sessions newest
/// first and skip those of other targets, rather than look up every session of the allowed
/// targets in the index on `target` and sort them all (what the database does by itself).
///
/// With the allowed targets' sessions spread over time, the first reads about
/// `(offset + limit) × sessions / allowed` sessions, the second `allowed`: the first is chosen
/// when `allowed² > (offset + limit) × sessions`. Counting the allowed sessions stops at that
/// bound, so deciding costs about what the cheaper plan does. Without a limit every allowed
/// session is read either way.
fn scan_newest_first(
    conn: &Connection,
    filter: &ListFilter,
    conditions: &Conditions,
) -> Result<bool, IndexError> {
    let (Some(_), Some(limit)) = (&filter.allowed_targets, filter.limit) else {
        return Ok(false);
    };
    let wanted = u64::from(limit) + u64::from(filter.offset.unwrap_or(0));
    // The largest rowid: at least the number of sessions (rowids are distinct and positive),
    // found without counting them.
    let sessions: i64 =
        conn.query_row("SELECT COALESCE(MAX(rowid), 0) FROM sessions", [], |r| {
            r.get(0)
        })?;
    let bound = (wanted as f64 * sessions.max(0) as f64).sqrt() as u64;
    Ok(count_capped(conn, conditions, bound.saturating_add(1))? > bound)
}

/// A text search driven by the full-text index: its matches, newest first, joined to their
/// rows and filtered, until the page is full.
fn matches_newest_first(
    conn: &Connection,
    filter: &ListFilter,
    conditions: &Conditions,
    query: &str,
) -> Result<Vec<SessionRow>, IndexError> {
    let (bounds, bound_values) = conditions.rowid_bounds();
    let mut clauses = vec!["session_fts MATCH ?"];
    clauses.extend(bounds);
    clauses.extend(&conditions.all);
    let mut values = vec![Value::Text(query.to_owned())];
    values.extend(bound_values);
    values.extend(conditions.values.iter().cloned());
    values.extend(page(filter));
    let sql = format!(
        "SELECT {} FROM session_fts JOIN session_text t ON t.doc = session_fts.rowid \
         JOIN sessions s ON s.id = t.session_id WHERE {} \
         ORDER BY session_fts.rowid DESC LIMIT ? OFFSET ?",
        qualified_columns("s"),
        clauses.join(" AND ")
    );
    query_rows(conn, &sql, values)
}

/// A text search driven by the other filters: the sessions passing them are kept when the
/// text matches (all matches of the text are read once), in the full-text index's order.
fn matches_among_filtered(
    conn: &Connection,
    filter: &ListFilter,
    conditions: &Conditions,
    query: &str,
) -> Result<Vec<SessionRow>, IndexError> {
    // One read transaction: the candidates, the matches and the rows are of one state.
    let tx = conn.unchecked_transaction()?;
    let (bounds, bound_values) = conditions.rowid_bounds();
    let mut clauses = vec!["session_fts MATCH ?"];
    clauses.extend(bounds);
    let mut values = vec![Value::Text(query.to_owned())];
    values.extend(bound_values);
    let matches: std::collections::HashSet<i64> = tx
        .prepare(&format!(
            "SELECT rowid FROM session_fts WHERE {}",
            clauses.join(" AND ")
        ))?
        .query_map(rusqlite::params_from_iter(values), |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut found: Vec<(i64, String)> = tx
        .prepare(&format!(
            "SELECT t.doc, s.id FROM sessions s JOIN session_text t ON t.session_id = s.id{}",
            conditions.where_clause()
        ))?
        .query_map(rusqlite::params_from_iter(conditions.values.iter()), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .filter(|c| c.as_ref().map_or(true, |(doc, _)| matches.contains(doc)))
        .collect::<rusqlite::Result<_>>()?;
    found.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
    let skip = filter.offset.map_or(0, |o| o as usize);
    let take = filter.limit.map_or(usize::MAX, |l| l as usize);
    let mut stmt = tx.prepare(&format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"))?;
    let mut rows = Vec::new();
    for (_, id) in found.into_iter().skip(skip).take(take) {
        if let Some(raw) = stmt.query_row([&id], RawRow::from_row).optional()? {
            rows.push(raw.into_row()?);
        }
    }
    Ok(rows)
}

/// Deletes the searchable text of session `id`, if any.
fn delete_text(conn: &Connection, id: &str) -> Result<(), IndexError> {
    let doc: Option<i64> = conn
        .query_row(
            "SELECT doc FROM session_text WHERE session_id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(doc) = doc {
        conn.execute("DELETE FROM session_fts WHERE rowid = ?1", [doc])?;
        conn.execute("DELETE FROM session_text WHERE doc = ?1", [doc])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;
    use time::Duration;

    fn row(id: &str, user: &str, target: &str, protocol: &str, minutes: i64) -> SessionRow {
        let started_at = datetime!(2026-11-22 10:00 UTC) + Duration::minutes(minutes);
        SessionRow {
            id: id.into(),
            dir: format!("2026/11/22/{id}"),
            protocol: protocol.into(),
            user: user.into(),
            target: target.into(),
            client_addr: "10.0.0.1:4000".into(),
            started_at,
            ended_at: Some(started_at + Duration::minutes(5)),
            duration_ms: Some(300_000),
            bytes: 1,
            state: RecordingState::Completed,
            integrity: Integrity::unknown(),
            legal_hold: false,
            created: started_at,
        }
    }

    fn search(idx: &SqliteIndex, filter: ListFilter) -> Vec<String> {
        idx.list(&filter)
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    }

    fn text(words: &str) -> ListFilter {
        ListFilter {
            text: Some(words.into()),
            ..Default::default()
        }
    }

    #[test]
    fn stored_bytes_sums_what_the_filter_selects_whatever_the_page() {
        let idx = SqliteIndex::open_in_memory().unwrap();
        for (i, (id, target, bytes)) in [("a", "t1", 10u64), ("b", "t2", 200), ("c", "t1", 3000)]
            .into_iter()
            .enumerate()
        {
            idx.upsert(&SessionRow {
                bytes,
                ..row(id, "alice", target, "vnc", i as i64 * 10)
            })
            .unwrap();
        }
        let bytes = |f: ListFilter| idx.stored_bytes(&f).unwrap();
        assert_eq!(bytes(ListFilter::default()), 3210);
        let only_t1 = Some(BTreeSet::from(["t1".to_owned()]));
        let t1 = ListFilter {
            allowed_targets: only_t1.clone(),
            limit: Some(1),
            offset: Some(1),
            ..Default::default()
        };
        assert_eq!(bytes(t1), 3010, "limit and offset do not count");
        let before_c = ListFilter {
            until: Some(datetime!(2026-11-22 10:15 UTC)),
            allowed_targets: only_t1,
            ..Default::default()
        };
        assert_eq!(bytes(before_c), 10);
        let none = ListFilter {
            allowed_targets: Some(BTreeSet::new()),
            ..Default::default()
        };
        assert_eq!(bytes(none), 0);
    }

    /// Three sessions a, b, c (newest last) with their searchable text.
    fn indexed() -> SqliteIndex {
        let idx = SqliteIndex::open_in_memory().unwrap();
        let sessions = [
            (
                "a",
                "alice",
                "lab-vnc",
                "vnc",
                "sudo systemctl restart nginx\nadmin@lab-vnc: ~",
            ),
            (
                "b",
                "bob",
                "win-rdp",
                "rdp",
                "Event Viewer - Security log\nnet user bob /domain",
            ),
            (
                "c",
                "alice",
                "console",
                "web",
                "https://console.example/users\nSystemctl Café",
            ),
        ];
        for (i, (id, user, target, protocol, words)) in sessions.into_iter().enumerate() {
            idx.upsert(&row(id, user, target, protocol, i as i64 * 10))
                .unwrap();
            assert!(idx.set_text(id, words).unwrap());
        }
        idx
    }

    #[test]
    fn fts5_is_compiled_in() {
        let idx = SqliteIndex::open_in_memory().unwrap();
        let used: bool = idx
            .lock()
            .query_row("SELECT sqlite_compileoption_used('ENABLE_FTS5')", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(used);
        assert_eq!(idx.schema_version().unwrap(), MIGRATIONS.len() as u32);
    }

    #[test]
    fn words_match_newest_first_ignoring_case_and_accents() {
        let idx = indexed();
        assert_eq!(search(&idx, text("systemctl")), ["c", "a"]);
        assert_eq!(search(&idx, text("SYSTEMCTL nginx")), ["a"]);
        assert_eq!(search(&idx, text("cafe")), ["c"]);
        assert_eq!(
            search(&idx, text("ngin")),
            ["a"],
            "the last word is a prefix"
        );
        assert_eq!(search(&idx, text("ngin sudo")), Vec::<String>::new());
        assert_eq!(search(&idx, text("/domain")), ["b"]);
        assert_eq!(search(&idx, text("console.example/users")), ["c"]);
        assert_eq!(search(&idx, text("kubectl")), Vec::<String>::new());
    }

    #[test]
    fn text_combines_with_the_other_filters_and_pages() {
        let idx = indexed();
        let f = |f: ListFilter| search(&idx, f);
        assert_eq!(
            f(ListFilter {
                user: Some("alice".into()),
                ..text("systemctl")
            }),
            ["c", "a"]
        );
        assert_eq!(
            f(ListFilter {
                protocol: Some("vnc".into()),
                ..text("systemctl")
            }),
            ["a"]
        );
        let t0 = datetime!(2026-11-22 10:00 UTC);
        assert_eq!(
            f(ListFilter {
                since: Some(t0 + Duration::minutes(5)),
                until: Some(t0 + Duration::minutes(25)),
                ..text("systemctl")
            }),
            ["c"]
        );
        assert_eq!(
            f(ListFilter {
                limit: Some(1),
                ..text("systemctl")
            }),
            ["c"]
        );
        assert_eq!(
            f(ListFilter {
                limit: Some(1),
                offset: Some(1),
                ..text("systemctl")
            }),
            ["a"]
        );
        assert_eq!(
            f(ListFilter {
                offset: Some(2),
                ..text("systemctl")
            }),
            Vec::<String>::new()
        );
    }

    #[test]
    fn query_syntax_in_user_input_is_searched_as_text_and_never_fails() {
        let idx = indexed();
        for q in [
            "\"",
            "\"\"",
            "nginx\"",
            "sys* OR bob",
            "NOT nginx",
            "NEAR(sudo nginx)",
            "text:nginx",
            "^sudo",
            "(",
            ")",
            "*",
            "-",
            "a AND",
            "'; DROP TABLE sessions; --",
            "日本語",
            "🙂",
            "\u{0}",
            "\u{202e}nginx",
            "e\u{301}",
        ] {
            assert!(idx.list(&text(q)).is_ok(), "{q:?}");
        }
        // Operators are words, not syntax: "OR" must be in the text too.
        assert_eq!(search(&idx, text("nginx OR bob")), Vec::<String>::new());
        assert_eq!(search(&idx, text("\"sudo\"")), ["a"]);
        // Only punctuation: no word to search, nothing matches.
        assert_eq!(search(&idx, text("*** --")), Vec::<String>::new());
        assert_eq!(search(&idx, text("nginx ***")), ["a"]);
        assert_eq!(idx.list(&ListFilter::default()).unwrap().len(), 3);
    }

    #[test]
    fn masked_keystrokes_are_never_searchable() {
        // A transcript typed in `mask` keystroke mode: timing and direction only.
        let lines = [
            r#"{"t":0,"type":"session","phase":"start"}"#,
            r#"{"t":10,"type":"key","down":true,"masked":true}"#,
            r#"{"t":40,"type":"key","down":false,"masked":true}"#,
            r#"{"t":90,"type":"title","title":"Login - Vault"}"#,
            r#"{"t":100,"type":"key","down":true,"masked":true}"#,
        ];
        let idx = SqliteIndex::open_in_memory().unwrap();
        idx.upsert(&row("m", "alice", "vault", "vnc", 0)).unwrap();
        idx.set_text("m", &crate::search::searchable_text(lines))
            .unwrap();
        assert_eq!(search(&idx, text("vault")), ["m"]);
        for typed in ["hunter2", "masked", "key", "true", "down"] {
            assert_eq!(search(&idx, text(typed)), Vec::<String>::new(), "{typed}");
        }
    }

    #[test]
    fn text_is_replaced_bounded_and_removed_with_its_row() {
        let idx = indexed();
        assert!(idx.set_text("a", "kubectl get pods").unwrap());
        assert_eq!(search(&idx, text("nginx")), Vec::<String>::new());
        assert_eq!(search(&idx, text("kubectl")), ["a"]);
        assert!(!idx.set_text("nope", "kubectl").unwrap());
        assert_eq!(search(&idx, text("kubectl")), ["a"]);

        // Past the bound, words are not stored.
        let max = crate::search::MAX_TEXT_BYTES;
        let long = format!("{} tailword", "x".repeat(max - 4));
        assert!(idx.set_text("b", &long).unwrap());
        assert_eq!(search(&idx, text("tailword")), Vec::<String>::new());
        let bytes: i64 = idx
            .lock()
            .query_row(
                "SELECT bytes FROM session_text WHERE session_id = 'b'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(bytes, max as i64);

        assert!(idx.remove("a").unwrap());
        assert_eq!(search(&idx, text("kubectl")), Vec::<String>::new());
        // A new session reusing nothing of the removed one's text.
        idx.upsert(&row("d", "dave", "lab-vnc", "vnc", 50)).unwrap();
        assert_eq!(search(&idx, text("kubectl")), Vec::<String>::new());
        let left: i64 = idx
            .lock()
            .query_row("SELECT COUNT(*) FROM session_text", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 2);
    }

    #[test]
    fn sessions_started_at_the_same_moment_are_all_found_in_time_order() {
        let idx = SqliteIndex::open_in_memory().unwrap();
        for id in ["x", "y", "z"] {
            idx.upsert(&row(id, "u", "t", "vnc", 5)).unwrap();
        }
        idx.upsert(&row("early", "u", "t", "vnc", 4)).unwrap();
        idx.upsert(&row("late", "u", "t", "vnc", 6)).unwrap();
        for id in ["late", "z", "early", "x", "y"] {
            assert!(idx.set_text(id, "same words").unwrap());
        }
        let found = search(&idx, text("same"));
        assert_eq!(found.len(), 5);
        assert_eq!((found[0].as_str(), found[4].as_str()), ("late", "early"));
        let mut middle = found[1..4].to_vec();
        middle.sort();
        assert_eq!(middle, ["x", "y", "z"]);
        // A time range that ends just after the shared start still has all three.
        let t = datetime!(2026-11-22 10:05 UTC);
        let window = ListFilter {
            since: Some(t),
            until: Some(t + Duration::nanoseconds(1)),
            ..text("words")
        };
        assert_eq!(search(&idx, window).len(), 3);
        // Replacing a text keeps one document per session.
        assert!(idx.set_text("y", "same words again").unwrap());
        assert_eq!(search(&idx, text("same")).len(), 5);
        assert_eq!(search(&idx, text("again")), ["y"]);
    }

    #[test]
    fn time_bounds_beyond_the_storable_range_filter_as_they_say() {
        let idx = indexed();
        let far_future = datetime!(2999-01-01 0:00 UTC);
        let far_past = datetime!(1000-01-01 0:00 UTC);
        let f = |since, until, words: Option<&str>| {
            search(
                &idx,
                ListFilter {
                    since,
                    until,
                    text: words.map(str::to_owned),
                    ..Default::default()
                },
            )
        };
        for words in [None, Some("systemctl")] {
            assert!(f(Some(far_future), None, words).is_empty());
            assert!(f(None, Some(far_past), words).is_empty());
            assert!(!f(Some(far_past), Some(far_future), words).is_empty());
        }
    }

    #[test]
    fn sealed_sessions_without_text_are_listed_for_indexing() {
        let idx = SqliteIndex::open_in_memory().unwrap();
        idx.upsert(&row("a", "u", "t", "vnc", 0)).unwrap();
        idx.upsert(&row("b", "u", "t", "vnc", 1)).unwrap();
        let mut live = row("c", "u", "t", "vnc", 2);
        live.state = RecordingState::Recording;
        idx.upsert(&live).unwrap();
        let ids = |rows: Vec<SessionRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(idx.without_text().unwrap()), ["a", "b"]);
        idx.set_text("a", "").unwrap();
        assert_eq!(ids(idx.without_text().unwrap()), ["b"]);
    }

    #[test]
    fn the_text_migration_applies_to_an_existing_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY NOT NULL,
                                                 applied_at TEXT NOT NULL);",
            )
            .unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute(
                "INSERT INTO schema_migrations VALUES (1, '2026-01-01T00:00:00Z')",
                [],
            )
            .unwrap();
        }
        let idx = SqliteIndex::open(&path).unwrap();
        assert_eq!(idx.schema_version().unwrap(), 2);
        idx.upsert(&row("a", "u", "t", "vnc", 0)).unwrap();
        assert!(idx.set_text("a", "journalctl").unwrap());
        assert_eq!(search(&idx, text("journal")), ["a"]);
    }

    /// 60 sessions, one a minute, on six targets in turn (`s00` on `t0` is the oldest), with
    /// the text "shared" and the session's own id.
    fn mixed(few_sessions: u64) -> SqliteIndex {
        let idx = SqliteIndex::open_in_memory()
            .unwrap()
            .with_few_sessions(few_sessions);
        for i in 0..60 {
            let id = format!("s{i:02}");
            let user = if i % 2 == 0 { "alice" } else { "bob" };
            idx.upsert(&row(&id, user, &format!("t{}", i % 6), "vnc", i))
                .unwrap();
            assert!(idx.set_text(&id, &format!("shared {id}")).unwrap());
        }
        idx
    }

    fn allowed(targets: &[&str]) -> Option<BTreeSet<String>> {
        Some(targets.iter().map(|t| (*t).to_owned()).collect())
    }

    /// Every page of `filter` of `limit` rows, read by offset until one comes back short.
    fn pages(idx: &SqliteIndex, filter: &ListFilter, limit: u32) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut offset = 0;
        loop {
            let page = search(
                idx,
                ListFilter {
                    limit: Some(limit),
                    offset: Some(offset),
                    ..filter.clone()
                },
            );
            let last = page.len() < limit as usize;
            pages.push(page);
            if last {
                return pages;
            }
            offset += limit;
        }
    }

    #[test]
    fn allowed_targets_fill_pages_and_offsets_count_only_them() {
        for few_sessions in [0, 1_000_000] {
            let idx = mixed(few_sessions);
            // t1 and t4 hold s01, s04, s07, …: every third session, 20 in all.
            let expected: Vec<String> = (0..60)
                .rev()
                .filter(|i| i % 3 == 1)
                .map(|i| format!("s{i:02}"))
                .collect();
            let scoped = ListFilter {
                allowed_targets: allowed(&["t1", "t4", "not-indexed"]),
                ..Default::default()
            };
            for base in [
                scoped.clone(),
                ListFilter {
                    text: Some("shared".into()),
                    ..scoped.clone()
                },
            ] {
                for limit in [1, 3, 7, 20, 25] {
                    let pages = pages(&idx, &base, limit);
                    let (last, full) = pages.split_last().unwrap();
                    assert!(
                        full.iter().all(|p| p.len() == limit as usize),
                        "limit {limit}: {pages:?}"
                    );
                    assert_eq!(last.len(), 20 % limit as usize, "limit {limit}");
                    assert_eq!(pages.concat(), expected, "limit {limit}, {base:?}");
                }
            }
            // Both plans of a listing without text were used above.
            {
                let conn = idx.lock();
                let reads_newest_first = |limit| {
                    let f = ListFilter {
                        limit,
                        ..scoped.clone()
                    };
                    scan_newest_first(&conn, &f, &Conditions::of(&f).unwrap()).unwrap()
                };
                assert!(reads_newest_first(Some(1)));
                assert!(!reads_newest_first(Some(25)));
                assert!(!reads_newest_first(None));
            }
            // With the other filters: bob's sessions on t1 and t4 are the odd ones, s01, s07, ….
            let bob = ListFilter {
                user: Some("bob".into()),
                limit: Some(4),
                offset: Some(2),
                ..scoped.clone()
            };
            assert_eq!(search(&idx, bob.clone()), ["s43", "s37", "s31", "s25"]);
            let bob_text = ListFilter {
                text: Some("shared".into()),
                ..bob
            };
            assert_eq!(search(&idx, bob_text), ["s43", "s37", "s31", "s25"]);
            let one = ListFilter {
                text: Some("s22".into()),
                ..scoped.clone()
            };
            assert_eq!(search(&idx, one), ["s22"]);
            let elsewhere = ListFilter {
                text: Some("s23".into()),
                ..scoped.clone()
            };
            assert!(search(&idx, elsewhere).is_empty());
            // `target` and `allowed_targets` both apply.
            let both = ListFilter {
                target: Some("t4".into()),
                ..scoped.clone()
            };
            assert_eq!(search(&idx, both).len(), 10);
            let outside = ListFilter {
                target: Some("t2".into()),
                ..scoped
            };
            assert!(search(&idx, outside).is_empty());
        }
    }

    #[test]
    fn no_allowed_target_matches_nothing_and_none_matches_everything() {
        let idx = mixed(FEW_SESSIONS);
        for targets in [allowed(&[]), allowed(&["not-indexed"])] {
            for text in [None, Some("shared".to_owned())] {
                let f = ListFilter {
                    allowed_targets: targets.clone(),
                    text,
                    ..Default::default()
                };
                assert!(search(&idx, f.clone()).is_empty(), "{f:?}");
            }
        }
        assert_eq!(search(&idx, ListFilter::default()).len(), 60);
        let every = allowed(&["t0", "t1", "t2", "t3", "t4", "t5"]);
        assert_eq!(
            search(
                &idx,
                ListFilter {
                    allowed_targets: every,
                    ..Default::default()
                }
            ),
            search(&idx, ListFilter::default())
        );
    }

    #[test]
    fn allowed_targets_may_be_more_than_sqlite_takes_parameters() {
        let idx = mixed(FEW_SESSIONS);
        // Far past SQLite's limit of 32766 parameters a statement, and odd names.
        let mut targets: BTreeSet<String> = (0..50_000).map(|i| format!("other-{i}")).collect();
        targets.extend(["t5".to_owned(), "\"q'uote\\".to_owned(), "日本".to_owned()]);
        let found = |targets: &BTreeSet<String>, text: Option<&str>| {
            search(
                &idx,
                ListFilter {
                    allowed_targets: Some(targets.clone()),
                    text: text.map(str::to_owned),
                    ..Default::default()
                },
            )
        };
        let t5: Vec<String> = (0..60)
            .rev()
            .filter(|i| i % 6 == 5)
            .map(|i| format!("s{i:02}"))
            .collect();
        assert_eq!(found(&targets, None), t5);
        assert_eq!(found(&targets, Some("shared")), t5);
        // Names that look like SQL or JSON are names.
        idx.upsert(&row("odd", "u", "\"q'uote\\", "vnc", 100))
            .unwrap();
        idx.upsert(&row("jp", "u", "日本", "vnc", 101)).unwrap();
        assert_eq!(found(&targets, None)[..2], ["jp", "odd"]);
        let sql = allowed(&["t0') OR 1=1 --", "%", "*"]).unwrap();
        assert!(found(&sql, None).is_empty());
    }

    const WORDS: [&str; 8] = [
        "nginx",
        "ngrep",
        "sudo",
        "status",
        "systemctl",
        "kubectl",
        "pods",
        "ls",
    ];

    /// Whether a session with `words` matches the search `pieces` (the last one as a prefix
    /// when it has 3 characters or more).
    fn model_matches(words: &[usize], pieces: &[String]) -> bool {
        let has = |p: &String, last: bool| {
            words.iter().any(|&w| {
                let w = WORDS[w];
                w == p || (last && p.len() >= 3 && w.starts_with(p.as_str()))
            })
        };
        !pieces.is_empty()
            && pieces
                .iter()
                .enumerate()
                .all(|(i, p)| has(p, i + 1 == pieces.len()))
    }

    fn piece() -> impl Strategy<Value = String> {
        (0..WORDS.len(), 1usize..10).prop_map(|(w, n)| WORDS[w].chars().take(n).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Both query plans return exactly what a plain model of the search says, in order.
        #[test]
        fn text_search_agrees_with_a_model(
            sessions in proptest::collection::vec(
                (
                    0usize..3,
                    0usize..3,
                    proptest::collection::vec(0..WORDS.len(), 0..5),
                    any::<bool>(),
                    0usize..3,
                ),
                0..25,
            ),
            allowed in proptest::option::of(proptest::collection::btree_set(0usize..4, 0..4)),
            pieces in proptest::collection::vec(piece(), 1..3),
            user in proptest::option::of(0usize..3),
            protocol in proptest::option::of(0usize..3),
            since in proptest::option::of(0i64..80),
            until in proptest::option::of(0i64..80),
            limit in proptest::option::of(1u32..6),
            offset in proptest::option::of(0u32..6),
        ) {
            let users = ["alice", "bob", "carol"];
            let protocols = ["vnc", "rdp", "web"];
            // The fourth target has no session.
            let targets = ["lab-vnc", "win-rdp", "console", "unused"];
            let t0 = datetime!(2026-11-22 10:00 UTC);
            let filter = ListFilter {
                text: Some(pieces.join(" ")),
                user: user.map(|u| users[u].to_owned()),
                protocol: protocol.map(|p| protocols[p].to_owned()),
                since: since.map(|m| t0 + Duration::minutes(m)),
                until: until.map(|m| t0 + Duration::minutes(m)),
                allowed_targets: allowed
                    .as_ref()
                    .map(|a| a.iter().map(|&t| targets[t].to_owned()).collect()),
                limit,
                offset,
                ..Default::default()
            };
            // Session i starts at minute 3i: all distinct, so the order is total.
            let mut expected: Vec<(i64, String)> = Vec::new();
            let by_newest = SqliteIndex::open_in_memory().unwrap().with_few_sessions(0);
            let by_filters = SqliteIndex::open_in_memory().unwrap().with_few_sessions(1_000_000);
            for (i, (u, p, words, sealed, t)) in sessions.iter().enumerate() {
                let id = format!("s{i:02}");
                let minute = i as i64 * 3;
                let r = row(&id, users[*u], targets[*t], protocols[*p], minute);
                let text: Vec<&str> = words.iter().map(|&w| WORDS[w]).collect();
                for idx in [&by_newest, &by_filters] {
                    idx.upsert(&r).unwrap();
                    if *sealed {
                        idx.set_text(&id, &text.join(" ")).unwrap();
                    }
                }
                let passes = *sealed
                    && user.is_none_or(|x| x == *u)
                    && protocol.is_none_or(|x| x == *p)
                    && allowed.as_ref().is_none_or(|a| a.contains(t))
                    && since.is_none_or(|m| minute >= m)
                    && until.is_none_or(|m| minute < m)
                    && model_matches(words, &pieces);
                if passes {
                    expected.push((minute, id));
                }
            }
            expected.sort_by_key(|e| std::cmp::Reverse(e.0));
            let expected: Vec<String> = expected
                .into_iter()
                .map(|(_, id)| id)
                .skip(offset.unwrap_or(0) as usize)
                .take(limit.map_or(usize::MAX, |l| l as usize))
                .collect();
            prop_assert_eq!(&search(&by_newest, filter.clone()), &expected);
            prop_assert_eq!(&search(&by_filters, filter), &expected);
        }

        #[test]
        fn any_search_text_is_answered(q in any::<String>(), words in "[ a-zA-Z0-9\"*():^+\\-]{0,40}") {
            let idx = indexed();
            prop_assert!(idx.list(&text(&q)).is_ok());
            prop_assert!(idx.list(&text(&words)).is_ok());
        }
    }
}
