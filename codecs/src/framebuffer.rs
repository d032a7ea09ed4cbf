//! The session's screen as 32-bit xRGB pixels, with damage tracking.
//!
//! Protocol decoders write rectangles of pixels; the framebuffer remembers which tiles changed
//! since the recorder last took the damage. Writes that leave pixels as they were mark nothing, so
//! a server that repaints an unchanged screen costs no encoding.

use crate::geometry::Rect;

/// Side of a damage tile in pixels: small enough that a blinking cursor or a clock costs a few
/// tiles (and changes under a mask stay under it), large enough that tracking is cheap.
pub const TILE: u32 = 16;

/// A screen of `0x00RRGGBB` pixels with per-tile damage.
#[derive(Clone)]
pub struct Framebuffer {
    width: u32,
    height: u32,
    pixels: Vec<u32>,
    tiles_x: u32,
    tiles_y: u32,
    dirty: Vec<bool>,
    any_dirty: bool,
    generation: u64,
}

impl std::fmt::Debug for Framebuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Framebuffer({}x{})", self.width, self.height)
    }
}

/// Largest accepted side, guarding allocations driven by network input.
pub const MAX_SIDE: u32 = 16384;

/// Framebuffer errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramebufferError {
    /// Width or height is zero or above [`MAX_SIDE`].
    #[error("screen size {0}x{1} is outside 1..={MAX_SIDE}")]
    BadSize(u32, u32),
    /// A rectangle does not fit the screen.
    #[error("rectangle {0:?} is outside the {1}x{2} screen")]
    OutOfBounds(Rect, u32, u32),
    /// The pixel buffer is shorter than the rectangle needs.
    #[error("pixel data has {got} values, rectangle needs {need}")]
    ShortData {
        /// Values given.
        got: usize,
        /// Values needed.
        need: usize,
    },
}

impl Framebuffer {
    /// A black screen. The whole screen starts damaged so the first frame is complete.
    pub fn new(width: u32, height: u32) -> Result<Self, FramebufferError> {
        if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
            return Err(FramebufferError::BadSize(width, height));
        }
        let tiles_x = width.div_ceil(TILE);
        let tiles_y = height.div_ceil(TILE);
        Ok(Self {
            width,
            height,
            pixels: vec![0; (width * height) as usize],
            tiles_x,
            tiles_y,
            dirty: vec![true; (tiles_x * tiles_y) as usize],
            any_dirty: true,
            generation: 1,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// All pixels, row-major, stride = width.
    pub fn pixels(&self) -> &[u32] {
        &self.pixels
    }

    /// The pixel at `(x, y)`.
    pub fn pixel(&self, x: u32, y: u32) -> u32 {
        self.pixels[(y * self.width + x) as usize]
    }

    /// Increases on every change of content or size; lets a consumer tell whether anything
    /// happened since it last looked without taking the damage.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// True when something changed since the last [`Framebuffer::take_damage`].
    pub fn is_dirty(&self) -> bool {
        self.any_dirty
    }

    /// Changes the screen size. Content is kept where it still fits; everything is damaged.
    pub fn resize(&mut self, width: u32, height: u32) -> Result<(), FramebufferError> {
        if (width, height) == (self.width, self.height) {
            return Ok(());
        }
        let mut next = Framebuffer::new(width, height)?;
        let (cw, ch) = (width.min(self.width), height.min(self.height));
        for y in 0..ch {
            let s = (y * self.width) as usize;
            let d = (y * width) as usize;
            next.pixels[d..d + cw as usize].copy_from_slice(&self.pixels[s..s + cw as usize]);
        }
        next.generation = self.generation + 1;
        *self = next;
        Ok(())
    }

    fn check(&self, r: Rect) -> Result<(), FramebufferError> {
        if r.right() > self.width || r.bottom() > self.height {
            return Err(FramebufferError::OutOfBounds(r, self.width, self.height));
        }
        Ok(())
    }

    fn mark(&mut self, r: Rect) {
        if r.is_empty() {
            return;
        }
        let tx0 = r.x / TILE;
        let ty0 = r.y / TILE;
        let tx1 = (r.right() - 1) / TILE;
        let ty1 = (r.bottom() - 1) / TILE;
        for ty in ty0..=ty1 {
            for tx in tx0..=tx1 {
                self.dirty[(ty * self.tiles_x + tx) as usize] = true;
            }
        }
        self.any_dirty = true;
        self.generation += 1;
    }

    /// Writes `r` from `data` (row-major, `stride` values per row, `0x00RRGGBB`).
    /// Only tiles whose pixels actually change are damaged.
    pub fn put_rect(
        &mut self,
        r: Rect,
        data: &[u32],
        stride: usize,
    ) -> Result<(), FramebufferError> {
        self.check(r)?;
        if r.is_empty() {
            return Ok(());
        }
        let need = (r.h as usize - 1) * stride + r.w as usize;
        if data.len() < need || stride < r.w as usize {
            return Err(FramebufferError::ShortData {
                got: data.len(),
                need,
            });
        }
        // Track the changed bounding box per tile row band for precise damage.
        for row in 0..r.h {
            let src = &data[row as usize * stride..row as usize * stride + r.w as usize];
            let o = ((r.y + row) * self.width + r.x) as usize;
            let dst = &mut self.pixels[o..o + r.w as usize];
            if dst != src {
                let first = dst.iter().zip(src).position(|(a, b)| a != b).unwrap_or(0) as u32;
                let last = dst.iter().zip(src).rposition(|(a, b)| a != b).unwrap_or(0) as u32;
                dst.copy_from_slice(src);
                self.mark(Rect::new(r.x + first, r.y + row, last - first + 1, 1));
            }
        }
        Ok(())
    }

    /// Writes `r` from tightly packed bytes in the given channel order (4 bytes per pixel).
    pub fn put_rect_bytes(
        &mut self,
        r: Rect,
        data: &[u8],
        order: ByteOrder,
    ) -> Result<(), FramebufferError> {
        let need = r.area() as usize * 4;
        if data.len() < need {
            return Err(FramebufferError::ShortData {
                got: data.len() / 4,
                need: need / 4,
            });
        }
        let px: Vec<u32> = data[..need]
            .chunks_exact(4)
            .map(|c| match order {
                ByteOrder::Rgba => (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32,
                ByteOrder::Bgra => (c[2] as u32) << 16 | (c[1] as u32) << 8 | c[0] as u32,
            })
            .collect();
        self.put_rect(r, &px, r.w as usize)
    }

    /// Fills `r` with one colour.
    pub fn fill_rect(&mut self, r: Rect, color: u32) -> Result<(), FramebufferError> {
        self.check(r)?;
        let mut changed = false;
        for row in r.y..r.bottom() {
            let o = (row * self.width + r.x) as usize;
            let dst = &mut self.pixels[o..o + r.w as usize];
            if dst.iter().any(|&p| p != color) {
                dst.fill(color);
                changed = true;
            }
        }
        if changed {
            self.mark(r);
        }
        Ok(())
    }

    /// Copies the `w`×`h` area at `src` to `dst` (RFB CopyRect, scrolling). Overlap is handled.
    pub fn copy_rect(&mut self, src_x: u32, src_y: u32, dst: Rect) -> Result<(), FramebufferError> {
        let src = Rect::new(src_x, src_y, dst.w, dst.h);
        self.check(src)?;
        self.check(dst)?;
        let w = self.width as usize;
        let rows: Box<dyn Iterator<Item = u32>> = if dst.y > src.y {
            Box::new((0..dst.h).rev())
        } else {
            Box::new(0..dst.h)
        };
        let mut changed = false;
        for row in rows {
            let s = (src.y + row) as usize * w + src.x as usize;
            let d = (dst.y + row) as usize * w + dst.x as usize;
            if self.pixels[s..s + dst.w as usize] != self.pixels[d..d + dst.w as usize] {
                self.pixels.copy_within(s..s + dst.w as usize, d);
                changed = true;
            }
        }
        if changed {
            self.mark(dst);
        }
        Ok(())
    }

    /// Returns the damaged area as rectangles (tile-aligned, merged along rows, clipped to the
    /// screen) and clears the damage.
    pub fn take_damage(&mut self) -> Vec<Rect> {
        let rects = self.damage();
        self.dirty.fill(false);
        self.any_dirty = false;
        rects
    }

    /// The damaged area without clearing it.
    pub fn damage(&self) -> Vec<Rect> {
        let mut out: Vec<Rect> = Vec::new();
        if !self.any_dirty {
            return out;
        }
        for ty in 0..self.tiles_y {
            let mut tx = 0;
            while tx < self.tiles_x {
                if !self.dirty[(ty * self.tiles_x + tx) as usize] {
                    tx += 1;
                    continue;
                }
                let start = tx;
                while tx < self.tiles_x && self.dirty[(ty * self.tiles_x + tx) as usize] {
                    tx += 1;
                }
                let r = Rect::new(start * TILE, ty * TILE, (tx - start) * TILE, TILE)
                    .clip(self.width, self.height)
                    .expect("tile inside screen");
                // Merge with a run of the same span on the row above.
                if let Some(prev) = out
                    .iter_mut()
                    .find(|p| p.x == r.x && p.w == r.w && p.bottom() == r.y)
                {
                    prev.h += r.h;
                } else {
                    out.push(r);
                }
            }
        }
        out
    }

    /// Copies the pixels of `r` into `dst` (stride = screen width), used to snapshot damaged areas.
    pub fn copy_into(&self, r: Rect, dst: &mut [u32]) {
        let w = self.width as usize;
        for row in r.y..r.bottom() {
            let o = row as usize * w + r.x as usize;
            dst[o..o + r.w as usize].copy_from_slice(&self.pixels[o..o + r.w as usize]);
        }
    }
}

/// Channel order of 4-byte pixels handed to [`Framebuffer::put_rect_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    /// R, G, B, A (A ignored).
    Rgba,
    /// B, G, R, A (A ignored): little-endian xRGB, RFB's usual 32-bit true colour.
    Bgra,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fresh(w: u32, h: u32) -> Framebuffer {
        let mut fb = Framebuffer::new(w, h).unwrap();
        fb.take_damage();
        fb
    }

    #[test]
    fn new_screen_is_fully_damaged() {
        let mut fb = Framebuffer::new(130, 70).unwrap();
        let d = fb.take_damage();
        assert_eq!(d.iter().map(|r| r.area()).sum::<u64>(), 130 * 70);
        assert!(fb.take_damage().is_empty());
    }

    #[test]
    fn unchanged_writes_cause_no_damage() {
        let mut fb = fresh(200, 100);
        fb.put_rect(Rect::new(10, 10, 5, 5), &[0; 25], 5).unwrap();
        fb.fill_rect(Rect::new(0, 0, 200, 100), 0).unwrap();
        assert!(!fb.is_dirty());
        assert!(fb.take_damage().is_empty());
    }

    #[test]
    fn damage_covers_the_changed_tile_only() {
        let mut fb = fresh(256, 256);
        fb.put_rect(Rect::new(70, 130, 2, 1), &[0xff0000, 0x00ff00], 2)
            .unwrap();
        assert_eq!(fb.take_damage(), vec![Rect::new(64, 128, 16, 16)]);
        assert_eq!(fb.pixel(70, 130), 0xff0000);
        assert_eq!(fb.pixel(71, 130), 0x00ff00);
    }

    #[test]
    fn runs_merge_vertically() {
        let mut fb = fresh(256, 256);
        fb.fill_rect(Rect::new(0, 0, 128, 128), 0xffffff).unwrap();
        assert_eq!(fb.take_damage(), vec![Rect::new(0, 0, 128, 128)]);
    }

    #[test]
    fn out_of_bounds_and_short_data_are_errors() {
        let mut fb = fresh(10, 10);
        assert!(matches!(
            fb.put_rect(Rect::new(8, 8, 4, 4), &[0; 16], 4),
            Err(FramebufferError::OutOfBounds(..))
        ));
        assert!(matches!(
            fb.put_rect(Rect::new(0, 0, 4, 4), &[0; 3], 4),
            Err(FramebufferError::ShortData { .. })
        ));
        assert!(Framebuffer::new(0, 10).is_err());
        assert!(Framebuffer::new(MAX_SIDE + 1, 10).is_err());
    }

    #[test]
    fn copy_rect_handles_overlap_like_a_scroll() {
        let mut fb = fresh(4, 4);
        for y in 0..4 {
            fb.fill_rect(Rect::new(0, y, 4, 1), y + 1).unwrap();
        }
        fb.take_damage();
        fb.copy_rect(0, 1, Rect::new(0, 0, 4, 3)).unwrap(); // scroll up by one row
        assert_eq!(
            (0..4).map(|y| fb.pixel(0, y)).collect::<Vec<_>>(),
            vec![2, 3, 4, 4]
        );
        fb.copy_rect(0, 0, Rect::new(0, 1, 4, 3)).unwrap(); // scroll down by one row
        assert_eq!(
            (0..4).map(|y| fb.pixel(0, y)).collect::<Vec<_>>(),
            vec![2, 2, 3, 4]
        );
        assert!(fb.is_dirty());
    }

    #[test]
    fn resize_keeps_content_and_damages_all() {
        let mut fb = fresh(4, 4);
        fb.fill_rect(Rect::new(0, 0, 2, 2), 7).unwrap();
        fb.take_damage();
        fb.resize(8, 2).unwrap();
        assert_eq!(fb.pixel(1, 1), 7);
        assert_eq!(fb.pixel(5, 1), 0);
        assert_eq!(fb.take_damage().iter().map(|r| r.area()).sum::<u64>(), 16);
    }

    proptest! {
        /// Whatever is written, every changed pixel lies inside the reported damage.
        #[test]
        fn damage_contains_every_change(ops in proptest::collection::vec((0u32..90, 0u32..60, 1u32..40, 1u32..30, any::<u32>()), 1..20)) {
            let mut fb = fresh(90, 60);
            let before = fb.pixels().to_vec();
            for (x, y, w, h, c) in ops {
                let r = Rect::new(x, y, w.min(90 - x), h.min(60 - y));
                fb.fill_rect(r, c & 0xffffff).unwrap();
            }
            let damage = fb.take_damage();
            for y in 0..60 {
                for x in 0..90 {
                    if fb.pixel(x, y) != before[(y * 90 + x) as usize] {
                        prop_assert!(damage.iter().any(|r| r.contains(x, y)), "({x},{y}) not in damage");
                    }
                }
            }
        }
    }
}
