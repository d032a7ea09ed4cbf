//! Integer screen geometry shared by every stage.

use serde::{Deserialize, Serialize};

/// An axis-aligned rectangle in pixels, `x`/`y` inclusive, `w`/`h` in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    /// A rectangle from its origin and size.
    pub const fn new(x: u32, y: u32, w: u32, h: u32) -> Self {
        Self { x, y, w, h }
    }

    /// True when the rectangle covers no pixel.
    pub const fn is_empty(&self) -> bool {
        self.w == 0 || self.h == 0
    }

    /// One past the right edge.
    pub const fn right(&self) -> u32 {
        self.x.saturating_add(self.w)
    }

    /// One past the bottom edge.
    pub const fn bottom(&self) -> u32 {
        self.y.saturating_add(self.h)
    }

    /// The overlap of two rectangles, if any.
    pub fn intersect(&self, other: &Rect) -> Option<Rect> {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = self.right().min(other.right());
        let y1 = self.bottom().min(other.bottom());
        (x1 > x0 && y1 > y0).then(|| Rect::new(x0, y0, x1 - x0, y1 - y0))
    }

    /// This rectangle clipped to a `width`×`height` screen.
    pub fn clip(&self, width: u32, height: u32) -> Option<Rect> {
        self.intersect(&Rect::new(0, 0, width, height))
    }

    /// True when the point lies inside.
    pub const fn contains(&self, px: u32, py: u32) -> bool {
        px >= self.x && py >= self.y && px < self.right() && py < self.bottom()
    }

    /// The smallest rectangle with even edges that contains this one (for 4:2:0 chroma).
    pub fn align_even(&self) -> Rect {
        let x0 = self.x & !1;
        let y0 = self.y & !1;
        let x1 = (self.right() + 1) & !1;
        let y1 = (self.bottom() + 1) & !1;
        Rect::new(x0, y0, x1 - x0, y1 - y0)
    }

    /// Pixel count.
    pub const fn area(&self) -> u64 {
        self.w as u64 * self.h as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intersect_and_clip() {
        let a = Rect::new(10, 10, 20, 20);
        assert_eq!(
            a.intersect(&Rect::new(25, 0, 10, 15)),
            Some(Rect::new(25, 10, 5, 5))
        );
        assert_eq!(a.intersect(&Rect::new(30, 30, 5, 5)), None);
        assert_eq!(
            Rect::new(90, 90, 20, 20).clip(100, 100),
            Some(Rect::new(90, 90, 10, 10))
        );
    }

    #[test]
    fn align_even_grows_outward() {
        assert_eq!(Rect::new(3, 5, 2, 2).align_even(), Rect::new(2, 4, 4, 4));
        assert_eq!(Rect::new(2, 4, 4, 4).align_even(), Rect::new(2, 4, 4, 4));
    }
}
