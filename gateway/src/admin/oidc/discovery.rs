//! What the provider publishes and answers, read without I/O: the discovery document (OpenID
//! Connect Discovery §3, checked as §4.3 says), the token endpoint's answer (RFC 6749 §5) and
//! the userinfo answer.

use psmgate_policy::oidc::endpoint_url_problem;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The discovery document's address for `issuer`.
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Why something the provider sent was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Not the expected JSON.
    #[error("the provider's {what} is not valid JSON of the expected form: {detail}")]
    Form {
        /// What was read.
        what: &'static str,
        /// The parser's words.
        detail: String,
    },
    /// The discovery document names another issuer.
    #[error("the provider's discovery document names issuer {found:?}, not the configured {configured:?}")]
    Issuer {
        /// As published.
        found: String,
        /// As configured.
        configured: String,
    },
    /// An endpoint is not a URL the gateway will call.
    #[error("the provider's {field}: {problem}")]
    Endpoint {
        /// The document's member.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The provider does not do PKCE with S256.
    #[error("the provider does not support PKCE with S256 (code_challenge_methods_supported)")]
    NoPkce,
    /// The token endpoint answered without an ID token.
    #[error("the provider's token answer holds no id_token (is \"openid\" among the scopes?)")]
    NoIdToken,
    /// The userinfo answer is about someone else.
    #[error("the provider's userinfo answer is about another subject than the ID token")]
    OtherSubject,
}

fn form(what: &'static str) -> impl FnOnce(serde_json::Error) -> DocumentError {
    move |e| DocumentError::Form {
        what,
        detail: e.to_string(),
    }
}

/// The members of a discovery document the gateway uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Discovery {
    /// The issuer identifier.
    pub issuer: String,
    /// Where the browser is sent to sign in.
    pub authorization_endpoint: String,
    /// Where the code is exchanged.
    pub token_endpoint: String,
    /// The provider's public keys.
    pub jwks_uri: String,
    /// Claims about the signed-in person.
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    /// How clients authenticate to the token endpoint.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    /// PKCE methods.
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

/// Reads a discovery document and checks it for `configured_issuer`: the same issuer exactly,
/// endpoints the gateway may call (HTTPS, or HTTP on a loopback address), PKCE S256 when the
/// provider lists its methods.
pub fn parse_discovery(json: &[u8], configured_issuer: &str) -> Result<Discovery, DocumentError> {
    let d: Discovery = serde_json::from_slice(json).map_err(form("discovery document"))?;
    if d.issuer != configured_issuer {
        return Err(DocumentError::Issuer {
            found: d.issuer.chars().take(200).collect(),
            configured: configured_issuer.to_owned(),
        });
    }
    let mut endpoints = vec![
        ("authorization_endpoint", d.authorization_endpoint.as_str()),
        ("token_endpoint", d.token_endpoint.as_str()),
        ("jwks_uri", d.jwks_uri.as_str()),
    ];
    if let Some(u) = &d.userinfo_endpoint {
        endpoints.push(("userinfo_endpoint", u));
    }
    for (field, url) in endpoints {
        if let Some(problem) = endpoint_url_problem(url) {
            return Err(DocumentError::Endpoint {
                field,
                problem: problem.chars().take(300).collect(),
            });
        }
    }
    if d.code_challenge_methods_supported
        .as_ref()
        .is_some_and(|m| !m.iter().any(|x| x == "S256"))
    {
        return Err(DocumentError::NoPkce);
    }
    Ok(d)
}

/// The token endpoint's answer.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct TokenResponse {
    /// The ID token.
    pub id_token: String,
    /// An access token for the userinfo endpoint.
    #[serde(default)]
    pub access_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenResponse(<redacted>)")
    }
}

/// Reads a successful token answer.
pub fn parse_token_response(json: &[u8]) -> Result<TokenResponse, DocumentError> {
    let v: Map<String, Value> = serde_json::from_slice(json).map_err(form("token answer"))?;
    if !v.get("id_token").is_some_and(Value::is_string) {
        return Err(DocumentError::NoIdToken);
    }
    serde_json::from_value(Value::Object(v)).map_err(form("token answer"))
}

/// An OAuth error answer (`{"error": …, "error_description": …}`) as short printable text, or
/// `None` when the body is not one.
pub fn oauth_error(json: &[u8]) -> Option<String> {
    let v: Map<String, Value> = serde_json::from_slice(json).ok()?;
    let error = v.get("error")?.as_str()?;
    let text = match v.get("error_description").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => format!("{error}: {d}"),
        _ => error.to_owned(),
    };
    Some(printable(&text, 300))
}

/// At most `max` characters of `s`, control characters replaced: provider text for messages.
pub fn printable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Reads a userinfo answer and checks it is about `sub` (OpenID Connect Core §5.3.2).
pub fn parse_userinfo(json: &[u8], sub: &str) -> Result<Map<String, Value>, DocumentError> {
    let v: Map<String, Value> = serde_json::from_slice(json).map_err(form("userinfo answer"))?;
    if v.get("sub").and_then(Value::as_str) != Some(sub) {
        return Err(DocumentError::OtherSubject);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://idp.example.com/realms/main";

    fn doc() -> Value {
        json!({
            "issuer": ISS,
            "authorization_endpoint": format!("{ISS}/auth"),
            "token_endpoint": format!("{ISS}/token"),
            "jwks_uri": format!("{ISS}/jwks"),
            "userinfo_endpoint": format!("{ISS}/me"),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "response_types_supported": ["code"],
        })
    }

    fn parse(v: &Value) -> Result<Discovery, DocumentError> {
        parse_discovery(v.to_string().as_bytes(), ISS)
    }

    #[test]
    fn discovery() {
        assert_eq!(
            discovery_url("https://idp/x/"),
            "https://idp/x/.well-known/openid-configuration"
        );
        let d = parse(&doc()).unwrap();
        assert_eq!(d.token_endpoint, format!("{ISS}/token"));
        assert_eq!(
            d.token_endpoint_auth_methods_supported.as_deref(),
            Some(&["client_secret_post".to_owned()][..])
        );
        let mut v = doc();
        v["issuer"] = json!(format!("{ISS}/"));
        assert!(matches!(parse(&v), Err(DocumentError::Issuer { .. })));
        let mut v = doc();
        v["token_endpoint"] = json!("http://idp.example.com/token");
        assert!(matches!(
            parse(&v),
            Err(DocumentError::Endpoint {
                field: "token_endpoint",
                ..
            })
        ));
        let mut v = doc();
        v["userinfo_endpoint"] = json!("javascript:alert(1)");
        assert!(matches!(
            parse(&v),
            Err(DocumentError::Endpoint {
                field: "userinfo_endpoint",
                ..
            })
        ));
        let mut v = doc();
        v["code_challenge_methods_supported"] = json!(["plain"]);
        assert_eq!(parse(&v), Err(DocumentError::NoPkce));
        let mut v = doc();
        v.as_object_mut().unwrap().remove("jwks_uri");
        assert!(matches!(parse(&v), Err(DocumentError::Form { .. })));
        assert!(parse_discovery(b"<html>", ISS).is_err());
    }

    #[test]
    fn token_answers() {
        let t = parse_token_response(
            br#"{"id_token":"a.b.c","access_token":"at","token_type":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!(t.id_token, "a.b.c");
        assert_eq!(t.access_token.as_deref(), Some("at"));
        assert!(!format!("{t:?}").contains("a.b.c"));
        assert_eq!(
            parse_token_response(br#"{"access_token":"at"}"#),
            Err(DocumentError::NoIdToken)
        );
        assert_eq!(
            oauth_error(
                br#"{"error":"invalid_grant","error_description":"grant\nrequest is invalid"}"#
            )
            .as_deref(),
            Some("invalid_grant: grant request is invalid")
        );
        assert_eq!(oauth_error(b"oops"), None);
    }

    #[test]
    fn userinfo() {
        let v = parse_userinfo(br#"{"sub":"1","preferred_username":"alice"}"#, "1").unwrap();
        assert_eq!(v["preferred_username"], "alice");
        assert_eq!(
            parse_userinfo(br#"{"sub":"2"}"#, "1"),
            Err(DocumentError::OtherSubject)
        );
        assert!(parse_userinfo(b"[]", "1").is_err());
    }
}
