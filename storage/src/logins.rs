//! Sign-in sessions of the web interface and API: after a user signs in (password, OIDC, …) the
//! gateway hands the browser or API client a [`LoginToken`], a random bearer secret, and looks
//! the session up by it on every request.
//!
//! # Storage
//!
//! Sessions live in the `login_sessions` table of the [`TokenStore`] database. Unlike access
//! tokens (which the gateway must hold in plaintext to check VNC challenge-responses), a login
//! token is only ever compared, so only its SHA-256 is stored: a copy of the database does not
//! let anyone sign in. A token carries 256 random bits, so a plain (unsalted, fast) hash is
//! enough: there is nothing to guess.
//!
//! A session may keep the groups the identity provider put the user in at sign-in
//! ([`LoginSession::groups`], a JSON array in the `groups` column): the gateway resolves them to
//! roles against the policy in force on every request, so roles are never stored.
//!
//! # Expiry
//!
//! A session ends at the first of: its absolute expiry (`expires_at`, fixed at sign-in), being
//! idle for the idle timeout the caller passes to [`TokenStore::lookup_login`], or revocation
//! (sign-out, or every session of a user at once). To limit writes, `last_seen_at` is updated at
//! most once per [`LAST_SEEN_GRANULARITY`], so a session in use may be judged idle up to that
//! much early.
//!
//! All methods take the current time as a parameter so that behaviour is deterministic in tests.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use rusqlite::{params, OptionalExtension, Row};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::tokens::{from_nanos, name_problem, to_nanos, TokenError, TokenStore};

/// Prefix of every login token (tells it apart from other secrets in logs and scanners).
pub const LOGIN_TOKEN_PREFIX: &str = "psl_";

/// Random bytes in a login token.
pub const LOGIN_TOKEN_BYTES: usize = 32;

/// Longest absolute lifetime of a sign-in session.
pub const MAX_LOGIN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// `last_seen_at` is written at most this often per session.
pub const LAST_SEEN_GRANULARITY: Duration = Duration::from_secs(60);

/// Longest sign-in method name (`via`) accepted, in bytes.
pub const MAX_VIA_LEN: usize = 32;

/// Most groups a session keeps.
pub const MAX_LOGIN_GROUPS: usize = 256;

/// Longest group name a session keeps, in bytes (256 characters of up to 4 bytes).
pub const MAX_LOGIN_GROUP_LEN: usize = 1024;

/// The `login_sessions` table (third migration of the [`TokenStore`] database).
pub(crate) const MIGRATION_LOGIN_SESSIONS: &str = "CREATE TABLE login_sessions (
         id           INTEGER PRIMARY KEY AUTOINCREMENT,
         token_sha256 BLOB    NOT NULL UNIQUE,
         user         TEXT    NOT NULL,
         via          TEXT    NOT NULL,
         created_at   INTEGER NOT NULL,
         expires_at   INTEGER NOT NULL,
         last_seen_at INTEGER NOT NULL,
         revoked_at   INTEGER
     );
     CREATE INDEX login_sessions_user ON login_sessions (user);
     CREATE INDEX login_sessions_expires ON login_sessions (expires_at);";

/// The `groups` column of `login_sessions` (fourth migration): a JSON array of group names,
/// `NULL` for a session that keeps none (a password sign-in).
pub(crate) const MIGRATION_LOGIN_GROUPS: &str =
    "ALTER TABLE login_sessions ADD COLUMN groups TEXT;";

const COLUMNS: &str = "id, user, via, created_at, expires_at, last_seen_at, revoked_at, groups";

/// A login token: `psl_` followed by 256 random bits in unpadded base64url (43 characters).
///
/// Its `Debug` form is redacted and it has no `Display`; the only way to read it is
/// [`LoginToken::expose`], so that it cannot end up in logs or error messages by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct LoginToken(String);

impl LoginToken {
    /// A fresh random token from the operating system's random source.
    pub fn generate() -> Self {
        let mut raw = [0u8; LOGIN_TOKEN_BYTES];
        OsRng.fill_bytes(&mut raw);
        LoginToken(format!(
            "{LOGIN_TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(raw)
        ))
    }

    /// Wraps a token presented by a client.
    ///
    /// Returns `None` unless it is the prefix followed by the canonical unpadded base64url
    /// encoding of exactly [`LOGIN_TOKEN_BYTES`] bytes.
    pub fn parse(s: &str) -> Option<Self> {
        let body = s.strip_prefix(LOGIN_TOKEN_PREFIX)?;
        // Checked before decoding so that arbitrarily long input costs nothing.
        if body.len() != (LOGIN_TOKEN_BYTES * 4).div_ceil(3) {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(body).ok()?;
        (raw.len() == LOGIN_TOKEN_BYTES && URL_SAFE_NO_PAD.encode(&raw) == body)
            .then(|| LoginToken(s.to_owned()))
    }

    /// The secret itself, to hand to the client once (cookie, API response).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// SHA-256 of the token's text: what the database stores.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }
}

impl fmt::Debug for LoginToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LoginToken(<redacted>)")
    }
}

/// One sign-in session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSession {
    /// Store-assigned identifier (not secret).
    pub id: i64,
    /// The signed-in user.
    pub user: String,
    /// When the user signed in.
    pub created_at: OffsetDateTime,
    /// When the session ends whatever happens.
    pub expires_at: OffsetDateTime,
    /// Last use, to within [`LAST_SEEN_GRANULARITY`].
    pub last_seen_at: OffsetDateTime,
    /// When it was revoked (signed out), if it was.
    pub revoked_at: Option<OffsetDateTime>,
    /// How the user signed in (`password`, `oidc`, …).
    pub via: String,
    /// The identity provider's groups of the user at sign-in (OpenID Connect); `None` for a
    /// sign-in that has none (a password).
    pub groups: Option<Vec<String>>,
}

impl LoginSession {
    /// Whether the session is usable at `now`: not revoked, not past its absolute expiry, and
    /// used less than `idle_timeout` ago (`Duration::MAX`: no idle limit).
    pub fn is_active(&self, idle_timeout: Duration, now: OffsetDateTime) -> bool {
        if self.revoked_at.is_some() || now >= self.expires_at {
            return false;
        }
        match time::Duration::try_from(idle_timeout) {
            Ok(idle) => now - self.last_seen_at < idle,
            // Longer than any representable span: never idle.
            Err(_) => true,
        }
    }
}

impl TokenStore {
    /// Starts a sign-in session for `user`, signed in `via` a method (`password`, `oidc`, …),
    /// ending `ttl` after `now` at the latest.
    ///
    /// Returns the token to hand to the client (it is not stored; only its SHA-256 is) and the
    /// session. Fails with [`TokenError::InvalidLogin`] for an empty or overlong name or a
    /// lifetime outside 1 s ..= [`MAX_LOGIN_TTL`].
    pub fn create_login(
        &self,
        user: &str,
        via: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<(LoginToken, LoginSession), TokenError> {
        self.create_login_with_groups(user, via, None, ttl, now)
    }

    /// [`TokenStore::create_login`] for a session that keeps the identity provider's `groups`
    /// of the user (`None`: none, as [`TokenStore::create_login`]).
    ///
    /// Fails with [`TokenError::InvalidLogin`] as [`TokenStore::create_login`] does, and for
    /// more than [`MAX_LOGIN_GROUPS`] groups or a group name that is empty, longer than
    /// [`MAX_LOGIN_GROUP_LEN`] bytes or holds a control character.
    pub fn create_login_with_groups(
        &self,
        user: &str,
        via: &str,
        groups: Option<&[String]>,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<(LoginToken, LoginSession), TokenError> {
        if let Some(m) = name_problem("user", user) {
            return Err(TokenError::InvalidLogin(m));
        }
        if let Some(m) = groups.and_then(groups_problem) {
            return Err(TokenError::InvalidLogin(m));
        }
        if via.is_empty() || via.len() > MAX_VIA_LEN || !via.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::InvalidLogin(format!(
                "sign-in method must be 1..={MAX_VIA_LEN} printable ASCII characters"
            )));
        }
        if ttl < Duration::from_secs(1) || ttl > MAX_LOGIN_TTL {
            return Err(TokenError::InvalidLogin(format!(
                "lifetime must be between 1 s and {} h",
                MAX_LOGIN_TTL.as_secs() / 3600
            )));
        }
        let expires_at = time::Duration::try_from(ttl)
            .ok()
            .and_then(|d| now.checked_add(d))
            .ok_or_else(|| TokenError::InvalidLogin("expiry time out of range".into()))?;
        let (created, expires) = (to_nanos(now)?, to_nanos(expires_at)?);
        let groups_json = groups
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| TokenError::InvalidLogin(format!("groups: {e}")))?;
        let token = LoginToken::generate();
        let conn = self.lock();
        // A collision of 256-bit random values does not happen; the UNIQUE constraint would
        // turn one into an error rather than two users sharing a session.
        conn.execute(
            "INSERT INTO login_sessions (token_sha256, user, via, created_at, expires_at,
                                         last_seen_at, groups)
             VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6)",
            params![token.sha256(), user, via, created, expires, groups_json],
        )?;
        let session = LoginSession {
            id: conn.last_insert_rowid(),
            user: user.to_owned(),
            created_at: now,
            expires_at,
            last_seen_at: now,
            revoked_at: None,
            via: via.to_owned(),
            groups: groups.map(<[String]>::to_vec),
        };
        Ok((token, session))
    }

    /// The session of the token `token_str` presented by a client, if it is usable at `now`
    /// (see [`LoginSession::is_active`]); `None` for a malformed, unknown, expired, revoked or
    /// idle token. Records the use (at most once per [`LAST_SEEN_GRANULARITY`]).
    pub fn lookup_login(
        &self,
        token_str: &str,
        idle_timeout: Duration,
        now: OffsetDateTime,
    ) -> Result<Option<LoginSession>, TokenError> {
        let Some(token) = LoginToken::parse(token_str) else {
            return Ok(None);
        };
        let conn = self.lock();
        let raw = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM login_sessions WHERE token_sha256 = ?1"),
                params![token.sha256()],
                RawLogin::from_row,
            )
            .optional()?;
        let Some(mut session) = raw.map(RawLogin::into_session).transpose()? else {
            return Ok(None);
        };
        if !session.is_active(idle_timeout, now) {
            return Ok(None);
        }
        let granularity = time::Duration::try_from(LAST_SEEN_GRANULARITY)
            .map_err(|_| TokenError::Corrupt("last-seen granularity out of range".into()))?;
        if now - session.last_seen_at >= granularity {
            conn.execute(
                "UPDATE login_sessions SET last_seen_at = ?2
                 WHERE id = ?1 AND last_seen_at < ?2",
                params![session.id, to_nanos(now)?],
            )?;
            session.last_seen_at = now;
        }
        Ok(Some(session))
    }

    /// Revokes (signs out) the session of `token_str` at `now`. Returns whether a session that
    /// was not yet revoked was found.
    pub fn revoke_login(&self, token_str: &str, now: OffsetDateTime) -> Result<bool, TokenError> {
        let Some(token) = LoginToken::parse(token_str) else {
            return Ok(false);
        };
        let changed = self.lock().execute(
            "UPDATE login_sessions SET revoked_at = ?2
             WHERE token_sha256 = ?1 AND revoked_at IS NULL",
            params![token.sha256(), to_nanos(now)?],
        )?;
        Ok(changed == 1)
    }

    /// Revokes every session of `user` that has neither ended nor been revoked at `now`.
    /// Returns how many.
    pub fn revoke_logins_of(&self, user: &str, now: OffsetDateTime) -> Result<usize, TokenError> {
        Ok(self.lock().execute(
            "UPDATE login_sessions SET revoked_at = ?2
             WHERE user = ?1 AND revoked_at IS NULL AND expires_at > ?2",
            params![user, to_nanos(now)?],
        )?)
    }

    /// Deletes sessions that ended before `before`: past their absolute expiry, or revoked.
    /// Returns how many. (Idle sessions are deleted once their absolute expiry has passed.)
    pub fn purge_logins(&self, before: OffsetDateTime) -> Result<usize, TokenError> {
        Ok(self.lock().execute(
            "DELETE FROM login_sessions
             WHERE expires_at <= ?1 OR (revoked_at IS NOT NULL AND revoked_at <= ?1)",
            params![to_nanos(before)?],
        )?)
    }
}

/// Why `groups` cannot be kept with a session, if they cannot.
fn groups_problem(groups: &[String]) -> Option<String> {
    if groups.len() > MAX_LOGIN_GROUPS {
        return Some(format!(
            "a session keeps at most {MAX_LOGIN_GROUPS} groups ({} given)",
            groups.len()
        ));
    }
    groups
        .iter()
        .any(|g| g.is_empty() || g.len() > MAX_LOGIN_GROUP_LEN || g.chars().any(char::is_control))
        .then(|| {
            format!(
                "group names must be 1..={MAX_LOGIN_GROUP_LEN} bytes without control characters"
            )
        })
}

/// Column values of one row, converted outside the rusqlite callback.
struct RawLogin {
    id: i64,
    user: String,
    via: String,
    created_at: i64,
    expires_at: i64,
    last_seen_at: i64,
    revoked_at: Option<i64>,
    groups: Option<String>,
}

impl RawLogin {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawLogin {
            id: r.get(0)?,
            user: r.get(1)?,
            via: r.get(2)?,
            created_at: r.get(3)?,
            expires_at: r.get(4)?,
            last_seen_at: r.get(5)?,
            revoked_at: r.get(6)?,
            groups: r.get(7)?,
        })
    }

    fn into_session(self) -> Result<LoginSession, TokenError> {
        Ok(LoginSession {
            id: self.id,
            user: self.user,
            created_at: from_nanos(self.created_at)?,
            expires_at: from_nanos(self.expires_at)?,
            last_seen_at: from_nanos(self.last_seen_at)?,
            revoked_at: self.revoked_at.map(from_nanos).transpose()?,
            via: self.via,
            groups: self
                .groups
                .map(|g| {
                    serde_json::from_str(&g).map_err(|e| {
                        TokenError::Corrupt(format!("groups of sign-in session {}: {e}", self.id))
                    })
                })
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-20 10:00 UTC);
    const HOUR: Duration = Duration::from_secs(3600);
    const IDLE: Duration = Duration::from_secs(15 * 60);

    fn store() -> TokenStore {
        TokenStore::open_in_memory().unwrap()
    }

    fn secs(n: i64) -> time::Duration {
        time::Duration::seconds(n)
    }

    #[test]
    fn tokens_have_the_documented_form() {
        let a = LoginToken::generate();
        let b = LoginToken::generate();
        assert_ne!(a, b);
        let body = a.expose().strip_prefix(LOGIN_TOKEN_PREFIX).unwrap();
        assert_eq!(body.len(), 43);
        assert!(body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(LoginToken::parse(a.expose()), Some(a.clone()));
        assert_eq!(
            a.sha256().to_vec(),
            Sha256::digest(a.expose().as_bytes()).to_vec()
        );
    }

    #[test]
    fn parse_rejects_malformed_tokens() {
        let good = LoginToken::generate();
        let body = &good.expose()[LOGIN_TOKEN_PREFIX.len()..];
        assert!(LoginToken::parse(body).is_none(), "prefix required");
        assert!(LoginToken::parse(&format!("psx_{body}")).is_none());
        assert!(LoginToken::parse(&format!("{}A", good.expose())).is_none());
        assert!(LoginToken::parse(&good.expose()[..good.expose().len() - 1]).is_none());
        assert!(LoginToken::parse(&format!("psl_{}", "+".repeat(43))).is_none());
        assert!(LoginToken::parse("").is_none());
        // 43 symbols hold 258 bits: a last symbol with the 2 spare bits set ('B' is 000001) is
        // another spelling of the same bytes and is refused.
        let mut bad = good.expose().to_owned();
        bad.pop();
        bad.push('B');
        assert!(LoginToken::parse(&bad).is_none());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let (token, session) = store().create_login("alice", "password", HOUR, T0).unwrap();
        let dbg = format!("{token:?} {session:?}");
        assert!(!dbg.contains(token.expose()), "{dbg}");
        assert!(!dbg.contains(&token.expose()[LOGIN_TOKEN_PREFIX.len()..]));
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn create_and_look_up() {
        let s = store();
        let (token, session) = s.create_login("alice", "oidc", 8 * HOUR, T0).unwrap();
        assert_eq!(session.user, "alice");
        assert_eq!(session.via, "oidc");
        assert_eq!(session.expires_at, T0 + time::Duration::hours(8));
        assert_eq!(
            s.lookup_login(token.expose(), IDLE, T0).unwrap(),
            Some(session.clone())
        );
        assert_eq!(
            s.lookup_login(LoginToken::generate().expose(), IDLE, T0)
                .unwrap(),
            None
        );
        assert_eq!(s.lookup_login("garbage", IDLE, T0).unwrap(), None);
        let (other, _) = s.create_login("bob", "password", HOUR, T0).unwrap();
        assert_eq!(
            s.lookup_login(other.expose(), IDLE, T0)
                .unwrap()
                .unwrap()
                .user,
            "bob"
        );
    }

    #[test]
    fn create_validates_input() {
        let s = store();
        for (user, via, ttl) in [
            ("", "password", HOUR),
            ("a\u{0}b", "password", HOUR),
            ("alice", "", HOUR),
            ("alice", "pass word", HOUR),
            ("alice", &"x".repeat(MAX_VIA_LEN + 1), HOUR),
            ("alice", "password", Duration::ZERO),
            ("alice", "password", MAX_LOGIN_TTL + HOUR),
        ] {
            assert!(
                matches!(
                    s.create_login(user, via, ttl, T0),
                    Err(TokenError::InvalidLogin(_))
                ),
                "{user:?} {via:?} {ttl:?}"
            );
        }
        assert!(s
            .create_login("alice", "password", MAX_LOGIN_TTL, T0)
            .is_ok());
    }

    #[test]
    fn a_session_keeps_its_groups() {
        let s = store();
        let groups = vec![
            "psm-admins".to_owned(),
            "CN=Ops,OU=Groups,DC=example,DC=com".to_owned(),
            "équipe \"sre\"".to_owned(),
        ];
        let (token, session) = s
            .create_login_with_groups("carol", "oidc", Some(&groups), HOUR, T0)
            .unwrap();
        assert_eq!(session.groups.as_ref(), Some(&groups));
        let found = s.lookup_login(token.expose(), IDLE, T0).unwrap().unwrap();
        assert_eq!(found, session);
        // No groups at all is kept as such, and a password sign-in keeps none.
        let (none, _) = s
            .create_login_with_groups("carol", "oidc", Some(&[]), HOUR, T0)
            .unwrap();
        let found = s.lookup_login(none.expose(), IDLE, T0).unwrap().unwrap();
        assert_eq!(found.groups, Some(Vec::new()));
        let (password, session) = s.create_login("alice", "password", HOUR, T0).unwrap();
        assert_eq!(session.groups, None);
        let found = s.lookup_login(password.expose(), IDLE, T0).unwrap();
        assert_eq!(found.unwrap().groups, None);
    }

    #[test]
    fn groups_are_checked() {
        let s = store();
        let too_many: Vec<String> = (0..=MAX_LOGIN_GROUPS).map(|i| format!("g{i}")).collect();
        let long = "g".repeat(MAX_LOGIN_GROUP_LEN + 1);
        for bad in [
            too_many.clone(),
            vec![String::new()],
            vec!["a\nb".to_owned()],
            vec![long],
        ] {
            assert!(
                matches!(
                    s.create_login_with_groups("carol", "oidc", Some(&bad), HOUR, T0),
                    Err(TokenError::InvalidLogin(_))
                ),
                "{:?}",
                &bad[..bad.len().min(2)]
            );
        }
        assert!(s
            .create_login_with_groups(
                "carol",
                "oidc",
                Some(&too_many[..MAX_LOGIN_GROUPS]),
                HOUR,
                T0
            )
            .is_ok());
    }

    #[test]
    fn sessions_of_an_older_database_keep_no_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite3");
        // A database made before sessions kept groups: the first three migrations, one session.
        let token = LoginToken::generate();
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE access_token_migrations (
                     version INTEGER PRIMARY KEY NOT NULL, applied_at INTEGER NOT NULL);",
            )
            .unwrap();
            for (i, sql) in [
                crate::tokens::MIGRATION_ACCESS_TOKENS,
                crate::requests::MIGRATION_ACCESS_REQUESTS,
                MIGRATION_LOGIN_SESSIONS,
            ]
            .iter()
            .enumerate()
            {
                conn.execute_batch(sql).unwrap();
                conn.execute(
                    "INSERT INTO access_token_migrations VALUES (?1, 0)",
                    params![i as i64 + 1],
                )
                .unwrap();
            }
            let t0 = crate::tokens::to_nanos(T0).unwrap();
            let end = crate::tokens::to_nanos(T0 + time::Duration::hours(1)).unwrap();
            conn.execute(
                "INSERT INTO login_sessions (token_sha256, user, via, created_at, expires_at,
                                             last_seen_at)
                 VALUES (?1, 'alice', 'oidc', ?2, ?3, ?2)",
                params![token.sha256(), t0, end],
            )
            .unwrap();
        }
        let s = TokenStore::open(&path).unwrap();
        let found = s.lookup_login(token.expose(), IDLE, T0).unwrap().unwrap();
        assert_eq!((found.user.as_str(), found.groups), ("alice", None));
        let groups = vec!["dba".to_owned()];
        let (new, _) = s
            .create_login_with_groups("carol", "oidc", Some(&groups), HOUR, T0)
            .unwrap();
        drop(s);
        let s = TokenStore::open(&path).unwrap();
        let found = s.lookup_login(new.expose(), IDLE, T0).unwrap().unwrap();
        assert_eq!(found.groups, Some(groups));
    }

    #[test]
    fn absolute_expiry_ends_the_session() {
        let s = store();
        let (token, _) = s.create_login("alice", "password", HOUR, T0).unwrap();
        let no_idle = Duration::MAX;
        assert!(s
            .lookup_login(token.expose(), no_idle, T0 + secs(3599))
            .unwrap()
            .is_some());
        assert!(s
            .lookup_login(token.expose(), no_idle, T0 + secs(3600))
            .unwrap()
            .is_none());
    }

    #[test]
    fn idle_timeout_ends_the_session_and_use_keeps_it_alive() {
        let s = store();
        let (token, _) = s.create_login("alice", "password", 8 * HOUR, T0).unwrap();
        // Used every ten minutes: stays alive well past one idle timeout.
        for k in 1..=6 {
            let at = T0 + time::Duration::minutes(10 * k);
            let seen = s.lookup_login(token.expose(), IDLE, at).unwrap().unwrap();
            assert_eq!(seen.last_seen_at, at);
        }
        let last = T0 + time::Duration::minutes(60);
        assert!(s
            .lookup_login(token.expose(), IDLE, last + secs(15 * 60 - 1))
            .unwrap()
            .is_some());
        // That lookup counted as use; idle for the full timeout after it ends the session.
        let seen = last + secs(15 * 60 - 1);
        assert!(s
            .lookup_login(token.expose(), IDLE, seen + secs(15 * 60))
            .unwrap()
            .is_none());
    }

    #[test]
    fn last_seen_is_written_at_most_once_a_minute() {
        let s = store();
        let (token, _) = s.create_login("alice", "password", HOUR, T0).unwrap();
        let seen = |at| {
            s.lookup_login(token.expose(), IDLE, at)
                .unwrap()
                .unwrap()
                .last_seen_at
        };
        assert_eq!(seen(T0 + secs(30)), T0);
        assert_eq!(seen(T0 + secs(59)), T0);
        assert_eq!(seen(T0 + secs(60)), T0 + secs(60));
        assert_eq!(seen(T0 + secs(100)), T0 + secs(60));
        // A clock that went backwards never moves last_seen back.
        assert_eq!(seen(T0 + secs(10)), T0 + secs(60));
        assert_eq!(seen(T0 + secs(130)), T0 + secs(130));
    }

    #[test]
    fn revocation() {
        let s = store();
        let (a1, _) = s.create_login("alice", "password", HOUR, T0).unwrap();
        let (a2, _) = s.create_login("alice", "oidc", HOUR, T0).unwrap();
        let (a3, _) = s.create_login("alice", "oidc", HOUR, T0).unwrap();
        let (b, _) = s.create_login("bob", "password", HOUR, T0).unwrap();
        assert!(s.revoke_login(a1.expose(), T0).unwrap());
        assert!(!s.revoke_login(a1.expose(), T0).unwrap(), "already revoked");
        assert!(!s.revoke_login("psl_nonsense", T0).unwrap());
        assert!(s.lookup_login(a1.expose(), IDLE, T0).unwrap().is_none());
        assert!(s.lookup_login(a2.expose(), IDLE, T0).unwrap().is_some());
        assert_eq!(s.revoke_logins_of("alice", T0).unwrap(), 2);
        assert_eq!(s.revoke_logins_of("alice", T0).unwrap(), 0);
        for t in [&a2, &a3] {
            assert!(s.lookup_login(t.expose(), IDLE, T0).unwrap().is_none());
        }
        assert!(s.lookup_login(b.expose(), IDLE, T0).unwrap().is_some());
    }

    #[test]
    fn purge_deletes_only_ended_sessions() {
        let s = store();
        let (short, _) = s.create_login("alice", "password", HOUR, T0).unwrap();
        let (long, _) = s.create_login("alice", "password", 8 * HOUR, T0).unwrap();
        let (revoked, _) = s.create_login("bob", "password", 8 * HOUR, T0).unwrap();
        s.revoke_login(revoked.expose(), T0 + secs(10)).unwrap();
        assert_eq!(s.purge_logins(T0).unwrap(), 0);
        assert_eq!(s.purge_logins(T0 + time::Duration::hours(2)).unwrap(), 2);
        let count: i64 = s
            .lock()
            .query_row("SELECT COUNT(*) FROM login_sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 1);
        let at = T0 + time::Duration::hours(2);
        assert!(s
            .lookup_login(long.expose(), Duration::MAX, at)
            .unwrap()
            .is_some());
        assert!(s
            .lookup_login(short.expose(), Duration::MAX, at)
            .unwrap()
            .is_none());
    }

    /// Every byte of every file of the database (main file, WAL, shared memory).
    fn database_bytes(dir: &std::path::Path) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            all.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        all
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn the_database_never_holds_the_plaintext_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite3");
        let s = TokenStore::open(&path).unwrap();
        let (token, _) = s.create_login("alice", "password", HOUR, T0).unwrap();
        assert!(s
            .lookup_login(token.expose(), IDLE, T0 + secs(120))
            .unwrap()
            .is_some());
        let raw = URL_SAFE_NO_PAD
            .decode(&token.expose()[LOGIN_TOKEN_PREFIX.len()..])
            .unwrap();
        let check = |bytes: &[u8]| {
            assert!(!contains(bytes, token.expose().as_bytes()));
            assert!(!contains(
                bytes,
                &token.expose().as_bytes()[LOGIN_TOKEN_PREFIX.len()..]
            ));
            assert!(!contains(bytes, &raw));
            // The search does find what is stored.
            assert!(contains(bytes, &token.sha256()));
        };
        check(&database_bytes(dir.path()));
        drop(s);
        check(&database_bytes(dir.path()));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary input is never mistaken for a token and never panics.
        #[test]
        fn parse_accepts_only_canonical_tokens(s in "(psl_)?[A-Za-z0-9_+/=-]{0,50}") {
            if let Some(t) = LoginToken::parse(&s) {
                let raw = URL_SAFE_NO_PAD.decode(&s[LOGIN_TOKEN_PREFIX.len()..]).unwrap();
                prop_assert_eq!(raw.len(), LOGIN_TOKEN_BYTES);
                prop_assert_eq!(t.expose(), s.as_str());
            }
            prop_assert!(store().lookup_login(&s, IDLE, T0).unwrap().is_none());
        }

        /// A session is found exactly while a model of absolute expiry, idle timeout and the
        /// once-a-minute last-seen update says it is alive.
        #[test]
        fn lookups_follow_the_expiry_model(
            ttl_s in 1u64..7200,
            idle_s in 1u64..1800,
            gaps in proptest::collection::vec(0i64..900, 1..30),
        ) {
            let s = store();
            let (token, _) = s.create_login("alice", "password", Duration::from_secs(ttl_s), T0).unwrap();
            let expires = T0 + secs(ttl_s as i64);
            let idle = Duration::from_secs(idle_s);
            let mut last_seen = T0;
            let mut dead = false;
            let mut now = T0;
            for gap in gaps {
                now += secs(gap);
                let alive = !dead && now < expires && now - last_seen < secs(idle_s as i64);
                let found = s.lookup_login(token.expose(), idle, now).unwrap();
                prop_assert_eq!(found.is_some(), alive, "at {}", now);
                if alive {
                    if now - last_seen >= secs(60) {
                        last_seen = now;
                    }
                    prop_assert_eq!(found.unwrap().last_seen_at, last_seen);
                } else {
                    // Once ended, a session stays ended.
                    dead = true;
                }
            }
        }
    }
}
