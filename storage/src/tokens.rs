//! Access tokens: short-lived secrets the gateway issues so that a user can open a session to one
//! target with a stock client (for VNC: typed into the viewer's password prompt).
//!
//! # Why tokens are stored in plaintext
//!
//! VNC Authentication is a challenge-response scheme over a *shared secret*: the gateway sends a
//! random challenge and the viewer answers with the challenge DES-encrypted under the secret. To
//! check an answer the gateway must compute the same encryption, so it has to hold the secret
//! itself, exactly like any VNC server holds its password. A one-way hash would make the token
//! unusable. Tokens are therefore stored as they are, in a database file that is created with
//! mode `0600` (and forced to `0600` when opened). The exposure is limited instead by:
//!
//! - **entropy**: VNC Authentication uses only the first 8 bytes of a password, so a token is 8
//!   characters drawn uniformly from a 64-symbol alphabet ([`TOKEN_ALPHABET`]): 48 bits. All
//!   symbols are 7-bit ASCII; DES ignores the lowest bit of each key byte, which after VNC's bit
//!   reversal is the *highest* bit of each character, so no two tokens collide as DES keys;
//! - **lifetime**: every grant expires ([`DEFAULT_TTL`] unless chosen otherwise, at most
//!   [`MAX_TTL`]) and can be one-time ([`Grant::once`]) or revoked;
//! - **binding**: a grant is for one user and one target;
//! - **rate limiting** of failed attempts, done by the gateway in front of this store.
//!
//! # Storage
//!
//! Grants live in the `access_tokens` table of an SQLite database (normally the index database
//! file; the table and its migration table `access_token_migrations` do not clash with the
//! index's). SQLite creates its `-wal` and `-shm` files with the permissions of the database file.
//!
//! The same database, through the same [`TokenStore`], also holds just-in-time access requests
//! ([`crate::requests`]: approving one issues its grant in the same transaction) and the sign-in
//! sessions of the web interface ([`crate::logins`]).
//!
//! All methods take the current time as a parameter so that behaviour is deterministic in tests.

use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::OsRng;
use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension, Row};
use time::OffsetDateTime;

/// Number of characters of a token (VNC Authentication uses exactly 8 bytes of a password).
pub const TOKEN_LEN: usize = 8;

/// The 64 symbols tokens are drawn from (6 bits of entropy each, 48 bits per token).
pub const TOKEN_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Lifetime of a grant when none is given.
pub const DEFAULT_TTL: Duration = Duration::from_secs(8 * 3600);

/// Longest lifetime a grant may have.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Longest user or target name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// How many random tokens are tried before giving up on finding an unused one.
const GRANT_ATTEMPTS: usize = 16;

/// Errors of the token store.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The database failed.
    #[error("access token database: {0}")]
    Database(#[from] rusqlite::Error),
    /// The database file could not be created or its permissions set.
    #[error("access token database file {path}: {source}")]
    File {
        /// The database path.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The database holds something this version cannot interpret.
    #[error("access token database is inconsistent: {0}")]
    Corrupt(String),
    /// A request was invalid (empty user, TTL too long, …).
    #[error("invalid access grant: {0}")]
    Invalid(String),
    /// An access request was invalid (reason too long, empty rule id, …).
    #[error("invalid access request: {0}")]
    InvalidRequest(String),
    /// A sign-in session could not be created as asked (empty user, lifetime too long, …).
    #[error("invalid sign-in session: {0}")]
    InvalidLogin(String),
    /// No access request has this id.
    #[error("no access request {0}")]
    RequestNotFound(i64),
    /// The access request was already decided (approved, denied, cancelled or expired).
    #[error("access request {id} is {status}, not pending")]
    NotPending {
        /// The request.
        id: i64,
        /// Its current status.
        status: crate::requests::RequestStatus,
    },
    /// Only the user who made an access request may cancel it.
    #[error("access request {id} was made by another user")]
    NotRequester {
        /// The request.
        id: i64,
    },
}

/// An access token: the secret a user types as the password.
///
/// Its `Debug` form is redacted; the only way to read it is [`AccessToken::expose`], so that it
/// cannot end up in logs or error messages by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// A fresh random token from the operating system's random source.
    pub fn generate() -> Self {
        let mut raw = [0u8; TOKEN_LEN];
        OsRng.fill_bytes(&mut raw);
        // 256 is a multiple of 64, so masking keeps the choice uniform.
        let s: String = raw
            .iter()
            .map(|b| char::from(TOKEN_ALPHABET[usize::from(b & 63)]))
            .collect();
        AccessToken(s)
    }

    /// Wraps a token read back from storage or typed by an operator.
    ///
    /// Returns `None` unless it is exactly [`TOKEN_LEN`] symbols of [`TOKEN_ALPHABET`].
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == TOKEN_LEN && s.bytes().all(|b| TOKEN_ALPHABET.contains(&b));
        ok.then(|| AccessToken(s.to_owned()))
    }

    /// The secret itself, to show to the user once or to compute an authentication response.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// Whether a grant can be used right now, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantStatus {
    /// Usable.
    Active,
    /// Past its expiry time.
    Expired,
    /// A one-time grant that was already used.
    Used,
    /// Revoked by an operator.
    Revoked,
}

impl GrantStatus {
    /// A short description for the audit log ("token expired", …).
    pub fn describe(self) -> &'static str {
        match self {
            GrantStatus::Active => "token active",
            GrantStatus::Expired => "token expired",
            GrantStatus::Used => "token already used",
            GrantStatus::Revoked => "token revoked",
        }
    }
}

/// One issued access grant: a token that lets `user` open sessions to `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Store-assigned identifier (for revocation and audit; not secret).
    pub id: i64,
    /// The user the grant was issued to.
    pub user: String,
    /// The target it opens.
    pub target: String,
    /// One-time: consumed by its first successful use.
    pub once: bool,
    /// When it was issued.
    pub created_at: OffsetDateTime,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
    /// First successful use.
    pub first_used_at: Option<OffsetDateTime>,
    /// Latest successful use.
    pub last_used_at: Option<OffsetDateTime>,
    /// Number of successful uses.
    pub use_count: u64,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
    /// The secret.
    pub token: AccessToken,
}

impl Grant {
    /// The grant's status at `now`. Revocation wins over use, use over expiry.
    pub fn status(&self, now: OffsetDateTime) -> GrantStatus {
        if self.revoked_at.is_some() {
            GrantStatus::Revoked
        } else if self.once && self.use_count > 0 {
            GrantStatus::Used
        } else if now >= self.expires_at {
            GrantStatus::Expired
        } else {
            GrantStatus::Active
        }
    }
}

/// Access grants in SQLite.
#[derive(Debug)]
pub struct TokenStore {
    conn: Mutex<Connection>,
}

const COLUMNS: &str = "id, token, user, target, once, created_at, expires_at, first_used_at, \
     last_used_at, use_count, revoked_at";

/// Schema migrations of the store's database, applied in order; never edit one, only append.
const MIGRATIONS: &[&str] = &[
    MIGRATION_ACCESS_TOKENS,
    crate::requests::MIGRATION_ACCESS_REQUESTS,
    crate::logins::MIGRATION_LOGIN_SESSIONS,
    crate::logins::MIGRATION_LOGIN_GROUPS,
];

pub(crate) const MIGRATION_ACCESS_TOKENS: &str = "CREATE TABLE access_tokens (
         id            INTEGER PRIMARY KEY AUTOINCREMENT,
         token         TEXT    NOT NULL UNIQUE,
         user          TEXT    NOT NULL,
         target        TEXT    NOT NULL,
         once          INTEGER NOT NULL,
         created_at    INTEGER NOT NULL,
         expires_at    INTEGER NOT NULL,
         first_used_at INTEGER,
         last_used_at  INTEGER,
         use_count     INTEGER NOT NULL DEFAULT 0,
         revoked_at    INTEGER
     );
     CREATE INDEX access_tokens_target ON access_tokens (target, expires_at);";

impl TokenStore {
    /// Opens (creating if needed, with mode `0600`) the database at `path`, forces its
    /// permissions to `0600` and migrates the access token tables.
    pub fn open(path: &Path) -> Result<Self, TokenError> {
        restrict_file(path)?;
        let conn = crate::sqlite::open_wal(path)?;
        Self::init(conn)
    }

    /// An in-memory store (for tests and tools).
    pub fn open_in_memory() -> Result<Self, TokenError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, TokenError> {
        conn.busy_timeout(Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(TokenStore {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        // SQLite statements are atomic: a panic elsewhere cannot leave the connection inconsistent.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a new grant for `user` on `target`, valid for `ttl` from `now`.
    ///
    /// The returned [`Grant::token`] is the secret to hand to the user.
    pub fn grant(
        &self,
        user: &str,
        target: &str,
        once: bool,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<Grant, TokenError> {
        insert_grant(&self.lock(), user, target, once, ttl, now)
    }

    /// The grant with identifier `id`.
    pub fn get(&self, id: i64) -> Result<Option<Grant>, TokenError> {
        let conn = self.lock();
        let raw = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM access_tokens WHERE id = ?1"),
                params![id],
                RawGrant::from_row,
            )
            .optional()?;
        raw.map(RawGrant::into_grant).transpose()
    }

    /// The grants usable on `target` at `now`: not expired, not revoked, and (for one-time
    /// grants) not used.
    pub fn candidates(&self, target: &str, now: OffsetDateTime) -> Result<Vec<Grant>, TokenError> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM access_tokens
                 WHERE target = ?1 AND expires_at > ?2 AND revoked_at IS NULL
                   AND (once = 0 OR use_count = 0)
                 ORDER BY id"
            ),
            params![target, to_nanos(now)?],
        )
    }

    /// Every grant usable at `now` on any target (see [`TokenStore::candidates`]).
    pub fn usable(&self, now: OffsetDateTime) -> Result<Vec<Grant>, TokenError> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM access_tokens
                 WHERE expires_at > ?1 AND revoked_at IS NULL
                   AND (once = 0 OR use_count = 0)
                 ORDER BY id"
            ),
            params![to_nanos(now)?],
        )
    }

    /// Every stored grant, usable or not, newest first.
    pub fn list(&self) -> Result<Vec<Grant>, TokenError> {
        self.query(
            &format!("SELECT {COLUMNS} FROM access_tokens ORDER BY id DESC"),
            [],
        )
    }

    /// Records a successful use of grant `id` at `now`.
    ///
    /// This is atomic: it succeeds only if the grant is still usable at that moment, so a
    /// one-time token raced by two connections is accepted for exactly one. Returns whether the
    /// use was recorded (`false`: unknown, expired, revoked or already used).
    pub fn mark_used(&self, id: i64, now: OffsetDateTime) -> Result<bool, TokenError> {
        let now = to_nanos(now)?;
        let changed = self.lock().execute(
            "UPDATE access_tokens
             SET use_count = use_count + 1,
                 first_used_at = COALESCE(first_used_at, ?2),
                 last_used_at = ?2
             WHERE id = ?1 AND expires_at > ?2 AND revoked_at IS NULL
               AND (once = 0 OR use_count = 0)",
            params![id, now],
        )?;
        Ok(changed == 1)
    }

    /// Revokes grant `id` at `now`. Returns whether a not yet revoked grant was found.
    pub fn revoke(&self, id: i64, now: OffsetDateTime) -> Result<bool, TokenError> {
        let changed = self.lock().execute(
            "UPDATE access_tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![id, to_nanos(now)?],
        )?;
        Ok(changed == 1)
    }

    /// Deletes grants that stopped being usable before `before`: expired before it, revoked
    /// before it, or one-time grants used before it. Returns how many were deleted.
    ///
    /// Keeping recently dead grants a while (pass a `before` somewhat in the past) lets failed
    /// attempts with them be reported precisely ("token expired", "token already used").
    pub fn expire_old(&self, before: OffsetDateTime) -> Result<usize, TokenError> {
        let before = to_nanos(before)?;
        Ok(self.lock().execute(
            "DELETE FROM access_tokens
             WHERE expires_at <= ?1
                OR (revoked_at IS NOT NULL AND revoked_at <= ?1)
                OR (once = 1 AND use_count > 0 AND first_used_at <= ?1)",
            params![before],
        )?)
    }

    fn query<P: rusqlite::Params>(&self, sql: &str, params: P) -> Result<Vec<Grant>, TokenError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(sql)?;
        let raws = stmt
            .query_map(params, RawGrant::from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(RawGrant::into_grant).collect()
    }
}

/// Inserts a new grant through `conn` (a plain connection or an open transaction).
pub(crate) fn insert_grant(
    conn: &Connection,
    user: &str,
    target: &str,
    once: bool,
    ttl: Duration,
    now: OffsetDateTime,
) -> Result<Grant, TokenError> {
    check_name("user", user)?;
    check_name("target", target)?;
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(TokenError::Invalid(format!(
            "lifetime must be between 1 s and {} h",
            MAX_TTL.as_secs() / 3600
        )));
    }
    let ttl = time::Duration::try_from(ttl)
        .map_err(|_| TokenError::Invalid("lifetime out of range".into()))?;
    let expires_at = now
        .checked_add(ttl)
        .ok_or_else(|| TokenError::Invalid("expiry time out of range".into()))?;
    let (created, expires) = (to_nanos(now)?, to_nanos(expires_at)?);
    for _ in 0..GRANT_ATTEMPTS {
        let token = AccessToken::generate();
        let inserted = conn.execute(
            "INSERT INTO access_tokens (token, user, target, once, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (token) DO NOTHING",
            params![token.expose(), user, target, once, created, expires],
        )?;
        if inserted == 1 {
            return Ok(Grant {
                id: conn.last_insert_rowid(),
                user: user.to_owned(),
                target: target.to_owned(),
                once,
                created_at: now,
                expires_at,
                first_used_at: None,
                last_used_at: None,
                use_count: 0,
                revoked_at: None,
                token,
            });
        }
    }
    Err(TokenError::Corrupt(
        "could not generate an unused token (random source failing?)".into(),
    ))
}

fn check_name(what: &str, value: &str) -> Result<(), TokenError> {
    name_problem(what, value).map_or(Ok(()), |m| Err(TokenError::Invalid(m)))
}

/// Why `value` is not acceptable as a user, target or similar name, if it is not.
pub(crate) fn name_problem(what: &str, value: &str) -> Option<String> {
    (value.is_empty() || value.len() > MAX_NAME_LEN || value.chars().any(char::is_control))
        .then(|| format!("{what} must be 1..={MAX_NAME_LEN} bytes without control characters"))
}

/// Creates `path` with mode `0600` if it does not exist, and forces `0600` if it does.
#[cfg(unix)]
fn restrict_file(path: &Path) -> Result<(), TokenError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |source| TokenError::File {
        path: path.display().to_string(),
        source,
    };
    // Never open an existing database file here: closing any descriptor of a file drops every
    // POSIX lock this process holds on it, including the locks of an SQLite connection already
    // open on it (say, the other gateway's), after which another process may checkpoint and
    // delete the WAL under that connection. Create it only when it is missing.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)
}

#[cfg(not(unix))]
fn restrict_file(_path: &Path) -> Result<(), TokenError> {
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), TokenError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS access_token_migrations (
             version    INTEGER PRIMARY KEY NOT NULL,
             applied_at INTEGER NOT NULL
         );",
    )?;
    // One write transaction from reading the version to the last migration: two processes
    // opening a new database at once (the gateway and `psmgate access grant`) must not both
    // apply the same migration. The second waits (busy timeout) and then finds nothing to do.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: Option<i64> = tx.query_row(
        "SELECT MAX(version) FROM access_token_migrations",
        [],
        |r| r.get(0),
    )?;
    let current = usize::try_from(current.unwrap_or(0))
        .map_err(|_| TokenError::Corrupt("negative schema version".into()))?;
    if current > MIGRATIONS.len() {
        return Err(TokenError::Corrupt(format!(
            "schema version {current} is newer than this gateway supports ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO access_token_migrations (version, applied_at) VALUES (?1, ?2)",
            params![i as i64 + 1, OffsetDateTime::now_utc().unix_timestamp()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

pub(crate) fn to_nanos(t: OffsetDateTime) -> Result<i64, TokenError> {
    i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| TokenError::Invalid(format!("timestamp {t} out of range")))
}

pub(crate) fn from_nanos(n: i64) -> Result<OffsetDateTime, TokenError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(n))
        .map_err(|e| TokenError::Corrupt(format!("timestamp {n}: {e}")))
}

/// Column values of one row, converted outside the rusqlite callback.
struct RawGrant {
    id: i64,
    token: String,
    user: String,
    target: String,
    once: bool,
    created_at: i64,
    expires_at: i64,
    first_used_at: Option<i64>,
    last_used_at: Option<i64>,
    use_count: i64,
    revoked_at: Option<i64>,
}

impl RawGrant {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawGrant {
            id: r.get(0)?,
            token: r.get(1)?,
            user: r.get(2)?,
            target: r.get(3)?,
            once: r.get(4)?,
            created_at: r.get(5)?,
            expires_at: r.get(6)?,
            first_used_at: r.get(7)?,
            last_used_at: r.get(8)?,
            use_count: r.get(9)?,
            revoked_at: r.get(10)?,
        })
    }

    fn into_grant(self) -> Result<Grant, TokenError> {
        let token = AccessToken::parse(&self.token).ok_or_else(|| {
            TokenError::Corrupt(format!("grant {} has a malformed token", self.id))
        })?;
        Ok(Grant {
            id: self.id,
            user: self.user,
            target: self.target,
            once: self.once,
            created_at: from_nanos(self.created_at)?,
            expires_at: from_nanos(self.expires_at)?,
            first_used_at: self.first_used_at.map(from_nanos).transpose()?,
            last_used_at: self.last_used_at.map(from_nanos).transpose()?,
            use_count: u64::try_from(self.use_count).map_err(|_| {
                TokenError::Corrupt(format!("grant {}: negative use count", self.id))
            })?,
            revoked_at: self.revoked_at.map(from_nanos).transpose()?,
            token,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use time::macros::datetime;

    /// The tests' "now".
    pub(crate) const T0: OffsetDateTime = datetime!(2026-11-20 10:00 UTC);
    pub(crate) const HOUR: Duration = Duration::from_secs(3600);

    /// An empty store in memory.
    pub(crate) fn store() -> TokenStore {
        TokenStore::open_in_memory().unwrap()
    }

    #[test]
    fn generated_tokens_use_the_alphabet_and_differ() {
        let a = AccessToken::generate();
        let b = AccessToken::generate();
        assert_eq!(a.expose().len(), TOKEN_LEN);
        assert!(a.expose().bytes().all(|c| TOKEN_ALPHABET.contains(&c)));
        assert_ne!(a, b, "48-bit tokens should not repeat");
        assert!(AccessToken::parse(a.expose()).is_some());
    }

    #[test]
    fn alphabet_has_64_distinct_ascii_symbols() {
        let mut seen = std::collections::HashSet::new();
        for &c in TOKEN_ALPHABET {
            assert!(c.is_ascii_graphic());
            assert!(seen.insert(c), "duplicate symbol {}", c as char);
        }
        assert_eq!(seen.len(), 64);
    }

    #[test]
    fn parse_rejects_malformed_tokens() {
        assert!(AccessToken::parse("short").is_none());
        assert!(AccessToken::parse("ABCDEFGHI").is_none());
        assert!(AccessToken::parse("ABCD EFG").is_none());
        assert!(AccessToken::parse("ABCDEFGé").is_none());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let g = store().grant("alice", "lab-vnc", false, HOUR, T0).unwrap();
        let dbg = format!("{g:?}");
        assert!(!dbg.contains(g.token.expose()), "{dbg}");
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn grant_round_trips_and_is_a_candidate() {
        let s = store();
        let g = s.grant("alice", "lab-vnc", true, HOUR, T0).unwrap();
        assert_eq!(g.expires_at, T0 + time::Duration::hours(1));
        assert_eq!(s.get(g.id).unwrap().unwrap(), g);
        assert_eq!(s.candidates("lab-vnc", T0).unwrap(), vec![g.clone()]);
        assert!(s.candidates("other", T0).unwrap().is_empty());
        assert_eq!(g.status(T0), GrantStatus::Active);
    }

    #[test]
    fn grant_validates_input() {
        let s = store();
        assert!(matches!(
            s.grant("", "t", false, HOUR, T0),
            Err(TokenError::Invalid(_))
        ));
        assert!(s.grant("a\n", "t", false, HOUR, T0).is_err());
        assert!(s.grant("a", &"t".repeat(300), false, HOUR, T0).is_err());
        assert!(s.grant("a", "t", false, Duration::ZERO, T0).is_err());
        assert!(s.grant("a", "t", false, MAX_TTL + HOUR, T0).is_err());
        assert!(s.grant("a", "t", false, MAX_TTL, T0).is_ok());
    }

    #[test]
    fn expired_grants_are_not_candidates() {
        let s = store();
        let g = s.grant("alice", "lab-vnc", false, HOUR, T0).unwrap();
        let later = T0 + time::Duration::hours(1);
        assert!(s.candidates("lab-vnc", later).unwrap().is_empty());
        assert_eq!(
            s.get(g.id).unwrap().unwrap().status(later),
            GrantStatus::Expired
        );
        assert!(!s.mark_used(g.id, later).unwrap());
    }

    #[test]
    fn once_grant_is_consumed_exactly_once() {
        let s = store();
        let g = s.grant("alice", "lab-vnc", true, HOUR, T0).unwrap();
        assert!(s.mark_used(g.id, T0).unwrap());
        assert!(!s.mark_used(g.id, T0).unwrap(), "second use must fail");
        assert!(s.candidates("lab-vnc", T0).unwrap().is_empty());
        let g = s.get(g.id).unwrap().unwrap();
        assert_eq!(g.status(T0), GrantStatus::Used);
        assert_eq!(g.use_count, 1);
        assert_eq!(g.first_used_at, Some(T0));
    }

    #[test]
    fn reusable_grant_counts_uses() {
        let s = store();
        let g = s.grant("alice", "lab-vnc", false, HOUR, T0).unwrap();
        let t1 = T0 + time::Duration::minutes(5);
        assert!(s.mark_used(g.id, T0).unwrap());
        assert!(s.mark_used(g.id, t1).unwrap());
        let g = s.get(g.id).unwrap().unwrap();
        assert_eq!(
            (g.use_count, g.first_used_at, g.last_used_at),
            (2, Some(T0), Some(t1))
        );
        assert_eq!(g.status(t1), GrantStatus::Active);
    }

    #[test]
    fn revoked_grant_is_dead() {
        let s = store();
        let g = s.grant("alice", "lab-vnc", false, HOUR, T0).unwrap();
        assert!(s.revoke(g.id, T0).unwrap());
        assert!(!s.revoke(g.id, T0).unwrap());
        assert!(!s.revoke(9999, T0).unwrap());
        assert!(s.candidates("lab-vnc", T0).unwrap().is_empty());
        assert!(!s.mark_used(g.id, T0).unwrap());
        assert_eq!(
            s.get(g.id).unwrap().unwrap().status(T0),
            GrantStatus::Revoked
        );
    }

    #[test]
    fn list_is_newest_first() {
        let s = store();
        let a = s.grant("alice", "a", false, HOUR, T0).unwrap();
        let b = s.grant("bob", "b", true, HOUR, T0).unwrap();
        let ids: Vec<i64> = s.list().unwrap().iter().map(|g| g.id).collect();
        assert_eq!(ids, vec![b.id, a.id]);
    }

    #[test]
    fn expire_old_deletes_only_dead_grants() {
        let s = store();
        let short = s.grant("a", "t", false, HOUR, T0).unwrap();
        let long = s.grant("a", "t", false, 10 * HOUR, T0).unwrap();
        let once = s.grant("a", "t", true, 10 * HOUR, T0).unwrap();
        let revoked = s.grant("a", "t", false, 10 * HOUR, T0).unwrap();
        s.mark_used(once.id, T0).unwrap();
        s.revoke(revoked.id, T0).unwrap();
        // Nothing died before T0.
        assert_eq!(s.expire_old(T0 - time::Duration::seconds(1)).unwrap(), 0);
        let deleted = s.expire_old(T0 + time::Duration::hours(2)).unwrap();
        assert_eq!(deleted, 3);
        let left: Vec<i64> = s.list().unwrap().iter().map(|g| g.id).collect();
        assert_eq!(left, vec![long.id]);
        assert!(s.get(short.id).unwrap().is_none());
    }

    #[cfg(unix)]
    #[test]
    fn database_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite3");
        // An existing, world-readable file is tightened.
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = TokenStore::open(&path).unwrap();
        let g = s.grant("alice", "lab-vnc", false, HOUR, T0).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(s);
        // Reopening keeps the data and does not re-run migrations.
        let s = TokenStore::open(&path).unwrap();
        assert_eq!(s.get(g.id).unwrap().unwrap().token, g.token);
    }

    #[test]
    fn shares_a_database_with_the_session_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite3");
        let index = crate::index::SqliteIndex::open(&path).unwrap();
        let tokens = TokenStore::open(&path).unwrap();
        let version = index.schema_version().unwrap();
        tokens.grant("alice", "lab-vnc", false, HOUR, T0).unwrap();
        drop(index);
        let index = crate::index::SqliteIndex::open(&path).unwrap();
        assert_eq!(index.schema_version().unwrap(), version);
        assert_eq!(tokens.list().unwrap().len(), 1);
    }
}
