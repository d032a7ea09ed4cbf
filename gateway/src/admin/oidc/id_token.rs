//! ID token checks (OpenID Connect Core §3.1.3.7): the signature (see [`super::jws`]), then the
//! issuer, audience, authorized party, expiry, issue and not-before times (with a small leeway)
//! and the nonce of the sign-in attempt. No I/O.

use super::jws::{self, JwkSet, JwsError};
use crate::admin::respond::constant_time_eq;
use serde_json::{Map, Value};

/// Clock difference tolerated between the gateway and the provider, in seconds.
pub const LEEWAY_SECS: i64 = 60;

/// What a valid ID token must say.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The provider's issuer identifier (exactly as in its discovery document).
    pub issuer: &'a str,
    /// The gateway's client id.
    pub client_id: &'a str,
    /// The nonce sent with the authorization request.
    pub nonce: &'a str,
    /// Now, in seconds since the Unix epoch.
    pub now: i64,
}

/// Why an ID token was refused. Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    /// The signature or the token's form.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// The payload is not a JSON object.
    #[error("the ID token's claims are not a JSON object")]
    NotObject,
    /// A required claim is missing or of the wrong type.
    #[error("the ID token has no valid {0} claim")]
    Missing(&'static str),
    /// `iss` is not the provider's issuer.
    #[error("the ID token was issued by another issuer")]
    Issuer,
    /// `aud` does not name the gateway, or `azp` names another client.
    #[error("the ID token is not meant for this gateway (aud/azp)")]
    Audience,
    /// `exp` has passed.
    #[error("the ID token has expired")]
    Expired,
    /// `iat` or `nbf` is in the future.
    #[error("the ID token is not valid yet (iat/nbf in the future; are the clocks right?)")]
    NotYetValid,
    /// `nonce` is not the sign-in attempt's.
    #[error("the ID token's nonce is not this sign-in's")]
    Nonce,
}

/// A verified ID token.
#[derive(Debug, Clone, PartialEq)]
pub struct IdToken {
    /// Subject: the provider's identifier of the person.
    pub sub: String,
    /// Every claim.
    pub claims: Map<String, Value>,
}

impl IdToken {
    /// The claim `name` when it is a string.
    pub fn string_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// Verifies `token`'s signature with `keys`, then its claims against `expected`.
pub fn verify(
    token: &str,
    keys: &JwkSet,
    expected: &Expected<'_>,
) -> Result<IdToken, IdTokenError> {
    let jws = jws::parse(token)?;
    let payload = jws.verify(keys)?;
    check_claims(payload, expected)
}

/// A NumericDate claim (seconds since the epoch; fractions are allowed and dropped).
fn seconds(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, IdTokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => match (v.as_i64(), v.as_f64()) {
            (Some(n), _) => Ok(Some(n)),
            (None, Some(f)) if f.is_finite() => Ok(Some(f.floor() as i64)),
            _ => Err(IdTokenError::Missing(name)),
        },
    }
}

/// Checks the claims of a verified token's payload.
pub fn check_claims(payload: &[u8], e: &Expected<'_>) -> Result<IdToken, IdTokenError> {
    let claims: Map<String, Value> =
        serde_json::from_slice(payload).map_err(|_| IdTokenError::NotObject)?;
    let text = |name: &'static str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(IdTokenError::Missing(name))
    };
    if text("iss")? != e.issuer {
        return Err(IdTokenError::Issuer);
    }
    let sub = text("sub")?.to_owned();
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().ok_or(IdTokenError::Missing("aud")))
            .collect::<Result<_, _>>()?,
        _ => return Err(IdTokenError::Missing("aud")),
    };
    if !audiences.contains(&e.client_id) {
        return Err(IdTokenError::Audience);
    }
    match claims.get("azp") {
        Some(Value::String(azp)) if azp != e.client_id => return Err(IdTokenError::Audience),
        Some(Value::String(_)) => {}
        None if audiences.len() == 1 => {}
        // Several audiences: the authorized party must say the token is the gateway's.
        None => return Err(IdTokenError::Missing("azp")),
        Some(_) => return Err(IdTokenError::Missing("azp")),
    }
    let exp = seconds(&claims, "exp")?.ok_or(IdTokenError::Missing("exp"))?;
    if e.now.saturating_sub(LEEWAY_SECS) >= exp {
        return Err(IdTokenError::Expired);
    }
    let iat = seconds(&claims, "iat")?.ok_or(IdTokenError::Missing("iat"))?;
    let late = e.now.saturating_add(LEEWAY_SECS);
    if iat > late || seconds(&claims, "nbf")?.is_some_and(|nbf| nbf > late) {
        return Err(IdTokenError::NotYetValid);
    }
    let nonce = text("nonce")?;
    if !constant_time_eq(nonce.as_bytes(), e.nonce.as_bytes()) {
        return Err(IdTokenError::Nonce);
    }
    Ok(IdToken { sub, claims })
}

#[cfg(test)]
mod tests {
    use super::super::jws::tests::{set, TestKey};
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_750_000_000;
    const ISS: &str = "https://idp.example.com";

    fn expected() -> Expected<'static> {
        Expected {
            issuer: ISS,
            client_id: "psmgate",
            nonce: "n-0S6_WzA2Mj",
            now: NOW,
        }
    }

    fn good() -> Value {
        json!({
            "iss": ISS, "sub": "248289761001", "aud": "psmgate", "nonce": "n-0S6_WzA2Mj",
            "exp": NOW + 300, "iat": NOW - 5, "preferred_username": "alice",
        })
    }

    fn check(claims: &Value) -> Result<IdToken, IdTokenError> {
        check_claims(claims.to_string().as_bytes(), &expected())
    }

    fn with(changes: &[(&str, Value)]) -> Value {
        let mut v = good();
        for (k, x) in changes {
            if x.is_null() {
                v.as_object_mut().unwrap().remove(*k);
            } else {
                v[*k] = x.clone();
            }
        }
        v
    }

    #[test]
    fn a_good_token_gives_its_claims() {
        let t = check(&good()).unwrap();
        assert_eq!(t.sub, "248289761001");
        assert_eq!(t.string_claim("preferred_username"), Some("alice"));
        assert_eq!(t.string_claim("exp"), None);
        // Several audiences with the gateway as authorized party; fractional times.
        let t = check(&with(&[
            ("aud", json!(["other", "psmgate"])),
            ("azp", json!("psmgate")),
            ("exp", json!(NOW as f64 + 10.5)),
        ]));
        assert!(t.is_ok(), "{t:?}");
        // Within the leeway.
        assert!(check(&with(&[("exp", json!(NOW - 30))])).is_ok());
        assert!(check(&with(&[("iat", json!(NOW + 30)), ("nbf", json!(NOW + 30))])).is_ok());
    }

    #[test]
    fn each_rule_refuses() {
        use IdTokenError as E;
        for (changes, want) in [
            (vec![("iss", json!("https://evil.example.com"))], E::Issuer),
            (vec![("iss", json!("https://idp.example.com/"))], E::Issuer),
            (vec![("iss", Value::Null)], E::Missing("iss")),
            (vec![("sub", json!(""))], E::Missing("sub")),
            (vec![("sub", json!(7))], E::Missing("sub")),
            (vec![("aud", json!("other"))], E::Audience),
            (vec![("aud", json!(["other"]))], E::Audience),
            (vec![("aud", json!([1]))], E::Missing("aud")),
            (vec![("aud", Value::Null)], E::Missing("aud")),
            (
                vec![("aud", json!(["psmgate", "other"]))],
                E::Missing("azp"),
            ),
            (vec![("azp", json!("other"))], E::Audience),
            (vec![("exp", json!(NOW - LEEWAY_SECS))], E::Expired),
            (vec![("exp", json!("soon"))], E::Missing("exp")),
            (vec![("exp", Value::Null)], E::Missing("exp")),
            (vec![("iat", Value::Null)], E::Missing("iat")),
            (vec![("iat", json!(NOW + LEEWAY_SECS + 1))], E::NotYetValid),
            (vec![("nbf", json!(NOW + LEEWAY_SECS + 1))], E::NotYetValid),
            (vec![("nonce", json!("n-other"))], E::Nonce),
            (vec![("nonce", Value::Null)], E::Missing("nonce")),
        ] {
            assert_eq!(check(&with(&changes)), Err(want.clone()), "{changes:?}");
        }
        assert_eq!(
            check_claims(b"[1,2]", &expected()),
            Err(IdTokenError::NotObject)
        );
    }

    #[test]
    fn signature_then_claims() {
        let key = TestKey::rsa();
        let keys = set(&[key.jwk("k1")]);
        let token = key.sign("RS256", Some("k1"), good().to_string().as_bytes());
        let t = verify(&token, &keys, &expected()).unwrap();
        assert_eq!(t.string_claim("preferred_username"), Some("alice"));
        let other = set(&[TestKey::es256().jwk("k1")]);
        assert!(matches!(
            verify(&token, &other, &expected()),
            Err(IdTokenError::Jws(JwsError::NoKey { .. }))
        ));
        let token = key.sign(
            "RS256",
            Some("k1"),
            with(&[("nonce", json!("x"))]).to_string().as_bytes(),
        );
        assert_eq!(verify(&token, &keys, &expected()), Err(IdTokenError::Nonce));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_claims_never_panic(payload in "\\PC{0,200}", now in proptest::num::i64::ANY) {
            let e = Expected { now, ..expected() };
            let _ = check_claims(payload.as_bytes(), &e);
        }

        #[test]
        fn arbitrary_times_never_panic(
            exp in proptest::num::f64::ANY,
            iat in proptest::num::i64::ANY,
            now in proptest::num::i64::ANY,
        ) {
            let mut v = good();
            v["exp"] = json!(exp);
            v["iat"] = json!(iat);
            let e = Expected { now, ..expected() };
            let _ = check_claims(v.to_string().as_bytes(), &e);
        }
    }
}
