//! User passwords: argon2 hashes in PHC string format (`users.<name>.password_hash`).
//!
//! [`hash_password`] writes argon2id hashes with a random 16-byte salt and the argon2 crate's
//! default cost (19 MiB, 2 passes, 1 lane: the OWASP recommendation). [`verify_password`] checks a
//! password against any argon2 variant (`argon2id`, `argon2i`, `argon2d`) with the parameters
//! stored in the hash, comparing in constant time. Hashes whose cost exceeds the bounds below
//! are refused when loading and never verify, so a configuration cannot make each sign-in
//! allocate unbounded memory.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier};

/// Largest argon2 memory cost accepted (`m`, in KiB): 1 GiB.
pub const MAX_MEMORY_KIB: u32 = 1 << 20;
/// Largest argon2 time cost accepted (`t`, passes).
pub const MAX_PASSES: u32 = 64;
/// Largest argon2 parallelism accepted (`p`, lanes).
pub const MAX_LANES: u32 = 64;

/// Why a password could not be hashed, or why a stored hash is not usable. Messages never
/// contain the password or the hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The string is not in PHC format.
    #[error("is not a PHC string such as \"$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>\"")]
    NotPhc,
    /// The PHC string is not well-formed (salt or hash too short or too long, bad Base64,
    /// repeated parameters).
    #[error("is not a usable PHC string ({0})")]
    Malformed(String),
    /// The PHC string names another algorithm.
    #[error("is a {0:?} hash; psmgate verifies argon2 hashes only (\"$argon2id$…\")")]
    NotArgon2(String),
    /// The hash lacks its salt or output.
    #[error("has no salt or no hash value")]
    Incomplete,
    /// The argon2 version or parameters are not valid.
    #[error("has invalid argon2 parameters ({0})")]
    BadParams(String),
    /// The cost parameters exceed the bounds accepted.
    #[error("argon2 cost m={m},t={t},p={p} exceeds the bounds accepted (m <= {MAX_MEMORY_KIB} KiB, t <= {MAX_PASSES}, p <= {MAX_LANES})")]
    TooCostly {
        /// Memory cost in KiB.
        m: u32,
        /// Passes.
        t: u32,
        /// Lanes.
        p: u32,
    },
    /// The system's random number generator failed, or the password is too long to hash.
    #[error("cannot hash the password: {0}")]
    Hashing(String),
}

/// Hashes `plain` as an argon2id PHC string with a fresh random salt.
///
/// Fails only when the system's random number generator fails or the password is longer than
/// argon2 accepts (4 GiB).
pub fn hash_password(plain: &str) -> Result<String, PasswordError> {
    Argon2::default()
        .hash_password(plain.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Parses `phc` and checks it is an argon2 hash psmgate can verify: argon2id, argon2i or
/// argon2d, a valid version and parameters within [`MAX_MEMORY_KIB`], [`MAX_PASSES`] and
/// [`MAX_LANES`], with a salt and a hash value.
pub fn check_password_hash(phc: &str) -> Result<(), PasswordError> {
    parse(phc).map(|_| ())
}

fn parse(phc: &str) -> Result<PasswordHash, PasswordError> {
    if !crate::check::is_phc_string(phc) {
        return Err(PasswordError::NotPhc);
    }
    // The parser's messages name what is wrong, never the input.
    let hash = PasswordHash::new(phc).map_err(|e| PasswordError::Malformed(e.to_string()))?;
    let algorithm = hash.algorithm.as_str();
    if Algorithm::try_from(algorithm).is_err() {
        return Err(PasswordError::NotArgon2(algorithm.to_owned()));
    }
    if let Some(v) = hash.version {
        argon2::Version::try_from(v).map_err(|e| PasswordError::BadParams(e.to_string()))?;
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(PasswordError::Incomplete);
    }
    let params = Params::try_from(&hash).map_err(|e| PasswordError::BadParams(e.to_string()))?;
    let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
    if m > MAX_MEMORY_KIB || t > MAX_PASSES || p > MAX_LANES {
        return Err(PasswordError::TooCostly { m, t, p });
    }
    Ok(hash)
}

/// True when `plain` is the password `phc` was made from. The comparison is constant-time;
/// hashes [`check_password_hash`] refuses (malformed, another algorithm, too costly) never
/// verify. Never panics.
pub fn verify_password(phc: &str, plain: &str) -> bool {
    match parse(phc) {
        Ok(hash) => Argon2::default()
            .verify_password(plain.as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}
