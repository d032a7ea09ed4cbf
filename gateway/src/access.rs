//! Checking the access tokens viewers present, with rate limiting of failed attempts.
//!
//! A user gets a token from `psmgate access grant --user alice --target lab-vnc` and types it
//! as the VNC password. The viewer never sends the token: it answers the gateway's random
//! challenge with `DES(token, challenge)` (see [`crate::vnc_handshake::vncauth`]). So the
//! gateway cannot look a token up; it tries every grant usable on the target until one
//! produces the viewer's response ([`find_by_response`]). Why the tokens are kept in plaintext
//! and how their exposure is bounded is explained in [`psmgate_storage::tokens`].
//!
//! [`TokenAuthenticator::authenticate`] is the whole check: rate limit per client address
//! ([`FailureLimiter`]), match, one-time consumption (atomic), and on failure a precise
//! [`Denial`] for the audit log. The viewer must only ever be told
//! [`VIEWER_FAILURE_REASON`], whatever the denial: telling it "token expired" would confirm to
//! someone guessing that a token once existed.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use psmgate_storage::tokens::{Grant, GrantStatus, TokenError, TokenStore};
use time::OffsetDateTime;

use crate::vnc_handshake::vncauth::{self, CHALLENGE_LEN};

/// The only failure reason a viewer is ever given.
pub const VIEWER_FAILURE_REASON: &str = "authentication failed";

/// Default limit of failed attempts per client within [`DEFAULT_FAILURE_WINDOW`].
pub const DEFAULT_MAX_FAILURES: usize = 5;

/// Default window for [`DEFAULT_MAX_FAILURES`].
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Default number of client addresses the limiter tracks at once.
pub const DEFAULT_MAX_TRACKED_CLIENTS: usize = 65_536;

/// The grant usable on `target` at `now` whose token answers `challenge` with `response`.
///
/// Each candidate costs two DES block encryptions; the comparison is constant-time.
///
/// With `target` `None` every usable grant is tried: the token itself then chooses the target
/// (a VNC viewer has no other way to name one).
pub fn find_by_response(
    store: &TokenStore,
    target: Option<&str>,
    challenge: &[u8; CHALLENGE_LEN],
    response: &[u8; CHALLENGE_LEN],
    now: OffsetDateTime,
) -> Result<Option<Grant>, TokenError> {
    let grants = match target {
        Some(t) => store.candidates(t, now)?,
        None => store.usable(now)?,
    };
    Ok(grants
        .into_iter()
        .find(|g| vncauth::verify(g.token.expose().as_bytes(), challenge, response)))
}

/// Why a viewer was refused. For the audit log only; see [`VIEWER_FAILURE_REASON`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Too many recent failures from this client; the response was not checked.
    RateLimited {
        /// When the client may try again.
        retry_after: Duration,
    },
    /// No stored grant has this token.
    UnknownToken,
    /// The token belongs to a grant for another target.
    WrongTarget {
        /// The grant.
        grant_id: i64,
        /// Its user.
        user: String,
        /// The target it is for.
        granted_target: String,
    },
    /// The token's grant expired.
    Expired {
        /// The grant.
        grant_id: i64,
        /// Its user.
        user: String,
    },
    /// The token is one-time and was already used.
    AlreadyUsed {
        /// The grant.
        grant_id: i64,
        /// Its user.
        user: String,
    },
    /// The token's grant was revoked.
    Revoked {
        /// The grant.
        grant_id: i64,
        /// Its user.
        user: String,
    },
}

impl Denial {
    /// The short reason for the audit log: "token expired", "token already used", …
    pub fn audit_reason(&self) -> &'static str {
        match self {
            Denial::RateLimited { .. } => "too many failed attempts",
            Denial::UnknownToken => "unknown token",
            Denial::WrongTarget { .. } => "token not granted for this target",
            Denial::Expired { .. } => GrantStatus::Expired.describe(),
            Denial::AlreadyUsed { .. } => GrantStatus::Used.describe(),
            Denial::Revoked { .. } => GrantStatus::Revoked.describe(),
        }
    }

    /// What the viewer is told: always [`VIEWER_FAILURE_REASON`].
    pub fn viewer_reason(&self) -> &'static str {
        VIEWER_FAILURE_REASON
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.audit_reason())?;
        match self {
            Denial::RateLimited { retry_after } => {
                write!(f, " (retry in {} s)", retry_after.as_secs().max(1))
            }
            Denial::UnknownToken => Ok(()),
            Denial::WrongTarget {
                grant_id,
                user,
                granted_target,
            } => write!(f, " (grant {grant_id} of {user} is for {granted_target})"),
            Denial::Expired { grant_id, user }
            | Denial::AlreadyUsed { grant_id, user }
            | Denial::Revoked { grant_id, user } => write!(f, " (grant {grant_id} of {user})"),
        }
    }
}

/// Failure of [`TokenAuthenticator::authenticate`].
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The viewer is refused.
    #[error("access denied: {0}")]
    Denied(Denial),
    /// The token store failed (the viewer is refused too).
    #[error(transparent)]
    Store(#[from] TokenError),
}

impl AccessError {
    /// What the viewer is told: always [`VIEWER_FAILURE_REASON`].
    pub fn viewer_reason(&self) -> &'static str {
        VIEWER_FAILURE_REASON
    }
}

/// One VNC Authentication attempt by a viewer.
#[derive(Debug, Clone, Copy)]
pub struct VncAuthAttempt<'a> {
    /// The viewer's address.
    pub client: IpAddr,
    /// The target the viewer connected for, or `None` when the token chooses it.
    pub target: Option<&'a str>,
    /// The challenge psmgate sent.
    pub challenge: &'a [u8; CHALLENGE_LEN],
    /// The viewer's response.
    pub response: &'a [u8; CHALLENGE_LEN],
}

/// Token checking with per-client rate limiting.
#[derive(Debug)]
pub struct TokenAuthenticator {
    store: Arc<TokenStore>,
    limiter: Mutex<FailureLimiter>,
}

impl TokenAuthenticator {
    /// Checks tokens in `store`, limiting failures with `limiter`.
    pub fn new(store: Arc<TokenStore>, limiter: FailureLimiter) -> Self {
        TokenAuthenticator {
            store,
            limiter: Mutex::new(limiter),
        }
    }

    /// The token store.
    pub fn store(&self) -> &TokenStore {
        &self.store
    }

    /// Checks `attempt` at wall-clock time `now` (grant expiry) and monotonic time `clock`
    /// (rate limiting). On success the grant's use is recorded (one-time grants are consumed)
    /// and the grant — who the viewer is — returned. Every failure except rate limiting itself
    /// counts against the client.
    pub fn authenticate(
        &self,
        attempt: &VncAuthAttempt<'_>,
        now: OffsetDateTime,
        clock: Instant,
    ) -> Result<Grant, AccessError> {
        if let Err(retry_after) = self.limiter().check(attempt.client, clock) {
            return Err(AccessError::Denied(Denial::RateLimited { retry_after }));
        }
        let result = self.check(attempt, now);
        if result.is_err() {
            self.limiter().record_failure(attempt.client, clock);
        }
        result
    }

    fn check(&self, a: &VncAuthAttempt<'_>, now: OffsetDateTime) -> Result<Grant, AccessError> {
        if let Some(grant) = find_by_response(&self.store, a.target, a.challenge, a.response, now)?
        {
            if self.store.mark_used(grant.id, now)? {
                return Ok(grant);
            }
            // Lost a race with another connection using the same one-time token, or it
            // expired in between: classify it below like any dead grant.
        }
        Err(AccessError::Denied(self.diagnose(a, now)?))
    }

    /// Why no usable grant matched: looks for the token among all stored grants.
    fn diagnose(&self, a: &VncAuthAttempt<'_>, now: OffsetDateTime) -> Result<Denial, TokenError> {
        let all = self.store.list()?;
        let Some(g) = all
            .into_iter()
            .find(|g| vncauth::verify(g.token.expose().as_bytes(), a.challenge, a.response))
        else {
            return Ok(Denial::UnknownToken);
        };
        let (grant_id, user) = (g.id, g.user.clone());
        if a.target.is_some_and(|t| t != g.target) {
            return Ok(Denial::WrongTarget {
                grant_id,
                user,
                granted_target: g.target,
            });
        }
        Ok(match g.status(now) {
            GrantStatus::Expired => Denial::Expired { grant_id, user },
            GrantStatus::Revoked => Denial::Revoked { grant_id, user },
            // Active here means it was consumed between the two reads.
            GrantStatus::Used | GrantStatus::Active => Denial::AlreadyUsed { grant_id, user },
        })
    }

    /// Refuses a client that failed too often recently (before any secret is checked).
    pub fn check_rate(&self, client: IpAddr, clock: Instant) -> Result<(), AccessError> {
        self.limiter()
            .check(client, clock)
            .map_err(|retry_after| AccessError::Denied(Denial::RateLimited { retry_after }))
    }

    /// Counts a failed attempt by `client` (e.g. an NLA sign-in whose password matched no
    /// grant).
    pub fn record_failure(&self, client: IpAddr, clock: Instant) {
        self.limiter().record_failure(client, clock);
    }

    /// The grants `user` may use on `target` at `now`, at most `limit` of them: the passwords an
    /// NLA (NTLM) sign-in is checked against. NTLM proves knowledge of a password without
    /// sending it, so the gateway offers each usable token of that user and target to the
    /// verifier.
    pub fn usable_grants(
        &self,
        user: &str,
        target: &str,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<Grant>, TokenError> {
        // Newest first: when a user holds more than `limit` usable grants, the ones just issued
        // are the ones being typed.
        Ok(self
            .store
            .candidates(target, now)?
            .into_iter()
            .rev()
            .filter(|g| g.user == user)
            .take(limit)
            .collect())
    }

    /// Redeems the token an NLA client delegated after it proved it: the grant of `user` on
    /// `target` holding exactly `token` is marked used (one-time grants are consumed). On
    /// failure the attempt counts against `client` and the precise [`Denial`] is returned for
    /// the audit log.
    pub fn redeem(
        &self,
        client: IpAddr,
        user: &str,
        target: &str,
        token: &str,
        now: OffsetDateTime,
        clock: Instant,
    ) -> Result<Grant, AccessError> {
        let result = self.redeem_inner(user, target, token, now);
        if result.is_err() {
            self.limiter().record_failure(client, clock);
        }
        result
    }

    fn redeem_inner(
        &self,
        user: &str,
        target: &str,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<Grant, AccessError> {
        let same = |g: &Grant| constant_time_eq(g.token.expose().as_bytes(), token.as_bytes());
        if let Some(g) = self
            .store
            .candidates(target, now)?
            .into_iter()
            .find(|g| g.user == user && same(g))
        {
            if self.store.mark_used(g.id, now)? {
                return Ok(g);
            }
        }
        let Some(g) = self.store.list()?.into_iter().find(same) else {
            return Err(AccessError::Denied(Denial::UnknownToken));
        };
        let (grant_id, granted_user) = (g.id, g.user.clone());
        if g.target != target || g.user != user {
            return Err(AccessError::Denied(Denial::WrongTarget {
                grant_id,
                user: granted_user,
                granted_target: g.target,
            }));
        }
        Err(AccessError::Denied(match g.status(now) {
            GrantStatus::Expired => Denial::Expired {
                grant_id,
                user: granted_user,
            },
            GrantStatus::Revoked => Denial::Revoked {
                grant_id,
                user: granted_user,
            },
            GrantStatus::Used | GrantStatus::Active => Denial::AlreadyUsed {
                grant_id,
                user: granted_user,
            },
        }))
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, FailureLimiter> {
        // The limiter's state stays consistent across a panic (plain counters).
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Compares two secrets in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Sliding-window limit of failed attempts per client, without I/O (the caller passes the
/// time).
///
/// IPv4 clients are limited per address, IPv6 clients per /64 (one host usually owns a whole
/// /64). At most `max_clients` addresses are tracked; when full, clients whose failures are all
/// outside the window are forgotten first, then the one with the oldest latest failure.
#[derive(Debug, Clone)]
pub struct FailureLimiter {
    max_failures: usize,
    window: Duration,
    max_clients: usize,
    failures: HashMap<IpAddr, VecDeque<Instant>>,
}

impl Default for FailureLimiter {
    /// [`DEFAULT_MAX_FAILURES`] per [`DEFAULT_FAILURE_WINDOW`].
    fn default() -> Self {
        FailureLimiter::new(DEFAULT_MAX_FAILURES, DEFAULT_FAILURE_WINDOW)
    }
}

impl FailureLimiter {
    /// At most `max_failures` (at least 1) failures per client within `window`.
    pub fn new(max_failures: usize, window: Duration) -> Self {
        FailureLimiter {
            max_failures: max_failures.max(1),
            window,
            max_clients: DEFAULT_MAX_TRACKED_CLIENTS,
            failures: HashMap::new(),
        }
    }

    /// Changes how many client addresses are tracked at once (at least 1).
    pub fn with_max_clients(mut self, max_clients: usize) -> Self {
        self.max_clients = max_clients.max(1);
        self
    }

    /// `Ok` if `client` may attempt now; otherwise how long until it may.
    pub fn check(&mut self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = client_key(client);
        let window = self.window;
        let Some(times) = self.failures.get_mut(&key) else {
            return Ok(());
        };
        prune(times, now, window);
        if times.is_empty() {
            self.failures.remove(&key);
            return Ok(());
        }
        if times.len() < self.max_failures {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        Err((oldest + window).saturating_duration_since(now))
    }

    /// Records a failed attempt by `client`.
    pub fn record_failure(&mut self, client: IpAddr, now: Instant) {
        let key = client_key(client);
        if !self.failures.contains_key(&key) && self.failures.len() >= self.max_clients {
            self.make_room(now);
        }
        let times = self.failures.entry(key).or_default();
        prune(times, now, self.window);
        times.push_back(now);
        while times.len() > self.max_failures {
            times.pop_front();
        }
    }

    /// Recent failures of `client` (within the window before `now`).
    pub fn failures(&self, client: IpAddr, now: Instant) -> usize {
        self.failures.get(&client_key(client)).map_or(0, |times| {
            times
                .iter()
                .filter(|&&t| now.saturating_duration_since(t) < self.window)
                .count()
        })
    }

    /// Number of client addresses currently tracked.
    pub fn tracked_clients(&self) -> usize {
        self.failures.len()
    }

    fn make_room(&mut self, now: Instant) {
        let window = self.window;
        self.failures.retain(|_, times| {
            prune(times, now, window);
            !times.is_empty()
        });
        if self.failures.len() >= self.max_clients {
            let stalest = self
                .failures
                .iter()
                .min_by_key(|(_, times)| times.back().copied())
                .map(|(k, _)| *k);
            if let Some(k) = stalest {
                self.failures.remove(&k);
            }
        }
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|&t| now.saturating_duration_since(t) >= window)
    {
        times.pop_front();
    }
}

/// The limiter key of an address: IPv4 (also IPv4-mapped IPv6) as is, IPv6 by its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-11-20 10:00 UTC);
    const HOUR: Duration = Duration::from_secs(3600);
    const CHALLENGE: [u8; 16] = *b"\x01\x02\x03\x04\x05\x06\x07\x08abcdefgh";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn setup() -> TokenAuthenticator {
        TokenAuthenticator::new(
            Arc::new(TokenStore::open_in_memory().unwrap()),
            FailureLimiter::default(),
        )
    }

    fn answer(grant: &Grant) -> [u8; 16] {
        vncauth::response(grant.token.expose().as_bytes(), &CHALLENGE)
    }

    fn try_auth(
        auth: &TokenAuthenticator,
        client: &str,
        target: &str,
        response: &[u8; 16],
        now: OffsetDateTime,
        clock: Instant,
    ) -> Result<Grant, AccessError> {
        auth.authenticate(
            &VncAuthAttempt {
                client: ip(client),
                target: Some(target),
                challenge: &CHALLENGE,
                response,
            },
            now,
            clock,
        )
    }

    fn denial(r: Result<Grant, AccessError>) -> Denial {
        match r {
            Err(AccessError::Denied(d)) => d,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[test]
    fn without_a_target_the_token_chooses_it() {
        let auth = setup();
        let store = auth.store();
        let a = store.grant("alice", "lab-vnc", false, HOUR, T0).unwrap();
        let b = store.grant("bob", "db-vnc", true, HOUR, T0).unwrap();
        let found = find_by_response(store, None, &CHALLENGE, &answer(&b), T0)
            .unwrap()
            .unwrap();
        assert_eq!((found.id, found.target.as_str()), (b.id, "db-vnc"));
        let found = find_by_response(store, None, &CHALLENGE, &answer(&a), T0)
            .unwrap()
            .unwrap();
        assert_eq!(found.user, "alice");
        store.mark_used(b.id, T0).unwrap();
        assert!(find_by_response(store, None, &CHALLENGE, &answer(&b), T0)
            .unwrap()
            .is_none());
    }

    #[test]
    fn find_by_response_picks_the_matching_grant() {
        let auth = setup();
        let store = auth.store();
        let a = store.grant("alice", "lab-vnc", false, HOUR, T0).unwrap();
        let b = store.grant("bob", "lab-vnc", false, HOUR, T0).unwrap();
        let found = find_by_response(store, Some("lab-vnc"), &CHALLENGE, &answer(&b), T0).unwrap();
        assert_eq!(found.map(|g| g.id), Some(b.id));
        let found = find_by_response(store, Some("lab-vnc"), &CHALLENGE, &answer(&a), T0).unwrap();
        assert_eq!(found.map(|g| g.user), Some("alice".to_owned()));
        assert!(
            find_by_response(store, Some("lab-vnc"), &CHALLENGE, &[0; 16], T0)
                .unwrap()
                .is_none()
        );
        assert!(
            find_by_response(store, Some("other"), &CHALLENGE, &answer(&a), T0)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn valid_token_authenticates_and_records_use() {
        let auth = setup();
        let g = auth
            .store()
            .grant("alice", "lab-vnc", false, HOUR, T0)
            .unwrap();
        let now = Instant::now();
        let ok = try_auth(&auth, "10.0.0.1", "lab-vnc", &answer(&g), T0, now).unwrap();
        assert_eq!((ok.id, ok.user.as_str()), (g.id, "alice"));
        assert_eq!(auth.store().get(g.id).unwrap().unwrap().use_count, 1);
        // Reusable: works again.
        assert!(try_auth(&auth, "10.0.0.1", "lab-vnc", &answer(&g), T0, now).is_ok());
    }

    #[test]
    fn wrong_token_is_unknown() {
        let auth = setup();
        auth.store()
            .grant("alice", "lab-vnc", false, HOUR, T0)
            .unwrap();
        let wrong = vncauth::response(b"AAAAAAAA", &CHALLENGE);
        let d = denial(try_auth(
            &auth,
            "10.0.0.1",
            "lab-vnc",
            &wrong,
            T0,
            Instant::now(),
        ));
        assert_eq!(d, Denial::UnknownToken);
        assert_eq!(d.viewer_reason(), "authentication failed");
    }

    #[test]
    fn expired_token_is_reported_as_expired() {
        let auth = setup();
        let g = auth
            .store()
            .grant("alice", "lab-vnc", false, HOUR, T0)
            .unwrap();
        let later = T0 + time::Duration::hours(2);
        let d = denial(try_auth(
            &auth,
            "10.0.0.1",
            "lab-vnc",
            &answer(&g),
            later,
            Instant::now(),
        ));
        assert_eq!(
            d,
            Denial::Expired {
                grant_id: g.id,
                user: "alice".into()
            }
        );
        assert_eq!(d.audit_reason(), "token expired");
        assert_eq!(
            d.to_string(),
            format!("token expired (grant {} of alice)", g.id)
        );
        assert_eq!(d.viewer_reason(), VIEWER_FAILURE_REASON);
    }

    #[test]
    fn once_token_cannot_be_reused() {
        let auth = setup();
        let g = auth
            .store()
            .grant("alice", "lab-vnc", true, HOUR, T0)
            .unwrap();
        let now = Instant::now();
        assert!(try_auth(&auth, "10.0.0.1", "lab-vnc", &answer(&g), T0, now).is_ok());
        let err = try_auth(&auth, "10.0.0.1", "lab-vnc", &answer(&g), T0, now).unwrap_err();
        assert_eq!(err.viewer_reason(), VIEWER_FAILURE_REASON);
        let d = denial(Err(err));
        assert_eq!(d.audit_reason(), "token already used");
        assert!(!d.to_string().contains(g.token.expose()));
    }

    #[test]
    fn revoked_and_wrong_target_tokens_are_distinguished() {
        let auth = setup();
        let g = auth
            .store()
            .grant("alice", "lab-vnc", false, HOUR, T0)
            .unwrap();
        let now = Instant::now();
        let d = denial(try_auth(
            &auth,
            "10.0.0.1",
            "prod-vnc",
            &answer(&g),
            T0,
            now,
        ));
        assert_eq!(d.audit_reason(), "token not granted for this target");
        auth.store().revoke(g.id, T0).unwrap();
        let d = denial(try_auth(&auth, "10.0.0.2", "lab-vnc", &answer(&g), T0, now));
        assert_eq!(d.audit_reason(), "token revoked");
    }

    #[test]
    fn failures_are_rate_limited_per_client() {
        let auth = setup();
        let g = auth
            .store()
            .grant("alice", "lab-vnc", false, HOUR, T0)
            .unwrap();
        let start = Instant::now();
        let wrong = [0u8; 16];
        for i in 0..DEFAULT_MAX_FAILURES {
            let t = start + Duration::from_secs(i as u64);
            let d = denial(try_auth(&auth, "192.0.2.7", "lab-vnc", &wrong, T0, t));
            assert_eq!(d, Denial::UnknownToken);
        }
        // Even the right token is refused without being checked.
        let t = start + Duration::from_secs(10);
        let d = denial(try_auth(&auth, "192.0.2.7", "lab-vnc", &answer(&g), T0, t));
        assert_eq!(
            d,
            Denial::RateLimited {
                retry_after: Duration::from_secs(50)
            }
        );
        assert_eq!(auth.store().get(g.id).unwrap().unwrap().use_count, 0);
        // Other clients are unaffected.
        assert!(try_auth(&auth, "192.0.2.8", "lab-vnc", &answer(&g), T0, t).is_ok());
        // After the window the oldest failure drops out.
        let t = start + Duration::from_secs(60);
        assert!(try_auth(&auth, "192.0.2.7", "lab-vnc", &answer(&g), T0, t).is_ok());
    }

    #[test]
    fn limiter_window_slides() {
        let mut l = FailureLimiter::new(2, Duration::from_secs(10));
        let t0 = Instant::now();
        let c = ip("198.51.100.1");
        assert!(l.check(c, t0).is_ok());
        l.record_failure(c, t0);
        l.record_failure(c, t0 + Duration::from_secs(5));
        assert_eq!(
            l.check(c, t0 + Duration::from_secs(6)),
            Err(Duration::from_secs(4))
        );
        assert!(l.check(c, t0 + Duration::from_secs(10)).is_ok());
        assert_eq!(l.failures(c, t0 + Duration::from_secs(10)), 1);
        assert!(l.check(c, t0 + Duration::from_secs(15)).is_ok());
        assert_eq!(
            l.tracked_clients(),
            0,
            "fully expired clients are forgotten"
        );
    }

    #[test]
    fn ipv6_is_limited_per_64_and_mapped_v4_as_v4() {
        let mut l = FailureLimiter::new(1, Duration::from_secs(60));
        let t = Instant::now();
        l.record_failure(ip("2001:db8:1:2::1"), t);
        assert!(l.check(ip("2001:db8:1:2:ffff::9"), t).is_err());
        assert!(l.check(ip("2001:db8:1:3::1"), t).is_ok());
        l.record_failure(ip("::ffff:192.0.2.1"), t);
        assert!(l.check(ip("192.0.2.1"), t).is_err());
    }

    #[test]
    fn limiter_memory_is_bounded() {
        let mut l = FailureLimiter::new(3, Duration::from_secs(60)).with_max_clients(100);
        let t = Instant::now();
        for i in 0..1000u32 {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.record_failure(addr, t + Duration::from_millis(u64::from(i)));
            assert!(l.tracked_clients() <= 100);
        }
        // The most recent offender is still tracked.
        assert_eq!(l.failures(ip("10.0.3.231"), t + Duration::from_secs(1)), 1);
    }
}
