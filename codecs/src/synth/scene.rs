//! What is on screen, updated event by event: the state of the simulated desktop and how each
//! planned event changes it and which inputs it produces.

use super::commands::output_line;
use super::content::{APP_TITLES, PAGER_CMD, PROMPT, TERM_TITLE};
use super::layout::{Layout, CH, CW, TITLE_H};
use super::plan::{Act, Ev};
use super::rng::Rng;
use super::{Phase, SynthInput, KEYSYM_ALT_L, KEYSYM_RETURN, KEYSYM_TAB};
use crate::framebuffer::Framebuffer;
use std::collections::VecDeque;

/// What fills the screen below the top bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Front {
    /// The desktop with the terminal (and maybe a floating window).
    Desktop,
    /// Full-screen application `n`.
    App(usize),
}

/// A line of the shell; its first `prompt` bytes are the prompt.
#[derive(Debug, Clone)]
pub(super) struct Line {
    pub(super) text: String,
    pub(super) prompt: usize,
}

/// The simulated desktop.
#[derive(Debug, Clone)]
pub(super) struct Scene {
    /// Seed of the content that does not depend on history (syslog, window and app text).
    pub(super) seed: u64,
    pub(super) layout: Layout,
    pub(super) front: Front,
    /// Top line of the pager, while it is open.
    pub(super) pager: Option<u64>,
    /// The shell's visible lines; the last one holds the cursor.
    pub(super) shell: VecDeque<Line>,
    pub(super) cursor_on: bool,
    /// The floating window: kind and position.
    pub(super) window: Option<(usize, u32, u32)>,
    /// Where on its title bar the window was grabbed.
    pub(super) grab_dx: u32,
    pub(super) pointer: (u32, u32),
    pub(super) title: String,
    /// The screen when the floating window opened, to repaint what it uncovers.
    pub(super) snapshot: Vec<u32>,
    /// The floating window's pixels.
    pub(super) win_img: Vec<u32>,
    /// Scratch buffer for rendered text.
    pub(super) buf: Vec<u32>,
}

impl Scene {
    /// The desktop at the session's start: a terminal with a prompt, the pointer in the middle.
    pub(super) fn new(seed: u64, layout: Layout) -> Self {
        let mut shell = VecDeque::new();
        shell.push_back(Line {
            text: "Last login: Mon Nov 23 09:12:44 2026 from 10.0.0.5".into(),
            prompt: 0,
        });
        shell.push_back(Line {
            text: PROMPT.into(),
            prompt: PROMPT.len(),
        });
        Scene {
            seed,
            layout,
            front: Front::Desktop,
            pager: None,
            shell,
            cursor_on: true,
            window: None,
            grab_dx: 0,
            pointer: (layout.w / 2, layout.h / 2),
            title: TERM_TITLE.into(),
            snapshot: Vec::new(),
            win_img: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// Applies one planned event: draws its changes into `fb` and appends its inputs to `out`.
    pub(super) fn apply(&mut self, ev: &Ev, fb: &mut Framebuffer, out: &mut Vec<SynthInput>) {
        let t = ev.t;
        match &ev.act {
            Act::Init => {
                self.draw_desktop(fb);
                self.draw_bar(fb, t);
                out.push(SynthInput::Title {
                    t,
                    title: self.title.clone(),
                });
            }
            Act::Clock => self.draw_clock(fb, t),
            Act::Blink => {
                self.cursor_on = !self.cursor_on;
                self.draw_cursor(fb);
            }
            Act::Enter(phase) => self.enter(*phase, t, fb, out),
            Act::Key(b) => {
                out.push(SynthInput::Key {
                    t,
                    keysym: u32::from(*b),
                    down: true,
                });
                self.type_char(*b, fb);
            }
            Act::KeyUp(k) => out.push(SynthInput::Key {
                t,
                keysym: *k,
                down: false,
            }),
            Act::Return => {
                out.push(SynthInput::Key {
                    t,
                    keysym: KEYSYM_RETURN,
                    down: true,
                });
                if let Some(line) = self.shell.back() {
                    let text = line.text[line.prompt..].to_owned();
                    if !text.is_empty() {
                        out.push(SynthInput::Text { t, text });
                    }
                }
                self.cursor_on = false;
                self.draw_cursor(fb);
            }
            Act::Output { cmd, lines, seed } => {
                let mut r = Rng::new(*seed);
                let mut new: Vec<Line> = (0..*lines)
                    .map(|i| Line {
                        text: output_line(*cmd, i, &mut r),
                        prompt: 0,
                    })
                    .collect();
                new.push(Line {
                    text: PROMPT.into(),
                    prompt: PROMPT.len(),
                });
                self.append_lines(fb, new);
                self.cursor_on = true;
                self.draw_cursor(fb);
            }
            Act::Wheel { lines } => {
                let (x, y) = self.term_center();
                self.pointer_to(t, x, y, out);
                out.push(SynthInput::Button {
                    t,
                    button: 5,
                    down: true,
                    x,
                    y,
                });
                out.push(SynthInput::Button {
                    t,
                    button: 5,
                    down: false,
                    x,
                    y,
                });
                self.scroll_pager(fb, *lines);
            }
            Act::WinOpen { kind, x, y } => self.open_window(t, *kind, *x, *y, fb, out),
            Act::Grab { dx } => {
                if let Some((_, wx, wy)) = self.window {
                    self.grab_dx = *dx;
                    let (px, py) = self.clamp_point(wx + dx, wy + TITLE_H / 2);
                    self.pointer_to(t, px, py, out);
                    out.push(SynthInput::Button {
                        t,
                        button: 1,
                        down: true,
                        x: px,
                        y: py,
                    });
                }
            }
            Act::WinMove { x, y } => {
                if let Some((kind, ox, oy)) = self.window {
                    self.restore(fb, ox, oy);
                    self.window = Some((kind, *x, *y));
                    self.draw_window(fb);
                    let (px, py) = self.clamp_point(x + self.grab_dx, y + TITLE_H / 2);
                    self.pointer_to(t, px, py, out);
                }
            }
            Act::Release => {
                let (x, y) = self.pointer;
                out.push(SynthInput::Button {
                    t,
                    button: 1,
                    down: false,
                    x,
                    y,
                });
            }
            Act::ClosePress => {
                if let Some((x, y)) = self.close_box() {
                    self.pointer_to(t, x, y, out);
                    out.push(SynthInput::Button {
                        t,
                        button: 1,
                        down: true,
                        x,
                        y,
                    });
                }
            }
            Act::WinClose => {
                if let Some((_, wx, wy)) = self.window.take() {
                    let (x, y) = self.pointer;
                    out.push(SynthInput::Button {
                        t,
                        button: 1,
                        down: false,
                        x,
                        y,
                    });
                    self.restore(fb, wx, wy);
                    self.set_title(t, self.desktop_title(), fb, out);
                }
            }
            Act::Switch { app } => {
                for (keysym, down) in [
                    (KEYSYM_ALT_L, true),
                    (KEYSYM_TAB, true),
                    (KEYSYM_TAB, false),
                    (KEYSYM_ALT_L, false),
                ] {
                    out.push(SynthInput::Key { t, keysym, down });
                }
                self.front = Front::App(*app);
                self.draw_app(fb, *app, t);
                self.set_title(t, APP_TITLES[*app].to_owned(), fb, out);
            }
        }
    }

    pub(super) fn enter(
        &mut self,
        phase: Phase,
        t: u64,
        fb: &mut Framebuffer,
        out: &mut Vec<SynthInput>,
    ) {
        let wants_pager = phase == Phase::Scrolling;
        let mut redraw_text = false;
        if self.front != Front::Desktop {
            self.front = Front::Desktop;
            self.pager = if wants_pager {
                self.pager.or(Some(0))
            } else {
                None
            };
            self.draw_desktop(fb);
        } else if wants_pager != self.pager.is_some() {
            redraw_text = true;
        }
        if wants_pager && self.pager.is_none() {
            self.pager = Some(0);
            out.push(SynthInput::Text {
                t,
                text: PAGER_CMD.into(),
            });
            if let Some(line) = self.shell.back_mut() {
                line.text.truncate(line.prompt);
                line.text.push_str(PAGER_CMD);
            }
        } else if !wants_pager && self.pager.is_some() {
            self.pager = None;
            out.push(SynthInput::Key {
                t,
                keysym: u32::from(b'q'),
                down: true,
            });
            out.push(SynthInput::Key {
                t,
                keysym: u32::from(b'q'),
                down: false,
            });
            self.shell.push_back(Line {
                text: PROMPT.into(),
                prompt: PROMPT.len(),
            });
            while self.shell.len() > self.layout.rows as usize {
                self.shell.pop_front();
            }
        }
        if redraw_text {
            self.draw_term_text(fb);
        }
        self.cursor_on = true;
        self.draw_cursor(fb);
        self.set_title(t, self.desktop_title(), fb, out);
    }

    pub(super) fn desktop_title(&self) -> String {
        if self.pager.is_some() {
            PAGER_CMD.into()
        } else {
            TERM_TITLE.into()
        }
    }

    pub(super) fn set_title(
        &mut self,
        t: u64,
        title: String,
        fb: &mut Framebuffer,
        out: &mut Vec<SynthInput>,
    ) {
        if self.title != title {
            self.title = title;
            out.push(SynthInput::Title {
                t,
                title: self.title.clone(),
            });
            self.draw_title(fb);
        }
    }

    pub(super) fn clamp_point(&self, x: u32, y: u32) -> (u32, u32) {
        (
            x.min(self.layout.w.saturating_sub(1)),
            y.min(self.layout.h.saturating_sub(1)),
        )
    }

    pub(super) fn pointer_to(&mut self, t: u64, x: u32, y: u32, out: &mut Vec<SynthInput>) {
        if self.pointer != (x, y) {
            self.pointer = (x, y);
            out.push(SynthInput::Pointer { t, x, y });
        }
    }

    pub(super) fn term_center(&self) -> (u32, u32) {
        let l = &self.layout;
        self.clamp_point(l.text_x + l.cols * CW / 2, l.text_y + l.rows * CH / 2)
    }
}
