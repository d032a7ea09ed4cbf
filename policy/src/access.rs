//! Access decisions: may this user open a session to that target, now, and on which terms?

use crate::model::{Approval, Rule};
use crate::Config;
use time::OffsetDateTime;

/// The outcome of [`Config::is_allowed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// True when a rule grants access.
    pub allowed: bool,
    /// The granting rule, recorded with the session; `None` when denied.
    pub rule_id: Option<String>,
}

impl Decision {
    /// Denied; no rule matched.
    pub fn deny() -> Self {
        Self {
            allowed: false,
            rule_id: None,
        }
    }
}

/// The terms on which a rule lets a user at a target (see [`Config::access_policy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessPolicy {
    /// The rule that decided, recorded with the grant and its sessions.
    pub rule_id: String,
    /// Whether a request needs approval before access is granted.
    pub approval: Approval,
    /// The longest grant a request may ask for.
    pub max_duration: std::time::Duration,
    /// The longest a single session may last; `None`: no limit of its own.
    pub max_session: Option<std::time::Duration>,
    /// A session ends after this long without input; `None`: never for being idle.
    pub idle_timeout: Option<std::time::Duration>,
    /// Whether sessions end when the grant they were opened with expires.
    pub end_at_grant_expiry: bool,
}

impl AccessPolicy {
    fn from_rule(r: &Rule) -> Self {
        Self {
            rule_id: r.id.clone(),
            approval: r.approval,
            max_duration: r.max_duration.get(),
            max_session: r.max_session.map(|d| d.get()),
            idle_timeout: r.idle_timeout.map(|d| d.get()),
            end_at_grant_expiry: r.end_at_grant_expiry,
        }
    }
}

impl Config {
    /// Decides whether `user` may open a session to `target` now; [`Config::is_allowed_at`]
    /// at the current time.
    pub fn is_allowed(&self, user: &str, target: &str) -> Decision {
        self.is_allowed_at(user, target, OffsetDateTime::now_utc())
    }

    /// Decides whether `user` may open a session to `target` at `at`.
    ///
    /// Default deny. Unknown users and targets are denied. The first rule (in file order) that
    /// names the user, or one of the user's roles that applies on the target (unscoped, or
    /// scoped to a group containing the target), covers the target (by name, as a member of a
    /// listed `@group`, or with `"*"`) and whose `hours` contain `at` grants access. Whether
    /// that rule needs approval is [`Config::access_policy`]'s to say.
    pub fn is_allowed_at(&self, user: &str, target: &str, at: OffsetDateTime) -> Decision {
        self.deciding_rule(user, target, at)
            .map_or_else(Decision::deny, |r| Decision {
                allowed: true,
                rule_id: Some(r.id.clone()),
            })
    }

    /// The terms under which `user` may reach `target` at `at`: those of the rule
    /// [`Config::is_allowed_at`] would report, or `None` when access is denied.
    pub fn access_policy(
        &self,
        user: &str,
        target: &str,
        at: OffsetDateTime,
    ) -> Option<AccessPolicy> {
        self.deciding_rule(user, target, at)
            .map(AccessPolicy::from_rule)
    }

    /// True when `rule` covers `target`, by name, by one of its `@group`s, or with `"*"`.
    pub fn rule_covers(&self, rule: &Rule, target: &str) -> bool {
        rule.targets.matches_in(target, &self.target_groups)
    }

    fn deciding_rule(&self, user: &str, target: &str, at: OffsetDateTime) -> Option<&Rule> {
        let (Some(u), Some(_)) = (self.users.get(user), self.targets.get(target)) else {
            return None;
        };
        // An instant that cannot be shown in the gateway's offset (at the very ends of the
        // supported calendar) is inside no window.
        let local = at.checked_to_offset(self.gateway.timezone_offset);
        let roles = self.role_names_on(u, target);
        self.rules.iter().find(|r| {
            r.matches_user(user, &roles)
                && self.rule_covers(r, target)
                && (r.hours.is_empty() || local.is_some_and(|l| r.hours_contain(l)))
        })
    }
}
