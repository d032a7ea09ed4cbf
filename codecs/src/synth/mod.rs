//! A deterministic synthetic desktop session: the standard benchmark workload and demo source.
//!
//! [`Workload::standard`] simulates an administrator's session on a desktop (dark background, a top
//! bar with the active window's title and a clock, a terminal window with readable 8×16 text) and
//! draws it into a [`Framebuffer`] as time advances, together with the input events that caused
//! the changes. Everything derives from the seed through a built-in SplitMix64 generator: the same
//! seed, size and duration always give the same pixels and events at the same times, however the
//! driver steps through time.
//!
//! # The standard mix (stable: benchmarks compare on it)
//!
//! A session of `D` ms is cut into `ceil(D / 30000)` blocks of 30 s (the last one may be shorter).
//! Each block gets one phase. The number of blocks per phase is the phase's share of the block count,
//! rounded down, with the blocks left over given to the largest remainders (ties in the order
//! below), so the totals are exact whenever the block count allows:
//!
//! | phase | share | what happens |
//! |---|---|---|
//! | [`Phase::Idle`] | 40 % | nothing but the terminal cursor blinking every 500 ms and the clock |
//! | [`Phase::Typing`] | 30 % | admin commands typed at ~5 chars/s (key intervals 120–280 ms), Return, 3–15 output lines 100–700 ms later, 1–3 s pause; a command is only started if its output fits in the block |
//! | [`Phase::Scrolling`] | 15 % | a pager (`less /var/log/syslog`) scrolled a page per second in 4 steps of ¼ page every 250 ms, each a `copy_rect` scroll plus the new lines (mouse wheel, button 5) |
//! | [`Phase::Windows`] | 10 % | per 10 s: a window opens at 0.5 s, is dragged by its title bar at 10 updates/s from 1.5 s for 4 s and from 6.5 s for 2 s, and closed with its close box at 9.5 s |
//! | [`Phase::Switching`] | 5 % | Alt+Tab between 3–4 full-screen apps (editor, dashboard, process monitor, event log) every 1.6–2.4 s |
//!
//! The blocks' order is a seeded Fisher–Yates shuffle. In every phase the clock in the top bar is
//! redrawn once a second (whole seconds of session time). A block first restores what its phase
//! needs (the desktop after full-screen apps, the shell after the pager), the way a real desktop
//! repaints on such a change. Only changed areas are drawn; idle screens cost nothing.
//!
//! # The demo tour
//!
//! [`Workload::demo`] is a short guided tour for demos and tests: the same desktop, drawing and
//! inputs, with a fixed block plan instead of the shuffled mix. Its blocks come in this order,
//! their lengths scaled to the session:
//!
//! | block | length |
//! |---|---|
//! | [`Phase::Typing`] | 30 % of the time before the idle end, but at least 10 s when the rest allows |
//! | [`Phase::Windows`] | 2 s plus 20/70 of the time left over |
//! | [`Phase::Scrolling`] | 2 s plus 15/70 of it |
//! | [`Phase::Switching`] | 2 s plus 15/70 of it |
//! | [`Phase::Typing`] | 3.2 s plus the rest of it |
//! | [`Phase::Idle`] | 15 % of the session, at least 2 s |
//!
//! The time left over is what remains once every block before the idle end has its minimum
//! (2 s, and 3.2 s for typing). Sessions shorter than 15 s are a single typing block. In the tour,
//! typing starts 100–450 ms into the block and follows a script of short, recognisable commands
//! (`uname -a`, which prints one line, `df -h`, `sudo systemctl status nginx`, `free -m`, ...) with
//! 0.5–1 s pauses; when the script's next command would not finish in the block, the next one that
//! does is typed, so every typing block of at least 3.2 s shows a complete command and its output
//! (the first one of a tour of 20 s or more shows two). The windows block runs the 10 s window cycle of the standard
//! mix as often as it fits and then one scaled cycle (open at 0.25 s, drag from 0.6 s, close
//! 0.6–0.7 s before the end) in any rest of at least 2 s.
//!
//! # Inputs
//!
//! Inputs are emitted consistently with the drawing: keysyms are ASCII for printable characters and
//! `0xff0d` for Return; drags are a button-1 press on the title bar, pointer motion and a release;
//! pointer coordinates always lie on the screen.

mod apps;
mod blocks;
mod commands;
mod content;
mod draw;
mod layout;
mod plan;
mod rng;
mod scene;
mod terminal;
mod window;

#[cfg(test)]
mod demo_tests;
#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod tests;

use crate::framebuffer::Framebuffer;
use blocks::Block;
use layout::Layout;
use plan::{Ev, Style};
use rng::Rng;
use scene::Scene;

/// Length of one phase block in milliseconds.
pub const BLOCK_MS: u64 = 30_000;

/// The standard mix: phase and its share of the blocks in percent, in tie-break order.
pub const STANDARD_MIX: [(Phase, u32); 5] = [
    (Phase::Idle, 40),
    (Phase::Typing, 30),
    (Phase::Scrolling, 15),
    (Phase::Windows, 10),
    (Phase::Switching, 5),
];

/// X11/RFB keysym of Return.
pub const KEYSYM_RETURN: u32 = 0xff0d;
/// X11/RFB keysym of Tab.
pub const KEYSYM_TAB: u32 = 0xff09;
/// X11/RFB keysym of the left Alt key.
pub const KEYSYM_ALT_L: u32 = 0xffe9;

/// An input or metadata event of the simulated session, at `t` ms since its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SynthInput {
    /// A key press or release.
    Key {
        /// Time.
        t: u64,
        /// X11 keysym.
        keysym: u32,
        /// Press (true) or release.
        down: bool,
    },
    /// A committed line of text (a command entered in the terminal).
    Text {
        /// Time.
        t: u64,
        /// The text.
        text: String,
    },
    /// Pointer motion.
    Pointer {
        /// Time.
        t: u64,
        /// Column.
        x: u32,
        /// Row.
        y: u32,
    },
    /// A mouse button press or release (4/5 = wheel up/down).
    Button {
        /// Time.
        t: u64,
        /// Button number, 1-based.
        button: u8,
        /// Press (true) or release.
        down: bool,
        /// Column.
        x: u32,
        /// Row.
        y: u32,
    },
    /// The active window's title changed.
    Title {
        /// Time.
        t: u64,
        /// New title.
        title: String,
    },
}

impl SynthInput {
    /// The event's time in ms since the session start.
    pub fn t(&self) -> u64 {
        match self {
            SynthInput::Key { t, .. }
            | SynthInput::Text { t, .. }
            | SynthInput::Pointer { t, .. }
            | SynthInput::Button { t, .. }
            | SynthInput::Title { t, .. } => *t,
        }
    }
}

/// What the simulated administrator is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Blinking cursor and clock only.
    Idle,
    /// Typing commands in the terminal.
    Typing,
    /// Scrolling a long text in a pager.
    Scrolling,
    /// Opening, dragging and closing windows.
    Windows,
    /// Switching between full-screen applications.
    Switching,
}

impl Phase {
    /// Lower-case name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Typing => "typing",
            Phase::Scrolling => "scrolling",
            Phase::Windows => "windows",
            Phase::Switching => "switching",
        }
    }
}

/// A synthetic session: the standard mix ([`Workload::standard`]) or the demo tour
/// ([`Workload::demo`]). See the module documentation for both plans.
#[derive(Debug, Clone)]
pub struct Workload {
    duration_ms: u64,
    /// The block plan, in order, without gaps from 0 to the end.
    plan: Vec<Block>,
    /// The phases of `plan`, for [`Workload::blocks`].
    phases: Vec<Phase>,
    events: Vec<Ev>,
    next: usize,
    last_t: Option<u64>,
    scene: Scene,
}

impl Workload {
    /// The standard workload for a `width`×`height` screen lasting `duration_ms`.
    pub fn standard(seed: u64, width: u32, height: u32, duration_ms: u64) -> Self {
        let mut rng = Rng::new(seed);
        let plan = blocks::standard(duration_ms, &mut rng);
        Self::planned(seed, rng, width, height, duration_ms, plan, Style::Standard)
    }

    /// The demo tour for a `width`×`height` screen lasting `duration_ms`: typing, window
    /// dragging, pager scrolling, full-screen app switching, typing again and a final idle,
    /// scaled to the duration (see the module documentation).
    pub fn demo(seed: u64, width: u32, height: u32, duration_ms: u64) -> Self {
        let plan = blocks::tour(duration_ms);
        Self::planned(
            seed,
            Rng::new(seed),
            width,
            height,
            duration_ms,
            plan,
            Style::Tour,
        )
    }

    /// Plans the events of `plan` with `rng` and sets up the initial desktop.
    fn planned(
        seed: u64,
        rng: Rng,
        width: u32,
        height: u32,
        duration_ms: u64,
        plan: Vec<Block>,
        style: Style,
    ) -> Self {
        let layout = Layout::new(width, height);
        let events = plan::events(rng, &layout, &plan, duration_ms, style);
        Workload {
            duration_ms,
            phases: plan.iter().map(|b| b.phase).collect(),
            plan,
            events,
            next: 0,
            last_t: None,
            scene: Scene::new(seed, layout),
        }
    }

    /// Session length in ms.
    pub fn duration_ms(&self) -> u64 {
        self.duration_ms
    }

    /// Screen width the session was planned for.
    pub fn width(&self) -> u32 {
        self.scene.layout.w
    }

    /// Screen height the session was planned for.
    pub fn height(&self) -> u32 {
        self.scene.layout.h
    }

    /// The phase of each block, in order: 30-second blocks in the standard mix, blocks scaled to
    /// the session in the demo tour.
    pub fn blocks(&self) -> &[Phase] {
        &self.phases
    }

    /// The phase at `t_ms` (the last block's phase at or after the end; idle if there are no
    /// blocks).
    pub fn phase_at(&self, t_ms: u64) -> Phase {
        let i = self.plan.partition_point(|b| b.start <= t_ms);
        self.phases
            .get(i.saturating_sub(1))
            .copied()
            .unwrap_or(Phase::Idle)
    }

    /// The first time after `t_ms` at which the screen changes, if any before the end. Between
    /// `t_ms` and that time only input events (key and button releases) can happen.
    pub fn next_change_after(&self, t_ms: u64) -> Option<u64> {
        let from = self.events.partition_point(|e| e.t <= t_ms);
        self.events[from..]
            .iter()
            .find(|e| e.act.draws())
            .map(|e| e.t)
    }

    /// Advances the simulated session to `t_ms`, drawing every change up to then into `fb`
    /// and returning the input events that happened in (previous `t_ms`, `t_ms`] (the first call
    /// includes time 0). Time only moves forward: an earlier `t_ms` does nothing.
    ///
    /// `fb` should have the planned size; other sizes are drawn clipped.
    pub fn advance(&mut self, t_ms: u64, fb: &mut Framebuffer) -> Vec<SynthInput> {
        let mut out = Vec::new();
        if self.last_t.is_some_and(|l| t_ms <= l) {
            return out;
        }
        self.last_t = Some(t_ms);
        while let Some(ev) = self.events.get(self.next) {
            if ev.t > t_ms {
                break;
            }
            let ev = ev.clone();
            self.next += 1;
            self.scene.apply(&ev, fb, &mut out);
        }
        out
    }
}
