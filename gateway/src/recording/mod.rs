//! The session recorder: the one interface every protocol proxy records through.
//!
//! A proxy owns a [`Recorder`] per session and hands it what it decoded: pixels into the
//! framebuffer ([`Recorder::screen`]), input ([`Recorder::input`]) and metadata
//! ([`Recorder::event`]). None of these wait for encoding or storage: pixels land in a shared
//! framebuffer that coalesces changes, inputs in a queue; a worker thread per session turns them
//! into masked video, a masked transcript and chained, signed storage. Forwarding never waits on
//! recording. If recording fails, [`Recorder::failure`] says why so the proxy can end the session
//! (fail-closed).
//!
//! Video made after the fact from what a session recorded (a web session's DOM recording
//! replayed once the session ended) is written with [`Recorder::screen_at`] and
//! [`Recorder::resize_at`] at the session's own times instead of the wall clock, and
//! [`Recorder::mark_ended`] keeps the recording's end at the session's end although it is sealed
//! later.
//!
//! While someone follows a recording live (reads its chain, see [`viewers`]), its video is
//! flushed in shorter fragments.

mod recorder;
mod settings;
mod sink;
pub mod viewers;

pub use recorder::{Recorder, RecorderError, SessionInfo, Thumbnail};
pub use settings::{MaskRule, RecordingSettings};
pub use sink::{SinkError, StorageSink};
