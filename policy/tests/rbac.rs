//! Roles, permissions, target groups, just-in-time rule terms, time windows and passwords.

use proptest::prelude::*;
use psmgate_policy::password::{check_password_hash, hash_password, verify_password};
use psmgate_policy::rbac::{split_role_entry, BUILTIN_ROLES};
use psmgate_policy::*;
use std::collections::BTreeSet;
use std::path::Path;
use time::macros::datetime;
use time::OffsetDateTime;

fn load(text: &str) -> Config {
    Config::from_toml_str(text, "psmgate.toml").unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

/// Every diagnostic of an invalid configuration, as displayed.
fn errors(text: &str) -> Vec<String> {
    match Config::from_toml_str(text, "psmgate.toml") {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

fn one_error(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().unwrap_or_default()
}

const TARGETS: &str = r#"
[targets.db1]
protocol = "rdp"
address = "10.0.0.1:3389"

[targets.db2]
protocol = "vnc"
address = "10.0.0.2:5900"

[targets.lab]
protocol = "vnc"
address = "10.0.1.1:5900"

[target_groups]
prod = ["db1", "db2"]
"#;

const ALL_TARGETS: [&str; 3] = ["db1", "db2", "lab"];

fn with_users(users: &str) -> Config {
    load(&format!("{TARGETS}\n{users}"))
}

fn perms(list: &[Permission]) -> Vec<Permission> {
    list.to_vec()
}

#[test]
fn permission_names_and_scopes() {
    use Permission::*;
    let names: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "connect",
            "request_access",
            "approve",
            "watch_live",
            "terminate",
            "view_recordings",
            "export_recordings",
            "legal_hold",
            "delete_recordings",
            "view_audit",
            "manage",
        ]
    );
    let global: Vec<Permission> = Permission::ALL
        .into_iter()
        .filter(|p| !p.is_target_scoped())
        .collect();
    assert_eq!(global, [ViewAudit, Manage]);
    // The configuration reads the same names (a custom role listing every one of them).
    let list: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    let c = load(&format!(
        "[roles.everything]\npermissions = [{}]\n",
        list.join(", ")
    ));
    assert_eq!(
        c.role_permissions("everything"),
        Some(Permission::ALL.to_vec())
    );
}

#[test]
fn built_in_role_table() {
    use Permission::*;
    let c = Config::default();
    assert_eq!(c.role_permissions("admin"), Some(Permission::ALL.to_vec()));
    assert_eq!(
        c.role_permissions("approver"),
        Some(perms(&[Approve, WatchLive, Terminate, ViewRecordings]))
    );
    assert_eq!(
        c.role_permissions("reviewer"),
        Some(perms(&[WatchLive, ViewRecordings, ExportRecordings]))
    );
    assert_eq!(
        c.role_permissions("auditor"),
        Some(perms(&[ViewRecordings, ExportRecordings, ViewAudit]))
    );
    assert_eq!(
        c.role_permissions("user"),
        Some(perms(&[Connect, RequestAccess]))
    );
    assert_eq!(c.role_permissions("operator"), None);
    assert_eq!(c.role_permissions("approver@prod"), None);
    assert_eq!(
        c.roles(),
        ["admin", "approver", "reviewer", "auditor", "user"]
    );
    assert_eq!(BUILTIN_ROLES.len(), c.roles().len());
}

#[test]
fn custom_roles_grant_their_permissions() {
    let c = load(&format!(
        "{TARGETS}\n[roles.observer]\npermissions = [\"watch_live\", \"view_audit\"]\n\n[roles.cleaner]\npermissions = [\"delete_recordings\", \"legal_hold\"]\n\n[users.olga]\nroles = [\"observer\"]\n"
    ));
    assert_eq!(
        c.roles(),
        ["admin", "approver", "reviewer", "auditor", "user", "cleaner", "observer"]
    );
    // Listed in `Permission::ALL` order, whatever the order written.
    assert_eq!(
        c.role_permissions("cleaner"),
        Some(vec![Permission::LegalHold, Permission::DeleteRecordings])
    );
    assert!(c.permits("olga", Permission::WatchLive, Some("lab")));
    assert!(c.permits("olga", Permission::ViewAudit, None));
    assert!(!c.permits("olga", Permission::Terminate, Some("lab")));
    assert!(!c.permits("olga", Permission::Manage, None));
    assert!(c.canonical_toml().contains("[roles.observer]"));
}

#[test]
fn custom_role_errors_name_the_path() {
    assert_eq!(
        one_error("[roles.admin]\npermissions = [\"connect\"]\n"),
        "psmgate.toml:1:1: roles.admin: \"admin\" is a built-in role and cannot be redefined; give the custom role another name"
    );
    assert_eq!(
        errors("[roles.ops]\npermissions = [\"connect\", \"fly\", \"connect\", \"Manage\"]\n"),
        [
            "psmgate.toml:2:27: roles.ops.permissions[1]: unknown permission \"fly\" (expected one of connect, request_access, approve, watch_live, terminate, view_recordings, export_recordings, legal_hold, delete_recordings, view_audit, manage)",
            "psmgate.toml:2:34: roles.ops.permissions[2]: permission \"connect\" is listed twice",
            "psmgate.toml:2:45: roles.ops.permissions[3]: unknown permission \"Manage\" (expected one of connect, request_access, approve, watch_live, terminate, view_recordings, export_recordings, legal_hold, delete_recordings, view_audit, manage)",
        ]
    );
    assert_eq!(
        one_error("[roles.\"bad name\"]\npermissions = []\n"),
        "psmgate.toml:1:1: roles.\"bad name\": role name \"bad name\" must be 1..=64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit"
    );
    let e = one_error("[roles.ops]\npermission = [\"connect\"]\n");
    assert!(
        e.contains("roles.ops.permission: unknown field `permission`"),
        "{e}"
    );
}

#[test]
fn scoped_roles_grant_only_on_their_group() {
    let c = with_users(
        "[users.pat]\nroles = [\"approver@prod\", \"reviewer\"]\n\n[users.root]\nroles = [\"admin@prod\", \"auditor@prod\"]\n\n[users.aud]\nroles = [\"auditor\"]\n",
    );
    // Scoped approver: approve on prod targets only; unscoped reviewer: everywhere.
    assert!(c.permits("pat", Permission::Approve, Some("db1")));
    assert!(c.permits("pat", Permission::Approve, Some("db2")));
    assert!(!c.permits("pat", Permission::Approve, Some("lab")));
    assert!(c.permits("pat", Permission::WatchLive, Some("lab")));
    assert!(c.permits("pat", Permission::Terminate, Some("db1")));
    assert!(!c.permits("pat", Permission::Terminate, Some("lab")));
    assert_eq!(
        c.permitted_targets("pat", Permission::Approve),
        ["db1", "db2"]
    );
    assert_eq!(
        c.permitted_targets("pat", Permission::ViewRecordings),
        ALL_TARGETS
    );
    // "On at least one target".
    assert!(c.permits("pat", Permission::Approve, None));
    assert!(!c.permits("pat", Permission::Connect, None));
    // Scoped roles never grant their global permissions.
    assert!(!c.permits("root", Permission::Manage, None));
    assert!(!c.permits("root", Permission::ViewAudit, None));
    assert!(c.permits("root", Permission::DeleteRecordings, Some("db2")));
    assert!(!c.permits("root", Permission::DeleteRecordings, Some("lab")));
    assert!(c.permitted_targets("root", Permission::Manage).is_empty());
    // Unscoped global permissions hold whatever the target argument says.
    assert!(c.permits("aud", Permission::ViewAudit, None));
    assert!(c.permits("aud", Permission::ViewAudit, Some("lab")));
    assert_eq!(
        c.permitted_targets("aud", Permission::ViewAudit),
        ALL_TARGETS
    );
    // Unknown users and targets.
    assert!(!c.permits("nobody", Permission::WatchLive, Some("lab")));
    assert!(!c.permits("pat", Permission::WatchLive, Some("nowhere")));
    assert!(c
        .permitted_targets("nobody", Permission::WatchLive)
        .is_empty());
}

#[test]
fn labels_grant_no_permission_but_still_match_rules() {
    let c = with_users(
        "[users.op]\nroles = [\"operator\"]\n\n[[rules]]\nid = \"ops\"\nroles = [\"operator\"]\ntargets = [\"lab\"]\n",
    );
    for p in Permission::ALL {
        assert!(!c.permits("op", p, None), "{p}");
        assert!(c.permitted_targets("op", p).is_empty(), "{p}");
    }
    assert_eq!(c.is_allowed("op", "lab").rule_id.as_deref(), Some("ops"));
    assert!(!c.is_allowed("op", "db1").allowed);
}

#[test]
fn scoped_roles_match_rules_only_inside_their_group() {
    let c = with_users(
        "[users.erin]\nroles = [\"user@prod\"]\n\n[users.frank]\nroles = [\"user\"]\n\n[[rules]]\nid = \"users\"\nroles = [\"user\"]\ntargets = \"*\"\n",
    );
    assert_eq!(
        c.is_allowed("erin", "db1").rule_id.as_deref(),
        Some("users")
    );
    assert!(c.is_allowed("erin", "db2").allowed);
    assert!(!c.is_allowed("erin", "lab").allowed);
    for t in ALL_TARGETS {
        assert!(c.is_allowed("frank", t).allowed, "{t}");
    }
}

#[test]
fn scoped_roles_match_web_rules_only_inside_their_group() {
    let c = load(
        r#"
[targets.console-a]
protocol = "web"
address = "https://a.example.com"

[targets.console-b]
protocol = "web"
address = "https://b.example.com"

[target_groups]
cloud = ["console-a"]

[users.ops]
roles = ["operator@cloud"]

[[web_rules]]
id = "no-billing"
roles = ["operator"]
domains = ["billing.example.com"]
action = "deny"

[[web_rules]]
id = "tunnel-all"
domains = ["*"]
action = "tunnel"
"#,
    );
    assert_eq!(
        c.web_decision("ops", "console-a", "billing.example.com")
            .rule_id,
        "no-billing"
    );
    assert_eq!(
        c.web_decision("ops", "console-b", "billing.example.com")
            .rule_id,
        "tunnel-all"
    );
}

#[test]
fn rules_name_roles_without_their_group() {
    let e = one_error(&format!(
        "{TARGETS}\n[users.pat]\nroles = [\"approver@prod\"]\n\n[[rules]]\nid = \"r\"\nroles = [\"approver@prod\"]\ntargets = \"*\"\n"
    ));
    assert!(
        e.ends_with("rules[0].roles[0]: no user has role \"approver@prod\": rules match role names, so write \"approver\" (a user's \"approver@prod\" matches it on the targets of \"prod\")"),
        "{e}"
    );
}

#[test]
fn groups_in_rule_targets() {
    let c = with_users(
        "[users.gina]\n\n[[rules]]\nid = \"prod-and-lab\"\nusers = [\"gina\"]\ntargets = [\"@prod\", \"lab\"]\n\n[users.hal]\n\n[[rules]]\nid = \"prod-only\"\nusers = [\"hal\"]\ntargets = [\"@prod\"]\n",
    );
    for t in ALL_TARGETS {
        assert_eq!(
            c.is_allowed("gina", t).rule_id.as_deref(),
            Some("prod-and-lab"),
            "{t}"
        );
    }
    assert!(c.is_allowed("hal", "db1").allowed);
    assert!(c.is_allowed("hal", "db2").allowed);
    assert!(!c.is_allowed("hal", "lab").allowed);
    let rule = &c.rules[1];
    assert!(c.rule_covers(rule, "db2"));
    assert!(!c.rule_covers(rule, "lab"));
    // Without the groups, a group reference covers nothing.
    assert!(!rule.targets.matches("db2"));
    // Group references survive the canonical form.
    let again = load(&c.canonical_toml());
    assert_eq!(again.policy_version(), c.policy_version());
    assert!(c.canonical_toml().contains("targets = [\"@prod\"]"));
}

#[test]
fn group_errors_name_the_path() {
    let text = "[targets.a]\nprotocol = \"vnc\"\naddress = \"10.0.0.1:5900\"\n\n[target_groups]\nempty = []\nmixed = [\"a\", \"nope\", \"@empty\", \"a\"]\n\"9lives\" = [\"a\"]\n\n[users.u]\nroles = [\"approver@ghost\", \"bad role@mixed\"]\n\n[[rules]]\nid = \"r\"\nusers = [\"u\"]\ntargets = [\"@ghost\", \"@mixed\"]\n\n[[web_rules]]\nid = \"w\"\ntargets = [\"@mixed\"]\ndomains = [\"*\"]\naction = \"deny\"\n";
    assert_eq!(
        errors(text),
        [
            "psmgate.toml:11:10: users.u.roles[0]: \"approver@ghost\": unknown target group \"ghost\" (define it under [target_groups])",
            "psmgate.toml:11:28: users.u.roles[1]: role name \"bad role\" must be 1..=64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit",
            "psmgate.toml:8:12: target_groups.9lives: target group name \"9lives\" must be 1..=64 characters of A-Z a-z 0-9 _ - starting with a letter",
            "psmgate.toml:6:9: target_groups.empty: lists no target; a group needs at least one",
            "psmgate.toml:7:15: target_groups.mixed[1]: unknown target \"nope\"",
            "psmgate.toml:7:23: target_groups.mixed[2]: \"@empty\": a group lists target names, not other groups",
            "psmgate.toml:7:33: target_groups.mixed[3]: target \"a\" is already listed at [0]",
            "psmgate.toml:16:12: rules[0].targets[0]: unknown target group \"ghost\" (define it under [target_groups])",
            "psmgate.toml:20:12: web_rules[0].targets[0]: \"@mixed\": web rules list web target names; target groups are for [[rules]]",
        ]
    );
}

#[test]
fn approval_needs_someone_else_with_approve_on_the_target() {
    let c = with_users(
        "[users.pat]\nroles = [\"approver@prod\"]\n\n[users.ann]\nroles = [\"admin\"]\n\n[users.erin]\nroles = [\"user\"]\n",
    );
    assert!(c.can_approve("pat", "erin", "db1"));
    assert!(!c.can_approve("pat", "erin", "lab"));
    assert!(c.can_approve("ann", "erin", "lab"));
    assert!(c.can_approve("ann", "pat", "db1"));
    // Never one's own request, even as admin.
    assert!(!c.can_approve("ann", "ann", "lab"));
    assert!(!c.can_approve("pat", "pat", "db1"));
    // Nobody without approve; nothing for unknown users or targets.
    assert!(!c.can_approve("erin", "pat", "db1"));
    assert!(!c.can_approve("ann", "ghost", "db1"));
    assert!(!c.can_approve("ghost", "erin", "db1"));
    assert!(!c.can_approve("ann", "erin", "nowhere"));
}

const JIT: &str = r#"
[users.erin]
roles = ["user"]

[[rules]]
id = "office"
users = ["erin"]
targets = ["db1"]
approval = "required"
max_duration = "2h"
max_session = "45m"
idle_timeout = "10m"
end_at_grant_expiry = false
hours = ["mon-fri 08:00-18:00", "sat 10:00-12:00"]

[[rules]]
id = "night"
users = ["erin"]
targets = ["db1", "db2"]
hours = ["fri 22:00-06:00"]
"#;

fn rule_at(c: &Config, user: &str, target: &str, at: OffsetDateTime) -> Option<String> {
    let p = c.access_policy(user, target, at).map(|p| p.rule_id);
    assert_eq!(c.is_allowed_at(user, target, at).rule_id, p, "{at}");
    p
}

#[test]
fn access_policy_carries_the_rule_terms() {
    let c = with_users(JIT);
    // 2026-11-20 is a Friday.
    let p = c
        .access_policy("erin", "db1", datetime!(2026-11-20 09:00 UTC))
        .unwrap();
    assert_eq!(
        p,
        AccessPolicy {
            rule_id: "office".into(),
            approval: Approval::Required,
            max_duration: std::time::Duration::from_secs(2 * 3600),
            max_session: Some(std::time::Duration::from_secs(45 * 60)),
            idle_timeout: Some(std::time::Duration::from_secs(600)),
            end_at_grant_expiry: false,
        }
    );
    // Defaults: approval auto, grants up to 8h, no session or idle limit.
    let p = c
        .access_policy("erin", "db2", datetime!(2026-11-20 23:00 UTC))
        .unwrap();
    assert_eq!(
        p,
        AccessPolicy {
            rule_id: "night".into(),
            approval: Approval::Auto,
            max_duration: std::time::Duration::from_secs(8 * 3600),
            max_session: None,
            idle_timeout: None,
            end_at_grant_expiry: true,
        }
    );
    assert_eq!(c.rules[1].approval, Approval::Auto);
    assert_eq!(c.rules[1].max_duration, DEFAULT_MAX_DURATION);
    assert!(c
        .access_policy("nobody", "db1", datetime!(2026-11-20 09:00 UTC))
        .is_none());
    assert!(c
        .access_policy("erin", "nowhere", datetime!(2026-11-20 09:00 UTC))
        .is_none());
}

#[test]
fn hours_windows_weekdays_and_midnight() {
    let c = with_users(JIT);
    for (at, want) in [
        // Friday office hours, both edges.
        (datetime!(2026-11-20 08:00 UTC), Some("office")),
        (datetime!(2026-11-20 17:59:59 UTC), Some("office")),
        (datetime!(2026-11-20 07:59 UTC), None),
        (datetime!(2026-11-20 18:00 UTC), None),
        // Monday and Wednesday are in mon-fri.
        (datetime!(2026-11-16 12:00 UTC), Some("office")),
        (datetime!(2026-11-18 12:00 UTC), Some("office")),
        // Saturday has its own window; Sunday none.
        (datetime!(2026-11-21 11:00 UTC), Some("office")),
        (datetime!(2026-11-21 12:00 UTC), None),
        (datetime!(2026-11-22 11:00 UTC), None),
        // Friday night into Saturday morning (the window starts on Friday).
        (datetime!(2026-11-20 22:00 UTC), Some("night")),
        (datetime!(2026-11-20 23:59 UTC), Some("night")),
        (datetime!(2026-11-21 00:00 UTC), Some("night")),
        (datetime!(2026-11-21 05:59 UTC), Some("night")),
        (datetime!(2026-11-21 06:00 UTC), None),
        // Thursday night is not in it, nor is Friday early morning (that would be Thursday's).
        (datetime!(2026-11-19 23:00 UTC), None),
        (datetime!(2026-11-20 05:00 UTC), None),
    ] {
        assert_eq!(rule_at(&c, "erin", "db1", at).as_deref(), want, "{at}");
    }
}

#[test]
fn hours_follow_the_gateway_offset() {
    let c = with_users(&format!("{JIT}\n[gateway]\ntimezone_offset = \"+02:00\"\n"));
    assert_eq!(c.gateway.timezone_offset.whole_seconds(), 7200);
    // 06:30 UTC is 08:30 at +02:00.
    assert_eq!(
        rule_at(&c, "erin", "db1", datetime!(2026-11-20 06:30 UTC)).as_deref(),
        Some("office")
    );
    // 16:30 UTC is 18:30 at +02:00.
    assert_eq!(
        rule_at(&c, "erin", "db1", datetime!(2026-11-20 16:30 UTC)),
        None
    );
    // Friday 21:00 UTC is 23:00 Friday at +02:00; the instant's own offset does not matter.
    assert_eq!(
        rule_at(&c, "erin", "db2", datetime!(2026-11-20 21:00 UTC)).as_deref(),
        Some("night")
    );
    assert_eq!(
        rule_at(&c, "erin", "db2", datetime!(2026-11-21 06:00 +09:00)).as_deref(),
        Some("night")
    );
    // Saturday 04:30 UTC is 06:30 local: over.
    assert_eq!(
        rule_at(&c, "erin", "db2", datetime!(2026-11-21 04:30 UTC)),
        None
    );
    let west = with_users(&format!("{JIT}\n[gateway]\ntimezone_offset = \"-05:30\"\n"));
    // Saturday 02:00 UTC is Friday 20:30 at -05:30: still office hours? No (18:00), and not yet
    // night (22:00).
    assert_eq!(
        rule_at(&west, "erin", "db2", datetime!(2026-11-21 02:00 UTC)),
        None
    );
    // Saturday 04:00 UTC is Friday 22:30 at -05:30.
    assert_eq!(
        rule_at(&west, "erin", "db2", datetime!(2026-11-21 04:00 UTC)).as_deref(),
        Some("night")
    );
    assert!(west
        .canonical_toml()
        .contains("timezone_offset = \"-05:30\""));
    // The extreme ends of the calendar do not panic.
    for at in [OffsetDateTime::UNIX_EPOCH, datetime!(-9999-01-01 00:00 UTC)] {
        let _ = west.access_policy("erin", "db1", at);
    }
}

#[test]
fn rule_hours_contain_reads_the_instant_as_given() {
    let c = with_users(JIT);
    let office = &c.rules[0];
    assert!(office.hours_contain(datetime!(2026-11-20 09:00 +05:00)));
    assert!(!office.hours_contain(datetime!(2026-11-20 19:00 +05:00)));
    let always = Rule::new("a", vec!["erin".into()], vec![], TargetSelector::All);
    assert!(always.hours_contain(datetime!(2026-11-22 03:00 UTC)));
}

#[test]
fn is_allowed_uses_the_current_time() {
    let c = with_users(
        "[users.erin]\n\n[[rules]]\nid = \"mondays\"\nusers = [\"erin\"]\ntargets = \"*\"\nhours = [\"mon 00:00-24:00\"]\n\n[[rules]]\nid = \"all-day\"\nusers = [\"erin\"]\ntargets = [\"lab\"]\nhours = [\"00:00-24:00\"]\n",
    );
    let before = OffsetDateTime::now_utc().weekday();
    let d = c.is_allowed("erin", "db1");
    let after = OffsetDateTime::now_utc().weekday();
    if before == after {
        assert_eq!(d.allowed, before == time::Weekday::Monday);
    }
    assert!(c.is_allowed("erin", "lab").allowed);
}

#[test]
fn jit_terms_errors_name_the_path() {
    let text = format!(
        "{TARGETS}\n[users.u]\n\n[gateway]\ntimezone_offset = \"CET\"\n\n[[rules]]\nid = \"r\"\nusers = [\"u\"]\ntargets = [\"db1\"]\nmax_duration = \"30s\"\nmax_session = \"59s\"\nidle_timeout = \"5s\"\nhours = [\"mon-fri 08:00-18:00\", \"mon-fry 08:00-18:00\", 7, \"sat 10:00-10:00\"]\n\n[[rules]]\nid = \"s\"\nusers = [\"u\"]\ntargets = [\"db1\"]\nmax_duration = 8\nhours = []\n\n[[rules]]\nid = \"t\"\nusers = [\"u\"]\ntargets = [\"db1\"]\nhours = \"22:00-06:00\"\n"
    );
    assert_eq!(
        errors(&text),
        [
            "psmgate.toml:20:19: gateway.timezone_offset: \"CET\" is not a UTC offset written +HH:MM or -HH:MM, such as \"+00:00\", \"+02:00\" or \"-05:30\"",
            "psmgate.toml:29:33: rules[0].hours[1]: \"mon-fry 08:00-18:00\": unknown day \"fry\" (expected mon, tue, wed, thu, fri, sat or sun)",
            "psmgate.toml:29:56: rules[0].hours[2]: expected a time window such as \"mon-fri 08:00-18:00\", found an integer",
            "psmgate.toml:29:59: rules[0].hours[3]: \"sat 10:00-10:00\": starts and ends at the same time; write 00:00-24:00 for the whole day",
            "psmgate.toml:35:16: rules[1].max_duration: expected a duration string such as \"10s\" or \"5m\", found an integer",
            "psmgate.toml:36:9: rules[1].hours: lists no time window; leave hours out for a rule that always applies",
            "psmgate.toml:42:9: rules[2].hours: \"22:00-06:00\": write a list such as [\"22:00-06:00\"]",
            "psmgate.toml:26:16: rules[0].max_duration: \"30s\" is shorter than 1m",
            "psmgate.toml:27:15: rules[0].max_session: \"59s\" is shorter than 1m",
            "psmgate.toml:28:16: rules[0].idle_timeout: \"5s\" is shorter than 10s",
        ]
    );
    let e = one_error(&format!(
        "{TARGETS}\n[users.u]\n\n[[rules]]\nid = \"r\"\nusers = [\"u\"]\ntargets = \"*\"\napproval = \"maybe\"\n"
    ));
    assert!(
        e.contains("rules[0].approval: unknown variant `maybe`, expected `auto` or `required`"),
        "{e}"
    );
}

#[test]
fn everything_survives_the_canonical_form() {
    let c = with_users(&format!(
        "{JIT}\n[gateway]\ntimezone_offset = \"-05:30\"\n\n[roles.ops]\npermissions = [\"terminate\", \"watch_live\"]\n\n[users.pat]\nroles = [\"approver@prod\", \"ops\"]\n"
    ));
    let canonical = c.canonical_toml();
    let again = load(&canonical);
    assert_eq!(again.policy_version(), c.policy_version(), "{canonical}");
    assert_eq!(again.rules, c.rules);
    assert_eq!(again.target_groups, c.target_groups);
    assert_eq!(again.custom_roles, c.custom_roles);
    for needle in [
        "hours = [\"mon-fri 08:00-18:00\", \"sat 10:00-12:00\"]",
        "approval = \"required\"",
        "max_duration = \"2h\"",
        "max_session = \"45m\"",
        "approval = \"auto\"",
        "roles = [\"approver@prod\", \"ops\"]",
        "permissions = [\"terminate\", \"watch_live\"]",
    ] {
        assert!(canonical.contains(needle), "{needle}\n{canonical}");
    }
    // The terms are part of the policy version.
    let changed = with_users(&format!(
        "{}\n[gateway]\ntimezone_offset = \"-05:30\"\n\n[roles.ops]\npermissions = [\"terminate\", \"watch_live\"]\n\n[users.pat]\nroles = [\"approver@prod\", \"ops\"]\n",
        JIT.replace("max_duration = \"2h\"", "max_duration = \"3h\"")
    ));
    assert_ne!(changed.policy_version(), c.policy_version());
}

#[test]
fn sample_shows_scoped_approvers_and_jit_rules() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/psmgate.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let lab = c.target_groups.get("lab").cloned().unwrap_or_default();
    assert!(!lab.is_empty());
    let approvers: Vec<&String> = c
        .users
        .iter()
        .filter(|(_, u)| {
            u.roles
                .iter()
                .any(|r| split_role_entry(r) == ("approver", Some("lab")))
        })
        .map(|(n, _)| n)
        .collect();
    assert!(!approvers.is_empty());
    let jit = c
        .rules
        .iter()
        .find(|r| r.approval == Approval::Required)
        .expect("a rule with approval = \"required\"");
    let requester = c
        .users
        .iter()
        .find(|(_, u)| {
            u.roles
                .iter()
                .any(|r| split_role_entry(r) == ("user", Some("lab")))
        })
        .map(|(n, _)| n.as_str())
        .expect("a user who may request access to the lab only");
    for t in c.targets.keys() {
        assert_eq!(
            c.permits(requester, Permission::RequestAccess, Some(t)),
            lab.contains(t),
            "{t}"
        );
    }
    for t in &lab {
        for a in &approvers {
            assert!(c.can_approve(a, requester, t), "{a} {requester} {t}");
            assert!(!c.can_approve(a, a, t));
        }
    }
    for t in c.targets.keys().filter(|t| !lab.contains(t)) {
        for a in &approvers {
            assert!(!c.permits(a, Permission::Approve, Some(t)), "{a} {t}");
        }
    }
    // The rule applies at some time of the week and its terms come through.
    let week_start = datetime!(2026-11-16 00:00 UTC);
    let hits: Vec<AccessPolicy> = (0..7 * 24)
        .filter_map(|h| c.access_policy(requester, &lab[0], week_start + time::Duration::hours(h)))
        .filter(|p| p.rule_id == jit.id)
        .collect();
    assert!(!hits.is_empty());
    assert!(hits
        .iter()
        .all(|p| p.approval == Approval::Required && p.max_duration == jit.max_duration.get()));
}

#[test]
fn passwords_hash_and_verify() {
    let h = hash_password("correct horse battery staple").unwrap();
    assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
    assert!(is_phc_string(&h));
    assert_eq!(check_password_hash(&h), Ok(()));
    assert!(verify_password(&h, "correct horse battery staple"));
    assert!(!verify_password(&h, "correct horse battery stapler"));
    assert!(!verify_password(&h, ""));
    // A fresh salt every time.
    let h2 = hash_password("correct horse battery staple").unwrap();
    assert_ne!(h, h2);
    assert!(verify_password(&h2, "correct horse battery staple"));
    // The empty password and non-ASCII passwords work too.
    let e = hash_password("").unwrap();
    assert!(verify_password(&e, ""));
    assert!(!verify_password(&e, " "));
    let u = hash_password("pässwörd ✓").unwrap();
    assert!(verify_password(&u, "pässwörd ✓"));
    assert!(!verify_password(&u, "passwort ✓"));
    // Test vectors of the reference implementation (version 1.3, t=2, m=64MiB, p=1, password
    // "password", salt "somesalt"): hashes made elsewhere verify, argon2i ones included.
    for known in [
        "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA",
    ] {
        assert_eq!(check_password_hash(known), Ok(()));
        assert!(verify_password(known, "password"), "{known}");
        assert!(!verify_password(known, "Password"), "{known}");
    }
}

#[test]
fn malformed_hashes_never_verify() {
    let good = hash_password("pw").unwrap();
    let truncated = &good[..good.len() - 10];
    let no_hash = good.rsplit_once('$').map(|(a, _)| a).unwrap_or_default();
    for bad in [
        "",
        "pw",
        "$",
        "$argon2id$",
        "$argon2id$v=19$m=19456,t=2,p=1$",
        no_hash,
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        "$argon2id$v=18$m=19456,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=1,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=19456,t=0,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=19456,t=2,p=1,x=3$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=4294967295,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=19456,t=4294967295,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$argon2id$v=19$m=19456,t=2,p=1$c29t!XNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$scrypt$ln=17,r=8,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        truncated,
    ] {
        assert!(!verify_password(bad, "pw"), "{bad}");
        assert!(!verify_password(bad, ""), "{bad}");
        if bad != truncated {
            assert!(check_password_hash(bad).is_err(), "{bad}");
        }
    }
}

#[test]
fn password_hashes_are_checked_when_loading() {
    let real = hash_password("pw").unwrap();
    let c = load(&format!("[users.u]\npassword_hash = \"{real}\"\n"));
    let stored = c.users["u"].password_hash.clone().unwrap_or_default();
    assert!(verify_password(&stored, "pw"));
    for (hash, message) in [
        (
            "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2g",
            "is not a usable PHC string (output size too short, expected at least 10 bytes)",
        ),
        (
            "$scrypt$ln=17,r=8,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNo",
            "is a \"scrypt\" hash; psmgate verifies argon2 hashes only (\"$argon2id$…\")",
        ),
        (
            "$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNo",
            "argon2 cost m=4194304,t=2,p=1 exceeds the bounds accepted (m <= 1048576 KiB, t <= 64, p <= 64)",
        ),
        (
            "$argon2id$v=19$m=19456,t=2,p=1,q=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNo",
            "has invalid argon2 parameters",
        ),
        (
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaGhhc2hoYXNo",
            "is not a usable PHC string (salt too short (minimum 8 bytes))",
        ),
    ] {
        let e = one_error(&format!("[users.u]\npassword_hash = \"{hash}\"\n"));
        assert!(
            e.starts_with("psmgate.toml:2:17: users.u.password_hash: "),
            "{e}"
        );
        assert!(e.contains(message), "{e}");
        // The hash is a credential: never repeated.
        assert!(!e.contains("c29tZXNhbHQ"), "{e}");
    }
}

// Properties.

const PT_TARGETS: [&str; 5] = ["t0", "t1", "t2", "t3", "t4"];
const PT_ROLES: [&str; 8] = [
    "admin", "approver", "reviewer", "auditor", "user", "ops", "label", "ops2",
];

/// A generated configuration: two groups (as target index sets), a custom role `ops` with some
/// permissions, and three users with role entries (role index, optional group index).
#[derive(Debug, Clone)]
struct Plan {
    groups: [BTreeSet<usize>; 2],
    ops: BTreeSet<usize>,
    users: Vec<Vec<(usize, Option<usize>)>>,
}

fn plan() -> impl Strategy<Value = Plan> {
    let group = prop::collection::btree_set(0..PT_TARGETS.len(), 1..=PT_TARGETS.len());
    let entry = (0..PT_ROLES.len(), prop::option::of(0..2usize));
    (
        group.clone(),
        group,
        prop::collection::btree_set(0..Permission::ALL.len(), 0..=Permission::ALL.len()),
        prop::collection::vec(prop::collection::vec(entry, 0..4), 3),
    )
        .prop_map(|(g0, g1, ops, users)| Plan {
            groups: [g0, g1],
            ops,
            users,
        })
}

impl Plan {
    fn toml(&self) -> String {
        let mut s = String::new();
        for (i, t) in PT_TARGETS.iter().enumerate() {
            s.push_str(&format!(
                "[targets.{t}]\nprotocol = \"vnc\"\naddress = \"10.0.0.{i}:5900\"\n\n"
            ));
        }
        s.push_str("[target_groups]\n");
        for (g, members) in self.groups.iter().enumerate() {
            let names: Vec<String> = members
                .iter()
                .map(|&i| format!("{:?}", PT_TARGETS[i]))
                .collect();
            s.push_str(&format!("g{g} = [{}]\n", names.join(", ")));
        }
        let ops: Vec<String> = self
            .ops
            .iter()
            .map(|&i| format!("{:?}", Permission::ALL[i].as_str()))
            .collect();
        s.push_str(&format!(
            "\n[roles.ops]\npermissions = [{}]\n\n[roles.ops2]\npermissions = []\n\n",
            ops.join(", ")
        ));
        for (u, entries) in self.users.iter().enumerate() {
            let roles: Vec<String> = entries
                .iter()
                .map(|&(r, g)| match g {
                    Some(g) => format!("\"{}@g{g}\"", PT_ROLES[r]),
                    None => format!("{:?}", PT_ROLES[r]),
                })
                .collect();
            s.push_str(&format!("[users.u{u}]\nroles = [{}]\n\n", roles.join(", ")));
        }
        // A rule may only name a role some user has.
        if self
            .users
            .iter()
            .flatten()
            .any(|&(r, _)| PT_ROLES[r] == "user")
        {
            s.push_str("[[rules]]\nid = \"users\"\nroles = [\"user\"]\ntargets = \"*\"\n");
        }
        s
    }

    /// Whether role `r` grants `p`, from the documented table.
    fn grants(&self, r: usize, p: Permission) -> bool {
        match PT_ROLES[r] {
            "ops" => self.ops.iter().any(|&i| Permission::ALL[i] == p),
            "ops2" | "label" => false,
            name => BUILTIN_ROLES
                .iter()
                .any(|(n, list)| *n == name && list.contains(&p)),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn permits_never_panics_on_any_input(
        user in "\\PC{0,12}",
        target in "\\PC{0,12}",
        perm in prop::sample::select(Permission::ALL.to_vec()),
        p in plan(),
    ) {
        let c = load(&p.toml());
        for u in [user.as_str(), "u0", "u1", "u2"] {
            for t in [Some(target.as_str()), Some("t0"), None] {
                let _ = c.permits(u, perm, t);
                let _ = c.can_approve(u, &user, target.as_str());
            }
            let _ = c.permitted_targets(u, perm);
        }
        let _ = c.role_permissions(&user);
        let _ = c.is_allowed(&user, &target);
    }

    #[test]
    fn scoped_roles_never_grant_outside_their_group(p in plan()) {
        let c = load(&p.toml());
        for (u, entries) in p.users.iter().enumerate() {
            let name = format!("u{u}");
            let unscoped: Vec<usize> =
                entries.iter().filter(|e| e.1.is_none()).map(|e| e.0).collect();
            for perm in Permission::ALL {
                let targets = c.permitted_targets(&name, perm);
                for (i, t) in PT_TARGETS.iter().enumerate() {
                    let granted = c.permits(&name, perm, Some(t));
                    prop_assert_eq!(granted, targets.iter().any(|x| x == t));
                    // The documented meaning, entry by entry.
                    let expected = entries.iter().any(|&(r, g)| {
                        p.grants(r, perm)
                            && match g {
                                None => true,
                                Some(g) => perm.is_target_scoped() && p.groups[g].contains(&i),
                            }
                    });
                    prop_assert_eq!(granted, expected, "{} {} {}", name, perm, t);
                    // Without an unscoped entry granting it, only group members get it.
                    if granted && !unscoped.iter().any(|&r| p.grants(r, perm)) {
                        prop_assert!(perm.is_target_scoped());
                        let in_group = entries.iter().any(|&(r, g)| {
                            g.is_some_and(|g| p.groups[g].contains(&i)) && p.grants(r, perm)
                        });
                        prop_assert!(in_group);
                    }
                    // Nobody approves their own request.
                    prop_assert!(!c.can_approve(&name, &name, t));
                }
                if perm.is_target_scoped() {
                    prop_assert_eq!(c.permits(&name, perm, None), !targets.is_empty());
                } else {
                    let held = unscoped.iter().any(|&r| p.grants(r, perm));
                    prop_assert_eq!(c.permits(&name, perm, None), held);
                }
                // The `user` rule follows the same scoping.
                for (i, t) in PT_TARGETS.iter().enumerate() {
                    let user_here = entries.iter().any(|&(r, g)| {
                        PT_ROLES[r] == "user" && g.is_none_or(|g| p.groups[g].contains(&i))
                    });
                    prop_assert_eq!(c.is_allowed(&name, t).allowed, user_here);
                }
            }
        }
    }
}
