//! VNC Authentication (RFB security type 2): the DES challenge-response.
//!
//! The server sends 16 random bytes; the client answers with them encrypted by single DES in ECB
//! mode (two 8-byte blocks). The DES key is the password's first 8 bytes, zero-padded, with the
//! bit order of every byte reversed: the original VNC implementation used a DES library that
//! numbered key bits from the least significant end, and every implementation since reproduces
//! that. DES ignores the lowest bit of each key byte, which after the reversal is the highest bit
//! of each password byte, so passwords that differ only there are equivalent.

use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};
use des::Des;

/// Length of the challenge and of the response.
pub const CHALLENGE_LEN: usize = 16;

/// Number of password bytes VNC Authentication uses.
pub const KEY_LEN: usize = 8;

/// A VNC password (a vaulted target password or an access token).
///
/// Its `Debug` form is redacted and its bytes are overwritten when dropped (best effort: copies
/// the allocator made earlier are out of reach).
#[derive(Clone, PartialEq, Eq)]
pub struct VncPassword(Vec<u8>);

impl VncPassword {
    /// Wraps password bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        VncPassword(bytes.into())
    }

    /// Whether the password is longer than the [`KEY_LEN`] bytes VNC Authentication uses (the
    /// rest is ignored, as every VNC implementation does).
    pub fn is_truncated(&self) -> bool {
        self.0.len() > KEY_LEN
    }

    /// The response to `challenge` under this password.
    pub fn response(&self, challenge: &[u8; CHALLENGE_LEN]) -> [u8; CHALLENGE_LEN] {
        response(&self.0, challenge)
    }
}

impl std::fmt::Debug for VncPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VncPassword(<redacted>)")
    }
}

impl Drop for VncPassword {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// The DES key VNC Authentication derives from `password`: its first 8 bytes, zero-padded, each
/// with its bit order reversed.
pub fn des_key(password: &[u8]) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    for (k, p) in key.iter_mut().zip(password) {
        *k = p.reverse_bits();
    }
    key
}

/// The response a client holding `password` sends for `challenge`.
pub fn response(password: &[u8], challenge: &[u8; CHALLENGE_LEN]) -> [u8; CHALLENGE_LEN] {
    let key = des_key(password);
    let cipher = Des::new(GenericArray::from_slice(&key));
    let mut out = *challenge;
    for block in out.chunks_exact_mut(8) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    out
}

/// Whether `candidate` is the response `password` gives for `challenge`, compared in constant
/// time.
pub fn verify(
    password: &[u8],
    challenge: &[u8; CHALLENGE_LEN],
    candidate: &[u8; CHALLENGE_LEN],
) -> bool {
    let expected = response(password, challenge);
    let diff = expected
        .iter()
        .zip(candidate)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        let v = hex::decode(s).unwrap();
        v.try_into().unwrap()
    }

    /// QEMU's DES-RFB test vectors (tests/unit/test-crypto-cipher.c, "des-rfb-ecb-56"): QEMU's
    /// VNC server computes the VNC Authentication response with this cipher, keyed by the raw
    /// password bytes. The password here is the 8 bytes 01 23 45 67 89 ab cd ef and the
    /// challenge the first 16 bytes of the NIST SP 800-38A plaintext.
    #[test]
    fn matches_qemu_vnc_des_vectors() {
        let password = hex::decode("0123456789abcdef").unwrap();
        let challenge: [u8; 16] = unhex("6bc1bee22e409f96e93d7e117393172a");
        let expected: [u8; 16] = unhex("8f346aaf64eaf24040720d80648c52e7");
        assert_eq!(response(&password, &challenge), expected);

        // Second half of the same vector.
        let challenge: [u8; 16] = unhex("ae2d8a571e03ac9c9eb76fac45af8e51");
        let expected: [u8; 16] = unhex("aefc616be53ab1a3d301e69d91e01838");
        assert_eq!(response(&password, &challenge), expected);
    }

    /// The same QEMU suite states that DES-RFB with key 0123456789abcdef equals plain DES with
    /// key 80c4a2e691d5b3f7: the bit-reversed bytes.
    #[test]
    fn key_is_bit_reversed_password() {
        let password = hex::decode("0123456789abcdef").unwrap();
        assert_eq!(des_key(&password), unhex::<8>("80c4a2e691d5b3f7"));
        assert_eq!(des_key(b"ab"), [0x86, 0x46, 0, 0, 0, 0, 0, 0]);
    }

    /// Computed from the definition with the `des` crate directly: key = reversed bytes of the
    /// zero-padded 8-byte password, two independent ECB blocks.
    #[test]
    fn matches_definition() {
        let challenge: [u8; 16] = *b"0123456789ABCDEF";
        let mut key = [0u8; 8];
        key[..6].copy_from_slice(b"secret");
        for b in &mut key {
            let mut r = 0u8;
            for i in 0..8 {
                if *b & (1 << i) != 0 {
                    r |= 0x80 >> i;
                }
            }
            *b = r;
        }
        let cipher = Des::new_from_slice(&key).unwrap();
        let mut expected = challenge;
        for block in expected.chunks_exact_mut(8) {
            cipher.encrypt_block(GenericArray::from_mut_slice(block));
        }
        assert_eq!(response(b"secret", &challenge), expected);
        assert_ne!(expected, challenge);
    }

    #[test]
    fn only_eight_bytes_count() {
        let c = [7u8; 16];
        assert_eq!(response(b"12345678", &c), response(b"12345678-ignored", &c));
        assert_ne!(response(b"1234567", &c), response(b"12345678", &c));
        assert_eq!(response(b"", &c), response(&[0u8; 8], &c));
        assert!(VncPassword::new("12345678x").is_truncated());
        assert!(!VncPassword::new("12345678").is_truncated());
    }

    #[test]
    fn verify_accepts_only_the_right_response() {
        let c = *b"challenge-bytes!";
        let r = response(b"pass", &c);
        assert!(verify(b"pass", &c, &r));
        assert!(!verify(b"pasS", &c, &r));
        let mut bad = r;
        bad[15] ^= 1;
        assert!(!verify(b"pass", &c, &bad));
    }

    #[test]
    fn password_debug_is_redacted() {
        let p = VncPassword::new("hunter22");
        assert_eq!(format!("{p:?}"), "VncPassword(<redacted>)");
    }
}
