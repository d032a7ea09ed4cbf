//! Just-in-time access requests: a user asks for access to a target, for a reason and a
//! duration, and an approver approves (issuing an access grant), denies, or lets it expire; the
//! user may cancel it while it is pending.
//!
//! Requests live in the `access_requests` table of the [`TokenStore`] database. Every decision
//! is a single SQLite transaction that moves a request out of [`RequestStatus::Pending`] only if
//! it is still pending, so two approvers racing on one request (even from two processes) decide
//! it exactly once; approval inserts the [`Grant`] in that same transaction, so a request is
//! never approved without its grant nor a grant issued for a request that was not approved.
//!
//! A request records the policy rule that allowed it to be made (`rule_id`); checking users,
//! targets and rules, and who may approve, is the caller's business.
//!
//! All methods take the current time as a parameter so that behaviour is deterministic in tests.

use std::fmt;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use time::OffsetDateTime;

use crate::tokens::{
    from_nanos, insert_grant, name_problem, to_nanos, Grant, TokenError, TokenStore, MAX_TTL,
};

/// Longest reason (or decision note) accepted, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// The `access_requests` table (second migration of the [`TokenStore`] database).
pub(crate) const MIGRATION_ACCESS_REQUESTS: &str = "CREATE TABLE access_requests (
         id          INTEGER PRIMARY KEY AUTOINCREMENT,
         user        TEXT    NOT NULL,
         target      TEXT    NOT NULL,
         reason      TEXT    NOT NULL,
         duration_ns INTEGER NOT NULL,
         rule_id     TEXT    NOT NULL,
         created_at  INTEGER NOT NULL,
         status      TEXT    NOT NULL
             CHECK (status IN ('pending', 'approved', 'denied', 'cancelled', 'expired')),
         decided_by  TEXT,
         decided_at  INTEGER,
         note        TEXT,
         grant_id    INTEGER
     );
     CREATE INDEX access_requests_status ON access_requests (status, created_at);
     CREATE INDEX access_requests_user ON access_requests (user, created_at);";

const COLUMNS: &str = "id, user, target, reason, duration_ns, rule_id, created_at, status, \
     decided_by, decided_at, note, grant_id";

/// Where an access request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    /// Waiting for a decision.
    Pending,
    /// Approved; its grant was issued.
    Approved,
    /// Denied by an approver.
    Denied,
    /// Withdrawn by the user who made it.
    Cancelled,
    /// Nobody decided in time.
    Expired,
}

impl RequestStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [RequestStatus; 5] = [
        RequestStatus::Pending,
        RequestStatus::Approved,
        RequestStatus::Denied,
        RequestStatus::Cancelled,
        RequestStatus::Expired,
    ];

    /// The stored and displayed name (`pending`, `approved`, `denied`, `cancelled`, `expired`).
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Denied => "denied",
            RequestStatus::Cancelled => "cancelled",
            RequestStatus::Expired => "expired",
        }
    }

    /// The status named `s` (exactly as [`RequestStatus::as_str`] spells it).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One access request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    /// Store-assigned identifier.
    pub id: i64,
    /// The user asking.
    pub user: String,
    /// The target asked for.
    pub target: String,
    /// Why (free text, at most [`MAX_REASON_CHARS`] characters).
    pub reason: String,
    /// Requested lifetime of the grant, counted from approval.
    pub duration: Duration,
    /// The policy rule under which the request was made.
    pub rule_id: String,
    /// When it was made.
    pub created_at: OffsetDateTime,
    /// Where it stands.
    pub status: RequestStatus,
    /// Who approved or denied it (the requester for a cancellation; `None` while pending and
    /// for expiry).
    pub decided_by: Option<String>,
    /// When it left [`RequestStatus::Pending`].
    pub decided_at: Option<OffsetDateTime>,
    /// The decider's note, if any.
    pub note: Option<String>,
    /// The grant issued on approval.
    pub grant_id: Option<i64>,
}

/// Which requests [`TokenStore::list_requests`] returns (the default: all of them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Only this user's requests.
    pub user: Option<String>,
    /// Only requests with this status.
    pub status: Option<RequestStatus>,
    /// At most this many (the newest); `None`: no limit.
    pub limit: Option<u32>,
}

/// Checks a reason or note: at most [`MAX_REASON_CHARS`] characters, and no control characters
/// other than line feeds and tabs.
fn check_text(what: &str, value: &str) -> Result<(), TokenError> {
    let chars = value.chars().count();
    if chars > MAX_REASON_CHARS {
        return Err(TokenError::InvalidRequest(format!(
            "{what} is {chars} characters long; at most {MAX_REASON_CHARS} are allowed"
        )));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(TokenError::InvalidRequest(format!(
            "{what} must not contain control characters other than line feeds and tabs"
        )));
    }
    Ok(())
}

fn check_name(what: &str, value: &str) -> Result<(), TokenError> {
    name_problem(what, value).map_or(Ok(()), |m| Err(TokenError::InvalidRequest(m)))
}

impl TokenStore {
    /// Records a pending request by `user` for access to `target` for `duration` (counted from
    /// approval), made under policy rule `rule_id`.
    ///
    /// Fails with [`TokenError::InvalidRequest`] for an empty or overlong name, a reason longer
    /// than [`MAX_REASON_CHARS`] characters, or a duration outside 1 s ..= [`MAX_TTL`].
    pub fn create_request(
        &self,
        user: &str,
        target: &str,
        reason: &str,
        duration: Duration,
        rule_id: &str,
        now: OffsetDateTime,
    ) -> Result<AccessRequest, TokenError> {
        check_name("user", user)?;
        check_name("target", target)?;
        check_name("rule id", rule_id)?;
        check_text("reason", reason)?;
        if duration < Duration::from_secs(1) || duration > MAX_TTL {
            return Err(TokenError::InvalidRequest(format!(
                "duration must be between 1 s and {} h",
                MAX_TTL.as_secs() / 3600
            )));
        }
        let duration_ns = i64::try_from(duration.as_nanos())
            .map_err(|_| TokenError::InvalidRequest("duration out of range".into()))?;
        let created = to_nanos(now)?;
        let conn = self.lock();
        conn.execute(
            "INSERT INTO access_requests (user, target, reason, duration_ns, rule_id, created_at,
                                          status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending')",
            params![user, target, reason, duration_ns, rule_id, created],
        )?;
        Ok(AccessRequest {
            id: conn.last_insert_rowid(),
            user: user.to_owned(),
            target: target.to_owned(),
            reason: reason.to_owned(),
            duration,
            rule_id: rule_id.to_owned(),
            created_at: now,
            status: RequestStatus::Pending,
            decided_by: None,
            decided_at: None,
            note: None,
            grant_id: None,
        })
    }

    /// The request with identifier `id`.
    pub fn get_request(&self, id: i64) -> Result<Option<AccessRequest>, TokenError> {
        fetch(&self.lock(), id)
    }

    /// The requests matching `filter`, newest first.
    pub fn list_requests(&self, filter: &RequestFilter) -> Result<Vec<AccessRequest>, TokenError> {
        // SQLite reads a negative LIMIT as none.
        let limit = filter.limit.map_or(-1, i64::from);
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM access_requests
             WHERE (?1 IS NULL OR user = ?1) AND (?2 IS NULL OR status = ?2)
             ORDER BY created_at DESC, id DESC
             LIMIT ?3"
        ))?;
        let raws = stmt
            .query_map(
                params![
                    filter.user.as_deref(),
                    filter.status.map(RequestStatus::as_str),
                    limit
                ],
                RawRequest::from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(RawRequest::into_request).collect()
    }

    /// Approves pending request `id` as `approver`, and issues its grant (for the request's
    /// user and target, valid for the request's duration from `now`; one-time if `once`) in the
    /// same transaction.
    ///
    /// Fails with [`TokenError::RequestNotFound`] or [`TokenError::NotPending`] (already
    /// decided), leaving everything unchanged.
    pub fn approve_request(
        &self,
        id: i64,
        approver: &str,
        note: Option<&str>,
        once: bool,
        now: OffsetDateTime,
    ) -> Result<(AccessRequest, Grant), TokenError> {
        check_name("approver", approver)?;
        check_note(note)?;
        let decided = to_nanos(now)?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let request = fetch_pending(&tx, id)?;
        let grant = insert_grant(
            &tx,
            &request.user,
            &request.target,
            once,
            request.duration,
            now,
        )?;
        let changed = tx.execute(
            "UPDATE access_requests
             SET status = 'approved', decided_by = ?2, decided_at = ?3, note = ?4, grant_id = ?5
             WHERE id = ?1 AND status = 'pending'",
            params![id, approver, decided, note, grant.id],
        )?;
        if changed != 1 {
            return Err(TokenError::Corrupt(format!(
                "access request {id} changed during its approval"
            )));
        }
        tx.commit()?;
        let request = AccessRequest {
            status: RequestStatus::Approved,
            decided_by: Some(approver.to_owned()),
            decided_at: Some(now),
            note: note.map(str::to_owned),
            grant_id: Some(grant.id),
            ..request
        };
        Ok((request, grant))
    }

    /// Denies pending request `id` as `approver`.
    ///
    /// Fails with [`TokenError::RequestNotFound`] or [`TokenError::NotPending`].
    pub fn deny_request(
        &self,
        id: i64,
        approver: &str,
        note: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<AccessRequest, TokenError> {
        check_name("approver", approver)?;
        check_note(note)?;
        self.decide(id, None, RequestStatus::Denied, approver, note, now)
    }

    /// Cancels pending request `id` on behalf of `user`, who must be the one who made it.
    ///
    /// Fails with [`TokenError::RequestNotFound`], [`TokenError::NotRequester`] or
    /// [`TokenError::NotPending`].
    pub fn cancel_request(
        &self,
        id: i64,
        user: &str,
        now: OffsetDateTime,
    ) -> Result<AccessRequest, TokenError> {
        self.decide(id, Some(user), RequestStatus::Cancelled, user, None, now)
    }

    /// Marks every request still pending that was made before `pending_older_than` as
    /// [`RequestStatus::Expired`] (decided at `now`, by nobody). Returns how many.
    pub fn expire_requests(
        &self,
        pending_older_than: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<usize, TokenError> {
        Ok(self.lock().execute(
            "UPDATE access_requests SET status = 'expired', decided_at = ?2
             WHERE status = 'pending' AND created_at < ?1",
            params![to_nanos(pending_older_than)?, to_nanos(now)?],
        )?)
    }

    /// Moves pending request `id` to `status` in one transaction.
    fn decide(
        &self,
        id: i64,
        requester: Option<&str>,
        status: RequestStatus,
        by: &str,
        note: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<AccessRequest, TokenError> {
        let decided = to_nanos(now)?;
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = fetch(&tx, id)?.ok_or(TokenError::RequestNotFound(id))?;
        if requester.is_some_and(|u| u != current.user) {
            return Err(TokenError::NotRequester { id });
        }
        if current.status != RequestStatus::Pending {
            return Err(TokenError::NotPending {
                id,
                status: current.status,
            });
        }
        tx.execute(
            "UPDATE access_requests SET status = ?2, decided_by = ?3, decided_at = ?4, note = ?5
             WHERE id = ?1 AND status = 'pending'",
            params![id, status.as_str(), by, decided, note],
        )?;
        tx.commit()?;
        Ok(AccessRequest {
            status,
            decided_by: Some(by.to_owned()),
            decided_at: Some(now),
            note: note.map(str::to_owned),
            ..current
        })
    }
}

fn check_note(note: Option<&str>) -> Result<(), TokenError> {
    note.map_or(Ok(()), |n| check_text("note", n))
}

fn fetch(conn: &Connection, id: i64) -> Result<Option<AccessRequest>, TokenError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM access_requests WHERE id = ?1"),
        params![id],
        RawRequest::from_row,
    )
    .optional()?
    .map(RawRequest::into_request)
    .transpose()
}

fn fetch_pending(conn: &Connection, id: i64) -> Result<AccessRequest, TokenError> {
    let request = fetch(conn, id)?.ok_or(TokenError::RequestNotFound(id))?;
    match request.status {
        RequestStatus::Pending => Ok(request),
        status => Err(TokenError::NotPending { id, status }),
    }
}

/// Column values of one row, converted outside the rusqlite callback.
struct RawRequest {
    id: i64,
    user: String,
    target: String,
    reason: String,
    duration_ns: i64,
    rule_id: String,
    created_at: i64,
    status: String,
    decided_by: Option<String>,
    decided_at: Option<i64>,
    note: Option<String>,
    grant_id: Option<i64>,
}

impl RawRequest {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawRequest {
            id: r.get(0)?,
            user: r.get(1)?,
            target: r.get(2)?,
            reason: r.get(3)?,
            duration_ns: r.get(4)?,
            rule_id: r.get(5)?,
            created_at: r.get(6)?,
            status: r.get(7)?,
            decided_by: r.get(8)?,
            decided_at: r.get(9)?,
            note: r.get(10)?,
            grant_id: r.get(11)?,
        })
    }

    fn into_request(self) -> Result<AccessRequest, TokenError> {
        let id = self.id;
        let status = RequestStatus::parse(&self.status).ok_or_else(|| {
            TokenError::Corrupt(format!(
                "access request {id}: unknown status {:?}",
                self.status
            ))
        })?;
        let duration = u64::try_from(self.duration_ns)
            .map(Duration::from_nanos)
            .map_err(|_| TokenError::Corrupt(format!("access request {id}: negative duration")))?;
        Ok(AccessRequest {
            id,
            user: self.user,
            target: self.target,
            reason: self.reason,
            duration,
            rule_id: self.rule_id,
            created_at: from_nanos(self.created_at)?,
            status,
            decided_by: self.decided_by,
            decided_at: self.decided_at.map(from_nanos).transpose()?,
            note: self.note,
            grant_id: self.grant_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::tests::{store, HOUR, T0};
    use crate::tokens::GrantStatus;
    use proptest::prelude::*;

    fn minutes(n: i64) -> time::Duration {
        time::Duration::minutes(n)
    }

    fn request(s: &TokenStore, user: &str, at: OffsetDateTime) -> AccessRequest {
        s.create_request(user, "db-prod", "incident 42", 2 * HOUR, "jit-db", at)
            .unwrap()
    }

    #[test]
    fn status_names_round_trip() {
        for st in RequestStatus::ALL {
            assert_eq!(RequestStatus::parse(st.as_str()), Some(st));
            assert_eq!(st.to_string(), st.as_str());
        }
        assert_eq!(RequestStatus::parse("Pending"), None);
        assert_eq!(RequestStatus::parse(""), None);
    }

    #[test]
    fn create_and_get_round_trip() {
        let s = store();
        let r = request(&s, "alice", T0);
        assert_eq!(r.status, RequestStatus::Pending);
        assert_eq!(s.get_request(r.id).unwrap().unwrap(), r);
        assert!(s.get_request(r.id + 1).unwrap().is_none());
    }

    #[test]
    fn create_validates_input() {
        let s = store();
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        assert!(matches!(
            s.create_request("alice", "t", &long, HOUR, "r", T0),
            Err(TokenError::InvalidRequest(m)) if m.contains("1000")
        ));
        // The limit counts characters, not bytes.
        let accented = "é".repeat(MAX_REASON_CHARS);
        assert!(s
            .create_request("alice", "t", &accented, HOUR, "r", T0)
            .is_ok());
        assert!(s
            .create_request("alice", "t", "line one\nline\ttwo", HOUR, "r", T0)
            .is_ok());
        assert!(s
            .create_request("alice", "t", "bell\u{7}", HOUR, "r", T0)
            .is_err());
        assert!(s.create_request("", "t", "", HOUR, "r", T0).is_err());
        assert!(s.create_request("alice", "", "", HOUR, "r", T0).is_err());
        assert!(s.create_request("alice", "t", "", HOUR, "", T0).is_err());
        assert!(s
            .create_request("alice", "t", "", Duration::from_millis(10), "r", T0)
            .is_err());
        assert!(s
            .create_request("alice", "t", "", MAX_TTL + HOUR, "r", T0)
            .is_err());
        assert!(s.create_request("alice", "t", "", MAX_TTL, "r", T0).is_ok());
    }

    #[test]
    fn approval_issues_the_grant_in_the_same_step() {
        let s = store();
        let r = request(&s, "alice", T0);
        let approved_at = T0 + minutes(30);
        let (a, g) = s
            .approve_request(r.id, "bob", Some("ok for the incident"), true, approved_at)
            .unwrap();
        assert_eq!(a.status, RequestStatus::Approved);
        assert_eq!(a.decided_by.as_deref(), Some("bob"));
        assert_eq!(a.decided_at, Some(approved_at));
        assert_eq!(a.note.as_deref(), Some("ok for the incident"));
        assert_eq!(a.grant_id, Some(g.id));
        assert_eq!(s.get_request(r.id).unwrap().unwrap(), a);
        // The grant exists, for the requester and the target, from approval time.
        let stored = s.get(g.id).unwrap().unwrap();
        assert_eq!(stored, g);
        assert_eq!((g.user.as_str(), g.target.as_str()), ("alice", "db-prod"));
        assert!(g.once);
        assert_eq!(g.created_at, approved_at);
        assert_eq!(g.expires_at, approved_at + time::Duration::hours(2));
        assert_eq!(g.status(approved_at), GrantStatus::Active);
        assert_eq!(s.candidates("db-prod", approved_at).unwrap(), vec![g]);
    }

    #[test]
    fn approving_twice_fails_and_issues_one_grant() {
        let s = store();
        let r = request(&s, "alice", T0);
        s.approve_request(r.id, "bob", None, false, T0).unwrap();
        let err = s
            .approve_request(r.id, "carol", None, false, T0)
            .unwrap_err();
        assert!(
            matches!(err, TokenError::NotPending { id, status: RequestStatus::Approved } if id == r.id),
            "{err}"
        );
        assert_eq!(s.list().unwrap().len(), 1);
        let stored = s.get_request(r.id).unwrap().unwrap();
        assert_eq!(stored.decided_by.as_deref(), Some("bob"));
        assert!(matches!(
            s.approve_request(9999, "bob", None, false, T0),
            Err(TokenError::RequestNotFound(9999))
        ));
    }

    #[test]
    fn concurrent_approvals_decide_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite3");
        let r = request(&TokenStore::open(&path).unwrap(), "alice", T0);
        let results: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    let path = path.clone();
                    scope.spawn(move || {
                        let s = TokenStore::open(&path).unwrap();
                        s.approve_request(r.id, &format!("approver{i}"), None, false, T0)
                            .is_ok()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
        assert_eq!(TokenStore::open(&path).unwrap().list().unwrap().len(), 1);
    }

    #[test]
    fn a_failed_grant_leaves_the_request_pending() {
        let s = store();
        let r = request(&s, "alice", T0);
        // An approval time that can be stored but at which the grant's expiry cannot.
        let far =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(i64::MAX) - 3_600_000_000_000)
                .unwrap();
        assert!(s.approve_request(r.id, "bob", None, false, far).is_err());
        assert_eq!(
            s.get_request(r.id).unwrap().unwrap().status,
            RequestStatus::Pending
        );
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn deny_only_from_pending() {
        let s = store();
        let r = request(&s, "alice", T0);
        let d = s.deny_request(r.id, "bob", Some("no ticket"), T0).unwrap();
        assert_eq!(d.status, RequestStatus::Denied);
        assert_eq!(d.note.as_deref(), Some("no ticket"));
        assert_eq!(s.get_request(r.id).unwrap().unwrap(), d);
        assert!(matches!(
            s.deny_request(r.id, "bob", None, T0),
            Err(TokenError::NotPending {
                status: RequestStatus::Denied,
                ..
            })
        ));
        assert!(matches!(
            s.approve_request(r.id, "bob", None, false, T0),
            Err(TokenError::NotPending { .. })
        ));
        assert!(
            s.list().unwrap().is_empty(),
            "a denied request has no grant"
        );
        let long = "n".repeat(MAX_REASON_CHARS + 1);
        let r2 = request(&s, "alice", T0);
        assert!(s.deny_request(r2.id, "bob", Some(&long), T0).is_err());
        assert_eq!(
            s.get_request(r2.id).unwrap().unwrap().status,
            RequestStatus::Pending
        );
    }

    #[test]
    fn cancel_only_by_the_requester_and_only_pending() {
        let s = store();
        let r = request(&s, "alice", T0);
        assert!(matches!(
            s.cancel_request(r.id, "mallory", T0),
            Err(TokenError::NotRequester { id }) if id == r.id
        ));
        let c = s.cancel_request(r.id, "alice", T0).unwrap();
        assert_eq!(c.status, RequestStatus::Cancelled);
        assert_eq!(c.decided_by.as_deref(), Some("alice"));
        assert!(matches!(
            s.cancel_request(r.id, "alice", T0),
            Err(TokenError::NotPending {
                status: RequestStatus::Cancelled,
                ..
            })
        ));
        assert!(matches!(
            s.approve_request(r.id, "bob", None, false, T0),
            Err(TokenError::NotPending { .. })
        ));
        let approved = request(&s, "alice", T0);
        s.approve_request(approved.id, "bob", None, false, T0)
            .unwrap();
        assert!(matches!(
            s.cancel_request(approved.id, "alice", T0),
            Err(TokenError::NotPending { .. })
        ));
        assert!(matches!(
            s.cancel_request(4242, "alice", T0),
            Err(TokenError::RequestNotFound(4242))
        ));
    }

    #[test]
    fn expiry_touches_only_old_pending_requests() {
        let s = store();
        let old = request(&s, "alice", T0);
        let old_approved = request(&s, "alice", T0);
        s.approve_request(old_approved.id, "bob", None, false, T0)
            .unwrap();
        let fresh = request(&s, "alice", T0 + minutes(50));
        let now = T0 + time::Duration::hours(1);
        assert_eq!(s.expire_requests(T0, now).unwrap(), 0, "cut-off is strict");
        assert_eq!(s.expire_requests(now - minutes(30), now).unwrap(), 1);
        let e = s.get_request(old.id).unwrap().unwrap();
        assert_eq!(
            (e.status, e.decided_at, e.decided_by),
            (RequestStatus::Expired, Some(now), None)
        );
        assert_eq!(
            s.get_request(old_approved.id).unwrap().unwrap().status,
            RequestStatus::Approved
        );
        assert_eq!(
            s.get_request(fresh.id).unwrap().unwrap().status,
            RequestStatus::Pending
        );
        assert!(matches!(
            s.approve_request(old.id, "bob", None, false, now),
            Err(TokenError::NotPending {
                status: RequestStatus::Expired,
                ..
            })
        ));
        assert_eq!(s.expire_requests(now - minutes(30), now).unwrap(), 0);
    }

    #[test]
    fn list_filters_and_orders_newest_first() {
        let s = store();
        let a1 = request(&s, "alice", T0);
        let b1 = request(&s, "bob", T0 + minutes(1));
        let a2 = request(&s, "alice", T0 + minutes(2));
        // Made later but stamped earlier: order follows the time, not the id.
        let a0 = request(&s, "alice", T0 - minutes(5));
        s.deny_request(a2.id, "carol", None, T0).unwrap();
        let ids = |f: RequestFilter| -> Vec<i64> {
            s.list_requests(&f)
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(
            ids(RequestFilter::default()),
            vec![a2.id, b1.id, a1.id, a0.id]
        );
        let alice = RequestFilter {
            user: Some("alice".into()),
            ..RequestFilter::default()
        };
        assert_eq!(ids(alice.clone()), vec![a2.id, a1.id, a0.id]);
        assert_eq!(
            ids(RequestFilter {
                status: Some(RequestStatus::Pending),
                ..alice.clone()
            }),
            vec![a1.id, a0.id]
        );
        assert_eq!(
            ids(RequestFilter {
                limit: Some(1),
                ..alice.clone()
            }),
            vec![a2.id]
        );
        assert_eq!(
            ids(RequestFilter {
                limit: Some(0),
                ..alice
            }),
            Vec::<i64>::new()
        );
        assert_eq!(
            ids(RequestFilter {
                status: Some(RequestStatus::Approved),
                ..RequestFilter::default()
            }),
            Vec::<i64>::new()
        );
    }

    #[test]
    fn requests_survive_reopening_and_migrate_an_older_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite3");
        // A database made before requests existed: only the first migration applied.
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE access_token_migrations (
                     version INTEGER PRIMARY KEY NOT NULL, applied_at INTEGER NOT NULL);",
            )
            .unwrap();
            conn.execute_batch(crate::tokens::MIGRATION_ACCESS_TOKENS)
                .unwrap();
            conn.execute("INSERT INTO access_token_migrations VALUES (1, 0)", [])
                .unwrap();
        }
        let s = TokenStore::open(&path).unwrap();
        let r = request(&s, "alice", T0);
        drop(s);
        let s = TokenStore::open(&path).unwrap();
        assert_eq!(s.get_request(r.id).unwrap().unwrap(), r);
    }

    /// One step of a random request history.
    #[derive(Debug, Clone)]
    enum Op {
        Create(usize),
        Approve(usize),
        Deny(usize),
        Cancel(usize, usize),
        Expire(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3usize).prop_map(Op::Create),
            (0..8usize).prop_map(Op::Approve),
            (0..8usize).prop_map(Op::Deny),
            (0..8usize, 0..3usize).prop_map(|(r, u)| Op::Cancel(r, u)),
            (0..40i64).prop_map(Op::Expire),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the order of operations, a request leaves `pending` at most once, only
        /// approvals create grants, and the store agrees with a simple model.
        #[test]
        fn decisions_follow_the_lifecycle(ops in proptest::collection::vec(op(), 1..40)) {
            const USERS: [&str; 3] = ["alice", "bob", "carol"];
            let s = store();
            // Model: (id, user, created minute, status).
            let mut model: Vec<(i64, usize, i64, RequestStatus)> = Vec::new();
            let mut grants = 0usize;
            for (minute, op) in ops.into_iter().enumerate() {
                let minute = minute as i64;
                let now = T0 + minutes(minute);
                match op {
                    Op::Create(u) => {
                        let r = s.create_request(USERS[u], "t", "why", HOUR, "rule", now).unwrap();
                        model.push((r.id, u, minute, RequestStatus::Pending));
                    }
                    Op::Approve(i) | Op::Deny(i) | Op::Cancel(i, _) if i >= model.len() => {
                        let id = 10_000 + i as i64;
                        let r = match op {
                            Op::Approve(_) => s.approve_request(id, "x", None, false, now).map(|_| ()),
                            Op::Deny(_) => s.deny_request(id, "x", None, now).map(|_| ()),
                            _ => s.cancel_request(id, "alice", now).map(|_| ()),
                        };
                        prop_assert!(matches!(r, Err(TokenError::RequestNotFound(_))));
                    }
                    Op::Approve(i) => {
                        let (id, u, _, st) = model[i];
                        let r = s.approve_request(id, "approver", None, false, now);
                        if st == RequestStatus::Pending {
                            let (req, g) = r.unwrap();
                            prop_assert_eq!(req.grant_id, Some(g.id));
                            prop_assert_eq!(g.user.as_str(), USERS[u]);
                            grants += 1;
                            model[i].3 = RequestStatus::Approved;
                        } else {
                            let is_not_pending =
                                matches!(r, Err(TokenError::NotPending { status, .. }) if status == st);
                            prop_assert!(is_not_pending);
                        }
                    }
                    Op::Deny(i) => {
                        let (id, _, _, st) = model[i];
                        let r = s.deny_request(id, "approver", None, now);
                        prop_assert_eq!(r.is_ok(), st == RequestStatus::Pending);
                        if r.is_ok() {
                            model[i].3 = RequestStatus::Denied;
                        }
                    }
                    Op::Cancel(i, u) => {
                        let (id, owner, _, st) = model[i];
                        let r = s.cancel_request(id, USERS[u], now);
                        if u != owner {
                            let is_not_requester = matches!(r, Err(TokenError::NotRequester { .. }));
                            prop_assert!(is_not_requester);
                        } else {
                            prop_assert_eq!(r.is_ok(), st == RequestStatus::Pending);
                            if r.is_ok() {
                                model[i].3 = RequestStatus::Cancelled;
                            }
                        }
                    }
                    Op::Expire(cutoff) => {
                        let mut expected = 0;
                        for m in model.iter_mut() {
                            if m.3 == RequestStatus::Pending && m.2 < cutoff {
                                m.3 = RequestStatus::Expired;
                                expected += 1;
                            }
                        }
                        prop_assert_eq!(s.expire_requests(T0 + minutes(cutoff), now).unwrap(), expected);
                    }
                }
            }
            for (id, u, _, st) in &model {
                let r = s.get_request(*id).unwrap().unwrap();
                prop_assert_eq!(r.status, *st);
                prop_assert_eq!(r.user.as_str(), USERS[*u]);
                prop_assert_eq!(r.grant_id.is_some(), *st == RequestStatus::Approved);
            }
            prop_assert_eq!(s.list().unwrap().len(), grants);
        }

        /// Reasons are accepted exactly up to the limit, whatever their characters.
        #[test]
        fn reason_length_limit(reason in "[a-zé€😀 \n]{0,1100}") {
            let s = store();
            let r = s.create_request("alice", "t", &reason, HOUR, "rule", T0);
            if reason.chars().count() <= MAX_REASON_CHARS {
                prop_assert_eq!(r.unwrap().reason, reason);
            } else {
                let is_invalid = matches!(r, Err(TokenError::InvalidRequest(_)));
                prop_assert!(is_invalid);
            }
        }
    }
}
