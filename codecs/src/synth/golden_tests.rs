//! The standard workload must stay bit-identical: benchmarks compare on it.

use super::tests::fb;
use super::{SynthInput, Workload};

/// Feeds one input event into `h` field by field, so the digest does not depend on how
/// `SynthInput` formats itself.
fn feed_input(h: &mut sha2::Sha256, e: &SynthInput) {
    use sha2::Digest;
    let (tag, t) = match e {
        SynthInput::Key { t, .. } => (1u8, *t),
        SynthInput::Text { t, .. } => (2, *t),
        SynthInput::Pointer { t, .. } => (3, *t),
        SynthInput::Button { t, .. } => (4, *t),
        SynthInput::Title { t, .. } => (5, *t),
    };
    h.update([tag]);
    h.update(t.to_le_bytes());
    match e {
        SynthInput::Key { keysym, down, .. } => {
            h.update(keysym.to_le_bytes());
            h.update([u8::from(*down)]);
        }
        SynthInput::Text { text, .. } | SynthInput::Title { title: text, .. } => {
            h.update((text.len() as u64).to_le_bytes());
            h.update(text.as_bytes());
        }
        SynthInput::Pointer { x, y, .. } => {
            h.update(x.to_le_bytes());
            h.update(y.to_le_bytes());
        }
        SynthInput::Button {
            button, down, x, y, ..
        } => {
            h.update([*button, u8::from(*down)]);
            h.update(x.to_le_bytes());
            h.update(y.to_le_bytes());
        }
    }
}

/// SHA-256 over the standard 10-minute 1080p session (seed 1): at every screen change in
/// the first 3 minutes and every 10 s (plus a few odd times) over the whole session, the
/// time, the inputs since the previous stop and every pixel of the framebuffer.
fn standard_session_digest() -> String {
    use sha2::{Digest, Sha256};
    const D: u64 = 600_000;
    let mut w = Workload::standard(1, 1920, 1080, D);
    let mut f = fb(1920, 1080);
    let mut stops: Vec<u64> = (0..=D).step_by(10_000).collect();
    stops.extend([1, 61_234, 333_333, 599_999]);
    let mut t = 0;
    while let Some(n) = w.next_change_after(t).filter(|&n| n <= 180_000) {
        stops.push(n);
        t = n;
    }
    stops.sort_unstable();
    stops.dedup();
    let mut h = Sha256::new();
    let mut bytes = Vec::with_capacity(f.pixels().len() * 4);
    for &t in &stops {
        let inputs = w.advance(t, &mut f);
        h.update(t.to_le_bytes());
        h.update((inputs.len() as u64).to_le_bytes());
        for e in &inputs {
            feed_input(&mut h, e);
        }
        bytes.clear();
        bytes.extend(f.pixels().iter().flat_map(|p| p.to_le_bytes()));
        h.update(&bytes);
    }
    assert!(
        stops.len() > 300,
        "the first 3 minutes have many changes ({})",
        stops.len()
    );
    hex::encode(h.finalize())
}

/// The standard workload is what benchmarks compare on: its pixels and inputs must not
/// change. Update the constant only for a deliberate, documented change of the workload.
#[test]
fn standard_workload_is_bit_identical() {
    const EXPECTED: &str = "7f31873b0a653d4211c33dea08c34e4fad92dfefa28d529eaf8c5e4f7143408c";
    assert_eq!(standard_session_digest(), EXPECTED);
}
