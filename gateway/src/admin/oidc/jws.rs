//! Signed tokens (JWS compact serialisation, RFC 7515) and the provider's public keys (JWK sets,
//! RFC 7517), verified with `ring`. No I/O.
//!
//! Accepted algorithms: RS256/384/512 and PS256/384/512 (RSA, 2048 to 8192 bits), ES256 and
//! ES384 (ECDSA P-256, P-384) and EdDSA (Ed25519). `none` and the HMAC family are never
//! accepted. A key is used only for the algorithm its type fits, only when its `alg` (if given)
//! is the token's and its `use` (if given) is `sig`; with a `kid` in the token's header, only
//! the key of that id.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};
use serde::Deserialize;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Most keys kept from one JWK set.
pub const MAX_KEYS: usize = 64;

/// A signature algorithm the gateway accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
}

impl Alg {
    /// Every accepted algorithm.
    pub const ALL: [Alg; 9] = [
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::Ps384,
        Alg::Ps512,
        Alg::Es256,
        Alg::Es384,
        Alg::EdDsa,
    ];

    /// The JOSE name (`RS256`, …).
    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
        }
    }

    /// The algorithm called `name`, if accepted.
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The `kty` (and for elliptic curves the `crv`) of the keys this algorithm uses.
    fn key_type(self) -> (&'static str, Option<&'static str>) {
        match self {
            Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512 => {
                ("RSA", None)
            }
            Alg::Es256 => ("EC", Some("P-256")),
            Alg::Es384 => ("EC", Some("P-384")),
            Alg::EdDsa => ("OKP", Some("Ed25519")),
        }
    }
}

/// Why a token or key set was refused. Never holds token text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// Longer than [`MAX_TOKEN_LEN`].
    #[error("the token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    /// Not three dot-separated parts.
    #[error("the token is not a signed JWT (three base64url parts separated by dots)")]
    Malformed,
    /// A part is not unpadded base64url.
    #[error("the token's {0} is not base64url")]
    Base64(&'static str),
    /// The header is not a JSON object with a string `alg`.
    #[error("the token's header is not valid: {0}")]
    Header(String),
    /// The header's algorithm is not accepted.
    #[error("the token is signed with {0:?}, which is not accepted")]
    Alg(String),
    /// The header names critical extensions, none of which the gateway understands.
    #[error("the token's header lists critical extensions (crit), which are not supported")]
    Crit,
    /// No key of the set fits the token.
    #[error("no key of the provider fits the token (kid {kid:?}, alg {alg})")]
    NoKey {
        /// The header's key id.
        kid: Option<String>,
        /// The header's algorithm.
        alg: &'static str,
    },
    /// A fitting key exists but the signature does not verify with it.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// The key set is not a JSON object with a `keys` array.
    #[error("the provider's key set (JWKS) is not valid: {0}")]
    KeySet(String),
}

/// The protected header of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Signature algorithm.
    pub alg: Alg,
    /// Key id, when the token names one.
    pub kid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// A parsed (not yet verified) compact JWS.
#[derive(Debug, Clone)]
pub struct Jws {
    header: Header,
    signing_input: Vec<u8>,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

fn b64(part: &str, what: &'static str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwsError::Base64(what))
}

/// Parses a compact JWS (`header.payload.signature`, base64url without padding).
pub fn parse(token: &str) -> Result<Jws, JwsError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwsError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed);
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(JwsError::Malformed);
    }
    let raw: RawHeader =
        serde_json::from_slice(&b64(h, "header")?).map_err(|e| JwsError::Header(e.to_string()))?;
    if raw.crit.is_some() {
        return Err(JwsError::Crit);
    }
    let alg = Alg::from_name(&raw.alg).ok_or_else(|| JwsError::Alg(truncate(&raw.alg)))?;
    Ok(Jws {
        header: Header { alg, kid: raw.kid },
        signing_input: token.as_bytes()[..h.len() + 1 + p.len()].to_vec(),
        payload: b64(p, "payload")?,
        signature: b64(s, "signature")?,
    })
}

/// At most 32 characters of `s`, for error messages about untrusted values.
fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}

impl Jws {
    /// The token's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Verifies the signature with the keys of `keys` that fit the header; returns the payload.
    pub fn verify(&self, keys: &JwkSet) -> Result<&[u8], JwsError> {
        let mut fitting = 0;
        for key in keys.candidates(&self.header) {
            fitting += 1;
            if key.verify(self.header.alg, &self.signing_input, &self.signature) {
                return Ok(&self.payload);
            }
        }
        if fitting == 0 {
            Err(JwsError::NoKey {
                kid: self.header.kid.as_deref().map(truncate),
                alg: self.header.alg.name(),
            })
        } else {
            Err(JwsError::BadSignature)
        }
    }
}

/// One public key of a JWK set (only the members used here).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Jwk {
    /// Key type: `RSA`, `EC` or `OKP`.
    pub kty: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// The algorithm the key is for, when given.
    #[serde(default)]
    pub alg: Option<String>,
    /// `sig` or `enc`, when given.
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// RSA modulus (base64url, big-endian).
    #[serde(default)]
    pub n: Option<String>,
    /// RSA public exponent (base64url, big-endian).
    #[serde(default)]
    pub e: Option<String>,
    /// Curve: `P-256`, `P-384`, `Ed25519`.
    #[serde(default)]
    pub crv: Option<String>,
    /// EC x coordinate, or the Ed25519 public key (base64url).
    #[serde(default)]
    pub x: Option<String>,
    /// EC y coordinate (base64url).
    #[serde(default)]
    pub y: Option<String>,
}

impl Jwk {
    fn fits(&self, header: &Header) -> bool {
        let (kty, crv) = header.alg.key_type();
        self.kty == kty
            && crv.is_none_or(|c| self.crv.as_deref() == Some(c))
            && self.alg.as_deref().is_none_or(|a| a == header.alg.name())
            && self.use_.as_deref().is_none_or(|u| u == "sig")
            && header
                .kid
                .as_deref()
                .is_none_or(|k| self.kid.as_deref() == Some(k))
    }

    fn member(&self, v: &Option<String>) -> Option<Vec<u8>> {
        URL_SAFE_NO_PAD.decode(v.as_deref()?).ok()
    }

    /// True when `signature` over `message` verifies with this key under `alg` (which the key
    /// fits). Malformed keys verify nothing.
    fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> bool {
        let rsa = |params: &'static signature::RsaParameters| {
            let (Some(n), Some(e)) = (self.member(&self.n), self.member(&self.e)) else {
                return false;
            };
            let strip = |v: &[u8]| {
                let start = v.iter().position(|&b| b != 0).unwrap_or(v.len());
                v[start..].to_vec()
            };
            RsaPublicKeyComponents {
                n: strip(&n),
                e: strip(&e),
            }
            .verify(params, message, sig)
            .is_ok()
        };
        let ec = |alg: &'static dyn VerificationAlgorithm, len: usize| {
            let (Some(x), Some(y)) = (self.member(&self.x), self.member(&self.y)) else {
                return false;
            };
            if x.len() != len || y.len() != len {
                return false;
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            UnparsedPublicKey::new(alg, point)
                .verify(message, sig)
                .is_ok()
        };
        match alg {
            Alg::Rs256 => rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
            Alg::Rs384 => rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
            Alg::Rs512 => rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
            Alg::Ps256 => rsa(&signature::RSA_PSS_2048_8192_SHA256),
            Alg::Ps384 => rsa(&signature::RSA_PSS_2048_8192_SHA384),
            Alg::Ps512 => rsa(&signature::RSA_PSS_2048_8192_SHA512),
            Alg::Es256 => ec(&signature::ECDSA_P256_SHA256_FIXED, 32),
            Alg::Es384 => ec(&signature::ECDSA_P384_SHA384_FIXED, 48),
            Alg::EdDsa => self.member(&self.x).is_some_and(|x| {
                x.len() == 32
                    && UnparsedPublicKey::new(&signature::ED25519, x)
                        .verify(message, sig)
                        .is_ok()
            }),
        }
    }
}

/// A provider's public keys (`jwks_uri`). Entries that are not keys, or not public keys of a
/// supported type, are skipped; at most [`MAX_KEYS`] are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

impl JwkSet {
    /// Parses a JWK set document (`{"keys": [...]}`).
    pub fn parse(json: &[u8]) -> Result<JwkSet, JwsError> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(json).map_err(|e| JwsError::KeySet(e.to_string()))?;
        let keys = doc
            .keys
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter(|k| matches!(k.kty.as_str(), "RSA" | "EC" | "OKP"))
            .take(MAX_KEYS)
            .collect();
        Ok(JwkSet { keys })
    }

    /// The keys kept.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// True when some key fits `header` (by type, algorithm, use and key id).
    pub fn has_candidate(&self, header: &Header) -> bool {
        self.candidates(header).next().is_some()
    }

    fn candidates<'a>(&'a self, header: &'a Header) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys.iter().filter(|k| k.fits(header))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
    use serde_json::json;

    /// A 2048-bit RSA key (PKCS#8 DER, base64) made for these tests only.
    const RSA_PKCS8: &str = "\
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCo8r1MQXlaDoV9lwIqSUzQEXtcZi92udvqz0lKdMS95qgg\
rf7XMmB5LP+Z3rp2LXUQPE3li3W0ck3bz5LTwPLmoGAiToU0TBM8apM6J780obHyEI2rehuLwobcLtwAYTxPjSnwiXPVzoJt\
dhv6Yjx32nXImqvue0w03Vud1xTpK5Z1skmg1GEOsK9i2Xej6mXbGTcV24nCJ0JfWUCP7YXI22oSjWUsddvXkecIAnUQJmD1\
6URzUFF9i6MWvpISDFPzUop1DatlAjEn0HRlOsXk2iwulUv9n3sAJoeDGmOCYUt9FXAL8MJSSV1r9lJcfck4v0pSBcHnNCL9\
zlG8TwklAgMBAAECggEAK0A1MNPkJqdoCi5B+iRYuz12eMGaLglHoPWe/CYnhbwKV49jmaDGbM8VwkTwNDfP66+ce4K3x9Gp\
V/fsTTRsmpj881tpo2lEVWetOCqbuvQYE3Gkav0wFxfeIXkHjjtWTsFDNtZhZp9e6XnekLtcYox1Mb1S/ZLn//KZNS+uJUC9\
zD6btJ4qwGYSiVdgAJ6x92pRToIRpwuMyiTk6gz4LGswqXbctk9g+XwU73ch4PC4MsdgTtRqeQh/ZFqyAEPHLrgrlg5Cq7aC\
CxWyjCklrQ5g+L2D3QfkmgL9Y93o6oeUBI/Zxi8e3n6znizobbwjb6+oZCE6d6knbpvystcJUwKBgQDm4Ai5E7DtcgyxXLSI\
Td9/15iSDOugYlegANeeT9SNsjA4CVfBKdT4R+Z/wItervtFyLykCXi0+nsbsAVUvt4SmE7GDwoTbl0434ak+6FAe5GiwTdO\
7iGWoRfATf8VxjcsrIPRYBCD/IxmAlHlLVN+CUNYAmBPRGQtHcJSdTJaPwKBgQC7VXqRsywc4aJ9hJnHjLAfydYQ8DKFMVCz\
eJSVgLJAvHJ2h3dD0V9fP7qvometvjqJvWOh3hQLuXwMnj2MaRZx9ixfg2WMx4QF1J4K++VAcIm2lUDOFCwWzV4taz1Fv4OM\
xe+F96DnjtG5VdA9Ynx7LR4e4nBsRGnhJHfLQ8JbmwKBgQCJsIDjR+ATrBnvyPcN90tcpgqix7vauevCS95L1xZPrz5cnQ3N\
8JHHxLGt7PnxbPAETVRbjB6F6IB1IcP8J5yvgFAyhJOgxQgpu/1D9aHUoB1Z8Ft44kH74HUWxi1kIgOTzAsNWnpfDMX6rFWF\
FUQe/Y1BNqGThJkt4vqaTLTL5wKBgFMMnCAHrKDJLv4yUPJ0XohZNHuh4OPHbx2BcW2t9lhYsu31NFxub7eMSzkd6JTP5qe1\
vHvANmbUPjhh1qtu0zKGjjlxyQ1WTiM/lSkNbx7YRVUaafZyXvFk7kF4b1uCgdFg1sUveLfvSu69KmpsRP9eiyHqBSkaU04q\
mqkUSw/NAoGBANDCDbG8Mnd1KAmH+zfF3r2p/mb+24KxeknCMooyGb7mWcYJNHg1XKkIOBKVnmHUDC2689uSLSTNc2p7meEx\
vTGMsCaZFnhqHuDZ8Lun/oAg/pgH4UixLgszbJUVHXCn9qhZh4N6KtQT6/oKtr2hnfLuc8jgTL8N3RwkZolrd9WG";

    /// A signing key and its public JWK.
    pub(crate) enum TestKey {
        Rsa(RsaKeyPair),
        Ec(EcdsaKeyPair, usize),
        Ed(Ed25519KeyPair),
    }

    impl TestKey {
        pub(crate) fn rsa() -> TestKey {
            let der = base64::engine::general_purpose::STANDARD
                .decode(RSA_PKCS8)
                .unwrap();
            TestKey::Rsa(RsaKeyPair::from_pkcs8(&der).unwrap())
        }

        pub(crate) fn es256() -> TestKey {
            let rng = SystemRandom::new();
            let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
            let der = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            TestKey::Ec(
                EcdsaKeyPair::from_pkcs8(alg, der.as_ref(), &rng).unwrap(),
                32,
            )
        }

        pub(crate) fn es384() -> TestKey {
            let rng = SystemRandom::new();
            let alg = &signature::ECDSA_P384_SHA384_FIXED_SIGNING;
            let der = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            TestKey::Ec(
                EcdsaKeyPair::from_pkcs8(alg, der.as_ref(), &rng).unwrap(),
                48,
            )
        }

        pub(crate) fn ed25519() -> TestKey {
            let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            TestKey::Ed(Ed25519KeyPair::from_pkcs8(der.as_ref()).unwrap())
        }

        /// The public JWK with key id `kid`.
        pub(crate) fn jwk(&self, kid: &str) -> serde_json::Value {
            let e = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
            match self {
                TestKey::Rsa(k) => {
                    let c: RsaPublicKeyComponents<Vec<u8>> = k.public().into();
                    json!({"kty": "RSA", "kid": kid, "use": "sig", "n": e(&c.n), "e": e(&c.e)})
                }
                TestKey::Ec(k, len) => {
                    let p = k.public_key().as_ref();
                    let crv = if *len == 32 { "P-256" } else { "P-384" };
                    json!({"kty": "EC", "kid": kid, "crv": crv,
                           "x": e(&p[1..1 + len]), "y": e(&p[1 + len..])})
                }
                TestKey::Ed(k) => {
                    json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": e(k.public_key().as_ref())})
                }
            }
        }

        /// A compact JWS of `payload` under `alg`, with `kid` in the header when given.
        pub(crate) fn sign(&self, alg: &str, kid: Option<&str>, payload: &[u8]) -> String {
            let mut header = json!({ "alg": alg, "typ": "JWT" });
            if let Some(k) = kid {
                header["kid"] = json!(k);
            }
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(payload)
            );
            let rng = SystemRandom::new();
            let sig = match self {
                TestKey::Rsa(k) => {
                    let enc: &'static dyn signature::RsaEncoding = match alg {
                        "RS384" => &signature::RSA_PKCS1_SHA384,
                        "RS512" => &signature::RSA_PKCS1_SHA512,
                        "PS256" => &signature::RSA_PSS_SHA256,
                        _ => &signature::RSA_PKCS1_SHA256,
                    };
                    let mut sig = vec![0; k.public().modulus_len()];
                    k.sign(enc, &rng, input.as_bytes(), &mut sig).unwrap();
                    sig
                }
                TestKey::Ec(k, _) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
                TestKey::Ed(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
            };
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
        }
    }

    pub(crate) fn set(keys: &[serde_json::Value]) -> JwkSet {
        JwkSet::parse(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn every_algorithm_verifies_with_its_key() {
        let payload = br#"{"sub":"alice"}"#;
        for (key, alg) in [
            (TestKey::rsa(), "RS256"),
            (TestKey::rsa(), "RS384"),
            (TestKey::rsa(), "RS512"),
            (TestKey::rsa(), "PS256"),
            (TestKey::es256(), "ES256"),
            (TestKey::es384(), "ES384"),
            (TestKey::ed25519(), "EdDSA"),
        ] {
            let keys = set(&[key.jwk("k1")]);
            for kid in [Some("k1"), None] {
                let token = key.sign(alg, kid, payload);
                let jws = parse(&token).unwrap();
                assert_eq!(jws.header().alg.name(), alg);
                assert_eq!(jws.verify(&keys).unwrap(), payload, "{alg} {kid:?}");
            }
        }
    }

    #[test]
    fn a_changed_token_does_not_verify() {
        let key = TestKey::rsa();
        let keys = set(&[key.jwk("k1")]);
        let token = key.sign("RS256", Some("k1"), br#"{"sub":"alice"}"#);
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = format!(
            "{head}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(br#"{"sub":"mallory"}"#)
        );
        assert_eq!(
            parse(&forged).unwrap().verify(&keys),
            Err(JwsError::BadSignature)
        );
        // The same claims signed by another key.
        let other = TestKey::es256();
        let keys = set(&[other.jwk("k1")]);
        let token = TestKey::es256().sign("ES256", Some("k1"), b"{}");
        assert_eq!(
            parse(&token).unwrap().verify(&keys),
            Err(JwsError::BadSignature)
        );
    }

    #[test]
    fn keys_are_chosen_by_id_type_algorithm_and_use() {
        let rsa = TestKey::rsa();
        let token = rsa.sign("RS256", Some("k1"), b"{}");
        let jws = parse(&token).unwrap();
        // Unknown kid.
        assert!(matches!(
            jws.verify(&set(&[rsa.jwk("k2")])),
            Err(JwsError::NoKey { kid: Some(k), alg: "RS256" }) if k == "k1"
        ));
        // The right key among others.
        let many = set(&[TestKey::es256().jwk("k1"), rsa.jwk("k0"), rsa.jwk("k1")]);
        assert!(jws.verify(&many).is_ok());
        // A key declared for another algorithm or for encryption is not used.
        let mut for_ps = rsa.jwk("k1");
        for_ps["alg"] = json!("PS256");
        assert!(matches!(
            jws.verify(&set(&[for_ps])),
            Err(JwsError::NoKey { .. })
        ));
        let mut for_enc = rsa.jwk("k1");
        for_enc["use"] = json!("enc");
        assert!(matches!(
            jws.verify(&set(&[for_enc])),
            Err(JwsError::NoKey { .. })
        ));
        // An EC key of the other curve does not fit.
        let es = TestKey::es256();
        let token = es.sign("ES384", None, b"{}");
        assert!(matches!(
            parse(&token).unwrap().verify(&set(&[es.jwk("e")])),
            Err(JwsError::NoKey { .. })
        ));
    }

    #[test]
    fn unsafe_or_malformed_tokens_are_refused() {
        let enc = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let body = URL_SAFE_NO_PAD.encode(b"{}");
        for (header, want) in [
            (json!({"alg": "none"}), JwsError::Alg("none".into())),
            (json!({"alg": "HS256"}), JwsError::Alg("HS256".into())),
            (json!({"alg": "RS256", "crit": ["exp"]}), JwsError::Crit),
        ] {
            let token = format!("{}.{body}.c2ln", enc(&header));
            assert_eq!(parse(&token).unwrap_err(), want);
        }
        assert_eq!(parse("a.b").unwrap_err(), JwsError::Malformed);
        assert_eq!(parse("a.b.c.d").unwrap_err(), JwsError::Malformed);
        assert_eq!(parse("..").unwrap_err(), JwsError::Malformed);
        assert_eq!(parse("!.b.c").unwrap_err(), JwsError::Base64("header"));
        assert!(matches!(
            parse(&format!("{}.{body}.c2ln", URL_SAFE_NO_PAD.encode("[1]"))),
            Err(JwsError::Header(_))
        ));
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(parse(&long).unwrap_err(), JwsError::TooLong);
        // "none" with an empty signature: refused before any key is looked at.
        let token = format!("{}.{body}.", enc(&json!({"alg": "none"})));
        assert!(parse(&token).is_err());
    }

    #[test]
    fn key_sets_skip_what_they_cannot_use() {
        let rsa = TestKey::rsa();
        let keys = JwkSet::parse(
            json!({"keys": [
                {"kty": "oct", "k": "c2VjcmV0"},
                {"kty": 5},
                "text",
                rsa.jwk("k1"),
            ]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(keys.keys().len(), 1);
        assert!(JwkSet::parse(b"[]").is_err());
        assert!(JwkSet::parse(b"{\"keys\": 1}").is_err());
        // A malformed RSA key verifies nothing and does not panic.
        let mut bad = rsa.jwk("k1");
        bad["n"] = json!("AAAA");
        let token = rsa.sign("RS256", Some("k1"), b"{}");
        assert_eq!(
            parse(&token).unwrap().verify(&set(&[bad])),
            Err(JwsError::BadSignature)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_text_never_panics(token in "\\PC{0,300}") {
            let keys = set(&[TestKey::es256().jwk("k1")]);
            if let Ok(jws) = parse(&token) {
                let _ = jws.verify(&keys);
            }
        }

        #[test]
        fn arbitrary_parts_never_panic(
            header in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            sig in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            alg in proptest::sample::select(vec!["RS256", "PS512", "ES256", "ES384", "EdDSA"]),
        ) {
            let keys = set(&[
                TestKey::es256().jwk("k1"),
                json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(&sig), "e": "AQAB"}),
                json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&payload)}),
            ]);
            let e = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
            for h in [e(&header), e(json!({"alg": alg}).to_string().as_bytes())] {
                let token = format!("{h}.{}.{}", e(&payload), e(&sig));
                if let Ok(jws) = parse(&token) {
                    proptest::prop_assert!(jws.verify(&keys).is_err());
                }
            }
        }
    }
}
