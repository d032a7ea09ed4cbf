//! Access decisions: may this user open a session to that target?

use crate::Config;

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

impl Config {
    /// Decides whether `user` may open a session to `target`.
    ///
    /// Default deny. Unknown users and targets are denied. The first rule (in file order) that
    /// names the user, or one of the user's roles, and covers the target grants access.
    pub fn is_allowed(&self, user: &str, target: &str) -> Decision {
        let (Some(u), Some(_)) = (self.users.get(user), self.targets.get(target)) else {
            return Decision::deny();
        };
        self.rules
            .iter()
            .find(|r| r.matches_user(user, &u.roles) && r.targets.matches(target))
            .map_or_else(Decision::deny, |r| Decision {
                allowed: true,
                rule_id: Some(r.id.clone()),
            })
    }
}
