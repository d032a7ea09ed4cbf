//! Floating windows: opened over the desktop, dragged by their title bar, closed with their
//! close box. What they uncover is repainted from a snapshot taken when they opened.

use super::content::{CONF, PROCS, WINDOW_TITLES};
use super::draw::{blit, cells, render};
use super::layout::{C_CLOSE, C_FRAME, C_TITLEBAR, C_TITLE_TEXT, C_WIN_BG, C_WIN_FG, PAD, TITLE_H};
use super::rng::{mix, Rng};
use super::scene::{Front, Scene};
use super::SynthInput;
use crate::framebuffer::Framebuffer;
use crate::geometry::Rect;

impl Scene {
    pub(super) fn open_window(
        &mut self,
        t: u64,
        kind: usize,
        x: u32,
        y: u32,
        fb: &mut Framebuffer,
        out: &mut Vec<SynthInput>,
    ) {
        if self.front != Front::Desktop {
            return;
        }
        self.snapshot.clear();
        self.snapshot.extend_from_slice(fb.pixels());
        self.render_window(kind);
        self.window = Some((kind, x, y));
        self.draw_window(fb);
        self.set_title(t, WINDOW_TITLES[kind].to_owned(), fb, out);
    }

    pub(super) fn render_window(&mut self, kind: usize) {
        let (w, h) = (self.layout.win_w as usize, self.layout.win_h as usize);
        let mut img = std::mem::take(&mut self.win_img);
        img.clear();
        img.resize(w * h, C_FRAME);
        let mut put = |x: usize, y: usize, pw: usize, ph: usize, src: &[u32], stride: usize| {
            for row in 0..ph.min(h.saturating_sub(y)) {
                let n = pw.min(w.saturating_sub(x));
                let d = (y + row) * w + x;
                img[d..d + n].copy_from_slice(&src[row * stride..row * stride + n]);
            }
        };
        let solid = |c: u32, n: usize| vec![c; n];
        let inner_w = w.saturating_sub(2);
        put(
            1,
            1,
            inner_w,
            TITLE_H as usize - 1,
            &solid(C_TITLEBAR, inner_w * TITLE_H as usize),
            inner_w,
        );
        put(
            1,
            TITLE_H as usize,
            inner_w,
            h.saturating_sub(TITLE_H as usize + 1),
            &solid(C_WIN_BG, inner_w * h),
            inner_w,
        );
        let mut buf = std::mem::take(&mut self.buf);
        let title = WINDOW_TITLES[kind];
        render(
            &mut buf,
            &cells(title, C_TITLE_TEXT),
            title.len(),
            C_TITLEBAR,
            1,
        );
        put(PAD as usize, 4, title.len() * 8, 16, &buf, title.len() * 8);
        render(&mut buf, &[(b'x', 0xffffff)], 1, C_CLOSE, 1);
        put(w.saturating_sub(20), 4, 8, 16, &buf, 8);
        let ncols = inner_w.saturating_sub(2 * PAD as usize) / 8;
        let nrows = h.saturating_sub(TITLE_H as usize + 2 * PAD as usize) / 16;
        let mut r = Rng::new(mix(self.seed, kind as u64));
        for row in 0..nrows {
            let line = match kind {
                0 => format!(
                    "{:<22} {:<10} {}",
                    format!("{}.service", r.pick(PROCS)),
                    if r.below(5) == 0 {
                        "stopped"
                    } else {
                        "running"
                    },
                    r.range(100, 9999)
                ),
                1 => CONF[row % CONF.len()].to_owned(),
                _ => format!(
                    "{:<12} {}",
                    ["Size:", "Owner:", "Modified:", "Mode:", "Inode:"][row % 5],
                    r.range(1, 99_999)
                ),
            };
            render(&mut buf, &cells(&line, C_WIN_FG), ncols, C_WIN_BG, 1);
            put(
                1 + PAD as usize,
                TITLE_H as usize + PAD as usize + row * 16,
                ncols * 8,
                16,
                &buf,
                ncols * 8,
            );
        }
        self.buf = buf;
        self.win_img = img;
    }

    pub(super) fn draw_window(&mut self, fb: &mut Framebuffer) {
        if let Some((_, x, y)) = self.window {
            let (w, h) = (self.layout.win_w, self.layout.win_h);
            blit(fb, x, y, w, h, &self.win_img, w as usize);
        }
    }

    /// Repaints the desktop under a window at `(x, y)` from the snapshot taken when it opened.
    pub(super) fn restore(&mut self, fb: &mut Framebuffer, x: u32, y: u32) {
        if self.snapshot.len() != fb.pixels().len() {
            return;
        }
        let stride = fb.width() as usize;
        let off = y as usize * stride + x as usize;
        if let Some(src) = self.snapshot.get(off..) {
            let Some(r) =
                Rect::new(x, y, self.layout.win_w, self.layout.win_h).clip(fb.width(), fb.height())
            else {
                return;
            };
            let _ = fb.put_rect(r, src, stride);
        }
    }

    pub(super) fn close_box(&self) -> Option<(u32, u32)> {
        let (_, x, y) = self.window?;
        Some(self.clamp_point(x + self.layout.win_w.saturating_sub(16), y + TITLE_H / 2))
    }
}
