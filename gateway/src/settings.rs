//! Turning policy into recorder settings.

use crate::recording::RecordingSettings;
use anyhow::{bail, Result};
use psmgate_codecs::encoder::{self, EncoderKind};
use psmgate_codecs::transcript::KeystrokeMode;
use psmgate_codecs::video::VideoConfig;
use psmgate_policy::Config;

/// The encoder policy asks for, checked against this build.
pub fn encoder_kind(config: &Config) -> Result<EncoderKind> {
    use psmgate_policy::Encoder as E;
    let kind = match config.recording.encoder {
        E::Auto => EncoderKind::preferred(),
        E::SvtAv1 => EncoderKind::SvtAv1,
        E::Rav1e => EncoderKind::Rav1e,
    };
    if !encoder::available().contains(&kind) {
        bail!(
            "recording.encoder = \"{}\" is not available in this build (built with: {}); \
             rebuild with `--features svt-av1` or choose another encoder",
            kind.as_str(),
            encoder::available()
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(kind)
}

/// Recorder settings for a session to `target` (None: no target, e.g. the demo).
pub fn recording_settings(config: &Config, target: Option<&str>) -> Result<RecordingSettings> {
    let r = &config.recording;
    let kind = encoder_kind(config)?;
    let keystrokes = target
        .and_then(|t| config.effective_keystrokes(t))
        .unwrap_or(r.keystrokes);
    let masks = target
        .and_then(|t| config.masks(t))
        .unwrap_or(&[])
        .iter()
        .map(|m| crate::recording::MaskRule {
            id: m.id.clone(),
            region: m.clone(),
        })
        .collect();
    Ok(RecordingSettings {
        video: VideoConfig {
            encoder: kind,
            quantizer: r.quantizer.min(63) as u8,
            // The default speed is SVT-AV1's preset scale; rav1e stops at 10.
            speed: match kind {
                EncoderKind::Rav1e => r.speed.min(10) as u8,
                EncoderKind::SvtAv1 => r.speed.min(13) as u8,
            },
            threads: 1,
            fragment_max_ms: r.fragment_max_duration.as_millis(),
            idle_close_ms: 1000,
            keyframe_max_interval_ms: r.keyframe_max_interval.as_millis(),
            keyframe_byte_budget: r.keyframe_byte_budget.bytes(),
        },
        max_fps: r.max_fps,
        keystrokes: match keystrokes {
            psmgate_policy::KeystrokeMode::Record => KeystrokeMode::Record,
            psmgate_policy::KeystrokeMode::Mask => KeystrokeMode::Mask,
            psmgate_policy::KeystrokeMode::Off => KeystrokeMode::Off,
        },
        masks,
        checkpoint_interval_ms: r.checkpoint_interval.as_millis(),
        events_flush_ms: 1000,
    })
}
