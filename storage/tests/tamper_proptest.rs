//! Any single byte change anywhere in a sealed recording is detected.

mod common;

use common::*;
use proptest::prelude::*;
use psmgate_storage::verify::verify;

const FILES: &[&str] = &[
    "chain.jsonl",
    "manifest.json",
    "video/init.mp4",
    "video/000001.m4s",
    "video/000002.m4s",
    "events/000001.jsonl",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_byte_flip_is_detected(
        file in 0..FILES.len(),
        position in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let f = Fixture::new();
        let dir = sealed_recording(&f);
        let name = FILES[file];
        let mut content = f.read(&dir, name);
        let i = position.index(content.len());
        content[i] ^= mask;
        f.write(&dir, name, &content);
        let report = verify(f.backend.as_ref(), &dir, Some(f.key.verifying_key()), &mut |_, _| {});
        prop_assert!(!report.ok, "flip of byte {} of {} with {:#04x} undetected", i, name, mask);
        prop_assert!(!report.problems.is_empty());
    }
}
