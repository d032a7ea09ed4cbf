//! The event plan: every event of the session, computed up front from the seed and a block plan.
//!
//! Both the standard mix and the demo tour go through [`events`]; they differ in their blocks
//! and in a few timing details of their phases ([`Style`]).

use super::blocks::{Block, TOUR_MIN_MS};
use super::commands::{output_len, COMMANDS, STANDARD_COMMANDS, TOUR_SCRIPT};
use super::content::{APP_TITLES, WINDOW_TITLES};
use super::layout::{Layout, BAR_H};
use super::rng::Rng;
use super::{Phase, KEYSYM_RETURN};

/// One thing that happens in the session.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Act {
    /// First paint of the whole desktop.
    Init,
    /// The clock shows a new second.
    Clock,
    /// The terminal cursor toggles.
    Blink,
    /// A block starts: restore what the phase needs.
    Enter(Phase),
    /// A printable character is pressed (drawn at once).
    Key(u8),
    /// A key is released (input only).
    KeyUp(u32),
    /// Return is pressed: the command is committed.
    Return,
    /// Output of command `cmd` appears, then a new prompt.
    Output { cmd: usize, lines: u64, seed: u64 },
    /// The pager scrolls by `lines` (mouse wheel).
    Wheel { lines: u32 },
    /// A floating window opens at `(x, y)`.
    WinOpen { kind: usize, x: u32, y: u32 },
    /// Button 1 is pressed on the title bar (input only).
    Grab { dx: u32 },
    /// The dragged window moves.
    WinMove { x: u32, y: u32 },
    /// Button 1 is released after a drag (input only).
    Release,
    /// Button 1 is pressed on the close box (input only).
    ClosePress,
    /// Button 1 is released on the close box: the window closes.
    WinClose,
    /// Alt+Tab to full-screen app `app`.
    Switch { app: usize },
}

impl Act {
    /// False for events that only produce input.
    pub(super) fn draws(&self) -> bool {
        !matches!(
            self,
            Act::KeyUp(_) | Act::Grab { .. } | Act::Release | Act::ClosePress
        )
    }
}

/// An [`Act`] at `t` ms.
#[derive(Debug, Clone)]
pub(super) struct Ev {
    pub(super) t: u64,
    pub(super) act: Act,
}

/// How the phases are played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    /// The standard mix (stable: benchmarks compare on it).
    Standard,
    /// The demo tour: scripted commands typed from the start of the block with short pauses,
    /// and a window cycle scaled to blocks shorter than 10 s.
    Tour,
}

/// Plans the whole session: the first paint at 0, each block's entry and activity, and a clock
/// tick every second, sorted by time (events at the same time keep their planned order) and cut
/// at `duration_ms`.
pub(super) fn events(
    rng: Rng,
    layout: &Layout,
    blocks: &[Block],
    duration_ms: u64,
    style: Style,
) -> Vec<Ev> {
    let mut p = Planner {
        rng,
        layout,
        style,
        script: 0,
        events: vec![Ev {
            t: 0,
            act: Act::Init,
        }],
    };
    for b in blocks {
        let (t0, t1) = (b.start, b.end);
        p.push(t0, Act::Enter(b.phase));
        match b.phase {
            Phase::Idle => p.idle(t0, t1),
            Phase::Typing => p.typing(t0, t1),
            Phase::Scrolling => p.scrolling(t0, t1),
            Phase::Windows => p.windows(t0, t1),
            Phase::Switching => p.switching(t0, t1),
        }
    }
    let mut events = p.events;
    events.extend((1..=duration_ms / 1000).map(|s| Ev {
        t: s * 1000,
        act: Act::Clock,
    }));
    events.retain(|e| e.t <= duration_ms);
    // Stable: events at the same time keep their planned order.
    events.sort_by_key(|e| e.t);
    events
}

struct Planner<'a> {
    rng: Rng,
    layout: &'a Layout,
    style: Style,
    /// Position in [`TOUR_SCRIPT`] of the tour's next command.
    script: usize,
    events: Vec<Ev>,
}

impl Planner<'_> {
    fn push(&mut self, t: u64, act: Act) {
        self.events.push(Ev { t, act });
    }

    fn idle(&mut self, t0: u64, t1: u64) {
        let mut t = t0 + 500;
        while t < t1 {
            self.push(t, Act::Blink);
            t += 500;
        }
    }

    fn typing(&mut self, t0: u64, t1: u64) {
        let (delay, pause) = match self.style {
            Style::Standard => ((300, 1200), (1000, 3000)),
            Style::Tour => ((100, 450), (500, 1000)),
        };
        let mut t = t0 + self.rng.range(delay.0, delay.1);
        while let Some(out) = self.next_command(t, t1) {
            t = out + self.rng.range(pause.0, pause.1);
        }
    }

    /// Plans the next command typed from `t` if its output appears before `t1`, and returns the
    /// time of that output. The tour takes its script's next command, or the first one after it
    /// that fits.
    fn next_command(&mut self, t: u64, t1: u64) -> Option<u64> {
        match self.style {
            Style::Standard => {
                let cmd = self.rng.below(STANDARD_COMMANDS as u64) as usize;
                self.command(cmd, t, t1)
            }
            Style::Tour => (0..TOUR_SCRIPT.len()).find_map(|i| {
                let pos = (self.script + i) % TOUR_SCRIPT.len();
                let out = self.command(TOUR_SCRIPT[pos], t, t1)?;
                self.script = pos + 1;
                Some(out)
            }),
        }
    }

    /// Plans command `cmd` typed from `t`: key presses and releases, Return, and the output
    /// 100–700 ms later. Nothing is planned if the output would not appear before `t1`.
    fn command(&mut self, cmd: usize, t: u64, t1: u64) -> Option<u64> {
        let mut evs = Vec::new();
        let mut k = t;
        for b in COMMANDS.get(cmd).copied().unwrap_or_default().bytes() {
            evs.push(Ev {
                t: k,
                act: Act::Key(b),
            });
            evs.push(Ev {
                t: k + self.rng.range(40, 90),
                act: Act::KeyUp(u32::from(b)),
            });
            k += self.rng.range(120, 280);
        }
        k += self.rng.range(200, 600);
        evs.push(Ev {
            t: k,
            act: Act::Return,
        });
        evs.push(Ev {
            t: k + self.rng.range(50, 90),
            act: Act::KeyUp(KEYSYM_RETURN),
        });
        let out = k + self.rng.range(100, 700);
        let lines = output_len(cmd, self.rng.range(3, 15));
        let seed = self.rng.next_u64();
        evs.push(Ev {
            t: out,
            act: Act::Output { cmd, lines, seed },
        });
        if out >= t1 {
            return None;
        }
        self.events.extend(evs);
        Some(out)
    }

    fn scrolling(&mut self, t0: u64, t1: u64) {
        let lines = self.layout.rows.saturating_sub(1).div_ceil(4).max(1);
        let mut t = t0 + 250;
        while t < t1 {
            self.push(t, Act::Wheel { lines });
            t += 250;
        }
    }

    /// 10-second window cycles; the tour fills a shorter rest (at least [`TOUR_MIN_MS`]) with
    /// one scaled cycle.
    fn windows(&mut self, t0: u64, t1: u64) {
        let mut c = t0;
        while c + 10_000 <= t1 {
            let (mut x, mut y) = self.open_window(c + 500);
            for (start, moves) in [(1500, 40), (6500, 20)] {
                self.drag(c + start, moves, &mut x, &mut y);
            }
            self.push(c + 9420, Act::ClosePress);
            self.push(c + 9500, Act::WinClose);
            c += 10_000;
        }
        let rest = t1.saturating_sub(c);
        if self.style == Style::Tour && rest >= TOUR_MIN_MS {
            // Open at 0.25 s, drag from 0.6 s, release 0.8–0.9 s before the end and close the
            // window 0.6–0.7 s before it.
            let (mut x, mut y) = self.open_window(c + 250);
            let moves = (rest - 1500) / 100;
            let release = self.drag(c + 600, moves, &mut x, &mut y);
            self.push(release + 120, Act::ClosePress);
            self.push(release + 200, Act::WinClose);
        }
    }

    /// Plans a window opening at `t` at a random position, and returns that position.
    fn open_window(&mut self, t: u64) -> (u32, u32) {
        let (max_x, max_y) = self.layout.win_pos_max();
        let kind = self.rng.below(WINDOW_TITLES.len() as u64) as usize;
        let (x, y) = (
            self.rng.below(u64::from(max_x)) as u32,
            self.rng.range(u64::from(BAR_H), u64::from(max_y)) as u32,
        );
        self.push(t, Act::WinOpen { kind, x, y });
        (x, y)
    }

    /// Plans a drag of the window at `(x, y)` by its title bar: a grab at `start`, `moves`
    /// moves 100 ms apart towards a new random target every 10 moves, and the release 100 ms
    /// after the last move, whose time is returned. `(x, y)` becomes the window's new position.
    fn drag(&mut self, start: u64, moves: u64, x: &mut u32, y: &mut u32) -> u64 {
        let (max_x, max_y) = self.layout.win_pos_max();
        let dx = self
            .rng
            .range(40, u64::from(self.layout.win_w.saturating_sub(60).max(41)))
            as u32;
        self.push(start, Act::Grab { dx });
        let mut target = (0, 0);
        for m in 1..=moves {
            if m % 10 == 1 {
                target = (
                    self.rng.below(u64::from(max_x)) as u32,
                    self.rng.range(u64::from(BAR_H), u64::from(max_y)) as u32,
                );
            }
            *x = step_towards(*x, target.0, 48);
            *y = step_towards(*y, target.1, 32);
            self.push(start + 100 * m, Act::WinMove { x: *x, y: *y });
        }
        let release = start + 100 * moves + 100;
        self.push(release, Act::Release);
        release
    }

    fn switching(&mut self, t0: u64, t1: u64) {
        let mut apps: Vec<usize> = (0..APP_TITLES.len()).collect();
        for i in (1..apps.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            apps.swap(i, j);
        }
        apps.truncate(self.rng.range(3, 4) as usize);
        let mut current = usize::MAX;
        let mut t = t0 + self.rng.range(200, 600);
        while t < t1 {
            let choices: Vec<usize> = apps.iter().copied().filter(|&a| a != current).collect();
            current = choices[self.rng.below(choices.len() as u64) as usize];
            self.push(t, Act::Switch { app: current });
            t += self.rng.range(1600, 2400);
        }
    }
}

/// Moves `from` towards `to` by at most `max`.
fn step_towards(from: u32, to: u32, max: u32) -> u32 {
    if from < to {
        from + (to - from).min(max)
    } else {
        from - (from - to).min(max)
    }
}
