//! Writer → verify round trip, chain known-answer test and tamper detection.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use common::*;
use psmgate_storage::keys::{key_id, GatewayKey};
use psmgate_storage::manifest::{Manifest, RecordingState};
use psmgate_storage::verify::{verify, ProblemKind, VerifyReport};
use psmgate_storage::writer::RecordingWriter;
use sha2::{Digest, Sha256};

fn run(f: &Fixture, dir: &str) -> VerifyReport {
    verify(
        f.backend.as_ref(),
        dir,
        Some(f.key.verifying_key()),
        &mut |_, _| {},
    )
}

fn assert_problem(report: &VerifyReport, kind: ProblemKind, expected: &str) {
    assert!(!report.ok, "tampering not detected: {report:#?}");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == kind && p.message == expected),
        "expected {kind:?} problem {expected:?}, got {:#?}",
        report.problems
    );
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap()
}

/// Index in `lines` of the data record with `seq`.
fn record_line(lines: &[String], seq: u64) -> usize {
    lines
        .iter()
        .position(|l| {
            let v = json(l);
            v.get("checkpoint").is_none() && v["seq"] == seq
        })
        .unwrap()
}

#[test]
fn sealed_recording_verifies() {
    let f = Fixture::new();
    let dir = sealed_recording(&f);
    assert_eq!(dir, format!("2026/11/22/{ID}"));
    let mut calls = Vec::new();
    let report = verify(
        f.backend.as_ref(),
        &dir,
        Some(f.key.verifying_key()),
        &mut |done, total| calls.push((done, total)),
    );
    assert!(report.ok, "{report:#?}");
    assert!(report.sealed);
    assert!(report.problems.is_empty());
    assert_eq!(report.state, Some(RecordingState::Completed));
    assert_eq!(report.records, 8);
    assert_eq!(report.checkpoints, 3);
    assert_eq!(report.key_id, Some(f.key.key_id()));
    let (done, total) = *calls.last().unwrap();
    assert_eq!(done, total);
    assert_eq!(report.bytes, total);

    // The partial manifest is gone; the sealed manifest carries the chain summary.
    assert!(!f.path(&dir, "manifest.partial.json").exists());
    let m = Manifest::from_json(&f.read(&dir, "manifest.json")).unwrap();
    assert_eq!(m.state, RecordingState::Completed);
    assert_eq!(m.duration_ms, Some(300_000));
    assert_eq!(m.chain.as_ref().unwrap().records, 7);
    assert_eq!(m.key_id, f.key.key_id());

    // Without a trusted key the manifest's key is used and the recording still verifies.
    let report = verify(f.backend.as_ref(), &dir, None, &mut |_, _| {});
    assert!(report.ok, "{report:#?}");
}

/// Recomputes the first head and the last checkpoint signature straight from the format
/// document, using only sha2 / ed25519-dalek, not the crate's own helpers.
#[test]
fn chain_head_known_answer() {
    let f = Fixture::new();
    let dir = sealed_recording(&f);
    let lines = f.chain_lines(&dir);

    let mut genesis = Sha256::new();
    genesis.update(b"psmgate-chain-v1\0");
    genesis.update(ID.as_bytes());
    let genesis: [u8; 32] = genesis.finalize().into();

    let data = bytes(1, 100);
    let data_sha: [u8; 32] = Sha256::digest(&data).into();
    let file = b"video/init.mp4";
    let mut h = Sha256::new();
    h.update(genesis);
    h.update(1u64.to_be_bytes());
    h.update((file.len() as u16).to_be_bytes());
    h.update(file);
    h.update(0u64.to_be_bytes());
    h.update(100u64.to_be_bytes());
    h.update(data_sha);
    let expected_head = hex::encode(h.finalize());

    let first = json(&lines[0]);
    assert_eq!(first["seq"], 1);
    assert_eq!(first["file"], "video/init.mp4");
    assert_eq!(first["offset"], 0);
    assert_eq!(first["len"], 100);
    assert_eq!(first["sha256"], hex::encode(data_sha));
    assert_eq!(first["prev"], hex::encode(genesis));
    assert_eq!(first["head"], expected_head);

    // Every line links to the previous record's head and recomputes.
    let mut prev = genesis.to_vec();
    for line in &lines {
        let v = json(line);
        if v.get("checkpoint").is_some() {
            continue;
        }
        assert_eq!(v["prev"], hex::encode(&prev));
        let file = v["file"].as_str().unwrap().as_bytes();
        let mut h = Sha256::new();
        h.update(&prev);
        h.update(v["seq"].as_u64().unwrap().to_be_bytes());
        h.update((file.len() as u16).to_be_bytes());
        h.update(file);
        h.update(v["offset"].as_u64().unwrap().to_be_bytes());
        h.update(v["len"].as_u64().unwrap().to_be_bytes());
        h.update(hex::decode(v["sha256"].as_str().unwrap()).unwrap());
        let head = h.finalize().to_vec();
        assert_eq!(v["head"], hex::encode(&head));
        prev = head;
    }

    // The last line is the checkpoint of the seal record (8), signed as documented.
    let seal = json(&lines[lines.len() - 2]);
    assert_eq!(seal["file"], "manifest.json");
    assert_eq!(seal["seq"], 8);
    let cp = json(lines.last().unwrap());
    assert_eq!(cp["checkpoint"], true);
    assert_eq!(cp["seq"], 8);
    assert_eq!(cp["head"], seal["head"]);
    let pk_raw = f.key.verifying_key().to_bytes();
    let expected_id = hex::encode(Sha256::digest(pk_raw))[..16].to_owned();
    assert_eq!(cp["key_id"], expected_id);
    let mut msg = b"psmgate-chain-v1\0".to_vec();
    msg.extend_from_slice(ID.as_bytes());
    msg.push(0);
    msg.extend_from_slice(&8u64.to_be_bytes());
    msg.extend_from_slice(&hex::decode(seal["head"].as_str().unwrap()).unwrap());
    let sig = base64::engine::general_purpose::STANDARD
        .decode(cp["sig"].as_str().unwrap())
        .unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk_raw).unwrap();
    vk.verify_strict(&msg, &sig).unwrap();

    // The seal record covers the manifest bytes exactly.
    let manifest = f.read(&dir, "manifest.json");
    assert_eq!(seal["len"], manifest.len() as u64);
    assert_eq!(seal["sha256"], hex::encode(Sha256::digest(&manifest)));
}

#[test]
fn flipped_segment_byte_is_detected() {
    let f = Fixture::new();
    let dir = sealed_recording(&f);
    let mut seg = f.read(&dir, "video/000002.m4s");
    seg[320] ^= 0x01; // inside record 6 (bytes 300..450)
    f.write(&dir, "video/000002.m4s", &seg);
    let report = run(&f, &dir);
    assert_problem(
        &report,
        ProblemKind::Data,
        "video/000002.m4s bytes 300..450 do not match chain record 6 (sha256 mismatch)",
    );
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
}

#[test]
fn dropped_chain_line_is_detected() {
    let f = Fixture::new();
    let dir = sealed_recording(&f);
    let mut lines = f.chain_lines(&dir);
    let i = record_line(&lines, 5);
    lines.remove(i);
    f.write_chain_lines(&dir, &lines);
    let report = run(&f, &dir);
    assert_problem(
        &report,
        ProblemKind::Chain,
        "chain record 6: prev does not match head of record 4 (record dropped or reordered)",
    );
    assert_problem(
        &report,
        ProblemKind::Chain,
        &format!(
            "chain.jsonl line {}: record has seq 6 where 5 was expected (record dropped, \
             inserted or reordered)",
            i + 1
        ),
    );
    assert!(!report.sealed || !report.problems.is_empty());
}

#[test]
fn swapped_chain_lines_are_detected() {
    let f = Fixture::new();
    let dir = sealed_recording(&f);
    let mut lines = f.chain_lines(&dir);
    let i = record_line(&lines, 5);
    assert_eq!(record_line(&lines, 6), i + 1);
    lines.swap(i, i + 1);
    f.write_chain_lines(&dir, &lines);
    let report = run(&f, &dir);
    assert_problem(
        &report,
        ProblemKind::Chain,
        "chain record 6: prev does not match head of record 4 (record dropped or reordered)",
    );
    assert_problem(
        &report,
        ProblemKind::Chain,
        "chain record 5: prev does not match head of record 6 (record dropped or reordered)",
    );
    assert_problem(
        &report,
        ProblemKind::Chain,
        "chain record 6: video/000002.m4s range starts at offset 300 but the previous range \
         ends at offset 0 (gap)",
    );
}

#[test]
fn truncated_chain_is_detected() {
    for n in 1..=5usize {
        let f = Fixture::new();
        let dir = sealed_recording(&f);
        let mut lines = f.chain_lines(&dir);
        lines.truncate(lines.len() - n);
        f.write_chain_lines(&dir, &lines);
        let report = run(&f, &dir);
        assert!(!report.ok && !report.sealed, "n={n}: {report:#?}");
        match n {
            1 => assert_problem(
                &report,
                ProblemKind::Seal,
                "the seal record 8 has no valid checkpoint after it (chain truncated or \
                 checkpoint altered)",
            ),
            _ => {
                let last = lines
                    .iter()
                    .rev()
                    .map(|l| json(l))
                    .find(|v| v.get("checkpoint").is_none())
                    .unwrap()["seq"]
                    .as_u64()
                    .unwrap();
                assert_problem(
                    &report,
                    ProblemKind::Seal,
                    &format!(
                        "chain ends at record {last} but manifest.json says the chain has 8 \
                         records (7 plus the seal record) (chain truncated)"
                    ),
                );
            }
        }
    }
}

#[test]
fn altered_manifest_is_detected() {
    let f = Fixture::new();
    let dir = sealed_recording(&f);
    let m = String::from_utf8(f.read(&dir, "manifest.json")).unwrap();
    f.write(
        &dir,
        "manifest.json",
        m.replace("\"alice\"", "\"bob\"").as_bytes(),
    );
    let report = run(&f, &dir);
    assert_problem(
        &report,
        ProblemKind::Seal,
        "manifest.json does not match the seal record (manifest altered)",
    );
    assert!(!report.sealed);
}

#[test]
fn appended_segment_bytes_are_detected() {
    let f = Fixture::new();
    let dir = sealed_recording(&f);
    f.append_raw(&dir, "video/000001.m4s", &[0u8; 300]);
    let report = run(&f, &dir);
    assert_problem(
        &report,
        ProblemKind::Unchained,
        "video/000001.m4s has 300 unchained bytes after offset 450",
    );
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
}

#[test]
fn extra_file_is_detected() {
    let f = Fixture::new();
    let dir = sealed_recording(&f);
    f.write(&dir, "video/000003.m4s", &[1u8; 42]);
    let report = run(&f, &dir);
    assert_problem(
        &report,
        ProblemKind::Unchained,
        "video/000003.m4s is not covered by any chain record (42 unchained bytes)",
    );
}

#[test]
fn deleted_segment_is_detected() {
    let f = Fixture::new();
    let dir = sealed_recording(&f);
    std::fs::remove_file(f.path(&dir, "video/000002.m4s")).unwrap();
    let report = run(&f, &dir);
    assert_problem(
        &report,
        ProblemKind::Data,
        "chain record 5: video/000002.m4s is missing",
    );
}

#[test]
fn untrusted_key_is_detected() {
    let f = Fixture::new();
    let dir = sealed_recording(&f);
    let other = GatewayKey::generate();
    let report = verify(
        f.backend.as_ref(),
        &dir,
        Some(other.verifying_key()),
        &mut |_, _| {},
    );
    assert_problem(
        &report,
        ProblemKind::UntrustedKey,
        &format!(
            "signed by key {}… which is not the trusted gateway key {}…",
            f.key.key_id(),
            other.key_id()
        ),
    );
}

/// A complete forgery made with another key is self-consistent; only the trusted key catches it.
#[test]
fn forged_recording_with_other_key_is_detected() {
    let f = Fixture::new();
    let forger = Arc::new(GatewayKey::generate());
    let mut w = RecordingWriter::create(
        Arc::clone(&f.backend),
        Arc::clone(&forger),
        manifest(ID, started()),
    )
    .unwrap();
    write_content(&mut w);
    let dir = w.dir().to_owned();
    w.seal(RecordingState::Completed, "x").unwrap();
    let untrusted = verify(f.backend.as_ref(), &dir, None, &mut |_, _| {});
    assert!(untrusted.ok);
    let report = run(&f, &dir);
    assert!(!report.ok);
    assert!(report
        .problems
        .iter()
        .any(|p| p.kind == ProblemKind::UntrustedKey
            && p.message.contains(&key_id(forger.verifying_key()))));
}

#[test]
fn bad_checkpoint_signature_is_detected() {
    let f = Fixture::new();
    let dir = sealed_recording(&f);
    let mut lines = f.chain_lines(&dir);
    let i = lines
        .iter()
        .position(|l| json(l).get("checkpoint").is_some())
        .unwrap();
    let mut cp = json(&lines[i]);
    assert_eq!(cp["seq"], 4);
    // A valid signature by the right key, but over another message.
    let sig = f
        .key
        .sign_checkpoint(ID, 3, &psmgate_storage::chain::Digest([0; 32]));
    cp["sig"] = psmgate_storage::keys::signature_base64(&sig).into();
    lines[i] = serde_json::to_string(&cp).unwrap();
    f.write_chain_lines(&dir, &lines);
    let report = run(&f, &dir);
    assert_problem(
        &report,
        ProblemKind::Checkpoint,
        "checkpoint for record 4: bad signature",
    );
    assert_eq!(report.problems.len(), 1, "{:#?}", report.problems);
}

#[test]
fn uppercase_hex_is_rejected() {
    let f = Fixture::new();
    let dir = sealed_recording(&f);
    let mut lines = f.chain_lines(&dir);
    let mut v = json(&lines[0]);
    v["sha256"] = v["sha256"].as_str().unwrap().to_uppercase().into();
    lines[0] = serde_json::to_string(&v).unwrap();
    f.write_chain_lines(&dir, &lines);
    let report = run(&f, &dir);
    assert!(!report.ok);
    assert!(report.problems[0]
        .message
        .starts_with("chain.jsonl line 1: not a valid chain line"));
}

#[test]
fn live_recording_is_consistent_but_not_ok() {
    let f = Fixture::new();
    let mut w = writer(&f);
    write_content(&mut w);
    let dir = w.dir().to_owned();
    let report = run(&f, &dir);
    assert!(report.consistent(), "{:#?}", report.problems);
    assert!(!report.ok);
    assert!(!report.sealed);
    assert_eq!(report.state, Some(RecordingState::Recording));
    assert_eq!(report.last_good.records, 7);
    assert_eq!(report.last_good.checkpointed, 7);
    assert_eq!(report.last_good.file_lengths["video/000001.m4s"], 450);
    drop(w);
}
