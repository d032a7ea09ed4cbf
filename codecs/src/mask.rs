//! Screen masks: regions blacked out in the encoder's input.
//!
//! Masks arrive already resolved to pixels for the current screen size (policy resolves
//! percentages). Each rectangle is grown to even edges so that 4:2:0 chroma never averages a
//! masked pixel with an unmasked one, and painted black in the YUV frame *after* conversion and
//! *before* the frame is handed to the encoder, so the encoder never sees masked content.

use crate::geometry::Rect;
use crate::yuv::YuvFrame;

/// One masked region with the policy rule id that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// Policy rule id, recorded in the manifest.
    pub id: String,
    /// Region in screen pixels.
    pub rect: Rect,
}

/// The masks in force for one screen size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaskSet {
    masks: Vec<Mask>,
}

impl MaskSet {
    /// Masks clipped to a `width`×`height` screen and grown to even edges; empty ones are dropped.
    pub fn new(masks: impl IntoIterator<Item = Mask>, width: u32, height: u32) -> Self {
        let masks = masks
            .into_iter()
            .filter_map(|m| {
                let rect = m
                    .rect
                    .align_even()
                    .clip(crate::yuv::even(width), crate::yuv::even(height))?;
                Some(Mask { id: m.id, rect })
            })
            .collect();
        Self { masks }
    }

    /// True when no mask is in force.
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    /// The masks (already aligned and clipped).
    pub fn masks(&self) -> &[Mask] {
        &self.masks
    }

    /// Paints every mask black in `frame`.
    pub fn apply(&self, frame: &mut YuvFrame) {
        for m in &self.masks {
            frame.fill_black(m.rect);
        }
    }

    /// True when the pixel lies in a masked region (pointer events there lose coordinates).
    pub fn covers(&self, x: u32, y: u32) -> bool {
        self.masks.iter().any(|m| m.rect.contains(x, y))
    }

    /// True when `r` lies entirely inside one masked region: changes there cannot alter what the
    /// encoder sees.
    pub fn hides(&self, r: &Rect) -> bool {
        self.masks.iter().any(|m| m.rect.intersect(r) == Some(*r))
    }

    /// True when `r` overlaps a masked region.
    pub fn overlaps(&self, r: &Rect) -> bool {
        self.masks.iter().any(|m| m.rect.intersect(r).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yuv::{BLACK_Y, NEUTRAL_UV};

    #[test]
    fn masked_area_is_black_and_rest_untouched() {
        let (w, h) = (64u32, 48u32);
        let src = vec![0xffffffu32; (w * h) as usize];
        let mut f = YuvFrame::black(w, h);
        f.convert_from_xrgb(&src, w, h, Rect::new(0, 0, w, h));
        let set = MaskSet::new(
            [Mask {
                id: "m".into(),
                rect: Rect::new(11, 7, 20, 9),
            }],
            w,
            h,
        );
        set.apply(&mut f);
        let r = set.masks()[0].rect;
        assert_eq!(r, Rect::new(10, 6, 22, 10));
        for y in 0..h {
            for x in 0..w {
                let yv = f.y[(y * w + x) as usize];
                if r.contains(x, y) {
                    assert_eq!(yv, BLACK_Y, "({x},{y}) masked");
                } else {
                    assert_eq!(yv, 235, "({x},{y}) untouched");
                }
            }
        }
        for cy in 0..h / 2 {
            for cx in 0..w / 2 {
                if r.contains(cx * 2, cy * 2) {
                    assert_eq!(f.u[(cy * w / 2 + cx) as usize], NEUTRAL_UV);
                }
            }
        }
        assert!(set.covers(11, 7) && set.covers(10, 6) && !set.covers(9, 6));
        assert!(set.hides(&Rect::new(12, 8, 4, 4)) && !set.hides(&Rect::new(30, 8, 4, 4)));
    }

    #[test]
    fn masks_outside_the_screen_are_dropped_or_clipped() {
        let set = MaskSet::new(
            [
                Mask {
                    id: "out".into(),
                    rect: Rect::new(500, 500, 10, 10),
                },
                Mask {
                    id: "edge".into(),
                    rect: Rect::new(60, 40, 100, 100),
                },
            ],
            64,
            48,
        );
        assert_eq!(set.masks().len(), 1);
        assert_eq!(set.masks()[0].rect, Rect::new(60, 40, 4, 8));
    }
}
