//! Just-in-time access: a user asks for a target (reason, duration); the rule that lets them
//! connect decides whether the request is approved at once (`approval = "auto"`) or waits for an
//! approver (`approval = "required"`: someone holding `approve` on the target who is not the
//! requester). Approval issues the one-time access credential the VNC, RDP and web gateways
//! accept, valid for the requested duration; only the requester is shown it.

use super::auth::{Principal, PrincipalKind};
use super::respond::{error, json, json_status, read_json, Resp};
use super::AdminState;
use hyper::body::Incoming;
use hyper::StatusCode;
use psmgate_policy::rbac::Permission;
use psmgate_policy::Approval;
use psmgate_storage::requests::{AccessRequest, RequestFilter, RequestStatus};
use psmgate_storage::tokens::{Grant, GrantStatus, TokenError};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

/// Longest reason or note kept.
const MAX_TEXT: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    target: String,
    reason: String,
    /// `30m`, `2h`, … (at most the rule's `max_duration`; default 1h or less).
    #[serde(default)]
    duration: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    #[serde(default)]
    note: Option<String>,
}

fn internal(e: impl std::fmt::Display) -> Resp {
    tracing::error!(error = %e, "access request storage failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the access request could not be stored",
    )
}

/// The request as JSON for `viewer`: the credential only for the requester, while it works.
fn request_json(state: &AdminState, r: &AccessRequest, viewer: &Principal) -> Value {
    let mut v = json!({
        "id": r.id,
        "user": r.user,
        "target": r.target,
        "reason": r.reason,
        "duration_secs": r.duration.as_secs(),
        "rule": r.rule_id,
        "status": r.status.as_str(),
        "created_at": crate::report::rfc3339(r.created_at),
        "decided_by": r.decided_by,
        "decided_at": r.decided_at.map(crate::report::rfc3339),
        "note": r.note,
    });
    if viewer.name == r.user && matches!(viewer.kind, PrincipalKind::Login { .. }) {
        if let Some(gid) = r.grant_id {
            if let Ok(Some(g)) = state.tokens.get(gid) {
                if g.status(OffsetDateTime::now_utc()) == GrantStatus::Active {
                    v["credential"] = credential_json(state, &g);
                }
            }
        }
    }
    v
}

/// How to use a grant: the token and where it goes for the target's protocol.
fn credential_json(state: &AdminState, g: &Grant) -> Value {
    let config = state.config();
    let protocol = config
        .targets
        .get(&g.target)
        .map(|t| t.protocol.as_str().to_owned())
        .unwrap_or_default();
    let how = match protocol.as_str() {
        "vnc" => "type the token as the VNC password at the gateway's VNC port".to_owned(),
        "rdp" => format!(
            "sign in at the gateway's RDP port as {}@{} with the token as the password",
            g.user, g.target
        ),
        "web" => format!(
            "use the gateway as the browser's HTTPS proxy; sign in as {}@{} with the token as the password",
            g.user, g.target
        ),
        _ => String::new(),
    };
    json!({
        "token": g.token.expose(),
        "grant_id": g.id,
        "once": g.once,
        "expires_at": crate::report::rfc3339(g.expires_at),
        "protocol": protocol,
        "how": how,
    })
}

fn check_text(what: &str, s: &str, required: bool) -> Result<(), Resp> {
    if required && s.trim().is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "missing_field",
            format!("a {what} is required"),
        ));
    }
    if s.chars().count() > MAX_TEXT {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "too_long",
            format!("the {what} is limited to {MAX_TEXT} characters"),
        ));
    }
    Ok(())
}

/// `POST /api/access-requests` `{"target", "reason", "duration"}`.
pub async fn create(state: &AdminState, who: &Principal, body: Incoming) -> Resp {
    let body: CreateBody = match read_json(body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !matches!(who.kind, PrincipalKind::Login { .. }) {
        return error(
            StatusCode::FORBIDDEN,
            "not_a_user",
            "access is requested by a signed-in user, not with the admin token",
        );
    }
    if let Err(r) = check_text("reason", &body.reason, true) {
        return r;
    }
    let config = state.config();
    if !config.targets.contains_key(&body.target) {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_target",
            format!("no target {}", body.target),
        );
    }
    if !who.permits(&config, Permission::RequestAccess, Some(&body.target)) {
        return super::forbidden(Permission::RequestAccess, Some(&body.target));
    }
    let now = OffsetDateTime::now_utc();
    let Some(policy) = config.access_policy(&who.name, &body.target, now) else {
        return error(
            StatusCode::FORBIDDEN,
            "no_rule",
            format!(
                "no rule lets {} connect to {} at this time",
                who.name, body.target
            ),
        );
    };
    let duration = match body.duration.as_deref() {
        None => policy
            .max_duration
            .min(std::time::Duration::from_secs(3600)),
        Some(d) => match psmgate_policy::units::Duration::parse(d) {
            Ok(d) => d.get(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_duration",
                    format!("duration {d:?}: {e}"),
                )
            }
        },
    };
    if duration < std::time::Duration::from_secs(60) || duration > policy.max_duration {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_duration",
            format!(
                "the duration must be between 1m and the rule's max_duration ({} s)",
                policy.max_duration.as_secs()
            ),
        );
    }
    let created = match state.tokens.create_request(
        &who.name,
        &body.target,
        body.reason.trim(),
        duration,
        &policy.rule_id,
        now,
    ) {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    crate::metrics::outcome(&crate::metrics::global().access_requests, "requested");
    state.audit(
        &who.name,
        psmgate_storage::audit::ACTION_ACCESS_REQUESTED,
        &created.target,
        &format!(
            "request {} for {} s (rule {}): {}",
            created.id,
            duration.as_secs(),
            policy.rule_id,
            created.reason
        ),
    );
    if policy.approval == Approval::Auto {
        let approver = format!("policy:{}", policy.rule_id);
        return match state.tokens.approve_request(
            created.id,
            &approver,
            Some("approved by policy"),
            true,
            now,
        ) {
            Ok((r, g)) => {
                audit_approval(state, &approver, &r, &g);
                json_status(StatusCode::CREATED, &request_json(state, &r, who))
            }
            Err(e) => internal(e),
        };
    }
    json_status(StatusCode::CREATED, &request_json(state, &created, who))
}

fn audit_approval(state: &AdminState, approver: &str, r: &AccessRequest, g: &Grant) {
    let m = crate::metrics::global();
    if approver.starts_with("policy:") {
        crate::metrics::outcome(&m.access_requests, "auto_approved");
    } else {
        crate::metrics::outcome(&m.access_requests, "approved");
        if let Some(at) = r.decided_at {
            m.access_approval_seconds
                .observe((at - r.created_at).as_seconds_f64().max(0.0));
        }
    }
    state.audit(
        approver,
        psmgate_storage::audit::ACTION_ACCESS_APPROVED,
        &r.target,
        &format!("request {} of {}", r.id, r.user),
    );
    state.audit(
        approver,
        psmgate_storage::audit::ACTION_GRANT_ISSUED,
        &r.target,
        &format!(
            "grant {} for {} (one-time, until {})",
            g.id,
            g.user,
            crate::report::rfc3339(g.expires_at)
        ),
    );
}

/// `GET /api/access-requests[?status=pending]`: the caller's own requests and those they may
/// decide.
pub fn list(state: &AdminState, who: &Principal, query: &str) -> Resp {
    let status = match super::respond::query_param(query, "status") {
        None => None,
        Some(s) => match RequestStatus::parse(&s) {
            Some(s) => Some(s),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bad_status",
                    format!("unknown status {s:?}"),
                )
            }
        },
    };
    let config = state.config();
    let filter = RequestFilter {
        user: None,
        status,
        limit: Some(500),
    };
    let rows = match state.tokens.list_requests(&filter) {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let visible: Vec<Value> = rows
        .iter()
        .filter(|r| r.user == who.name || may_decide(&config, who, r))
        .map(|r| {
            let mut v = request_json(state, r, who);
            v["can_decide"] =
                (r.status == RequestStatus::Pending && may_decide(&config, who, r)).into();
            v
        })
        .collect();
    json(&json!({ "requests": visible }))
}

fn may_decide(config: &psmgate_policy::Config, who: &Principal, r: &AccessRequest) -> bool {
    match who.kind {
        PrincipalKind::AdminToken => true,
        // The principal's roles as signed in (from `[users]` and, with OpenID Connect, from
        // the provider's groups); never one's own request, and only a configured user's.
        PrincipalKind::Login { .. } => {
            who.name != r.user
                && config.users.contains_key(&r.user)
                && who.permits(config, Permission::Approve, Some(&r.target))
        }
    }
}

fn parse_id(id: &str) -> Result<i64, Resp> {
    id.parse::<i64>().map_err(|_| {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no access request {id}"),
        )
    })
}

fn load(state: &AdminState, id: &str) -> Result<AccessRequest, Resp> {
    let n = parse_id(id)?;
    match state.tokens.get_request(n) {
        Ok(Some(r)) => Ok(r),
        Ok(None) => Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no access request {id}"),
        )),
        Err(e) => Err(internal(e)),
    }
}

/// `GET /api/access-requests/{id}`: for the requester and those who may decide it.
pub fn get(state: &AdminState, who: &Principal, id: &str) -> Resp {
    let r = match load(state, id) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let config = state.config();
    if r.user != who.name && !may_decide(&config, who, &r) {
        // Requests the caller may not see do not exist for them.
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no access request {id}"),
        );
    }
    json(&request_json(state, &r, who))
}

/// What an approver does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Approve (issues the credential).
    Approve,
    /// Deny.
    Deny,
}

/// `POST /api/access-requests/{id}/approve|deny` `{"note": "…"}`.
pub async fn decide(
    state: &AdminState,
    who: &Principal,
    id: &str,
    decision: Decision,
    body: Incoming,
) -> Resp {
    let r = match load(state, id) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let config = state.config();
    if !who.permits(&config, Permission::Approve, Some(&r.target)) {
        return super::forbidden(Permission::Approve, Some(&r.target));
    }
    if !may_decide(&config, who, &r) {
        return error(
            StatusCode::FORBIDDEN,
            "own_request",
            "a request is decided by someone other than the requester",
        );
    }
    let body: DecideBody = match read_json(body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let note = body
        .note
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    if let Err(resp) = check_text("note", note.unwrap_or(""), false) {
        return resp;
    }
    let now = OffsetDateTime::now_utc();
    let outcome = match decision {
        Decision::Approve => state
            .tokens
            .approve_request(r.id, &who.name, note, true, now)
            .map(|(r, g)| {
                audit_approval(state, &who.name, &r, &g);
                r
            }),
        Decision::Deny => state
            .tokens
            .deny_request(r.id, &who.name, note, now)
            .inspect(|r| {
                crate::metrics::outcome(&crate::metrics::global().access_requests, "denied");
                state.audit(
                    &who.name,
                    psmgate_storage::audit::ACTION_ACCESS_DENIED,
                    &r.target,
                    &format!("request {} of {}: {}", r.id, r.user, note.unwrap_or("")),
                );
            }),
    };
    match outcome {
        Ok(r) => json(&request_json(state, &r, who)),
        Err(e @ TokenError::NotPending { .. }) => {
            error(StatusCode::CONFLICT, "not_pending", e.to_string())
        }
        Err(e) => internal(e),
    }
}

/// `POST /api/access-requests/{id}/cancel`: the requester withdraws a pending request.
pub fn cancel(state: &AdminState, who: &Principal, id: &str) -> Resp {
    let r = match load(state, id) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if r.user != who.name {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no access request {id}"),
        );
    }
    match state
        .tokens
        .cancel_request(r.id, &who.name, OffsetDateTime::now_utc())
    {
        Ok(r) => {
            crate::metrics::outcome(&crate::metrics::global().access_requests, "cancelled");
            state.audit(
                &who.name,
                psmgate_storage::audit::ACTION_ACCESS_CANCELLED,
                &r.target,
                &format!("request {}", r.id),
            );
            json(&request_json(state, &r, who))
        }
        Err(e @ TokenError::NotPending { .. }) => {
            error(StatusCode::CONFLICT, "not_pending", e.to_string())
        }
        Err(e) => internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use psmgate_policy::Config;

    fn config(dir: &std::path::Path) -> Config {
        let path = dir.join("psmgate.toml");
        std::fs::write(
            &path,
            "[targets.db1]\nprotocol = \"vnc\"\naddress = \"127.0.0.1:5901\"\n\n\
             [targets.web1]\nprotocol = \"vnc\"\naddress = \"127.0.0.1:5902\"\n\n\
             [target_groups]\ndatabases = [\"db1\"]\n\n\
             [users.alice]\nroles = [\"user\"]\n\n\
             [users.bob]\nroles = [\"user\"]\n",
        )
        .unwrap();
        Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    fn signed_in(name: &str, roles: &[&str]) -> Principal {
        Principal {
            name: name.into(),
            kind: PrincipalKind::Login {
                token: "t".into(),
                via: "oidc".into(),
                groups: Some(vec!["dba".into()]),
                roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            },
        }
    }

    fn request(user: &str, target: &str) -> AccessRequest {
        AccessRequest {
            id: 1,
            user: user.into(),
            target: target.into(),
            reason: "r".into(),
            duration: std::time::Duration::from_secs(3600),
            rule_id: "r".into(),
            created_at: OffsetDateTime::UNIX_EPOCH,
            status: RequestStatus::Pending,
            decided_by: None,
            decided_at: None,
            note: None,
            grant_id: None,
        }
    }

    #[test]
    fn the_signed_in_roles_decide_who_may_approve() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        // carol is known only through the provider, with approver on the databases group.
        let carol = signed_in("carol", &["approver@databases"]);
        assert!(may_decide(&config, &carol, &request("alice", "db1")));
        assert!(
            !may_decide(&config, &carol, &request("alice", "web1")),
            "outside her group"
        );
        assert!(
            !may_decide(&config, &carol, &request("carol", "db1")),
            "her own request"
        );
        assert!(
            !may_decide(&config, &carol, &request("mallory", "db1")),
            "not a configured user"
        );
        // alice's own roles hold no approve.
        assert!(!may_decide(
            &config,
            &signed_in("alice", &["user"]),
            &request("bob", "db1")
        ));
    }
}
