//! The bounded queue between the proxy (which feeds a session's masked DOM events as they are
//! recorded) and the renderer (which replays them): feeding never waits.
//!
//! Events are kept serialized (what is sent to Chromium), with what the renderer needs to know
//! of each: whether it starts a page (Meta, FullSnapshot) and whether it can change what is on
//! screen. Consecutive batches of the same page are merged. When the queue holds more than its
//! bound, the oldest batch is dropped, and with it every later event of the same page up to the
//! page's next full snapshot (they describe changes to a DOM the replay no longer has); events
//! of that page fed later are dropped the same way until a full snapshot arrives.

use serde_json::Value;
use std::collections::{HashSet, VecDeque};

// rrweb event types and incremental sources (see dom.rs).
const FULL_SNAPSHOT: u64 = 2;
const INCREMENTAL_SNAPSHOT: u64 = 3;
const META: u64 = 4;
/// Incremental sources that do not change what is drawn (mouse and touch moves, clicks, drags,
/// selections): the replay applies no pointer, so a frame after them would be the same.
const INVISIBLE_SOURCES: [u64; 5] = [1, 2, 6, 12, 14];

/// One event, serialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedEvent {
    /// Its JSON.
    pub json: String,
    /// A Meta event (a page starts; its viewport size).
    pub meta: bool,
    /// A FullSnapshot (the whole DOM).
    pub full: bool,
    /// It may change what is drawn.
    pub visible: bool,
}

impl QueuedEvent {
    /// `event` as queued.
    pub fn new(event: &Value) -> QueuedEvent {
        let kind = event.get("type").and_then(Value::as_u64);
        let source = event
            .get("data")
            .and_then(|d| d.get("source"))
            .and_then(Value::as_u64);
        let visible = match kind {
            Some(FULL_SNAPSHOT) | Some(META) => true,
            Some(INCREMENTAL_SNAPSHOT) => source.is_none_or(|s| !INVISIBLE_SOURCES.contains(&s)),
            _ => false,
        };
        QueuedEvent {
            json: event.to_string(),
            meta: kind == Some(META),
            full: kind == Some(FULL_SNAPSHOT),
            visible,
        }
    }
}

/// Events of one page, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedBatch {
    /// The page id.
    pub page: String,
    /// Its events.
    pub events: Vec<QueuedEvent>,
}

impl QueuedBatch {
    fn bytes(&self) -> usize {
        self.events.iter().map(|e| e.json.len()).sum()
    }
}

/// Where the page's replay can start again in `events`: the last full snapshot, with the Meta
/// event just before it.
fn restart(events: &[QueuedEvent]) -> Option<usize> {
    let i = events.iter().rposition(|e| e.full)?;
    Some(if i > 0 && events[i - 1].meta {
        i - 1
    } else {
        i
    })
}

/// What [`FeedQueue::push`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Events dropped (the new ones, or older ones to make room).
    pub dropped: usize,
}

/// The queue.
#[derive(Debug)]
pub struct FeedQueue {
    batches: VecDeque<QueuedBatch>,
    bytes: usize,
    max_bytes: usize,
    max_batches: usize,
    /// Pages whose events are dropped until their next full snapshot.
    resync: HashSet<String>,
}

/// Most pages waiting for a full snapshot that are remembered.
const MAX_RESYNC: usize = 1024;

impl FeedQueue {
    /// A queue holding at most `max_bytes` of serialized events in at most `max_batches`
    /// batches.
    pub fn new(max_bytes: usize, max_batches: usize) -> FeedQueue {
        FeedQueue {
            batches: VecDeque::new(),
            bytes: 0,
            max_bytes,
            max_batches: max_batches.max(1),
            resync: HashSet::new(),
        }
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// Serialized bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Queues `events` of `page`.
    pub fn push(&mut self, page: &str, mut events: Vec<QueuedEvent>) -> Pushed {
        let mut out = Pushed::default();
        if self.resync.contains(page) {
            match restart(&events) {
                Some(i) => {
                    out.dropped += i;
                    events.drain(..i);
                    self.resync.remove(page);
                }
                None => {
                    out.dropped += events.len();
                    return out;
                }
            }
        }
        if events.is_empty() {
            return out;
        }
        let batch = QueuedBatch {
            page: page.to_string(),
            events,
        };
        self.bytes += batch.bytes();
        match self.batches.back_mut() {
            Some(last) if last.page == page => last.events.extend(batch.events),
            _ => self.batches.push_back(batch),
        }
        while self.bytes > self.max_bytes || self.batches.len() > self.max_batches {
            out.dropped += self.drop_oldest();
        }
        out
    }

    /// Drops the oldest batch and what depends on it; returns how many events went.
    fn drop_oldest(&mut self) -> usize {
        let Some(first) = self.batches.pop_front() else {
            return 0;
        };
        let mut dropped = first.events.len();
        self.bytes -= first.bytes();
        let mut waiting = true;
        for b in self.batches.iter_mut().filter(|b| b.page == first.page) {
            let before = b.bytes();
            let n = b.events.len();
            match restart(&b.events) {
                Some(i) => {
                    b.events.drain(..i);
                    waiting = false;
                }
                None => b.events.clear(),
            }
            dropped += n - b.events.len();
            self.bytes -= before - b.bytes();
            if !waiting {
                break;
            }
        }
        self.batches.retain(|b| !b.events.is_empty());
        if waiting {
            if self.resync.len() >= MAX_RESYNC {
                self.resync.clear();
            }
            self.resync.insert(first.page);
        }
        dropped
    }

    /// Takes everything queued, oldest first.
    pub fn take(&mut self) -> Vec<QueuedBatch> {
        self.bytes = 0;
        self.batches.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(kind: u64, source: Option<u64>, pad: usize) -> QueuedEvent {
        let mut v = json!({"type": kind, "data": {"pad": "x".repeat(pad)}, "timestamp": 1});
        if let Some(s) = source {
            v["data"]["source"] = s.into();
        }
        QueuedEvent::new(&v)
    }

    fn kinds(q: &mut FeedQueue) -> Vec<(String, Vec<bool>)> {
        q.take()
            .into_iter()
            .map(|b| (b.page, b.events.iter().map(|e| e.full).collect()))
            .collect()
    }

    #[test]
    fn events_are_classified() {
        let meta = QueuedEvent::new(&json!({"type": 4, "data": {"width": 10, "height": 5}}));
        assert!(meta.meta && meta.visible && !meta.full);
        assert!(QueuedEvent::new(&json!({"type": 2, "data": {}})).full);
        for (source, visible) in [(0, true), (1, false), (2, false), (3, true), (5, true)] {
            let e = QueuedEvent::new(&json!({"type": 3, "data": {"source": source}}));
            assert_eq!(e.visible, visible, "source {source}");
        }
        assert!(!QueuedEvent::new(&json!({"type": 5, "data": {}})).visible);
        assert!(!QueuedEvent::new(&json!("junk")).visible);
        assert_eq!(QueuedEvent::new(&json!({"type": 3})).json, r#"{"type":3}"#);
    }

    #[test]
    fn batches_of_one_page_merge() {
        let mut q = FeedQueue::new(1 << 20, 8);
        q.push("a", vec![ev(4, None, 0), ev(2, None, 0)]);
        q.push("a", vec![ev(3, Some(0), 0)]);
        q.push("b", vec![ev(2, None, 0)]);
        q.push("a", vec![ev(3, Some(0), 0)]);
        let got = q.take();
        assert_eq!(
            got.iter()
                .map(|b| (b.page.as_str(), b.events.len()))
                .collect::<Vec<_>>(),
            [("a", 3), ("b", 1), ("a", 1)]
        );
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn overflow_drops_the_oldest_and_what_depends_on_it() {
        let e = ev(3, Some(0), 100).json.len();
        // Room for about five incremental events.
        let mut q = FeedQueue::new(5 * e + 10, 16);
        q.push("a", vec![ev(3, Some(0), 100), ev(3, Some(0), 100)]);
        q.push("b", vec![ev(3, Some(0), 100)]);
        q.push("a", vec![ev(3, Some(0), 100)]);
        // Over the bound: the first batch of "a" goes, and the later one of "a", which depends
        // on it; "a" now waits for a full snapshot.
        let p = q.push("c", vec![ev(3, Some(0), 100), ev(3, Some(0), 100)]);
        assert_eq!(p.dropped, 3);
        assert!(q.bytes() <= 5 * e + 10);
        // Incremental events of "a" are dropped until its next snapshot, fed from its Meta.
        assert_eq!(q.push("a", vec![ev(3, Some(0), 1)]).dropped, 1);
        let p = q.push(
            "a",
            vec![
                ev(3, Some(0), 1),
                ev(4, None, 1),
                ev(2, None, 1),
                ev(3, Some(0), 1),
            ],
        );
        assert_eq!(p.dropped, 1);
        let got = kinds(&mut q);
        assert_eq!(
            got,
            [
                ("b".to_string(), vec![false]),
                ("c".to_string(), vec![false, false]),
                ("a".to_string(), vec![false, true, false]),
            ]
        );
        // Resynchronised: later events of "a" are kept.
        assert_eq!(q.push("a", vec![ev(3, Some(0), 1)]).dropped, 0);
    }

    #[test]
    fn a_later_snapshot_keeps_the_page_going() {
        let mut q = FeedQueue::new(1 << 20, 2);
        q.push("a", vec![ev(3, Some(0), 0)]);
        q.push("b", vec![ev(3, Some(0), 0)]);
        q.push("a", vec![ev(3, Some(0), 0), ev(4, None, 0), ev(2, None, 0)]);
        // Three batches for two slots: the oldest "a" goes; the later "a" restarts at its Meta.
        let got = kinds(&mut q);
        assert_eq!(
            got,
            [
                ("b".to_string(), vec![false]),
                ("a".to_string(), vec![false, true]),
            ]
        );
        assert_eq!(q.push("a", vec![ev(3, Some(0), 0)]).dropped, 0);
    }

    #[test]
    fn one_batch_over_the_bound_is_dropped_whole() {
        let mut q = FeedQueue::new(50, 4);
        let p = q.push("a", vec![ev(2, None, 200)]);
        assert_eq!(p.dropped, 1);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn the_bounds_always_hold(
            ops in proptest::collection::vec((0u8..3, 0u64..6, proptest::option::of(0u64..16), 0usize..200), 0..60),
            max_bytes in 100usize..2000,
            max_batches in 1usize..6,
        ) {
            let mut q = FeedQueue::new(max_bytes, max_batches);
            for (page, kind, source, pad) in ops {
                let page = ["a", "b", "c"][page as usize];
                q.push(page, vec![ev(kind, source, pad)]);
                proptest::prop_assert!(q.bytes() <= max_bytes);
                proptest::prop_assert!(q.batches.len() <= max_batches);
                let sum: usize = q.batches.iter().map(QueuedBatch::bytes).sum();
                proptest::prop_assert_eq!(sum, q.bytes());
            }
        }
    }
}
