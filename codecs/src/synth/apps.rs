//! Full-screen applications of the switching phase: an editor, a dashboard, a process monitor
//! and an event log.

use super::content::{CONF, PROCS};
use super::draw::{cells, fill};
use super::layout::{BAR_H, CH, CW, PAD};
use super::rng::{mix, Rng};
use super::scene::Scene;
use crate::framebuffer::Framebuffer;
use crate::geometry::Rect;

impl Scene {
    pub(super) fn draw_app(&mut self, fb: &mut Framebuffer, app: usize, t: u64) {
        let l = self.layout;
        let area = Rect::new(0, BAR_H, l.w, l.h.saturating_sub(BAR_H));
        let cols = (l.w / CW) as usize;
        let rows = area.h / CH;
        let mut r = Rng::new(mix(self.seed, 100 + app as u64));
        match app {
            0 => {
                let bg = 0x1e1e2e;
                for row in 0..rows.saturating_sub(1) {
                    let mut c = cells(&format!("{:>4} ", row + 1), 0x6c7086);
                    c.extend(cells(CONF[row as usize % CONF.len()], 0xcdd6f4));
                    self.text(fb, 0, BAR_H + row * CH, &c, cols, bg);
                }
                let status = format!(
                    "\"/etc/nginx/nginx.conf\" {}L, 1447B            1,1  Top",
                    CONF.len()
                );
                self.text(
                    fb,
                    0,
                    BAR_H + rows.saturating_sub(1) * CH,
                    &cells(&status, bg),
                    cols,
                    0xcdd6f4,
                );
            }
            1 => {
                fill(fb, area, 0x111217);
                let (pw, ph) = (
                    (l.w.saturating_sub(16) / 3).max(1),
                    (area.h.saturating_sub(16) / 2).max(1),
                );
                let mut tr = Rng::new(mix(self.seed, t));
                let names = [
                    "CPU busy",
                    "Memory used",
                    "Sessions recorded",
                    "Disk I/O",
                    "Requests/s",
                    "Errors",
                ];
                for (i, name) in names.iter().enumerate() {
                    let (px, py) = (8 + (i as u32 % 3) * pw, BAR_H + 8 + (i as u32 / 3) * ph);
                    fill(
                        fb,
                        Rect::new(px, py, pw.saturating_sub(8), ph.saturating_sub(8)),
                        0x181b1f,
                    );
                    self.text(
                        fb,
                        px + PAD,
                        py + PAD,
                        &cells(name, 0xccccdc),
                        name.len(),
                        0x181b1f,
                    );
                    let value = format!("{}.{}", tr.range(1, 99), tr.below(10));
                    self.text_at(
                        fb,
                        (px + PAD, py + 32),
                        &cells(&value, 0x73bf69),
                        value.len(),
                        0x181b1f,
                        3,
                    );
                    let bars = (pw.saturating_sub(24) / 12).min(40);
                    let base = py + ph.saturating_sub(24);
                    for b in 0..bars {
                        let bh = tr.range(4, u64::from(ph / 3).max(5)) as u32;
                        fill(
                            fb,
                            Rect::new(px + PAD + b * 12, base.saturating_sub(bh), 8, bh),
                            0x5794f2,
                        );
                    }
                }
            }
            2 => {
                let bg = 0x000000;
                for row in 0..rows {
                    let c = if row < 4 {
                        let used = r.below(40) as usize;
                        let mut c = cells(&format!("{:>3}[", row), 0x87ceeb);
                        c.extend(std::iter::repeat_n((b'|', 0x5fd75f), used));
                        c.extend(std::iter::repeat_n((b' ', 0), 40 - used));
                        c.extend(cells(&format!("{:>5.1}%]", used as f32 * 2.5), 0xaaaaaa));
                        c
                    } else if row == 5 {
                        cells(&format!("{:<width$}", "  PID USER      PRI  NI  VIRT   RES   SHR S CPU% MEM%   TIME+  Command", width = cols), bg)
                    } else if row > 5 {
                        cells(
                            &format!(
                                "{:>5} {:<8} {:>4} {:>3} {:>5}M {:>4}M {:>4}M S {:>4.1} {:>4.1} {:>2}:{:02}.{:02} /usr/sbin/{}",
                                r.range(1, 40_000),
                                if r.below(3) == 0 { "www-data" } else { "root" },
                                20,
                                0,
                                r.range(10, 2000),
                                r.range(1, 500),
                                r.range(1, 100),
                                r.below(500) as f32 / 10.0,
                                r.below(300) as f32 / 10.0,
                                r.below(60),
                                r.below(60),
                                r.below(100),
                                r.pick(PROCS)
                            ),
                            0xdddddd,
                        )
                    } else {
                        Vec::new()
                    };
                    let row_bg = if row == 5 { 0x5fd75f } else { bg };
                    self.text(fb, 0, BAR_H + row * CH, &c, cols, row_bg);
                }
            }
            _ => {
                for row in 0..rows {
                    let (bg, c) = if row == 0 {
                        (
                            0x3c4c64,
                            cells(
                                &format!(
                                    "  {:<15}{:<25}{:<27}{:>6}  {}",
                                    "Level", "Date and Time", "Source", "ID", "Task Category"
                                ),
                                0xffffff,
                            ),
                        )
                    } else {
                        let level = ["Information", "Audit Success", "Audit Failure", "Warning"]
                            [r.below(4) as usize];
                        let line = format!(
                            "  {:<14} 23/11/2026 0{}:{:02}:{:02}      Microsoft-Windows-Security  {:>5}  Logon",
                            level,
                            r.range(6, 9),
                            r.below(60),
                            r.below(60),
                            [4624, 4625, 4634, 4672, 4688][r.below(5) as usize]
                        );
                        (
                            if row % 2 == 0 { 0xf3f3f3 } else { 0xffffff },
                            cells(&line, 0x202020),
                        )
                    };
                    self.text(fb, 0, BAR_H + row * CH, &c, cols, bg);
                }
            }
        }
        // Rows below the last full text row.
        let used = BAR_H + rows * CH;
        if app != 1 && used < l.h {
            fill(fb, Rect::new(0, used, l.w, l.h - used), 0x000000);
        }
        let text_w = cols as u32 * CW;
        if app != 1 && text_w < l.w {
            fill(fb, Rect::new(text_w, BAR_H, l.w - text_w, area.h), 0x000000);
        }
    }
}
