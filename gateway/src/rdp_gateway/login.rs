//! The RDP login name: who the admin is and which target they want.
//!
//! An RDP client has one place to name a target through a gateway that terminates NLA: the
//! user name. psmgate accepts both forms Windows itself knows:
//!
//! - `alice@lab-rdp` (user principal name form): user `alice`, target `lab-rdp`;
//! - `LAB-RDP\alice` (down-level logon name form): user `alice`, target `LAB-RDP`.
//!
//! A backslash takes precedence over `@`, as in Windows (`LAB\alice@corp` is user
//! `alice@corp` on target `LAB`). Target names are matched against the configured targets
//! without regard to ASCII case, because clients (mstsc among them) upper-case NetBIOS domain
//! names.

/// A login split into the gateway user and the target they asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The gateway user (the grant's user).
    pub user: String,
    /// The target as typed (see [`Login::resolve_target`]).
    pub target: String,
}

impl Login {
    /// Splits `name` (as the client sent it in NTLM, user and domain already joined by the
    /// caller when the client sent them apart). `None` when no target is named.
    pub fn parse(name: &str) -> Option<Login> {
        let (user, target) = match (name.split_once('\\'), name.rsplit_once('@')) {
            (Some((target, user)), _) => (user, target),
            (None, Some((user, target))) => (user, target),
            (None, None) => return None,
        };
        let (user, target) = (user.trim(), target.trim());
        if user.is_empty() || target.is_empty() {
            return None;
        }
        Some(Login {
            user: user.to_string(),
            target: target.to_string(),
        })
    }

    /// Joins the NTLM user and domain fields into one name: `domain\user` when a domain was
    /// sent, else the user field alone (which then carries `user@target`).
    pub fn from_parts(user: &str, domain: Option<&str>) -> Option<Login> {
        match domain.filter(|d| !d.is_empty()) {
            Some(d) => Login::parse(&format!("{d}\\{user}")),
            None => Login::parse(user),
        }
    }

    /// The configured target name this login means: the one equal to what was typed, else the
    /// only one equal without regard to ASCII case.
    pub fn resolve_target<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Option<String> {
        let mut folded = None;
        for n in names {
            if n == self.target {
                return Some(n.to_string());
            }
            if n.eq_ignore_ascii_case(&self.target) {
                if folded.is_some() {
                    return None;
                }
                folded = Some(n.to_string());
            }
        }
        folded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms() {
        let a = Login::parse("alice@lab-rdp").unwrap();
        assert_eq!((a.user.as_str(), a.target.as_str()), ("alice", "lab-rdp"));
        let b = Login::parse("LAB-RDP\\alice").unwrap();
        assert_eq!((b.user.as_str(), b.target.as_str()), ("alice", "LAB-RDP"));
        let c = Login::parse("LAB\\alice@corp").unwrap();
        assert_eq!((c.user.as_str(), c.target.as_str()), ("alice@corp", "LAB"));
        let d = Login::parse("first.last@corp@lab").unwrap();
        assert_eq!(
            (d.user.as_str(), d.target.as_str()),
            ("first.last@corp", "lab")
        );
    }

    #[test]
    fn no_target_is_none() {
        assert_eq!(Login::parse("alice"), None);
        assert_eq!(Login::parse("@lab"), None);
        assert_eq!(Login::parse("alice@"), None);
        assert_eq!(Login::parse("\\alice"), None);
    }

    #[test]
    fn from_ntlm_fields() {
        let l = Login::from_parts("alice", Some("LAB-RDP")).unwrap();
        assert_eq!(l.target, "LAB-RDP");
        let l = Login::from_parts("alice@lab-rdp", Some("")).unwrap();
        assert_eq!(l.target, "lab-rdp");
        assert_eq!(Login::from_parts("alice", None), None);
    }

    #[test]
    fn target_resolution_folds_case_only_when_unambiguous() {
        let l = Login::parse("LAB-RDP\\alice").unwrap();
        assert_eq!(
            l.resolve_target(["lab-vnc", "lab-rdp"]),
            Some("lab-rdp".to_string())
        );
        assert_eq!(l.resolve_target(["lab-rdp", "LAB-rdp"]), None);
        assert_eq!(
            l.resolve_target(["lab-rdp", "LAB-RDP"]),
            Some("LAB-RDP".to_string())
        );
        assert_eq!(l.resolve_target(["other"]), None);
    }
}
