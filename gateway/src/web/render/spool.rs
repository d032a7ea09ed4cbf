//! What a web session keeps for a video rendered after it ends (`web.video = "after"`): the
//! masked DOM batches exactly as they were stored as `dom` events, each with its transcript
//! time, up to a bound.
//!
//! The bound counts the serialized events plus a fixed overhead per event and batch, so it is
//! close to the memory the spool holds. The first batch that does not fit closes the spool: the
//! video then covers the session up to that batch, and the caller records that (a `marker`
//! event and a warning). The DOM recording itself is never affected: the spool holds copies.

use super::queue::QueuedEvent;

/// Most bytes one session's spool holds (see the module docs for what counts).
pub const MAX_SPOOL_BYTES: usize = 64 * 1024 * 1024;

/// What one spooled event or batch costs beyond its text (its structure and bookkeeping).
const OVERHEAD: usize = 64;

/// One batch of one page, as stored, with its transcript time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledBatch {
    /// Milliseconds since the session started (the `dom` event's `t`).
    pub t: u64,
    /// The page id.
    pub page: String,
    /// Its masked rrweb events, serialized.
    pub events: Vec<QueuedEvent>,
}

impl SpooledBatch {
    fn cost(&self) -> usize {
        self.page.len()
            + OVERHEAD
            + self
                .events
                .iter()
                .map(|e| e.json.len() + OVERHEAD)
                .sum::<usize>()
    }
}

/// What [`Spool::push`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spooled {
    /// Kept.
    Kept,
    /// Left out: it did not fit, and the spool is closed from now on (the first time only).
    Full,
    /// Left out: the spool was closed before.
    Closed,
}

/// The batches of one session, in the order of their transcript times.
#[derive(Debug, Default)]
pub struct Spool {
    batches: Vec<SpooledBatch>,
    bytes: usize,
    max_bytes: usize,
    /// Transcript time of the first batch left out.
    full_at: Option<u64>,
}

impl Spool {
    /// An empty spool holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Spool {
        Spool {
            batches: Vec::new(),
            bytes: 0,
            max_bytes,
            full_at: None,
        }
    }

    /// Keeps `events` of `page`, recorded at transcript time `t`, if they fit.
    pub fn push(&mut self, t: u64, page: &str, events: Vec<QueuedEvent>) -> Spooled {
        if self.full_at.is_some() {
            return Spooled::Closed;
        }
        let batch = SpooledBatch {
            t,
            page: page.to_string(),
            events,
        };
        let cost = batch.cost();
        if self.bytes.saturating_add(cost) > self.max_bytes {
            self.full_at = Some(t);
            return Spooled::Full;
        }
        self.bytes += cost;
        self.batches.push(batch);
        Spooled::Kept
    }

    /// True once a batch was left out: later ones are too.
    pub fn is_closed(&self) -> bool {
        self.full_at.is_some()
    }

    /// Transcript time of the first batch left out, if one was.
    pub fn full_at(&self) -> Option<u64> {
        self.full_at
    }

    /// Bytes held (see the module docs).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of batches held.
    pub fn len(&self) -> usize {
        self.batches.len()
    }

    /// True when no batch is held.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The batches, ordered by transcript time (batches of the same time keep the order they
    /// were pushed in).
    pub fn into_batches(self) -> Vec<SpooledBatch> {
        let mut b = self.batches;
        b.sort_by_key(|b| b.t);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(pad: usize) -> Vec<QueuedEvent> {
        vec![QueuedEvent::new(
            &json!({"type": 3, "data": {"source": 0, "pad": "x".repeat(pad)}}),
        )]
    }

    #[test]
    fn batches_are_kept_until_one_does_not_fit_then_none() {
        let one = SpooledBatch {
            t: 0,
            page: "p".into(),
            events: events(100),
        }
        .cost();
        let mut s = Spool::new(3 * one);
        for t in [10, 20, 30] {
            assert_eq!(s.push(t, "p", events(100)), Spooled::Kept, "at {t}");
        }
        assert_eq!(s.bytes(), 3 * one);
        assert!(!s.is_closed());
        // The fourth does not fit: the video ends here.
        assert_eq!(s.push(40, "p", events(100)), Spooled::Full);
        assert_eq!(s.full_at(), Some(40));
        // Nothing later is kept, however small: the replay must not skip what it missed.
        assert_eq!(s.push(50, "p", events(0)), Spooled::Closed);
        assert_eq!(s.push(60, "q", Vec::new()), Spooled::Closed);
        assert_eq!(s.len(), 3);
        assert_eq!(s.bytes(), 3 * one);
        let kept: Vec<u64> = s.into_batches().iter().map(|b| b.t).collect();
        assert_eq!(kept, [10, 20, 30]);
    }

    #[test]
    fn one_batch_over_the_bound_closes_an_empty_spool() {
        let mut s = Spool::new(100);
        assert_eq!(s.push(5, "p", events(200)), Spooled::Full);
        assert!(s.is_empty());
        assert_eq!(s.bytes(), 0);
        assert_eq!(s.full_at(), Some(5));
    }

    #[test]
    fn batches_come_out_in_transcript_order() {
        let mut s = Spool::new(MAX_SPOOL_BYTES);
        // Two pages' batches recorded in an order that is not quite their times'.
        for (t, page) in [(100, "a"), (250, "b"), (200, "a"), (250, "a"), (300, "b")] {
            assert_eq!(s.push(t, page, events(1)), Spooled::Kept);
        }
        let order: Vec<(u64, String)> = s
            .into_batches()
            .into_iter()
            .map(|b| (b.t, b.page))
            .collect();
        assert_eq!(
            order,
            [
                (100, "a".to_string()),
                (200, "a".to_string()),
                (250, "b".to_string()),
                (250, "a".to_string()),
                (300, "b".to_string()),
            ]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn the_bound_holds_and_what_is_kept_is_a_prefix(
            pads in proptest::collection::vec(0usize..400, 0..40),
            max in 0usize..5000,
        ) {
            let mut s = Spool::new(max);
            let mut kept = 0;
            for (i, pad) in pads.iter().enumerate() {
                if s.push(i as u64, "p", events(*pad)) == Spooled::Kept {
                    proptest::prop_assert_eq!(kept, i, "a batch was kept after one was left out");
                    kept += 1;
                }
                proptest::prop_assert!(s.bytes() <= max);
            }
            proptest::prop_assert_eq!(s.len(), kept);
            proptest::prop_assert_eq!(s.is_closed(), kept < pads.len());
        }
    }
}
