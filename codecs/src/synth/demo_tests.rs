//! Behaviour of the demo tour.

use super::blocks::{TOUR_FULL_MS, TOUR_MIN_MS, TOUR_MIN_TYPING_MS};
use super::commands::COMMANDS;
use super::content::{APP_TITLES, PAGER_CMD};
use super::plan::Act;
use super::tests::{fb, run_by_changes};
use super::*;

const TOUR: [Phase; 6] = [
    Phase::Typing,
    Phase::Windows,
    Phase::Scrolling,
    Phase::Switching,
    Phase::Typing,
    Phase::Idle,
];

/// Every input of a whole session, driven change by change.
fn all_inputs(w: &mut Workload, f: &mut Framebuffer) -> Vec<SynthInput> {
    let mut inputs = w.advance(0, f);
    let mut t = 0;
    while let Some(n) = w.next_change_after(t) {
        inputs.extend(w.advance(n, f));
        t = n;
    }
    inputs.extend(w.advance(w.duration_ms(), f));
    inputs
}

/// The typed commands (not the pager) committed in `[from, to)`.
fn commands_in(inputs: &[SynthInput], from: u64, to: u64) -> Vec<&str> {
    inputs
        .iter()
        .filter_map(|e| match e {
            SynthInput::Text { t, text } if (from..to).contains(t) && text != PAGER_CMD => {
                Some(text.as_str())
            }
            _ => None,
        })
        .collect()
}

fn is_key_down(e: &SynthInput) -> bool {
    matches!(e, SynthInput::Key { down: true, .. })
}

#[test]
fn a_twenty_second_demo_types_two_commands_and_starts_at_once() {
    let mut w = Workload::demo(1, 1280, 720, 20_000);
    let mut f = fb(1280, 720);
    let inputs = all_inputs(&mut w, &mut f);
    let commands = commands_in(&inputs, 0, 20_000);
    assert!(commands.len() >= 2, "typed commands: {commands:?}");
    assert!(commands.iter().all(|c| COMMANDS.contains(c)));
    let early_keys = inputs
        .iter()
        .filter(|e| is_key_down(e) && e.t() < 5_000)
        .count();
    assert!(
        early_keys >= 5,
        "key presses in the first 5 s ({early_keys})"
    );
}

#[test]
fn the_first_typing_block_shows_two_commands_with_output() {
    for seed in 0..40 {
        for d in [20_000u64, 30_000, 60_000, 180_000] {
            let w = Workload::demo(seed, 1024, 768, d);
            let first = w.plan[0];
            assert_eq!(first.phase, Phase::Typing);
            let outputs = w
                .events
                .iter()
                .filter(|e| e.t < first.end && matches!(e.act, Act::Output { .. }))
                .count();
            assert!(outputs >= 2, "seed {seed}, {d} ms: {outputs} outputs");
        }
    }
    // The script starts with `uname -a`, then `df -h`.
    let mut w = Workload::demo(5, 1024, 768, 30_000);
    let inputs = all_inputs(&mut w, &mut fb(1024, 768));
    assert_eq!(commands_in(&inputs, 0, 30_000)[..2], ["uname -a", "df -h"]);
}

#[test]
fn a_thirty_second_demo_visits_every_phase_in_order() {
    let (width, height) = (1280, 720);
    let mut w = Workload::demo(3, width, height, 30_000);
    assert_eq!(w.blocks(), TOUR);
    let plan = w.plan.clone();
    assert_eq!(plan[0].start, 0);
    assert_eq!(plan[5].end, 30_000);
    for pair in plan.windows(2) {
        assert_eq!(pair[0].end, pair[1].start, "blocks follow each other");
    }
    for b in &plan {
        assert!(b.end - b.start >= TOUR_MIN_MS, "{b:?} is too short");
        assert_eq!(w.phase_at(b.start), b.phase);
        assert_eq!(w.phase_at(b.end - 1), b.phase);
    }
    let idle = plan[5].end - plan[5].start;
    assert!((4_000..=5_000).contains(&idle), "idle end {idle} ms");

    let mut f = fb(width, height);
    let inputs = all_inputs(&mut w, &mut f);
    let during = |b: usize| {
        let span = plan[b].start..plan[b].end;
        inputs.iter().filter(move |e| span.contains(&e.t()))
    };
    // Typing blocks start typing within 500 ms.
    for b in [0, 4] {
        let first_key = during(b).find(|e| is_key_down(e)).map(SynthInput::t);
        assert!(
            first_key.is_some_and(|t| t < plan[b].start + 500),
            "block {b}: first key at {first_key:?}"
        );
    }
    // A window is dragged: a button-1 press, pointer motion, a release.
    let presses = during(1)
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
    let moves = during(1)
        .filter(|e| matches!(e, SynthInput::Pointer { .. }))
        .count();
    assert!(
        presses >= 2 && moves >= 5,
        "{presses} presses, {moves} moves"
    );
    // The pager is opened and scrolled with the wheel.
    assert!(during(2).any(|e| matches!(e, SynthInput::Text { text, .. } if text == PAGER_CMD)));
    assert!(
        during(2)
            .filter(|e| matches!(
                e,
                SynthInput::Button {
                    button: 5,
                    down: true,
                    ..
                }
            ))
            .count()
            >= 8
    );
    // Alt+Tab brings up a full-screen application.
    assert!(during(3).any(
        |e| matches!(e, SynthInput::Title { title, .. } if APP_TITLES.contains(&title.as_str()))
    ));
    assert!(during(3).any(|e| matches!(
        e,
        SynthInput::Key {
            keysym: KEYSYM_TAB,
            down: true,
            ..
        }
    )));
    // The end is idle: no inputs at all, only the cursor and the clock change.
    assert_eq!(during(5).count(), 0);
    assert!(w.scene.cursor_cell().is_some(), "the shell is back");
}

#[test]
fn demos_are_deterministic() {
    let d = 30_000;
    let mut a = Workload::demo(9, 800, 600, d);
    let mut b = Workload::demo(9, 800, 600, d);
    let mut c = Workload::demo(10, 800, 600, d);
    let (mut fa, mut fbuf, mut fc) = (fb(800, 600), fb(800, 600), fb(800, 600));
    let ia = all_inputs(&mut a, &mut fa);
    let mut ib = Vec::new();
    for t in (0..=d).step_by(333).chain([d]) {
        ib.extend(b.advance(t, &mut fbuf));
    }
    let ic = all_inputs(&mut c, &mut fc);
    assert_eq!(ia, ib, "the same inputs however the session is driven");
    assert!(fa.pixels() == fbuf.pixels(), "the same pixels at the end");
    assert_ne!(ia, ic, "another seed gives another session");
    // Halfway through, too.
    let mut a = Workload::demo(9, 800, 600, d);
    let mut b = Workload::demo(9, 800, 600, d);
    let (mut fa, mut fbuf) = (fb(800, 600), fb(800, 600));
    run_by_changes(&mut a, &mut fa, 12_345);
    b.advance(12_345, &mut fbuf);
    assert!(fa.pixels() == fbuf.pixels());
}

#[test]
fn tour_plans_fit_any_duration() {
    for d in [
        0u64, 1, 500, 3_200, 9_999, 14_999, 15_000, 15_001, 17_777, 20_000, 45_000, 600_000,
    ] {
        let w = Workload::demo(2, 640, 480, d);
        let plan = &w.plan;
        if d == 0 {
            assert!(plan.is_empty());
            continue;
        }
        if d < TOUR_FULL_MS {
            assert_eq!(w.blocks(), [Phase::Typing], "{d} ms is just typing");
        } else {
            assert_eq!(w.blocks(), TOUR, "{d} ms");
            let idle = plan[5].end - plan[5].start;
            assert!(idle >= TOUR_MIN_MS && idle.abs_diff(d * 15 / 100) <= TOUR_MIN_MS);
        }
        assert_eq!(plan[0].start, 0);
        assert_eq!(plan.last().map(|b| b.end), Some(d));
        for (i, b) in plan.iter().enumerate() {
            let min = match b.phase {
                Phase::Typing if d >= TOUR_FULL_MS => TOUR_MIN_TYPING_MS,
                _ if d < TOUR_FULL_MS => 0,
                _ => TOUR_MIN_MS,
            };
            assert!(b.end - b.start >= min, "{d} ms: {b:?}");
            if let Some(next) = plan.get(i + 1) {
                assert_eq!(b.end, next.start);
            }
        }
        assert!(w.events.iter().all(|e| e.t <= d));
    }
}

#[test]
fn every_tour_typing_block_starts_typing_within_half_a_second() {
    for seed in 0..25 {
        for d in [8_000u64, 15_000, 16_500, 20_000, 37_000, 90_000] {
            let w = Workload::demo(seed, 1024, 768, d);
            for b in w.plan.iter().filter(|b| b.phase == Phase::Typing) {
                let first_key = w
                    .events
                    .iter()
                    .find(|e| e.t >= b.start && matches!(e.act, Act::Key(_)))
                    .map(|e| e.t);
                assert!(
                    first_key.is_some_and(|t| t < b.start + 500 && t < b.end),
                    "seed {seed}, {d} ms, {b:?}: first key at {first_key:?}"
                );
            }
        }
    }
}

#[test]
fn demo_inputs_are_consistent() {
    for (width, height) in [(1920, 1080), (320, 200), (16, 16)] {
        let mut w = Workload::demo(4, width, height, 40_000);
        let mut f = fb(width, height);
        let inputs = all_inputs(&mut w, &mut f);
        assert!(inputs.windows(2).all(|p| p[0].t() <= p[1].t()));
        let keys = |down| {
            inputs
                .iter()
                .filter(|e| matches!(e, SynthInput::Key { down: d, .. } if *d == down))
                .count()
        };
        assert_eq!(keys(true), keys(false), "every key press is released");
        for e in &inputs {
            if let SynthInput::Pointer { x, y, .. } | SynthInput::Button { x, y, .. } = e {
                assert!(*x < width && *y < height, "{e:?} off screen");
            }
        }
    }
}
