//! Pixels and events in, AV1 fMP4 and JSON-lines transcripts out.
//!
//! This crate knows nothing of protocols or storage. Protocol code writes pixels into a
//! [`framebuffer::Framebuffer`], which tracks damage; the recorder converts damaged areas to
//! YUV ([`yuv`]), blacks out policy regions ([`mask`]) and hands frames to an [`encoder::Encoder`]
//! when the [`schedule::FrameScheduler`] says so. Packets go through [`fmp4`] into CMAF fragments.
//! Input and metadata become [`transcript`] events, masked per policy before serialisation.

pub mod av1;
pub mod encoder;
pub mod fmp4;
pub mod framebuffer;
pub mod geometry;
pub mod mask;
pub mod schedule;
pub mod synth;
pub mod transcript;
pub mod video;
pub mod yuv;

pub use geometry::Rect;
