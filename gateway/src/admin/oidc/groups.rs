//! The provider's groups of a user, from the claim `oidc.groups_claim` names: a JSON array of
//! strings, or a single string. Anything else counts as no groups (with a warning to log, never
//! a refusal). At most [`MAX_OIDC_GROUPS`] groups count, each once, in the claim's order; names
//! that are empty, longer than [`MAX_OIDC_GROUP_NAME`] characters or hold a control character
//! are left out.

use psmgate_policy::oidc::{is_usable_group_name, MAX_OIDC_GROUPS, MAX_OIDC_GROUP_NAME};
use serde_json::Value;

/// What a groups claim yields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Groups {
    /// The groups that count.
    pub names: Vec<String>,
    /// Why some or all of the claim did not count, for a warning; `None` when all of it did.
    pub warning: Option<String>,
}

/// The JSON type of `v`, for messages (never its value).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The groups of the claim `claim` whose value is `v`.
pub fn from_claim(claim: &str, v: &Value) -> Groups {
    let listed: Vec<&str> = match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => match items.iter().map(Value::as_str).collect::<Option<Vec<_>>>() {
            Some(names) => names,
            None => {
                let other = items.iter().find(|i| !i.is_string()).map_or("?", kind);
                return Groups {
                    names: Vec::new(),
                    warning: Some(format!(
                        "the {claim} claim is an array holding {other} rather than only strings; the sign-in counts no groups"
                    )),
                };
            }
        },
        other => {
            return Groups {
                names: Vec::new(),
                warning: Some(format!(
                    "the {claim} claim is {} rather than an array of strings or a string; the sign-in counts no groups",
                    kind(other)
                )),
            }
        }
    };
    let mut names: Vec<String> = Vec::new();
    let (mut unusable, mut over) = (0usize, 0usize);
    for name in listed {
        if !is_usable_group_name(name) {
            unusable += 1;
        } else if names.iter().any(|n| n == name) {
            // Listed twice: counts once.
        } else if names.len() == MAX_OIDC_GROUPS {
            over += 1;
        } else {
            names.push(name.to_owned());
        }
    }
    let mut notes = Vec::new();
    if unusable > 0 {
        notes.push(format!(
            "{unusable} group name(s) empty, longer than {MAX_OIDC_GROUP_NAME} characters or with control characters left out"
        ));
    }
    if over > 0 {
        notes.push(format!(
            "only the first {MAX_OIDC_GROUPS} groups count, {over} more left out"
        ));
    }
    Groups {
        names,
        warning: (!notes.is_empty()).then(|| format!("the {claim} claim: {}", notes.join("; "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn names(v: Value) -> Vec<String> {
        from_claim("groups", &v).names
    }

    #[test]
    fn an_array_of_strings_or_one_string() {
        assert_eq!(
            from_claim("groups", &json!(["dba", "psm-admins", "dba", "/eng/sre"])),
            Groups {
                names: vec!["dba".into(), "psm-admins".into(), "/eng/sre".into()],
                warning: None,
            }
        );
        assert_eq!(names(json!("psm-admins")), ["psm-admins"]);
        assert_eq!(from_claim("groups", &json!([])), Groups::default());
    }

    #[test]
    fn anything_else_is_no_groups_with_a_warning() {
        for (v, words) in [
            (json!(42), "a number"),
            (json!(null), "null"),
            (json!(true), "a boolean"),
            (json!({"dba": true}), "an object"),
            (json!(["dba", 7]), "an array holding a number"),
            (json!(["dba", ["nested"]]), "an array holding an array"),
        ] {
            let g = from_claim("roles", &v);
            assert!(g.names.is_empty(), "{v}");
            let w = g.warning.unwrap_or_default();
            assert!(w.contains("the roles claim is") && w.contains(words), "{w}");
            // The warning names the shape, never the value.
            assert!(!w.contains("dba") && !w.contains("nested"), "{w}");
        }
    }

    #[test]
    fn unusable_names_are_left_out() {
        let longest = "g".repeat(MAX_OIDC_GROUP_NAME);
        let g = from_claim(
            "groups",
            &json!([
                "",
                "  ",
                "a\nb",
                "g".repeat(MAX_OIDC_GROUP_NAME + 1),
                longest,
                "é".repeat(MAX_OIDC_GROUP_NAME)
            ]),
        );
        assert_eq!(
            g.names,
            [longest, "é".repeat(MAX_OIDC_GROUP_NAME)],
            "256 characters count, whatever their bytes"
        );
        assert!(g.warning.unwrap().contains("4 group name(s)"));
        let g = from_claim("groups", &json!("x".repeat(MAX_OIDC_GROUP_NAME + 1)));
        assert!(g.names.is_empty() && g.warning.is_some());
    }

    #[test]
    fn at_most_the_first_256_groups_count() {
        let many: Vec<String> = (0..300).map(|i| format!("g{i}")).collect();
        let g = from_claim("groups", &json!(many));
        assert_eq!(g.names, many[..MAX_OIDC_GROUPS]);
        assert!(g.warning.unwrap().contains("44 more left out"));
        // Repeats do not use up the cap.
        let mut repeated = vec!["same".to_owned(); 500];
        repeated.push("last".into());
        assert_eq!(names(json!(repeated)), ["same", "last"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the provider sends, the groups are usable, distinct and capped.
        #[test]
        fn any_claim_gives_usable_groups(v in any_json()) {
            let g = from_claim("groups", &v);
            prop_assert!(g.names.len() <= MAX_OIDC_GROUPS);
            for (i, n) in g.names.iter().enumerate() {
                prop_assert!(is_usable_group_name(n));
                prop_assert!(!g.names[..i].contains(n));
            }
        }
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,8}|\\p{Cc}{1,3}|[a-z]{300}".prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 400, 300, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..300).prop_map(Value::from),
                proptest::collection::vec("[a-c]{0,3}", 0..300).prop_map(Value::from),
                proptest::collection::btree_map("[a-z]{1,3}", inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
