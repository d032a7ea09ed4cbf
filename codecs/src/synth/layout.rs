//! Where things are on the screen, and their colours.

use crate::geometry::Rect;

/// Text cell width.
pub(super) const CW: u32 = 8;
/// Text cell height.
pub(super) const CH: u32 = 16;
/// Height of the top bar.
pub(super) const BAR_H: u32 = 24;
/// Height of a window's title bar.
pub(super) const TITLE_H: u32 = 24;
/// Padding inside frames.
pub(super) const PAD: u32 = 8;
/// Width of the clock in the top bar, in cells.
pub(super) const CLOCK_CELLS: u32 = 20;

pub(super) const C_DESKTOP: u32 = 0x1d2027;
pub(super) const C_BAR: u32 = 0x2e3440;
pub(super) const C_BAR_TEXT: u32 = 0xd8dee9;
pub(super) const C_FRAME: u32 = 0x4c566a;
pub(super) const C_TITLEBAR: u32 = 0x3b4252;
pub(super) const C_TITLE_TEXT: u32 = 0xeceff4;
pub(super) const C_TERM_BG: u32 = 0x101214;
pub(super) const C_TERM_FG: u32 = 0xc8ccd4;
pub(super) const C_PROMPT: u32 = 0x5fd75f;
pub(super) const C_CLOSE: u32 = 0xbf616a;
pub(super) const C_WIN_BG: u32 = 0xe5e9f0;
pub(super) const C_WIN_FG: u32 = 0x2e3440;

/// Where things are on a `w`×`h` screen.
#[derive(Debug, Clone, Copy)]
pub(super) struct Layout {
    pub(super) w: u32,
    pub(super) h: u32,
    /// Terminal window frame.
    pub(super) term: Rect,
    /// Top-left of the terminal's first text cell.
    pub(super) text_x: u32,
    pub(super) text_y: u32,
    pub(super) cols: u32,
    pub(super) rows: u32,
    /// Floating window size.
    pub(super) win_w: u32,
    pub(super) win_h: u32,
    /// Clock position and width in cells.
    pub(super) clock_x: u32,
}

impl Layout {
    pub(super) fn new(w: u32, h: u32) -> Self {
        let cols = (w.saturating_sub(96 + 2 * PAD + 2) / CW).clamp(8, 120);
        let rows = (h.saturating_sub(BAR_H + 64 + TITLE_H + 2 * PAD + 1) / CH).clamp(2, 40);
        let term = Rect::new(
            48,
            BAR_H + 32,
            cols * CW + 2 * PAD + 2,
            TITLE_H + rows * CH + 2 * PAD + 1,
        );
        Layout {
            w,
            h,
            term,
            text_x: term.x + 1 + PAD,
            text_y: term.y + TITLE_H + PAD,
            cols,
            rows,
            win_w: (w * 2 / 5).clamp(80, 640),
            win_h: (h * 2 / 5).clamp(60, 400),
            clock_x: w.saturating_sub(CLOCK_CELLS * CW + PAD),
        }
    }

    /// The text cell `(col, row)` of the terminal.
    pub(super) fn cell(&self, col: u32, row: u32) -> Rect {
        Rect::new(self.text_x + col * CW, self.text_y + row * CH, CW, CH)
    }

    /// Floating windows stay below the top bar and on screen.
    pub(super) fn win_pos_max(&self) -> (u32, u32) {
        (
            self.w.saturating_sub(self.win_w).max(1),
            self.h.saturating_sub(self.win_h).max(BAR_H + 1),
        )
    }
}
