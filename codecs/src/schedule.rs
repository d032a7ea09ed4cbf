//! When to encode: only on change, at most `max_fps`, always the latest state.
//!
//! The scheduler is a pure state machine over millisecond timestamps. The recorder tells it
//! when the screen changed and when a frame was encoded; it answers whether to encode now or how
//! long to sleep. An idle screen yields [`Decision::Idle`]: the recorder sleeps until woken by the
//! next change, so idle costs no CPU. Changes that arrive while a frame is being encoded are
//! coalesced into the next frame, which snapshots the newest state: intermediate states may merge,
//! the latest is never dropped.

/// What the recorder should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Snapshot and encode now.
    EncodeNow,
    /// Something changed; encode at this time (rate limit).
    At(u64),
    /// Nothing changed since the last frame.
    Idle,
}

/// Coalescing frame scheduler.
#[derive(Debug, Clone)]
pub struct FrameScheduler {
    min_interval_ms: u64,
    last_encode: Option<u64>,
    dirty_since: Option<u64>,
}

impl FrameScheduler {
    /// A scheduler allowing at most `max_fps` frames per second (clamped to 1..=60).
    pub fn new(max_fps: u32) -> Self {
        Self {
            min_interval_ms: 1000 / u64::from(max_fps.clamp(1, 60)),
            last_encode: None,
            dirty_since: None,
        }
    }

    /// Minimum time between two frames.
    pub fn min_interval_ms(&self) -> u64 {
        self.min_interval_ms
    }

    /// The screen changed at `now`.
    pub fn changed(&mut self, now: u64) {
        if self.dirty_since.is_none() {
            self.dirty_since = Some(now);
        }
    }

    /// Time of the oldest change not yet encoded.
    pub fn dirty_since(&self) -> Option<u64> {
        self.dirty_since
    }

    /// What to do at `now`.
    pub fn poll(&self, now: u64) -> Decision {
        match (self.dirty_since, self.last_encode) {
            (None, _) => Decision::Idle,
            (Some(_), None) => Decision::EncodeNow,
            (Some(_), Some(last)) => {
                let due = last + self.min_interval_ms;
                if now >= due {
                    Decision::EncodeNow
                } else {
                    Decision::At(due)
                }
            }
        }
    }

    /// When the next frame is due, as [`FrameScheduler::poll`] would say `EncodeNow` from then
    /// on: the oldest change not yet encoded, or the end of the rate limit after the last frame,
    /// whichever is later. `None` while nothing changed.
    ///
    /// For a clock that is not the wall clock (a recording rendered after the session, at the
    /// times the session's events happened): the frame then shows the state at this time.
    pub fn next_frame_at(&self) -> Option<u64> {
        let since = self.dirty_since?;
        Some(match self.last_encode {
            None => since,
            Some(last) => since.max(last + self.min_interval_ms),
        })
    }

    /// A frame holding every change up to `snapshot_at` was taken.
    pub fn encoded(&mut self, snapshot_at: u64) {
        self.last_encode = Some(snapshot_at);
        self.dirty_since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_until_change_then_rate_limited() {
        let mut s = FrameScheduler::new(10);
        assert_eq!(s.poll(0), Decision::Idle);
        s.changed(5);
        assert_eq!(s.poll(5), Decision::EncodeNow);
        s.encoded(5);
        assert_eq!(s.poll(6), Decision::Idle);
        s.changed(20);
        s.changed(40);
        assert_eq!(s.poll(40), Decision::At(105));
        assert_eq!(s.dirty_since(), Some(20));
        assert_eq!(s.poll(105), Decision::EncodeNow);
        s.encoded(105);
        assert_eq!(s.poll(5000), Decision::Idle);
    }

    #[test]
    fn a_slow_encoder_coalesces_without_losing_the_latest_state() {
        // Changes every 10 ms, each encode takes 250 ms: every poll after an encode is due at once,
        // and the snapshot is always the newest state.
        let mut s = FrameScheduler::new(30);
        let mut t = 0;
        let mut frames = 0;
        while t < 2000 {
            s.changed(t);
            if s.poll(t) == Decision::EncodeNow {
                s.encoded(t);
                frames += 1;
                t += 250;
            } else {
                t += 10;
            }
        }
        assert_eq!(frames, 8);
        s.changed(2000);
        assert_eq!(s.poll(2000), Decision::EncodeNow);
    }

    #[test]
    fn the_next_frame_is_due_when_poll_says_encode() {
        let mut s = FrameScheduler::new(10);
        assert_eq!(s.next_frame_at(), None);
        s.changed(30);
        assert_eq!(
            s.next_frame_at(),
            Some(30),
            "the first change is framed at once"
        );
        s.encoded(30);
        assert_eq!(s.next_frame_at(), None);
        s.changed(50);
        assert_eq!(s.next_frame_at(), Some(130), "rate-limited to 10 a second");
        // On a clock that only moves forward (never before the change), poll agrees.
        for t in [50, 129, 130, 131] {
            let due = s.next_frame_at().is_some_and(|d| t >= d);
            assert_eq!(s.poll(t) == Decision::EncodeNow, due, "at {t}");
        }
        s.encoded(130);
        s.changed(900);
        assert_eq!(
            s.next_frame_at(),
            Some(900),
            "a late change is framed when it happens"
        );
    }

    #[test]
    fn fps_is_clamped() {
        assert_eq!(FrameScheduler::new(0).min_interval_ms(), 1000);
        assert_eq!(FrameScheduler::new(1000).min_interval_ms(), 16);
    }
}
