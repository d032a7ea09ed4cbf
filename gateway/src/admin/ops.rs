//! The admin API's operations: method, path template and the permission each needs — the one
//! table the router dispatches on, the authorization checks read, the OpenAPI document is
//! tested against, and the authorization-matrix test is generated from.

use psmgate_policy::rbac::Permission;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (no credentials).
    Public,
    /// Any signed-in principal; the operation itself limits what it shows (own objects).
    SignedIn,
    /// A principal holding a global permission.
    Global(Permission),
    /// A principal holding a target-scoped permission on the object's target. Listing
    /// operations need it on at least one target and show only objects of permitted targets.
    Target(Permission),
}

/// One admin API operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// The OpenAPI `operationId`.
    pub id: &'static str,
    /// HTTP method.
    pub method: &'static str,
    /// Path template: `{name}` matches one segment, `{name*}` the rest of the path.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}

const fn op(
    id: &'static str,
    method: &'static str,
    path: &'static str,
    access: Access,
) -> Operation {
    Operation {
        id,
        method,
        path,
        access,
    }
}

/// Every operation of the API (below `/api/`, and the Prometheus `/metrics`).
pub const OPERATIONS: &[Operation] = &[
    op("login", "POST", "/api/login", Access::Public),
    op("logout", "POST", "/api/logout", Access::SignedIn),
    op("me", "GET", "/api/me", Access::SignedIn),
    op("openapi", "GET", "/api/openapi.json", Access::Public),
    op("oidcStatus", "GET", "/api/oidc", Access::Public),
    op("oidcLogin", "GET", "/api/oidc/login", Access::Public),
    op("oidcCallback", "GET", "/api/oidc/callback", Access::Public),
    op(
        "listRecordings",
        "GET",
        "/api/recordings",
        Access::Target(Permission::ViewRecordings),
    ),
    op(
        "getManifest",
        "GET",
        "/api/recordings/{id}/manifest",
        Access::Target(Permission::ViewRecordings),
    ),
    op(
        "verifyRecording",
        "GET",
        "/api/recordings/{id}/verify",
        Access::Target(Permission::ViewRecordings),
    ),
    op(
        "getRecordingFile",
        "GET",
        "/api/recordings/{id}/files/{path*}",
        Access::Target(Permission::ViewRecordings),
    ),
    op(
        "listLiveSessions",
        "GET",
        "/api/sessions/live",
        Access::Target(Permission::WatchLive),
    ),
    op(
        "liveThumbnail",
        "GET",
        "/api/sessions/live/{id}/thumbnail",
        Access::Target(Permission::WatchLive),
    ),
    op(
        "getOnCall",
        "GET",
        "/api/oncall",
        Access::Target(Permission::WatchLive),
    ),
    op(
        "getDashboard",
        "GET",
        "/api/dashboard",
        Access::Target(Permission::ViewRecordings),
    ),
    op(
        "terminateSession",
        "POST",
        "/api/sessions/live/{id}/terminate",
        Access::Target(Permission::Terminate),
    ),
    op(
        "lockSession",
        "POST",
        "/api/sessions/live/{id}/lock",
        Access::Target(Permission::Terminate),
    ),
    op(
        "resumeSession",
        "POST",
        "/api/sessions/live/{id}/resume",
        Access::Target(Permission::Terminate),
    ),
    op(
        "listAccessRequests",
        "GET",
        "/api/access-requests",
        Access::SignedIn,
    ),
    op(
        "createAccessRequest",
        "POST",
        "/api/access-requests",
        Access::Target(Permission::RequestAccess),
    ),
    op(
        "getAccessRequest",
        "GET",
        "/api/access-requests/{id}",
        Access::SignedIn,
    ),
    op(
        "approveAccessRequest",
        "POST",
        "/api/access-requests/{id}/approve",
        Access::Target(Permission::Approve),
    ),
    op(
        "denyAccessRequest",
        "POST",
        "/api/access-requests/{id}/deny",
        Access::Target(Permission::Approve),
    ),
    op(
        "cancelAccessRequest",
        "POST",
        "/api/access-requests/{id}/cancel",
        Access::SignedIn,
    ),
    op(
        "listAudit",
        "GET",
        "/api/audit",
        Access::Global(Permission::ViewAudit),
    ),
    op("listTargets", "GET", "/api/targets", Access::SignedIn),
    op(
        "metrics",
        "GET",
        "/metrics",
        Access::Global(Permission::ViewAudit),
    ),
    op(
        "reloadConfig",
        "POST",
        "/api/config/reload",
        Access::Global(Permission::Manage),
    ),
];

/// The route a request matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matched<'a> {
    /// An operation, with the path's parameters in template order.
    Op(&'static Operation, Vec<&'a str>),
    /// The path exists, but not with this method.
    WrongMethod,
    /// No operation has this path.
    NotFound,
}

/// Finds the operation for `method` and `path`.
pub fn find<'a>(method: &str, path: &'a str) -> Matched<'a> {
    let mut path_known = false;
    for op in OPERATIONS {
        if let Some(params) = match_template(op.path, path) {
            if op.method == method || (method == "HEAD" && op.method == "GET") {
                return Matched::Op(op, params);
            }
            path_known = true;
        }
    }
    if path_known {
        Matched::WrongMethod
    } else {
        Matched::NotFound
    }
}

/// Matches `path` against `template`; returns the parameters. Parameters are never empty.
pub fn match_template<'a>(template: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let mut params = Vec::new();
    let mut rest = path.strip_prefix('/')?;
    let mut parts = template.strip_prefix('/')?.split('/').peekable();
    while let Some(part) = parts.next() {
        if part.starts_with('{') && part.ends_with("*}") {
            if rest.is_empty() || parts.peek().is_some() {
                return None;
            }
            params.push(rest);
            return Some(params);
        }
        let (seg, tail) = match rest.split_once('/') {
            Some((s, t)) => (s, Some(t)),
            None => (rest, None),
        };
        if part.starts_with('{') && part.ends_with('}') {
            if seg.is_empty() {
                return None;
            }
            params.push(seg);
        } else if part != seg {
            return None;
        }
        match (tail, parts.peek()) {
            (Some(t), Some(_)) => rest = t,
            (None, None) => return Some(params),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(match_template("/api/me", "/api/me"), Some(vec![]));
        assert_eq!(match_template("/api/me", "/api/me/"), None);
        assert_eq!(match_template("/api/me", "/api/mee"), None);
        assert_eq!(
            match_template(
                "/api/recordings/{id}/files/{path*}",
                "/api/recordings/x/files/a/b.mp4"
            ),
            Some(vec!["x", "a/b.mp4"])
        );
        assert_eq!(
            match_template(
                "/api/recordings/{id}/files/{path*}",
                "/api/recordings/x/files/"
            ),
            None
        );
        assert_eq!(
            match_template("/api/recordings/{id}/verify", "/api/recordings//verify"),
            None
        );
        assert_eq!(
            match_template("/api/access-requests/{id}", "/api/access-requests/7"),
            Some(vec!["7"])
        );
        assert_eq!(
            match_template("/api/access-requests/{id}", "/api/access-requests/7/x"),
            None
        );
    }

    #[test]
    fn routing() {
        assert!(matches!(find("GET", "/api/me"), Matched::Op(o, _) if o.id == "me"));
        assert!(matches!(find("HEAD", "/api/me"), Matched::Op(o, _) if o.id == "me"));
        assert_eq!(find("DELETE", "/api/me"), Matched::WrongMethod);
        assert_eq!(find("GET", "/api/nope"), Matched::NotFound);
        assert!(matches!(
            find("POST", "/api/access-requests/3/approve"),
            Matched::Op(o, p) if o.id == "approveAccessRequest" && p == vec!["3"]
        ));
    }

    /// The permission name the OpenAPI document gives an access level.
    fn access_name(a: Access) -> String {
        match a {
            Access::Public => "public".into(),
            Access::SignedIn => "signed_in".into(),
            Access::Global(p) | Access::Target(p) => serde_json::to_value(p)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned(),
        }
    }

    #[test]
    fn the_openapi_document_describes_exactly_these_operations() {
        let doc: serde_json::Value = serde_json::from_str(super::super::OPENAPI).unwrap();
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, o) in item.as_object().unwrap() {
                documented.push((
                    o["operationId"].as_str().unwrap().to_owned(),
                    method.to_uppercase(),
                    path.clone(),
                    o["x-psmgate-permission"].as_str().unwrap().to_owned(),
                ));
            }
        }
        let mut table: Vec<_> = OPERATIONS
            .iter()
            .map(|o| {
                (
                    o.id.to_owned(),
                    o.method.to_owned(),
                    o.path.replace("*}", "}"),
                    access_name(o.access),
                )
            })
            .collect();
        documented.sort();
        table.sort();
        assert_eq!(documented, table);
    }

    #[test]
    fn ids_and_routes_are_unique() {
        for (i, a) in OPERATIONS.iter().enumerate() {
            for b in &OPERATIONS[i + 1..] {
                assert_ne!(a.id, b.id);
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} twice",
                    a.path
                );
            }
        }
    }
}
