//! Integrity verification of a recording folder (what `psmgate verify` runs).
//!
//! [`verify`] checks, as described in the format document:
//!
//! 1. every line of `chain.jsonl` parses (strictly: no unknown fields, lowercase hex), data
//!    record `seq`s are 1, 2, 3 … without gaps, `prev` links and `head` recomputes;
//! 2. every record's bytes exist and hash to its `sha256`; per file the ranges are contiguous
//!    from 0 and there are no bytes past the last range; no file is left unchained;
//! 3. every checkpoint names a preceding record and its head, has the key id of the manifest's
//!    public key and a valid signature; that public key is the trusted key when one is given;
//! 4. for a sealed recording: the last data record is the seal record of `manifest.json`,
//!    followed by its checkpoint; the manifest's `chain` summary matches the record before the
//!    seal; every file the manifest lists is chained with the size the manifest states.
//!
//! Problems are reported as precise, human-readable sentences. Verification never fails as a
//! whole: unreadable files become problems too. For unsealed recordings the report also gives
//! [`LastGood`], the longest verified prefix, which recovery uses.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;

use crate::backend::{join, validate_path, Backend};
use crate::chain::{genesis, ChainLine, ChainRecord, Digest};
use crate::keys::{key_id, parse_public_key, parse_signature, verify_checkpoint, VerifyingKey};
use crate::layout::{session_id_of, CHAIN, MANIFEST, PARTIAL_MANIFEST};
use crate::manifest::{Manifest, RecordingState};

/// Category of a [`Problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// A chain line does not parse, or `seq` / `prev` / `head` do not link.
    Chain,
    /// Chained bytes are missing or do not hash to their record.
    Data,
    /// Bytes or files that no record covers.
    Unchained,
    /// A checkpoint names a wrong record/head or its signature does not verify.
    Checkpoint,
    /// The recording was signed by a key other than the trusted gateway key.
    UntrustedKey,
    /// The seal (seal record, its checkpoint, manifest/chain agreement) is wrong or missing.
    Seal,
    /// A manifest is missing, does not parse or contradicts the chain.
    Manifest,
    /// A file could not be read.
    Io,
}

/// One integrity problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Category.
    pub kind: ProblemKind,
    /// Human-readable description naming files, byte ranges and records.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The longest prefix of the chain that verifies completely (records linked and their data
/// matching), used to recover unsealed recordings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastGood {
    /// `seq` of the last good record (0 if none).
    pub records: u64,
    /// Head of that record (the genesis head if none).
    pub head: Digest,
    /// `seq` of the last valid checkpoint within the prefix (0 if none).
    pub checkpointed: u64,
    /// Byte length of `chain.jsonl` up to and including the last good line.
    pub chain_len: u64,
    /// Valid (chained) length of every data file at that point.
    pub file_lengths: BTreeMap<String, u64>,
    /// Whether the last good record is the seal record of `manifest.json`.
    pub ends_with_seal: bool,
}

/// Result of [`verify`].
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The recording folder.
    pub dir: String,
    /// Session id (from the manifest, else the folder name).
    pub session_id: String,
    /// `true` only for a sealed recording without any problem. An unsealed recording (live,
    /// crashed, or cut short) is never `ok`; see [`VerifyReport::consistent`].
    pub ok: bool,
    /// The chain ends with a valid seal record and its checkpoint.
    pub sealed: bool,
    /// State from `manifest.json`, else from `manifest.partial.json`.
    pub state: Option<RecordingState>,
    /// Number of data records in the chain (including the seal record).
    pub records: u64,
    /// Number of valid checkpoints.
    pub checkpoints: u64,
    /// Number of chained bytes that verified.
    pub bytes: u64,
    /// Key id of the public key the checkpoints were checked with.
    pub key_id: Option<String>,
    /// Everything wrong, in the order found.
    pub problems: Vec<Problem>,
    /// Observations that are not integrity problems.
    pub notes: Vec<String>,
    /// The longest fully verified prefix.
    pub last_good: LastGood,
    /// Byte length of `chain.jsonl` in complete (`\n`-terminated) lines.
    pub chain_complete_len: u64,
}

impl VerifyReport {
    /// Whether everything present verified (the recording may still be unsealed).
    pub fn consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

/// A raw line of `chain.jsonl` with its position.
struct RawLine<'a> {
    number: usize,
    end: u64,
    text: &'a [u8],
}

struct Verifier<'a> {
    backend: &'a dyn Backend,
    dir: &'a str,
    problems: Vec<Problem>,
    notes: Vec<String>,
}

impl Verifier<'_> {
    fn problem(&mut self, kind: ProblemKind, message: impl Into<String>) {
        self.problems.push(Problem {
            kind,
            message: message.into(),
        });
    }

    fn path(&self, file: &str) -> String {
        join(self.dir, file)
    }

    /// Reads a file that may be absent; I/O errors other than "not found" become problems.
    fn read_optional(&mut self, file: &str) -> Option<Vec<u8>> {
        match self.backend.read(&self.path(file)) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                self.problem(ProblemKind::Io, format!("{file} cannot be read: {e}"));
                None
            }
        }
    }

    fn parse_manifest(&mut self, file: &str, bytes: Option<&Vec<u8>>) -> Option<Manifest> {
        let bytes = bytes?;
        match Manifest::from_json(bytes) {
            Ok(m) => Some(m),
            Err(e) => {
                self.problem(
                    ProblemKind::Manifest,
                    format!("{file} is not a valid manifest: {e}"),
                );
                None
            }
        }
    }

    /// Checks the bytes of a data record; returns whether they verified.
    fn check_data(&mut self, r: &ChainRecord) -> bool {
        let end = r.offset.saturating_add(r.len);
        let path = self.path(&r.file);
        let file_len = match self.backend.len(&path) {
            Ok(Some(l)) => l,
            Ok(None) => {
                self.problem(
                    ProblemKind::Data,
                    format!("chain record {}: {} is missing", r.seq, r.file),
                );
                return false;
            }
            Err(e) => {
                self.problem(ProblemKind::Io, format!("{} cannot be read: {e}", r.file));
                return false;
            }
        };
        if end > file_len {
            self.problem(
                ProblemKind::Data,
                format!(
                    "{} is {file_len} bytes long but chain record {} covers bytes {}..{end} \
                     (file truncated)",
                    r.file, r.seq, r.offset
                ),
            );
            return false;
        }
        match self.backend.read_range(&path, r.offset, r.len) {
            Ok(bytes) if Digest::of(&bytes) == r.sha256 => true,
            Ok(_) => {
                self.problem(
                    ProblemKind::Data,
                    format!(
                        "{} bytes {}..{end} do not match chain record {} (sha256 mismatch)",
                        r.file, r.offset, r.seq
                    ),
                );
                false
            }
            Err(e) => {
                self.problem(
                    ProblemKind::Io,
                    format!("{} bytes {}..{end} cannot be read: {e}", r.file, r.offset),
                );
                false
            }
        }
    }
}

fn split_lines(bytes: &[u8]) -> (Vec<RawLine<'_>>, Option<(u64, u64)>) {
    let mut lines = Vec::new();
    let mut start = 0usize;
    let mut number = 0usize;
    while start < bytes.len() {
        match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(pos) => {
                number += 1;
                let end = start + pos + 1;
                lines.push(RawLine {
                    number,
                    end: end as u64,
                    text: &bytes[start..start + pos],
                });
                start = end;
            }
            None => {
                return (lines, Some((start as u64, (bytes.len() - start) as u64)));
            }
        }
    }
    (lines, None)
}

fn describe_prev(seq: u64) -> String {
    if seq == 0 {
        "the genesis head".to_owned()
    } else {
        format!("head of record {seq}")
    }
}

/// Verifies the recording in `dir` (relative to the backend root).
///
/// `trusted_key` is the gateway key the recording must be signed with, if known.
/// `progress(done, total)` is called with chained bytes checked so far.
pub fn verify(
    backend: &dyn Backend,
    dir: &str,
    trusted_key: Option<&VerifyingKey>,
    progress: &mut dyn FnMut(u64, u64),
) -> VerifyReport {
    let mut v = Verifier {
        backend,
        dir,
        problems: Vec::new(),
        notes: Vec::new(),
    };

    // Manifests and keys.
    let manifest_bytes = v.read_optional(MANIFEST);
    let partial_bytes = v.read_optional(PARTIAL_MANIFEST);
    let manifest = v.parse_manifest(MANIFEST, manifest_bytes.as_ref());
    let partial = v.parse_manifest(PARTIAL_MANIFEST, partial_bytes.as_ref());
    if manifest_bytes.is_none() && partial_bytes.is_none() {
        v.problem(
            ProblemKind::Manifest,
            "neither manifest.json nor manifest.partial.json exists",
        );
    }
    let meta = manifest.as_ref().or(partial.as_ref());
    let meta_name = if manifest.is_some() {
        MANIFEST
    } else {
        PARTIAL_MANIFEST
    };
    let folder_id = session_id_of(dir).to_owned();
    let session_id = meta.map_or(folder_id.clone(), |m| m.session_id.clone());
    if session_id != folder_id {
        v.problem(
            ProblemKind::Manifest,
            format!("{meta_name} names session {session_id} but the folder is {folder_id}"),
        );
    }
    let mut public_key = None;
    if let Some(m) = meta {
        match parse_public_key(&m.public_key) {
            Ok(pk) => {
                let id = key_id(&pk);
                if m.key_id != id {
                    v.problem(
                        ProblemKind::Manifest,
                        format!(
                            "{meta_name} says key_id {} but its public key has id {id}",
                            m.key_id
                        ),
                    );
                }
                public_key = Some(pk);
            }
            Err(e) => v.problem(
                ProblemKind::Manifest,
                format!("{meta_name} public_key is unusable: {e}"),
            ),
        }
    }
    if let (Some(trusted), Some(pk)) = (trusted_key, public_key.as_ref()) {
        if trusted != pk {
            v.problem(
                ProblemKind::UntrustedKey,
                format!(
                    "signed by key {}… which is not the trusted gateway key {}…",
                    key_id(pk),
                    key_id(trusted)
                ),
            );
        }
    }
    let checking_key = public_key.or_else(|| trusted_key.copied());
    let checking_key_id = checking_key.as_ref().map(key_id);

    // The chain.
    let chain_bytes = match v.read_optional(CHAIN) {
        Some(b) => b,
        None => {
            if manifest_bytes.is_some() {
                v.problem(ProblemKind::Chain, "chain.jsonl is missing");
            }
            Vec::new()
        }
    };
    let (raw_lines, torn) = split_lines(&chain_bytes);
    let chain_complete_len = torn.map_or(chain_bytes.len() as u64, |(start, _)| start);
    let parsed: Vec<(&RawLine<'_>, Result<ChainLine, String>)> = raw_lines
        .iter()
        .map(|l| (l, ChainLine::parse(l.text)))
        .collect();
    let total: u64 = parsed
        .iter()
        .filter_map(|(_, p)| match p {
            Ok(ChainLine::Record(r)) => Some(r.len),
            _ => None,
        })
        .fold(0u64, u64::saturating_add);
    progress(0, total);

    let genesis_head = genesis(&session_id);
    let mut last_good = LastGood {
        records: 0,
        head: genesis_head,
        checkpointed: 0,
        chain_len: 0,
        file_lengths: BTreeMap::new(),
        ends_with_seal: false,
    };
    let mut in_prefix = true;
    let mut expected_seq = 1u64;
    let mut prev_head = genesis_head;
    let mut prev_seq = 0u64;
    let mut heads: BTreeMap<u64, Digest> = BTreeMap::new();
    let mut file_next: BTreeMap<String, u64> = BTreeMap::new();
    let mut records = 0u64;
    let mut checkpoints = 0u64;
    let mut bytes_ok = 0u64;
    let mut done = 0u64;
    let mut last_record_seq = 0u64;
    let mut seal: Option<ChainRecord> = None;
    let mut seal_good = false;
    let mut seal_checkpointed = false;
    let mut record_after_seal = false;

    for (raw, line) in &parsed {
        let n = raw.number;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                v.problem(
                    ProblemKind::Chain,
                    format!("chain.jsonl line {n}: not a valid chain line ({e})"),
                );
                in_prefix = false;
                continue;
            }
        };
        match line {
            ChainLine::Record(r) => {
                records += 1;
                last_record_seq = r.seq;
                let mut good = true;
                if r.seq != expected_seq {
                    v.problem(
                        ProblemKind::Chain,
                        format!(
                            "chain.jsonl line {n}: record has seq {} where {expected_seq} was \
                             expected (record dropped, inserted or reordered)",
                            r.seq
                        ),
                    );
                    good = false;
                }
                if r.prev != prev_head {
                    v.problem(
                        ProblemKind::Chain,
                        format!(
                            "chain record {}: prev does not match {} (record dropped or \
                             reordered)",
                            r.seq,
                            describe_prev(prev_seq)
                        ),
                    );
                    good = false;
                }
                match r.computed_head() {
                    Some(h) if h == r.head => {
                        heads.insert(r.seq, r.head);
                    }
                    Some(_) => {
                        v.problem(
                            ProblemKind::Chain,
                            format!(
                                "chain record {}: head does not recompute (record altered)",
                                r.seq
                            ),
                        );
                        good = false;
                    }
                    None => {
                        v.problem(
                            ProblemKind::Chain,
                            format!("chain record {}: file name is too long", r.seq),
                        );
                        good = false;
                    }
                }
                if seal.is_some() {
                    record_after_seal = true;
                    v.problem(
                        ProblemKind::Seal,
                        format!("chain record {} follows the seal record", r.seq),
                    );
                    good = false;
                }
                let data_good = if let Err(e) = validate_path(&r.file, false) {
                    v.problem(
                        ProblemKind::Chain,
                        format!("chain record {}: unusable file name: {e}", r.seq),
                    );
                    false
                } else if r.file == CHAIN || r.file == PARTIAL_MANIFEST {
                    v.problem(
                        ProblemKind::Chain,
                        format!(
                            "chain record {} covers {}, which is never chained",
                            r.seq, r.file
                        ),
                    );
                    false
                } else if r.file == MANIFEST {
                    let matches = r.offset == 0
                        && manifest_bytes
                            .as_ref()
                            .is_some_and(|b| b.len() as u64 == r.len && Digest::of(b) == r.sha256);
                    if manifest_bytes.is_none() {
                        v.problem(
                            ProblemKind::Seal,
                            format!("chain record {}: manifest.json is missing", r.seq),
                        );
                    } else if !matches {
                        v.problem(
                            ProblemKind::Seal,
                            "manifest.json does not match the seal record (manifest altered)",
                        );
                    }
                    if seal.is_none() {
                        seal = Some(r.clone());
                        seal_good = good && matches;
                    }
                    matches
                } else {
                    let next = file_next.get(&r.file).copied().unwrap_or(0);
                    let contiguous = r.offset == next;
                    if !contiguous {
                        v.problem(
                            ProblemKind::Chain,
                            format!(
                                "chain record {}: {} range starts at offset {} but the previous \
                                 range ends at offset {next} ({})",
                                r.seq,
                                r.file,
                                r.offset,
                                if r.offset > next { "gap" } else { "overlap" }
                            ),
                        );
                    }
                    let data = v.check_data(r);
                    file_next.insert(r.file.clone(), r.offset.saturating_add(r.len));
                    contiguous && data
                };
                if data_good {
                    bytes_ok = bytes_ok.saturating_add(r.len);
                }
                good &= data_good;
                if in_prefix && good {
                    last_good.records = r.seq;
                    last_good.head = r.head;
                    last_good.chain_len = raw.end;
                    last_good.ends_with_seal = r.file == MANIFEST;
                    if r.file != MANIFEST {
                        last_good
                            .file_lengths
                            .insert(r.file.clone(), r.offset + r.len);
                    }
                } else {
                    in_prefix = false;
                }
                expected_seq = expected_seq.max(r.seq.saturating_add(1));
                prev_head = r.head;
                prev_seq = r.seq;
                done = done.saturating_add(r.len);
                progress(done.min(total), total);
            }
            ChainLine::Checkpoint(c) => {
                let mut valid = true;
                match heads.get(&c.seq) {
                    None => {
                        v.problem(
                            ProblemKind::Checkpoint,
                            format!(
                                "checkpoint at chain.jsonl line {n} names record {}, which does \
                                 not precede it",
                                c.seq
                            ),
                        );
                        valid = false;
                    }
                    Some(h) if *h != c.head => {
                        v.problem(
                            ProblemKind::Checkpoint,
                            format!(
                                "checkpoint for record {}: head does not match record {}",
                                c.seq, c.seq
                            ),
                        );
                        valid = false;
                    }
                    Some(_) => {}
                }
                match (&checking_key, &checking_key_id) {
                    (Some(pk), Some(id)) => {
                        if &c.key_id != id {
                            v.problem(
                                ProblemKind::Checkpoint,
                                format!(
                                    "checkpoint for record {}: signed by key {} but the \
                                     recording's key is {id}",
                                    c.seq, c.key_id
                                ),
                            );
                            valid = false;
                        } else if !parse_signature(&c.sig).is_some_and(|sig| {
                            verify_checkpoint(pk, &session_id, c.seq, &c.head, &sig)
                        }) {
                            v.problem(
                                ProblemKind::Checkpoint,
                                format!("checkpoint for record {}: bad signature", c.seq),
                            );
                            valid = false;
                        }
                    }
                    _ => {
                        v.problem(
                            ProblemKind::Checkpoint,
                            format!(
                                "checkpoint for record {}: no public key to check the signature",
                                c.seq
                            ),
                        );
                        valid = false;
                    }
                }
                if valid {
                    checkpoints += 1;
                    if seal.as_ref().is_some_and(|s| s.seq == c.seq) {
                        seal_checkpointed = true;
                    }
                    if in_prefix {
                        last_good.chain_len = raw.end;
                        last_good.checkpointed = c.seq;
                    }
                } else {
                    in_prefix = false;
                }
            }
        }
    }
    if let Some((start, len)) = torn {
        v.problem(
            ProblemKind::Chain,
            format!(
                "chain.jsonl ends with an incomplete line of {len} bytes after offset {start} \
                 (interrupted write or truncation)"
            ),
        );
    }

    let sealed = seal.is_some() && seal_good && seal_checkpointed && !record_after_seal;

    // Files nobody chained, and bytes past the chained end.
    match backend.list_files(dir) {
        Ok(files) => {
            for f in files {
                if f == CHAIN {
                    continue;
                }
                if f == PARTIAL_MANIFEST {
                    if sealed {
                        v.notes.push(
                            "manifest.partial.json is still present although the recording is \
                             sealed (removal after the seal did not finish)"
                                .to_owned(),
                        );
                    }
                    continue;
                }
                if f == MANIFEST {
                    if seal.is_none() {
                        v.problem(
                            ProblemKind::Unchained,
                            "manifest.json is not covered by a seal record",
                        );
                    }
                    continue;
                }
                let actual = match backend.len(&join(dir, &f)) {
                    Ok(Some(l)) => l,
                    Ok(None) => continue,
                    Err(e) => {
                        v.problem(ProblemKind::Io, format!("{f} cannot be read: {e}"));
                        continue;
                    }
                };
                match file_next.get(&f) {
                    None => v.problem(
                        ProblemKind::Unchained,
                        format!(
                            "{f} is not covered by any chain record ({actual} unchained bytes)"
                        ),
                    ),
                    Some(&end) if actual > end => v.problem(
                        ProblemKind::Unchained,
                        format!(
                            "{f} has {} unchained bytes after offset {end}",
                            actual - end
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
        Err(e) => v.problem(
            ProblemKind::Io,
            format!("the recording folder cannot be listed: {e}"),
        ),
    }

    // The seal.
    if let Some(m) = manifest.as_ref() {
        match (&seal, &m.chain) {
            (None, Some(cs)) if last_record_seq < cs.records.saturating_add(1) => v.problem(
                ProblemKind::Seal,
                format!(
                    "chain ends at record {last_record_seq} but manifest.json says the chain has \
                     {} records ({} plus the seal record) (chain truncated)",
                    cs.records.saturating_add(1),
                    cs.records
                ),
            ),
            (None, _) => v.problem(
                ProblemKind::Seal,
                "manifest.json exists but the chain has no seal record for it",
            ),
            (Some(s), summary) => {
                if !seal_checkpointed {
                    v.problem(
                        ProblemKind::Seal,
                        format!(
                            "the seal record {} has no valid checkpoint after it (chain truncated \
                             or checkpoint altered)",
                            s.seq
                        ),
                    );
                }
                match summary {
                    None => v.problem(ProblemKind::Seal, "manifest.json has no chain summary"),
                    Some(cs) => {
                        if cs.records.saturating_add(1) != s.seq {
                            v.problem(
                                ProblemKind::Seal,
                                format!(
                                    "manifest.json says {} records precede the seal record but \
                                     the seal record is record {} (records dropped or manifest \
                                     altered)",
                                    cs.records, s.seq
                                ),
                            );
                        } else {
                            let expected = if cs.records == 0 {
                                Some(genesis_head)
                            } else {
                                heads.get(&cs.records).copied()
                            };
                            if expected != Some(cs.head) {
                                v.problem(
                                    ProblemKind::Seal,
                                    format!(
                                        "manifest.json chain head does not match {}",
                                        describe_prev(cs.records)
                                    ),
                                );
                            }
                        }
                    }
                }
            }
        }
        if seal.is_some() {
            if m.state == RecordingState::Recording {
                v.problem(
                    ProblemKind::Seal,
                    "manifest.json is sealed with state \"recording\"",
                );
            }
            let mut seen = BTreeSet::new();
            for f in m.listed_files() {
                if seen.insert(f) && !file_next.contains_key(f) {
                    v.problem(
                        ProblemKind::Manifest,
                        format!("manifest.json lists {f}, which is not chained"),
                    );
                }
            }
            for s in m.periods.iter().flat_map(|p| &p.segments) {
                if let Some(&chained) = file_next.get(&s.file) {
                    if chained != s.bytes {
                        v.problem(
                            ProblemKind::Manifest,
                            format!(
                                "manifest.json says {} has {} bytes but the chain covers {chained}",
                                s.file, s.bytes
                            ),
                        );
                    }
                }
            }
        }
    }

    let state = manifest
        .as_ref()
        .filter(|_| seal.is_some())
        .or(partial.as_ref())
        .or(manifest.as_ref())
        .map(|m| m.state);
    let ok = sealed && v.problems.is_empty();
    VerifyReport {
        dir: dir.to_owned(),
        session_id,
        ok,
        sealed,
        state,
        records,
        checkpoints,
        bytes: bytes_ok,
        key_id: checking_key_id,
        problems: v.problems,
        notes: v.notes,
        last_good,
        chain_complete_len,
    }
}
