//! The desktop, the top bar and the terminal: text, cursor, shell output and the pager.

use super::content::{clock_text, log_line, TERM_TITLE};
use super::draw::{blit, cells, fill, render};
use super::layout::*;
use super::scene::{Front, Line, Scene};
use crate::framebuffer::Framebuffer;
use crate::geometry::Rect;

impl Scene {
    pub(super) fn draw_desktop(&mut self, fb: &mut Framebuffer) {
        let l = self.layout;
        fill(
            fb,
            Rect::new(0, BAR_H, l.w, l.h.saturating_sub(BAR_H)),
            C_DESKTOP,
        );
        // Desktop icons along the right edge.
        for (i, label) in ["Home", "Trash", "Logs"].iter().enumerate() {
            let x = l.w.saturating_sub(88);
            let y = BAR_H + 24 + i as u32 * 88;
            fill(
                fb,
                Rect::new(x + 20, y, 40, 40),
                [0x5e81ac, 0x88c0d0, 0xa3be8c][i],
            );
            self.text(
                fb,
                x + 44 - label.len() as u32 * 4,
                y + 46,
                &cells(label, C_BAR_TEXT),
                label.len(),
                C_DESKTOP,
            );
        }
        // Terminal window.
        let t = l.term;
        fill(fb, t, C_FRAME);
        fill(
            fb,
            Rect::new(t.x + 1, t.y + 1, t.w.saturating_sub(2), TITLE_H - 1),
            C_TITLEBAR,
        );
        self.text(
            fb,
            t.x + PAD,
            t.y + 4,
            &cells(TERM_TITLE, C_TITLE_TEXT),
            TERM_TITLE.len(),
            C_TITLEBAR,
        );
        fill(
            fb,
            Rect::new(
                t.x + 1,
                t.y + TITLE_H,
                t.w.saturating_sub(2),
                t.h.saturating_sub(TITLE_H + 1),
            ),
            C_TERM_BG,
        );
        self.draw_term_text(fb);
        self.draw_cursor(fb);
    }

    pub(super) fn draw_bar(&mut self, fb: &mut Framebuffer, t: u64) {
        fill(fb, Rect::new(0, 0, self.layout.w, BAR_H), C_BAR);
        self.text(fb, PAD, 4, &cells("Activities", C_BAR_TEXT), 10, C_BAR);
        self.draw_title(fb);
        self.draw_clock(fb, t);
    }

    pub(super) fn title_cells(&self) -> usize {
        (self.layout.clock_x.saturating_sub(120 + 2 * PAD) / CW) as usize
    }

    pub(super) fn draw_title(&mut self, fb: &mut Framebuffer) {
        let c = cells(&self.title, C_BAR_TEXT);
        let n = self.title_cells();
        self.text(fb, 120, 4, &c, n, C_BAR);
    }

    pub(super) fn draw_clock(&mut self, fb: &mut Framebuffer, t: u64) {
        let c = cells(&clock_text(t), C_BAR_TEXT);
        self.text(fb, self.layout.clock_x, 4, &c, CLOCK_CELLS as usize, C_BAR);
    }

    /// Draws `c` padded to `n` cells at `(x, y)` in the normal 8×16 cell size.
    pub(super) fn text(
        &mut self,
        fb: &mut Framebuffer,
        x: u32,
        y: u32,
        c: &[(u8, u32)],
        n: usize,
        bg: u32,
    ) {
        self.text_at(fb, (x, y), c, n, bg, 1);
    }

    /// Draws `c` padded to `n` cells at `at`, each glyph pixel `scale` times larger.
    pub(super) fn text_at(
        &mut self,
        fb: &mut Framebuffer,
        (x, y): (u32, u32),
        c: &[(u8, u32)],
        n: usize,
        bg: u32,
        scale: u32,
    ) {
        if n == 0 {
            return;
        }
        let mut buf = std::mem::take(&mut self.buf);
        render(&mut buf, c, n, bg, scale);
        let w = n as u32 * CW * scale;
        blit(fb, x, y, w, CH * scale, &buf, w as usize);
        self.buf = buf;
    }

    pub(super) fn line_cells(line: &Line) -> Vec<(u8, u32)> {
        line.text
            .bytes()
            .enumerate()
            .map(|(i, b)| (b, if i < line.prompt { C_PROMPT } else { C_TERM_FG }))
            .collect()
    }

    pub(super) fn draw_term_row(
        &mut self,
        fb: &mut Framebuffer,
        row: u32,
        c: &[(u8, u32)],
        bg: u32,
    ) {
        let l = self.layout;
        self.text(fb, l.text_x, l.text_y + row * CH, c, l.cols as usize, bg);
    }

    pub(super) fn draw_term_text(&mut self, fb: &mut Framebuffer) {
        if self.front != Front::Desktop {
            return;
        }
        match self.pager {
            Some(top) => {
                for row in 0..self.layout.rows.saturating_sub(1) {
                    let c = cells(&log_line(self.seed, top + u64::from(row)), C_TERM_FG);
                    self.draw_term_row(fb, row, &c, C_TERM_BG);
                }
                self.draw_pager_status(fb);
            }
            None => {
                for row in 0..self.layout.rows {
                    let c = self
                        .shell
                        .get(row as usize)
                        .map(Self::line_cells)
                        .unwrap_or_default();
                    self.draw_term_row(fb, row, &c, C_TERM_BG);
                }
            }
        }
    }

    pub(super) fn draw_pager_status(&mut self, fb: &mut Framebuffer) {
        let top = self.pager.unwrap_or(0);
        let shown = u64::from(self.layout.rows.saturating_sub(1));
        let status = format!(
            "/var/log/syslog lines {}-{}/48213 (press q to quit)",
            top + 1,
            top + shown
        );
        let c = cells(&status, C_TERM_BG);
        self.draw_term_row(fb, self.layout.rows - 1, &c, C_TERM_FG);
    }

    pub(super) fn cursor_cell(&self) -> Option<Rect> {
        if self.front != Front::Desktop || self.pager.is_some() {
            return None;
        }
        let row = self.shell.len().checked_sub(1)? as u32;
        let col = self.shell.back()?.text.len() as u32;
        (col < self.layout.cols && row < self.layout.rows).then(|| self.layout.cell(col, row))
    }

    pub(super) fn draw_cursor(&mut self, fb: &mut Framebuffer) {
        if let Some(r) = self.cursor_cell() {
            let covered = self.window.is_some_and(|(_, x, y)| {
                r.intersect(&Rect::new(x, y, self.layout.win_w, self.layout.win_h))
                    .is_some()
            });
            if !covered {
                fill(fb, r, if self.cursor_on { C_TERM_FG } else { C_TERM_BG });
            }
        }
    }

    pub(super) fn type_char(&mut self, b: u8, fb: &mut Framebuffer) {
        let Some(cell) = self.cursor_cell() else {
            if let Some(line) = self.shell.back_mut() {
                line.text.push(char::from(b));
            }
            return;
        };
        self.text(fb, cell.x, cell.y, &[(b, C_TERM_FG)], 1, C_TERM_BG);
        if let Some(line) = self.shell.back_mut() {
            line.text.push(char::from(b));
        }
        self.cursor_on = true;
        self.draw_cursor(fb);
    }

    /// Appends lines to the shell, scrolling the terminal with one `copy_rect` if needed.
    pub(super) fn append_lines(&mut self, fb: &mut Framebuffer, new: Vec<Line>) {
        let rows = self.layout.rows as usize;
        let m = self.shell.len();
        let k = new.len();
        self.shell.extend(new);
        let drop = self.shell.len().saturating_sub(rows);
        self.shell.drain(..drop);
        if self.front != Front::Desktop || self.pager.is_some() {
            return;
        }
        let l = self.layout;
        let first_new = if m + k <= rows {
            m
        } else if drop < m {
            // Scroll the surviving rows up by `drop` rows.
            let keep = (m - drop) as u32;
            let src_y = l.text_y + drop as u32 * CH;
            let dst = Rect::new(l.text_x, l.text_y, l.cols * CW, keep * CH);
            if let Some(d) = dst.clip(fb.width(), fb.height()) {
                if d == dst && src_y + dst.h <= fb.height() {
                    let _ = fb.copy_rect(l.text_x, src_y, dst);
                }
            }
            keep as usize
        } else {
            0
        };
        for row in first_new..self.shell.len() {
            let c = Self::line_cells(&self.shell[row]);
            self.draw_term_row(fb, row as u32, &c, C_TERM_BG);
        }
    }

    pub(super) fn scroll_pager(&mut self, fb: &mut Framebuffer, lines: u32) {
        let Some(top) = self.pager else { return };
        let content = self.layout.rows.saturating_sub(1);
        let lines = lines.min(content);
        self.pager = Some(top + u64::from(lines));
        if self.front != Front::Desktop {
            return;
        }
        let l = self.layout;
        let keep = content - lines;
        if keep > 0 {
            let dst = Rect::new(l.text_x, l.text_y, l.cols * CW, keep * CH);
            if dst.clip(fb.width(), fb.height()) == Some(dst)
                && l.text_y + (lines + keep) * CH <= fb.height()
            {
                let _ = fb.copy_rect(l.text_x, l.text_y + lines * CH, dst);
            }
        }
        for row in keep..content {
            let c = cells(
                &log_line(self.seed, top + u64::from(lines) + u64::from(row)),
                C_TERM_FG,
            );
            self.draw_term_row(fb, row, &c, C_TERM_BG);
        }
        self.draw_pager_status(fb);
    }
}
