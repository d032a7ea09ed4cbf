//! Watching a small region of an X screen: where the demo app's text goes (calibrated on the
//! target), waiting for it to be idle, and timing its changes by polling `GetImage`.

use crate::xproto::{digest, XConn};
use anyhow::{bail, Result};
use psmgate_codecs::Rect;
use std::time::{Duration, Instant};

/// Polling interval of a watched region (the time resolution of every arrival).
pub const POLL_EVERY: Duration = Duration::from_micros(500);

/// Where the demo app's text cells are: the first cell of the first line and the cell size.
#[derive(Debug, Clone, Copy)]
pub struct Cells {
    /// Left edge of column 0.
    pub x: u32,
    /// Top edge of line 0.
    pub y: u32,
    /// Cell width.
    pub w: u32,
    /// Cell height.
    pub h: u32,
}

impl Cells {
    /// The strip holding `columns` cells of line `line`, clipped to a `sw`×`sh` screen.
    pub fn line(&self, line: u32, columns: u32, sw: u32, sh: u32) -> Rect {
        let y = (self.y + line * self.h).min(sh.saturating_sub(1));
        let x = self.x.min(sw.saturating_sub(1));
        Rect::new(x, y, (columns * self.w).min(sw - x), self.h.min(sh - y))
    }
}

/// Finds the demo app's text cells on the target display (`conn`, which must hold the keyboard
/// focus on the app): types `M` there through XTEST, takes the bounding box of what changed
/// (the glyph in the first cell and the cursor moving to the second), then erases it again.
pub fn calibrate(conn: &mut XConn, sw: u32, sh: u32) -> Result<Cells> {
    let (w, h) = (sw.min(400), sh.min(120));
    let before = conn.image(0, 0, w, h)?;
    conn.tap(u32::from(b'M'))?;
    std::thread::sleep(Duration::from_millis(400));
    let after = conn.image(0, 0, w, h)?;
    conn.tap(0xff08)?; // BackSpace: the terminal erases the character.
    std::thread::sleep(Duration::from_millis(400));
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (i, (a, b)) in before
        .chunks_exact(4)
        .zip(after.chunks_exact(4))
        .enumerate()
    {
        if a[..3] != b[..3] {
            let (x, y) = (i as u32 % w, i as u32 / w);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    if x0 == u32::MAX {
        bail!("typing into the target's terminal changed nothing in its top-left corner");
    }
    let cells = Cells {
        x: x0,
        y: y0,
        w: (x1 - x0 + 2) / 2,
        h: y1 - y0 + 1,
    };
    if !(3..=40).contains(&cells.w) || !(6..=60).contains(&cells.h) {
        bail!("implausible terminal cell {cells:?}");
    }
    Ok(cells)
}

/// The digest of `r` on `conn`.
pub fn region_digest(conn: &mut XConn, r: Rect) -> Result<u64> {
    Ok(digest(&conn.image(r.x, r.y, r.w, r.h)?))
}

/// Polls `r` on every connection until none of them changed for `quiet` (or `limit` passes);
/// returns whether it got quiet.
pub fn settle(conns: &mut [&mut XConn], r: Rect, quiet: Duration, limit: Duration) -> Result<bool> {
    let end = Instant::now() + limit;
    let mut last: Vec<u64> = Vec::new();
    let mut since = Instant::now();
    loop {
        let now: Vec<u64> = conns
            .iter_mut()
            .map(|c| region_digest(c, r))
            .collect::<Result<_>>()?;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            return Ok(true);
        }
        if Instant::now() >= end {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The changes of a region after a start signal.
#[derive(Debug, Default)]
pub struct Changes {
    /// Digest before the start.
    pub initial: u64,
    /// Every observed change: when it was seen and the new digest.
    pub seen: Vec<(Instant, u64)>,
}

impl Changes {
    /// When the region first showed its final state (`None` if it ended as it began).
    pub fn complete(&self) -> Option<Instant> {
        let (_, last) = *self.seen.last()?;
        if last == self.initial {
            return None;
        }
        self.seen.iter().find(|(_, d)| *d == last).map(|(t, _)| *t)
    }

    /// When the region first changed.
    pub fn first(&self) -> Option<Instant> {
        self.seen.first().map(|(t, _)| *t)
    }
}

/// Reads the initial digest of `r`, waits for `start`, then polls every [`POLL_EVERY`] until
/// `quiet` passed after the last change, or `timeout` after the start without any change.
pub fn watch(
    conn: &mut XConn,
    r: Rect,
    start: &std::sync::Barrier,
    quiet: Duration,
    timeout: Duration,
) -> Result<Changes> {
    let mut c = Changes {
        initial: region_digest(conn, r)?,
        seen: Vec::new(),
    };
    start.wait();
    let t0 = Instant::now();
    let mut last = c.initial;
    loop {
        let d = region_digest(conn, r)?;
        let t = Instant::now();
        if d != last {
            c.seen.push((t, d));
            last = d;
        }
        let deadline = c.seen.last().map_or(t0 + timeout, |(t, _)| *t + quiet);
        if t >= deadline {
            return Ok(c);
        }
        std::thread::sleep(POLL_EVERY);
    }
}
