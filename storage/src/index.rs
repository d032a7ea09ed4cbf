//! The session index: one row per recording, for search, retention and the admin API.
//!
//! [`Index`] is the interface (a PostgreSQL implementation can follow); [`SqliteIndex`] is the
//! embedded default. The index is a cache of what the recordings say: it can be rebuilt from the
//! manifests, except for `legal_hold` and the last integrity result.

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
    /// Removes a row. Returns whether it existed.
    fn remove(&self, id: &str) -> Result<bool, IndexError>;
}

/// Schema migrations, applied in order; the index of a migration + 1 is its version.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

const COLUMNS: &str = "id, dir, protocol, user, target, client_addr, started_at, ended_at, \
     duration_ms, bytes, state, integrity, integrity_message, verified_at, legal_hold, created";

/// The embedded SQLite index (WAL mode, versioned schema).
#[derive(Debug)]
pub struct SqliteIndex {
    conn: Mutex<Connection>,
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
        migrate(&mut conn)?;
        Ok(SqliteIndex {
            conn: Mutex::new(conn),
        })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, IndexError> {
        current_version(&self.lock())
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
        let mut clauses: Vec<&str> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut text = |clause, v: &Option<String>, clauses: &mut Vec<&str>| {
            if let Some(v) = v {
                clauses.push(clause);
                values.push(Value::Text(v.clone()));
            }
        };
        text("user = ?", &filter.user, &mut clauses);
        text("target = ?", &filter.target, &mut clauses);
        text("protocol = ?", &filter.protocol, &mut clauses);
        text(
            "state = ?",
            &filter.state.map(|s| s.as_str().to_owned()),
            &mut clauses,
        );
        if let Some(since) = filter.since {
            clauses.push("started_at >= ?");
            values.push(Value::Integer(to_nanos(since)?));
        }
        if let Some(until) = filter.until {
            clauses.push("started_at < ?");
            values.push(Value::Integer(to_nanos(until)?));
        }
        let mut sql = format!("SELECT {COLUMNS} FROM sessions");
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(" ORDER BY started_at DESC, id LIMIT ? OFFSET ?");
        values.push(Value::Integer(filter.limit.map_or(-1, i64::from)));
        values.push(Value::Integer(filter.offset.map_or(0, i64::from)));

        let conn = self.lock();
        let mut stmt = conn.prepare(&sql)?;
        let raws = stmt
            .query_map(rusqlite::params_from_iter(values), RawRow::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(RawRow::into_row).collect()
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
        let conn = self.lock();
        let n = conn.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
        Ok(n > 0)
    }
}
