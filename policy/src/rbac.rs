//! Role-based access control: permissions, built-in and custom roles, role scoping to target
//! groups, and the decisions made from them.
//!
//! A user's `roles` entries are role names, optionally scoped to a target group
//! (`"approver@prod"`). An unscoped entry grants every permission of its role, on every target;
//! a scoped entry grants only the role's target-scoped permissions, and only on the targets of
//! that group. A role name that is neither built in nor defined under `[roles.<name>]` is a
//! plain label: it grants no permission and is only matched by `rules[].roles` and
//! `web_rules[].roles`.

use crate::model::User;
use crate::Config;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Something a user may be allowed to do.
///
/// Target-scoped permissions ([`Permission::is_target_scoped`]) are held per target; global ones
/// (`view_audit`, `manage`) concern the gateway as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Open sessions to the target (which `[[rules]]` still decide).
    Connect,
    /// Ask for just-in-time access to the target.
    RequestAccess,
    /// Approve or deny other users' access requests for the target.
    Approve,
    /// Watch the target's sessions live.
    WatchLive,
    /// End the target's running sessions.
    Terminate,
    /// Play back the target's recordings.
    ViewRecordings,
    /// Export the target's recordings (with their verification material).
    ExportRecordings,
    /// Set and lift legal hold on the target's recordings.
    LegalHold,
    /// Delete the target's recordings before their retention ends (never while on hold).
    DeleteRecordings,
    /// Read the gateway's audit log (global).
    ViewAudit,
    /// Manage the gateway: configuration, users, tokens and keys (global).
    Manage,
}

impl Permission {
    /// Every permission, in a fixed order (the order used by [`Config::role_permissions`]).
    pub const ALL: [Permission; 11] = [
        Permission::Connect,
        Permission::RequestAccess,
        Permission::Approve,
        Permission::WatchLive,
        Permission::Terminate,
        Permission::ViewRecordings,
        Permission::ExportRecordings,
        Permission::LegalHold,
        Permission::DeleteRecordings,
        Permission::ViewAudit,
        Permission::Manage,
    ];

    /// True for permissions held per target; false for the global `view_audit` and `manage`.
    pub const fn is_target_scoped(self) -> bool {
        !matches!(self, Permission::ViewAudit | Permission::Manage)
    }

    /// The name used in the configuration (`"watch_live"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Permission::Connect => "connect",
            Permission::RequestAccess => "request_access",
            Permission::Approve => "approve",
            Permission::WatchLive => "watch_live",
            Permission::Terminate => "terminate",
            Permission::ViewRecordings => "view_recordings",
            Permission::ExportRecordings => "export_recordings",
            Permission::LegalHold => "legal_hold",
            Permission::DeleteRecordings => "delete_recordings",
            Permission::ViewAudit => "view_audit",
            Permission::Manage => "manage",
        }
    }

    /// The permission called `name` (as written in the configuration), if any.
    pub fn from_name(name: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The built-in roles, in the order [`Config::roles`] lists them, with their permissions.
pub const BUILTIN_ROLES: [(&str, &[Permission]); 5] = [
    ("admin", &Permission::ALL),
    (
        "approver",
        &[
            Permission::Approve,
            Permission::WatchLive,
            Permission::Terminate,
            Permission::ViewRecordings,
        ],
    ),
    (
        "reviewer",
        &[
            Permission::WatchLive,
            Permission::ViewRecordings,
            Permission::ExportRecordings,
        ],
    ),
    (
        "auditor",
        &[
            Permission::ViewRecordings,
            Permission::ExportRecordings,
            Permission::ViewAudit,
        ],
    ),
    ("user", &[Permission::Connect, Permission::RequestAccess]),
];

/// True when `name` is a built-in role.
pub fn is_builtin_role(name: &str) -> bool {
    builtin_permissions(name).is_some()
}

fn builtin_permissions(name: &str) -> Option<&'static [Permission]> {
    BUILTIN_ROLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
}

/// `[roles.<name>]`: a custom role.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RoleDef {
    /// The permissions the role grants, as written (each once).
    pub permissions: Vec<Permission>,
}

/// A user's `roles` entry split into the role name and the target group it is scoped to:
/// `"approver@prod"` → `("approver", Some("prod"))`, `"reviewer"` → `("reviewer", None)`.
/// Only the first `@` separates.
pub fn split_role_entry(entry: &str) -> (&str, Option<&str>) {
    match entry.split_once('@') {
        Some((role, group)) => (role, Some(group)),
        None => (entry, None),
    }
}

impl Config {
    /// The permissions of `role` (built-in or `[roles.<name>]`), each once, in
    /// [`Permission::ALL`] order; `None` for names that are neither (labels grant nothing).
    pub fn role_permissions(&self, role: &str) -> Option<Vec<Permission>> {
        let granted: &[Permission] = match builtin_permissions(role) {
            Some(p) => p,
            None => &self.custom_roles.get(role)?.permissions,
        };
        Some(
            Permission::ALL
                .into_iter()
                .filter(|p| granted.contains(p))
                .collect(),
        )
    }

    /// Every role that grants permissions: the built-in ones (`admin`, `approver`, `reviewer`,
    /// `auditor`, `user`), then the custom ones by name.
    pub fn roles(&self) -> Vec<String> {
        BUILTIN_ROLES
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .chain(
                self.custom_roles
                    .keys()
                    .filter(|n| !is_builtin_role(n))
                    .cloned(),
            )
            .collect()
    }

    /// True when `role` (built-in or custom) grants `perm`.
    fn role_grants(&self, role: &str, perm: Permission) -> bool {
        match builtin_permissions(role) {
            Some(p) => p.contains(&perm),
            None => self
                .custom_roles
                .get(role)
                .is_some_and(|r| r.permissions.contains(&perm)),
        }
    }

    /// True when `target` is in the target group `group` (unknown groups contain nothing).
    pub(crate) fn group_contains(&self, group: &str, target: &str) -> bool {
        self.target_groups
            .get(group)
            .is_some_and(|members| members.iter().any(|m| m == target))
    }

    /// The names of `user`'s roles that apply on `target`: unscoped entries, and entries scoped
    /// to a group that contains the target, without their `@group` part. This is what
    /// `rules[].roles` and `web_rules[].roles` are matched against.
    pub(crate) fn role_names_on(&self, user: &User, target: &str) -> Vec<String> {
        user.roles
            .iter()
            .filter_map(|entry| match split_role_entry(entry) {
                (role, None) => Some(role.to_owned()),
                (role, Some(group)) => self.group_contains(group, target).then(|| role.to_owned()),
            })
            .collect()
    }

    /// Whether `user` holds `perm`.
    ///
    /// - For a global permission (`view_audit`, `manage`) `target` is not looked at: only
    ///   unscoped role entries grant it.
    /// - For a target-scoped permission with `Some(target)`: the target must exist, and an
    ///   unscoped role entry, or one scoped to a group containing the target, must grant it.
    /// - For a target-scoped permission with `None`: whether the user holds it on at least one
    ///   target (for deciding what to show in lists and menus); the same as
    ///   [`Config::permitted_targets`] being non-empty.
    ///
    /// Unknown users hold nothing. Role names that are neither built in nor custom grant
    /// nothing.
    pub fn permits(&self, user: &str, perm: Permission, target: Option<&str>) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| self.roles_permit(&u.roles, perm, target))
    }

    /// Whether the role entries `roles` (in the syntax of users' `roles`, such as the roles of
    /// a sign-in resolved by [`Config::session_roles`]) grant `perm`, by the rules of
    /// [`Config::permits`].
    pub fn roles_permit(&self, roles: &[String], perm: Permission, target: Option<&str>) -> bool {
        if !perm.is_target_scoped() {
            return roles.iter().any(|entry| match split_role_entry(entry) {
                (role, None) => self.role_grants(role, perm),
                (_, Some(_)) => false,
            });
        }
        match target {
            Some(t) => self.targets.contains_key(t) && self.roles_permit_on(roles, perm, t),
            None => self
                .targets
                .keys()
                .any(|t| self.roles_permit_on(roles, perm, t)),
        }
    }

    /// A target-scoped `perm` of the role entries `roles` on the existing target `target`.
    fn roles_permit_on(&self, roles: &[String], perm: Permission, target: &str) -> bool {
        roles.iter().any(|entry| {
            let (role, group) = split_role_entry(entry);
            group.is_none_or(|g| self.group_contains(g, target)) && self.role_grants(role, perm)
        })
    }

    /// The targets on which `user` holds `perm`, by name in sorted order: exactly the targets
    /// `t` for which [`Config::permits`]`(user, perm, Some(t))` holds (so every target for a
    /// global permission the user holds). Empty for unknown users.
    pub fn permitted_targets(&self, user: &str, perm: Permission) -> Vec<String> {
        match self.users.get(user) {
            Some(u) => self.roles_permitted_targets(&u.roles, perm),
            None => Vec::new(),
        }
    }

    /// The targets on which the role entries `roles` grant `perm`, by the rules of
    /// [`Config::permitted_targets`].
    pub fn roles_permitted_targets(&self, roles: &[String], perm: Permission) -> Vec<String> {
        if !perm.is_target_scoped() {
            return if self.roles_permit(roles, perm, None) {
                self.targets.keys().cloned().collect()
            } else {
                Vec::new()
            };
        }
        self.targets
            .keys()
            .filter(|t| self.roles_permit_on(roles, perm, t))
            .cloned()
            .collect()
    }

    /// Whether `approver` may approve `requester`'s access request for `target`: both are
    /// known users, `approver` holds `approve` on the target, and they are not the same user
    /// (nobody approves their own request, whatever their roles).
    pub fn can_approve(&self, approver: &str, requester: &str, target: &str) -> bool {
        approver != requester
            && self.users.contains_key(requester)
            && self.permits(approver, Permission::Approve, Some(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::from_name(p.as_str()), Some(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert_eq!(Permission::from_name("Connect"), None);
        assert_eq!(Permission::from_name(""), None);
    }

    #[test]
    fn role_entries_split_at_the_first_at_sign() {
        assert_eq!(
            split_role_entry("approver@prod"),
            ("approver", Some("prod"))
        );
        assert_eq!(split_role_entry("reviewer"), ("reviewer", None));
        assert_eq!(split_role_entry("a@b@c"), ("a", Some("b@c")));
        assert_eq!(split_role_entry("@g"), ("", Some("g")));
    }
}
