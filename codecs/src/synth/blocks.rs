//! Block plans: which phase runs when. The standard mix shuffles 30-second blocks; the demo
//! tour runs every phase once in a fixed order, with lengths scaled to the session.

use super::rng::Rng;
use super::{Phase, BLOCK_MS, STANDARD_MIX};

/// A stretch of the session, `[start, end)` in ms, given to one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Block {
    /// What happens in the block.
    pub(super) phase: Phase,
    /// First ms of the block.
    pub(super) start: u64,
    /// First ms after the block (the session's end for the last one).
    pub(super) end: u64,
}

/// Blocks per phase for `n` blocks: shares rounded down, leftovers to the largest remainders.
pub(super) fn apportion(n: u64) -> [u64; 5] {
    let mut counts = [0u64; 5];
    let mut rem = [(0u64, 0usize); 5];
    for (i, (_, pct)) in STANDARD_MIX.iter().enumerate() {
        counts[i] = n * u64::from(*pct) / 100;
        rem[i] = (n * u64::from(*pct) % 100, i);
    }
    let left = n - counts.iter().sum::<u64>();
    // Largest remainder first; equal remainders in mix order.
    rem.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in rem.iter().take(left as usize) {
        counts[i] += 1;
    }
    counts
}

/// The standard plan: `ceil(duration / 30 s)` blocks apportioned by [`STANDARD_MIX`] and put in
/// order by a Fisher–Yates shuffle drawn from `rng` (which the event planner goes on using).
pub(super) fn standard(duration_ms: u64, rng: &mut Rng) -> Vec<Block> {
    let n = duration_ms.div_ceil(BLOCK_MS);
    let counts = apportion(n);
    let mut phases: Vec<Phase> = Vec::with_capacity(n as usize);
    for (i, (phase, _)) in STANDARD_MIX.iter().enumerate() {
        phases.extend(std::iter::repeat_n(*phase, counts[i] as usize));
    }
    for i in (1..phases.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        phases.swap(i, j);
    }
    phases
        .into_iter()
        .enumerate()
        .map(|(i, phase)| {
            let start = i as u64 * BLOCK_MS;
            Block {
                phase,
                start,
                end: (start + BLOCK_MS).min(duration_ms),
            }
        })
        .collect()
}

/// Shortest tour that visits every phase; shorter sessions are one typing block.
pub(super) const TOUR_FULL_MS: u64 = 15_000;
/// Shortest block of a phase in the tour.
pub(super) const TOUR_MIN_MS: u64 = 2_000;
/// Shortest typing block in the tour: the shortest scripted command (`df -h`) always fits, even
/// at the slowest typing speed.
pub(super) const TOUR_MIN_TYPING_MS: u64 = 3_200;
/// The first typing block gets at least this much (room for two short commands) when the
/// session allows.
const TOUR_FIRST_TYPING_MS: u64 = 10_000;

/// The tour's phases after the first typing block and before the final idle, with their weights
/// for the time left over once every block has its minimum.
const TOUR_MIDDLE: [(Phase, u64, u64); 4] = [
    (Phase::Windows, TOUR_MIN_MS, 20),
    (Phase::Scrolling, TOUR_MIN_MS, 15),
    (Phase::Switching, TOUR_MIN_MS, 15),
    (Phase::Typing, TOUR_MIN_TYPING_MS, 20),
];

/// The demo tour's plan: typing, window dragging, pager scrolling, app switching, typing again
/// and a final idle of ~15 % (at least [`TOUR_MIN_MS`]). The first typing block gets 30 % of
/// the active time but at least [`TOUR_FIRST_TYPING_MS`] when that leaves every other block its
/// minimum; the others share what is left by weight. Sessions shorter than [`TOUR_FULL_MS`] are
/// a single typing block; an empty session has no blocks.
pub(super) fn tour(duration_ms: u64) -> Vec<Block> {
    if duration_ms == 0 {
        return Vec::new();
    }
    if duration_ms < TOUR_FULL_MS {
        return vec![Block {
            phase: Phase::Typing,
            start: 0,
            end: duration_ms,
        }];
    }
    let idle = (duration_ms * 15 / 100).max(TOUR_MIN_MS);
    let active = duration_ms - idle;
    let middle_min: u64 = TOUR_MIDDLE.iter().map(|&(_, min, _)| min).sum();
    // `duration_ms >= TOUR_FULL_MS` leaves room for every minimum.
    let first = (active * 30 / 100)
        .max(TOUR_FIRST_TYPING_MS)
        .min(active.saturating_sub(middle_min))
        .max(TOUR_MIN_TYPING_MS);
    let spare = active.saturating_sub(first + middle_min);
    let weights: u64 = TOUR_MIDDLE.iter().map(|&(_, _, w)| w).sum();
    let mut lengths = vec![(Phase::Typing, first)];
    let mut given = 0;
    for (i, &(phase, min, weight)) in TOUR_MIDDLE.iter().enumerate() {
        // The last middle block takes the rounding remainder.
        let extra = if i + 1 == TOUR_MIDDLE.len() {
            spare - given
        } else {
            spare * weight / weights
        };
        given += extra;
        lengths.push((phase, min + extra));
    }
    lengths.push((Phase::Idle, idle));
    let mut start = 0;
    let mut blocks: Vec<Block> = lengths
        .into_iter()
        .map(|(phase, len)| {
            let b = Block {
                phase,
                start,
                end: start + len,
            };
            start += len;
            b
        })
        .collect();
    // The idle block ends with the session whatever the rounding.
    if let Some(last) = blocks.last_mut() {
        last.end = duration_ms;
    }
    blocks
}
