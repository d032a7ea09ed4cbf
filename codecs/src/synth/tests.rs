//! Behaviour of the standard workload.

use super::blocks::apportion;
use super::commands::COMMANDS;
use super::content::{clock_text, APP_TITLES, PROMPT};
use super::layout::{BAR_H, CH, CW, C_BAR, C_DESKTOP, C_PROMPT};
use super::*;

pub(super) fn fb(w: u32, h: u32) -> Framebuffer {
    Framebuffer::new(w, h).unwrap()
}

/// Drives a workload from change to change up to `until`, then to `until` itself.
pub(super) fn run_by_changes(w: &mut Workload, f: &mut Framebuffer, until: u64) {
    w.advance(0, f);
    let mut t = 0;
    while let Some(n) = w.next_change_after(t).filter(|&n| n <= until) {
        w.advance(n, f);
        t = n;
    }
    w.advance(until, f);
}

#[test]
fn same_seed_same_pixels_however_it_is_driven() {
    let times = [0, 15_000, 61_234, 200_000, 333_333, 599_999];
    let mut a = Workload::standard(7, 640, 400, 600_000);
    let mut b = Workload::standard(7, 640, 400, 600_000);
    let mut c = Workload::standard(8, 640, 400, 600_000);
    let (mut fa, mut fbuf, mut fc) = (fb(640, 400), fb(640, 400), fb(640, 400));
    let mut tb = 0;
    let mut differs = 0;
    for &t in &times {
        run_by_changes(&mut a, &mut fa, t);
        while tb < t {
            tb = (tb + 97).min(t);
            b.advance(tb, &mut fbuf);
        }
        b.advance(t, &mut fbuf);
        c.advance(t, &mut fc);
        assert!(fa.pixels() == fbuf.pixels(), "pixels differ at {t} ms");
        differs += usize::from(fa.pixels() != fc.pixels());
    }
    assert!(
        differs >= times.len() - 2,
        "a different seed gives a different session"
    );
    assert_ne!(a.blocks(), c.blocks());
}

#[test]
fn inputs_are_the_same_however_it_is_driven() {
    let mut a = Workload::standard(3, 800, 600, 300_000);
    let mut b = Workload::standard(3, 800, 600, 300_000);
    let (mut fa, mut fbuf) = (fb(800, 600), fb(800, 600));
    let mut ia = a.advance(0, &mut fa);
    let mut prev = 0;
    let mut t = 0;
    while let Some(n) = a.next_change_after(t) {
        let got = a.advance(n, &mut fa);
        for e in &got {
            assert!(e.t() > prev && e.t() <= n, "{e:?} outside ({prev}, {n}]");
        }
        ia.extend(got);
        prev = n;
        t = n;
    }
    ia.extend(a.advance(300_000, &mut fa));
    let mut ib = Vec::new();
    for t in (0..=300_000).step_by(1000) {
        ib.extend(b.advance(t, &mut fbuf));
    }
    assert_eq!(ia, ib);
    assert!(ia.windows(2).all(|w| w[0].t() <= w[1].t()));
    for e in &ia {
        match e {
            SynthInput::Pointer { x, y, .. } | SynthInput::Button { x, y, .. } => {
                assert!(*x < 800 && *y < 600)
            }
            _ => {}
        }
    }
}

#[test]
fn phase_totals_match_the_standard_mix() {
    let w = Workload::standard(42, 320, 240, 600_000);
    let count = |p| w.blocks().iter().filter(|&&b| b == p).count();
    assert_eq!(
        [
            Phase::Idle,
            Phase::Typing,
            Phase::Scrolling,
            Phase::Windows,
            Phase::Switching
        ]
        .map(count),
        [8, 6, 3, 2, 1]
    );
    // Measured through phase_at as a report would.
    for (phase, pct) in STANDARD_MIX {
        let ms = (0..600_000)
            .step_by(100)
            .filter(|&t| w.phase_at(t) == phase)
            .count() as u64
            * 100;
        let want = 600_000 * u64::from(pct) / 100;
        assert!(
            ms.abs_diff(want) <= BLOCK_MS,
            "{phase:?}: {ms} ms vs {want} ms"
        );
    }
    // Odd lengths stay within one block per phase.
    for d in [30_000u64, 95_000, 437_000, 3_600_000] {
        let w = Workload::standard(1, 320, 240, d);
        let n = d.div_ceil(BLOCK_MS);
        for (phase, pct) in STANDARD_MIX {
            let got = w.blocks().iter().filter(|&&b| b == phase).count() as f64;
            let want = n as f64 * f64::from(pct) / 100.0;
            assert!((got - want).abs() <= 1.0, "{d}: {phase:?} {got} vs {want}");
        }
        assert_eq!(w.blocks().len() as u64, n);
    }
}

#[test]
fn idle_changes_only_cursor_and_clock() {
    let (width, height) = (1280, 720);
    let mut w = Workload::standard(11, width, height, 600_000);
    let mut f = fb(width, height);
    let mut t = 0;
    w.advance(0, &mut f);
    let mut idle_steps = 0;
    while let Some(n) = w.next_change_after(t) {
        let idle_block = w.phase_at(n) == Phase::Idle && n % BLOCK_MS != 0;
        f.take_damage();
        w.advance(n, &mut f);
        t = n;
        if !idle_block {
            continue;
        }
        idle_steps += 1;
        let cursor = w
            .scene
            .cursor_cell()
            .expect("the shell cursor is visible when idle");
        let damage = f.take_damage();
        let area: u64 = damage.iter().map(|r| r.area()).sum();
        assert!(
            area <= u64::from(width) * 64 + 64 * 64,
            "idle step at {n} damaged {area} px"
        );
        for r in damage {
            let near_cursor = r.intersect(&cursor).is_some();
            assert!(r.y < BAR_H || near_cursor, "idle step at {n} damaged {r:?}");
        }
    }
    assert!(
        idle_steps >= 8 * 59,
        "every idle block blinks and ticks ({idle_steps})"
    );
}

#[test]
fn no_change_happens_between_announced_changes() {
    let d = 150_000;
    let mut w = Workload::standard(5, 640, 480, d);
    let mut f = fb(640, 480);
    w.advance(0, &mut f);
    let mut change_times = vec![0];
    let mut t = 0;
    while let Some(n) = w.next_change_after(t) {
        assert!(n > t);
        change_times.push(n);
        t = n;
    }
    assert!(*change_times.last().unwrap() <= d);
    let mut gen = f.generation();
    for t in (5..=d).step_by(5) {
        w.advance(t, &mut f);
        if f.generation() != gen {
            assert!(
                change_times.iter().any(|&c| c > t - 5 && c <= t),
                "screen changed in ({}, {t}] without an announced change",
                t - 5
            );
            gen = f.generation();
        }
    }
    assert_eq!(w.next_change_after(d), None);
}

#[test]
fn typing_emits_keys_return_and_text() {
    let mut w = Workload::standard(9, 1024, 768, 600_000);
    let mut f = fb(1024, 768);
    let inputs = w.advance(600_000, &mut f);
    let returns = inputs
        .iter()
        .filter(|e| {
            matches!(
                e,
                SynthInput::Key {
                    keysym: KEYSYM_RETURN,
                    down: true,
                    ..
                }
            )
        })
        .count();
    let texts: Vec<&str> = inputs
        .iter()
        .filter_map(|e| {
            if let SynthInput::Text { text, .. } = e {
                Some(text.as_str())
            } else {
                None
            }
        })
        .collect();
    assert!(
        returns >= 6 * 3,
        "about 4 commands per typing block ({returns})"
    );
    assert!(texts.iter().any(|t| COMMANDS.contains(t)));
    let downs = inputs
        .iter()
        .filter(|e| matches!(e, SynthInput::Key { down: true, .. }))
        .count();
    let ups = inputs
        .iter()
        .filter(|e| matches!(e, SynthInput::Key { down: false, .. }))
        .count();
    assert_eq!(downs, ups, "every press is released");
    let presses = inputs
        .iter()
        .filter(|e| {
            matches!(
                e,
                SynthInput::Button {
                    button: 1,
                    down: true,
                    ..
                }
            )
        })
        .count();
    let releases = inputs
        .iter()
        .filter(|e| {
            matches!(
                e,
                SynthInput::Button {
                    button: 1,
                    down: false,
                    ..
                }
            )
        })
        .count();
    assert_eq!(presses, releases);
    assert!(
        presses >= 2 * 3 * 3,
        "two drags and a close per window cycle ({presses})"
    );
    assert!(inputs.iter().any(
        |e| matches!(e, SynthInput::Title { title, .. } if APP_TITLES.contains(&title.as_str()))
    ));
}

#[test]
fn the_screen_looks_like_a_desktop() {
    let mut w = Workload::standard(1, 1920, 1080, 60_000);
    let mut f = fb(1920, 1080);
    w.advance(0, &mut f);
    assert_eq!(f.pixel(5, 2), C_BAR);
    assert_eq!(f.pixel(1900, 1070), C_DESKTOP);
    let l = w.scene.layout;
    // The prompt is drawn in the terminal: some prompt-coloured pixels on the second row.
    let row_y = l.text_y + CH;
    let green = (row_y..row_y + CH)
        .flat_map(|y| (l.text_x..l.text_x + PROMPT.len() as u32 * CW).map(move |x| (x, y)))
        .filter(|&(x, y)| f.pixel(x, y) == C_PROMPT)
        .count();
    assert!(green > 50, "prompt text visible ({green})");
    assert_eq!(clock_text(3_723_000), "Mon 23 Nov  10:43:03");
}

#[test]
fn tiny_screens_do_not_panic() {
    for (w, h) in [(1, 1), (16, 16), (100, 50), (3000, 20)] {
        let mut wl = Workload::standard(2, w, h, 120_000);
        let mut f = fb(w, h);
        let mut t = 0;
        while let Some(n) = wl.next_change_after(t) {
            wl.advance(n, &mut f);
            t = n;
        }
    }
}

/// Drawing cost per phase at 1080p (`cargo test -p psmgate-codecs synth -- --ignored --nocapture`).
#[test]
#[ignore = "timing report"]
fn drawing_cost_report() {
    let mut w = Workload::standard(1, 1920, 1080, 600_000);
    let mut f = fb(1920, 1080);
    let mut per_phase = std::collections::BTreeMap::<Phase, (u32, std::time::Duration, u64)>::new();
    let mut t = 0;
    while let Some(n) = w.next_change_after(t) {
        f.take_damage();
        let start = std::time::Instant::now();
        w.advance(n, &mut f);
        let spent = start.elapsed();
        let area: u64 = f.take_damage().iter().map(|r| r.area()).sum();
        let e = per_phase.entry(w.phase_at(n)).or_default();
        *e = (e.0 + 1, e.1 + spent, e.2 + area);
        t = n;
    }
    for (phase, (steps, spent, area)) in per_phase {
        println!(
            "{:<10} {steps:>5} changes, {:>8.3} ms/change, {:>9} damaged px/change",
            phase.name(),
            spent.as_secs_f64() * 1000.0 / f64::from(steps),
            area / u64::from(steps)
        );
    }
}

#[test]
fn apportion_is_exact_for_twenty_blocks() {
    assert_eq!(apportion(20), [8, 6, 3, 2, 1]);
    assert_eq!(apportion(1), [1, 0, 0, 0, 0]);
    assert_eq!(apportion(0), [0; 5]);
    for n in 0..200 {
        assert_eq!(apportion(n).iter().sum::<u64>(), n);
    }
}
