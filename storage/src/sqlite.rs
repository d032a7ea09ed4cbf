//! Opening the SQLite databases (index, access tokens) safely when several processes start at
//! once: the gateway and an operator's command may open a new file at the same moment.

use rusqlite::{Connection, ErrorCode};
use std::path::Path;
use std::time::Duration;

/// How long a statement waits for another process's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens `path` in WAL mode with a busy timeout. Switching the journal mode needs the database
/// to itself and SQLite may refuse it at once (without waiting) while another connection is
/// doing the same, so that one step is retried for up to the busy timeout.
pub(crate) fn open_wal(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let step = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    loop {
        match conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(())) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::DatabaseBusy && waited < BUSY_TIMEOUT =>
            {
                std::thread::sleep(step);
                waited += step;
            }
            other => return other.map(|()| conn),
        }
    }
}
