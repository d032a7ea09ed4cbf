//! The hash chain of `chain.jsonl`: record types, head computation and the writer-side state.
//!
//! Every appended byte range gets a data record ([`ChainRecord`]) whose `head` hashes the previous
//! head, the record's position and the SHA-256 of the bytes:
//!
//! ```text
//! genesis = SHA-256("psmgate-chain-v1\0" ‖ session_id)
//! head    = SHA-256(prev_raw32 ‖ seq_u64be ‖ file_len_u16be ‖ file_utf8 ‖ offset_u64be
//!                   ‖ len_u64be ‖ sha256_raw32)
//! ```
//!
//! Checkpoints ([`Checkpoint`]) sign a head with the gateway key; the signed message is
//! [`checkpoint_message`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::keys::{signature_base64, GatewayKey};

/// Domain separator of the chain (genesis and checkpoint messages).
pub const CHAIN_DOMAIN: &[u8] = b"psmgate-chain-v1\0";

/// A SHA-256 value. Serialised as 64 lowercase hex characters; parsing accepts nothing else
/// (so that no two spellings of one value exist in a chain file).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses exactly 64 lowercase hex characters.
    pub fn parse_hex(s: &str) -> Result<Self, String> {
        if s.len() != 64 {
            return Err(format!("expected 64 hex characters, found {}", s.len()));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("expected lowercase hex characters only".to_owned());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|e| e.to_string())?;
        Ok(Digest(out))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// The genesis head of a session: `SHA-256("psmgate-chain-v1\0" ‖ session_id)`.
pub fn genesis(session_id: &str) -> Digest {
    let mut h = Sha256::new();
    h.update(CHAIN_DOMAIN);
    h.update(session_id.as_bytes());
    Digest(h.finalize().into())
}

/// Computes a record head. Returns `None` if `file` is longer than 65535 bytes (its length
/// must fit the 16-bit length prefix).
pub fn compute_head(
    prev: &Digest,
    seq: u64,
    file: &str,
    offset: u64,
    len: u64,
    sha256: &Digest,
) -> Option<Digest> {
    let file_len = u16::try_from(file.len()).ok()?;
    let mut h = Sha256::new();
    h.update(prev.0);
    h.update(seq.to_be_bytes());
    h.update(file_len.to_be_bytes());
    h.update(file.as_bytes());
    h.update(offset.to_be_bytes());
    h.update(len.to_be_bytes());
    h.update(sha256.0);
    Some(Digest(h.finalize().into()))
}

/// The message a checkpoint signs:
/// `"psmgate-chain-v1\0" ‖ session_id ‖ "\0" ‖ seq_u64be ‖ head_raw32`.
pub fn checkpoint_message(session_id: &str, seq: u64, head: &Digest) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHAIN_DOMAIN.len() + session_id.len() + 1 + 8 + 32);
    m.extend_from_slice(CHAIN_DOMAIN);
    m.extend_from_slice(session_id.as_bytes());
    m.push(0);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(&head.0);
    m
}

/// A data record: one appended byte range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainRecord {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// File, relative to the recording folder.
    pub file: String,
    /// Where the range starts in `file`.
    pub offset: u64,
    /// Length of the range.
    pub len: u64,
    /// SHA-256 of the bytes.
    pub sha256: Digest,
    /// Head of the previous record (the genesis for `seq` 1).
    pub prev: Digest,
    /// Head of this record.
    pub head: Digest,
}

impl ChainRecord {
    /// Recomputes the head from the other fields (`None` if `file` is too long).
    pub fn computed_head(&self) -> Option<Digest> {
        compute_head(
            &self.prev,
            self.seq,
            &self.file,
            self.offset,
            self.len,
            &self.sha256,
        )
    }
}

/// A signed checkpoint of the head of record `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Always `true`; marks the line as a checkpoint.
    pub checkpoint: bool,
    /// The record whose head is signed.
    pub seq: u64,
    /// That record's head.
    pub head: Digest,
    /// Id of the signing key.
    pub key_id: String,
    /// Base64 Ed25519 signature of [`checkpoint_message`].
    pub sig: String,
}

/// One line of `chain.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainLine {
    /// A data record.
    Record(ChainRecord),
    /// A checkpoint.
    Checkpoint(Checkpoint),
}

impl ChainLine {
    /// Parses one line (without its `\n`). Unknown fields, non-canonical hex and a
    /// `"checkpoint"` value other than `true` are rejected.
    pub fn parse(line: &[u8]) -> Result<ChainLine, String> {
        let value: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
        let is_checkpoint = value
            .as_object()
            .ok_or_else(|| "not a JSON object".to_owned())?
            .contains_key("checkpoint");
        if is_checkpoint {
            let cp: Checkpoint = serde_json::from_value(value).map_err(|e| e.to_string())?;
            if !cp.checkpoint {
                return Err("\"checkpoint\" must be true".to_owned());
            }
            Ok(ChainLine::Checkpoint(cp))
        } else {
            serde_json::from_value(value)
                .map(ChainLine::Record)
                .map_err(|e| e.to_string())
        }
    }

    /// The line as written to `chain.jsonl`, including the trailing `\n`.
    pub fn to_line(&self) -> String {
        // Serialising these plain structs cannot fail.
        let mut s = match self {
            ChainLine::Record(r) => serde_json::to_string(r),
            ChainLine::Checkpoint(c) => serde_json::to_string(c),
        }
        .unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Writer-side chain state: the last record's `seq` and `head`.
#[derive(Debug, Clone)]
pub struct ChainWriter {
    session_id: String,
    seq: u64,
    head: Digest,
    last_checkpoint_seq: u64,
}

impl ChainWriter {
    /// A new chain for `session_id` (no records yet; head = genesis).
    pub fn new(session_id: &str) -> Self {
        ChainWriter {
            session_id: session_id.to_owned(),
            seq: 0,
            head: genesis(session_id),
            last_checkpoint_seq: 0,
        }
    }

    /// Continues an existing chain whose last record is `seq` with head `head`.
    pub fn resume(session_id: &str, seq: u64, head: Digest, last_checkpoint_seq: u64) -> Self {
        ChainWriter {
            session_id: session_id.to_owned(),
            seq,
            head,
            last_checkpoint_seq,
        }
    }

    /// The session id the chain belongs to.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The `seq` of the last record (0 if none).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The head of the last record (the genesis if none).
    pub fn head(&self) -> Digest {
        self.head
    }

    /// The last checkpointed `seq` (0 if none).
    pub fn last_checkpoint_seq(&self) -> u64 {
        self.last_checkpoint_seq
    }

    /// Builds the next record for `bytes` appended at `offset` of `file`, without changing the
    /// state (see [`ChainWriter::commit`]).
    pub fn next_record(
        &self,
        file: &str,
        offset: u64,
        bytes: &[u8],
    ) -> Result<ChainRecord, String> {
        let seq = self
            .seq
            .checked_add(1)
            .ok_or_else(|| "sequence number overflow".to_owned())?;
        let sha256 = Digest::of(bytes);
        let len = bytes.len() as u64;
        let head = compute_head(&self.head, seq, file, offset, len, &sha256)
            .ok_or_else(|| format!("file name longer than 65535 bytes: {file:?}"))?;
        Ok(ChainRecord {
            seq,
            file: file.to_owned(),
            offset,
            len,
            sha256,
            prev: self.head,
            head,
        })
    }

    /// Makes `record` (built by [`ChainWriter::next_record`] and durably written) the last one.
    pub fn commit(&mut self, record: &ChainRecord) -> Result<(), String> {
        if record.seq != self.seq + 1 || record.prev != self.head {
            return Err(format!(
                "record {} does not follow record {}",
                record.seq, self.seq
            ));
        }
        self.seq = record.seq;
        self.head = record.head;
        Ok(())
    }

    /// A signed checkpoint of the current head, or `None` when there is no record yet.
    pub fn checkpoint(&self, key: &GatewayKey) -> Option<Checkpoint> {
        if self.seq == 0 {
            return None;
        }
        let sig = key.sign_checkpoint(&self.session_id, self.seq, &self.head);
        Some(Checkpoint {
            checkpoint: true,
            seq: self.seq,
            head: self.head,
            key_id: key.key_id(),
            sig: signature_base64(&sig),
        })
    }

    /// Notes that a checkpoint of `seq` was durably written.
    pub fn mark_checkpointed(&mut self, seq: u64) {
        self.last_checkpoint_seq = seq;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_hex_is_strict() {
        let d = Digest::of(b"x");
        assert_eq!(Digest::parse_hex(&d.to_hex()).unwrap(), d);
        assert!(Digest::parse_hex(&d.to_hex().to_uppercase()).is_err());
        assert!(Digest::parse_hex("00").is_err());
    }

    #[test]
    fn line_round_trip_and_strictness() {
        let w = ChainWriter::new("s");
        let r = w.next_record("a/b", 0, b"abc").unwrap();
        let line = ChainLine::Record(r.clone()).to_line();
        assert!(line.ends_with('\n'));
        assert_eq!(
            ChainLine::parse(line.trim_end().as_bytes()).unwrap(),
            ChainLine::Record(r)
        );
        assert!(ChainLine::parse(
            br#"{"checkpoint":false,"seq":1,"head":"00","key_id":"","sig":""}"#
        )
        .is_err());
        let extra = line.trim_end().replacen('{', "{\"x\":1,", 1);
        assert!(ChainLine::parse(extra.as_bytes()).is_err());
    }
}
