//! Recording settings derived from policy for one session.

use psmgate_codecs::mask::{Mask, MaskSet};
use psmgate_codecs::transcript::KeystrokeMode;
use psmgate_codecs::video::VideoConfig;
use psmgate_codecs::Rect;

/// A mask as policy states it, resolved per screen size.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskRule {
    /// Rule id.
    pub id: String,
    /// Resolves the region for a screen size to `(x, y, w, h)` pixels.
    pub region: psmgate_policy::MaskRegion,
}

/// Everything the recorder needs to know from policy.
#[derive(Debug, Clone)]
pub struct RecordingSettings {
    /// Video encoding.
    pub video: VideoConfig,
    /// Frame-rate cap.
    pub max_fps: u32,
    /// Keystroke mode.
    pub keystrokes: KeystrokeMode,
    /// Screen masks.
    pub masks: Vec<MaskRule>,
    /// Checkpoint interval in ms.
    pub checkpoint_interval_ms: u64,
    /// Longest time transcript events wait before they are written.
    pub events_flush_ms: u64,
}

impl Default for RecordingSettings {
    fn default() -> Self {
        Self {
            video: VideoConfig::default(),
            max_fps: 10,
            keystrokes: KeystrokeMode::Record,
            masks: Vec::new(),
            checkpoint_interval_ms: 10_000,
            events_flush_ms: 1000,
        }
    }
}

impl RecordingSettings {
    /// The masks in force for a screen size.
    pub fn masks_for(&self, width: u32, height: u32) -> MaskSet {
        MaskSet::new(
            self.masks.iter().map(|m| {
                let (x, y, w, h) = m.region.resolve(width, height);
                Mask {
                    id: m.id.clone(),
                    rect: Rect::new(x, y, w, h),
                }
            }),
            width,
            height,
        )
    }

    /// Ids of every mask rule, for the manifest.
    pub fn mask_ids(&self) -> Vec<String> {
        self.masks.iter().map(|m| m.id.clone()).collect()
    }
}
