//! The demo source: the standard synthetic desktop session, recorded live through the same
//! [`Recorder`] the protocol proxies use.
//!
//! The desktop (terminal typing, a pager, windows, app switches, an idle clock) is drawn by
//! `psmgate_codecs::synth` in real time; its key strokes and pointer moves go into the transcript
//! as a proxy would report them. A mask rule (`demo-clock`, the top-right corner with the clock)
//! shows masking at work unless the config defines a target named `demo` with its own masks.

use crate::recording::{MaskRule, Recorder, SessionInfo};
use crate::store::Store;
use anyhow::{Context, Result};
use psmgate_codecs::synth::{SynthInput, Workload};
use psmgate_codecs::transcript::{keysym, EventKind, Input};
use psmgate_policy::Config;
use psmgate_storage::manifest::{Manifest, RecordingState};
use std::time::{Duration, Instant};

/// Demo parameters.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Session length in seconds.
    pub seconds: u64,
    /// Screen width.
    pub width: u32,
    /// Screen height.
    pub height: u32,
    /// Workload seed.
    pub seed: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            seconds: 30,
            width: 1280,
            height: 720,
            seed: 1,
        }
    }
}

/// The demo's own mask, used when the config has no `demo` target.
pub fn demo_mask() -> MaskRule {
    use psmgate_policy::mask::Dim;
    let region = psmgate_policy::MaskRegion {
        id: "demo-clock".into(),
        x: Dim::Percent(80.0),
        y: Dim::Px(0),
        width: Dim::Percent(20.0),
        height: Dim::Px(32),
    };
    MaskRule {
        id: region.id.clone(),
        region,
    }
}

/// Records one demo session; returns the sealed manifest.
pub fn run(store: &Store, config: &Config, opts: &DemoOptions) -> Result<Manifest> {
    let mut settings =
        crate::settings::recording_settings(config, config.target("demo").map(|_| "demo"))?;
    if config.target("demo").is_none() {
        settings.masks.push(demo_mask());
    }
    let info = SessionInfo {
        protocol: "demo".into(),
        user: "demo".into(),
        target: "synthetic-desktop".into(),
        client_addr: "local".into(),
        policy_version: config.policy_version(),
    };
    let rec = Recorder::start(
        store.backend.clone(),
        store.key.clone(),
        store.index.clone(),
        info,
        settings,
    )
    .context("opening the demo recording")?;
    tracing::info!(session = rec.session_id(), "demo session recording");
    rec.resize(opts.width, opts.height)?;
    let duration_ms = opts.seconds * 1000;
    let mut workload = Workload::demo(opts.seed, opts.width, opts.height, duration_ms);
    let failure = rec.failure();
    let start = Instant::now();
    loop {
        let t = start.elapsed().as_millis() as u64;
        if t >= duration_ms {
            break;
        }
        if let Some(why) = failure.borrow().clone() {
            anyhow::bail!("recording failed: {why}");
        }
        let inputs = rec.screen(|fb| Ok(workload.advance(t, fb)))?;
        for i in inputs {
            feed(&rec, i)?;
        }
        let next = workload
            .next_change_after(t)
            .unwrap_or(duration_ms)
            .min(duration_ms)
            .min(t + 250);
        let now = start.elapsed().as_millis() as u64;
        if next > now {
            std::thread::sleep(Duration::from_millis(next - now));
        }
    }
    Ok(rec.finish(RecordingState::Completed, "demo finished")?)
}

/// Hands one synthetic input to the recorder as a protocol proxy would.
pub fn feed(rec: &Recorder, input: SynthInput) -> Result<()> {
    match input {
        SynthInput::Key {
            keysym: ks, down, ..
        } => {
            let (key, ch) = keysym::describe(ks);
            rec.input(Input::Key { key, ch, down })?;
        }
        SynthInput::Pointer { x, y, .. } => rec.input(Input::Pointer { x, y })?,
        SynthInput::Button {
            button, down, x, y, ..
        } => rec.input(Input::Button { button, down, x, y })?,
        SynthInput::Title { title, .. } => rec.event(EventKind::Title { title })?,
        // A proxy reports keys, not lines: the transcriber derives text runs from the keys.
        SynthInput::Text { .. } => {}
    }
    Ok(())
}
