//! Live viewers of the recordings in progress in this process.
//!
//! The player follows a recording in progress by reading its `chain.jsonl` (the chain says which
//! bytes are complete). Each such read marks the recording as watched for [`VIEWER_TTL`]; while
//! it is watched its recorder flushes video every [`LIVE_FRAGMENT_MS`] instead of the configured
//! fragment time (see `VideoTrack::set_live_interval`), so a change reaches the viewer sooner.
//! Unwatched recordings keep the configured fragments, so their storage and chain overhead do
//! not grow.
//!
//! A read can also wait for the chain to grow ([`follow_chain`] with `wait`): the request is
//! answered as soon as the recorder has chained something new, or after at most [`MAX_WAIT`],
//! instead of the viewer asking again and again. A waiting read counts as a viewer throughout.
//! Waiting blocks the calling thread (the admin API runs file reads on the blocking pool), so at
//! most [`MAX_WAITERS`] reads wait at once; others are answered at once.
//!
//! The list is process-wide, by session id (a new UUID per recording): a recorder is started
//! from storage parts rather than a `Store`, and not every recording in progress is a registered
//! live session (the demo's is not), yet every one can be followed.
//!
//! Invariants:
//! - a recording is listed here exactly while its worker runs: from `Recorder::start` until its
//!   recording is sealed (or sealing failed);
//! - a waiting read never outlives its recording: the end of the recording wakes every waiter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How long one read of a recording's chain counts as someone watching it live.
pub const VIEWER_TTL: Duration = Duration::from_secs(5);

/// The fragment time while a recording is watched live (ms): fragments are flushed, and a still
/// screen's last frame closed, after at most this long.
pub const LIVE_FRAGMENT_MS: u64 = 250;

/// The longest a read of the chain waits for it to grow.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// Most reads waiting at once, over all recordings (each holds a thread of the blocking pool).
pub const MAX_WAITERS: usize = 64;

/// Reads waiting now, over all recordings.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// The recordings in progress, by session id.
static RECORDINGS: LazyLock<Mutex<HashMap<String, Weak<dyn Followed>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn recordings() -> MutexGuard<'static, HashMap<String, Weak<dyn Followed>>> {
    // Plain data: a panic elsewhere cannot leave the map half-updated.
    RECORDINGS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A recording that can be followed: its viewers, and a way to wake its worker.
pub(crate) trait Followed: Send + Sync {
    /// The recording's viewers.
    fn viewers(&self) -> &Viewers;
    /// Wakes the recording's worker (it reads [`Viewers::watched`] when it wakes).
    fn wake(&self);
}

/// One recording's viewers, shared by its recorder and the reads following it.
#[derive(Debug)]
pub(crate) struct Viewers {
    epoch: Instant,
    /// Watched until this time (ms since `epoch`).
    until_ms: AtomicU64,
    /// Reads waiting for the chain to grow now.
    waiting: AtomicU32,
    /// Whether the recording ended; waiters wait on `grown` under this lock.
    ended: Mutex<bool>,
    grown: Condvar,
}

impl Default for Viewers {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            until_ms: AtomicU64::new(0),
            waiting: AtomicU32::new(0),
            ended: Mutex::new(false),
            grown: Condvar::new(),
        }
    }
}

impl Viewers {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> MutexGuard<'_, bool> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether someone watches the recording live now: a read within [`VIEWER_TTL`], or a read
    /// waiting for the chain to grow.
    pub(crate) fn watched(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
            || self.now_ms() < self.until_ms.load(Ordering::SeqCst)
    }

    /// Notes a read of the chain; true when the recording was not watched before.
    fn note(&self) -> bool {
        let was = self.watched();
        let until = self.now_ms() + VIEWER_TTL.as_millis() as u64;
        self.until_ms.fetch_max(until, Ordering::SeqCst);
        !was
    }

    /// The recorder chained something: wakes the reads waiting for that. Call it after the
    /// bytes and their chain lines are written. Cheap when no read waits.
    pub(crate) fn wrote(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            // Taking the lock orders this after a waiter's check of the chain, or before it.
            let _g = self.lock();
            self.grown.notify_all();
        }
    }

    /// The recording ended (sealed, or sealing failed): wakes every waiting read for good.
    pub(crate) fn end(&self) {
        *self.lock() = true;
        self.grown.notify_all();
    }

    /// Waits until `grown()`, the recording's end, or `timeout`; true when `grown()` held last.
    fn wait(&self, timeout: Duration, grown: &mut dyn FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut ended = self.lock();
        let got = loop {
            if grown() {
                break true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if *ended || left.is_zero() {
                break false;
            }
            ended = match self.grown.wait_timeout(ended, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        };
        drop(ended);
        // The viewer's next read follows at once; until then it still counts as watching.
        self.note();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        got
    }
}

/// A recording's place in the list; dropping it takes the recording off.
pub(crate) struct Registration {
    id: String,
    followed: Weak<dyn Followed>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = recordings();
        // Only this registration's own entry (an id is never reused, but be exact).
        if map.get(&self.id).is_some_and(|w| w.ptr_eq(&self.followed)) {
            map.remove(&self.id);
        }
    }
}

/// Lists the recording `id` while the returned registration lives.
pub(crate) fn register(id: &str, followed: Weak<dyn Followed>) -> Registration {
    recordings().insert(id.to_owned(), followed.clone());
    Registration {
        id: id.to_owned(),
        followed,
    }
}

fn find(id: &str) -> Option<Arc<dyn Followed>> {
    recordings().get(id)?.upgrade()
}

/// Notes that someone read recording `id`'s chain, so its recorder flushes as for a live viewer
/// for [`VIEWER_TTL`]. Returns whether that recording is in progress in this process.
pub fn note_reader(id: &str) -> bool {
    let Some(rec) = find(id) else {
        return false;
    };
    if rec.viewers().note() {
        rec.wake();
    }
    true
}

/// Waits until `grown()` holds (checked at once, then whenever recording `id` chains something),
/// the recording ends, or `timeout` (at most [`MAX_WAIT`]) passes; the wait counts as a live
/// viewer. Returns whether `grown()` held last. Returns at once, with `grown()`, when that
/// recording is not in progress in this process or [`MAX_WAITERS`] reads wait already.
/// Blocks the calling thread.
pub fn wait_for_growth(id: &str, timeout: Duration, mut grown: impl FnMut() -> bool) -> bool {
    match find(id) {
        Some(rec) => wait_limited(rec.as_ref(), &WAITING, MAX_WAITERS, timeout, &mut grown),
        None => grown(),
    }
}

/// [`wait_for_growth`] for `rec`, with `waiting` counting the reads waiting (at most `max`).
fn wait_limited(
    rec: &dyn Followed,
    waiting: &AtomicUsize,
    max: usize,
    timeout: Duration,
    grown: &mut dyn FnMut() -> bool,
) -> bool {
    let viewers = rec.viewers();
    if viewers.note() {
        rec.wake();
    }
    if waiting.fetch_add(1, Ordering::SeqCst) >= max {
        waiting.fetch_sub(1, Ordering::SeqCst);
        return grown();
    }
    let got = viewers.wait(timeout.min(MAX_WAIT), grown);
    waiting.fetch_sub(1, Ordering::SeqCst);
    got
}

/// The start of a `bytes=S-` range (the form a reader following a file uses).
fn open_range_start(range: &str) -> Option<u64> {
    let spec = range.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    if !b.is_empty() || spec.contains(',') {
        return None;
    }
    a.parse().ok()
}

/// The wait a `wait=<seconds>` query value asks for: 1 to 10 s (larger values count as 10);
/// `None` for anything else.
fn wait_param(v: &str) -> Option<Duration> {
    let s: u64 = v.trim().parse().ok()?;
    (s > 0).then(|| Duration::from_secs(s).min(MAX_WAIT))
}

/// A read of `chain.jsonl` of recording `id` with the request's `Range` and `wait` query value:
/// notes a live viewer, and with `wait=<seconds>` and a `bytes=S-` range holds the read until the
/// chain has bytes past `S + 1` (new lines after the one ending at `S`), the recording ends, or
/// the wait (at most [`MAX_WAIT`]) passes. Then the caller serves the read as usual. Does nothing
/// for a recording that is not in progress in this process. Blocks the calling thread.
pub fn follow_chain(
    store: &crate::store::Store,
    id: &str,
    range: Option<&str>,
    wait: Option<&str>,
) {
    let (Some(start), Some(timeout)) =
        (range.and_then(open_range_start), wait.and_then(wait_param))
    else {
        note_reader(id);
        return;
    };
    if find(id).is_none() {
        return;
    }
    let Ok(dir) = store.resolve_recording(id) else {
        return;
    };
    let chain = format!("{dir}/chain.jsonl");
    let backend = store.backend.clone();
    wait_for_growth(id, timeout, || match backend.len(&chain) {
        Ok(Some(len)) => len > start.saturating_add(1),
        // Nothing chained yet.
        Ok(None) => false,
        // Unreadable: answer now (the read reports it).
        Err(_) => true,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// A recording stand-in: its viewers and how often its worker was woken.
    #[derive(Default)]
    struct Rec {
        viewers: Viewers,
        wakes: AtomicU32,
    }

    impl Followed for Rec {
        fn viewers(&self) -> &Viewers {
            &self.viewers
        }
        fn wake(&self) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn listed(id: &str) -> (Arc<Rec>, Registration) {
        let rec = Arc::new(Rec::default());
        let weak: Weak<dyn Followed> = Arc::downgrade(&(rec.clone() as Arc<dyn Followed>));
        let reg = register(id, weak);
        (rec, reg)
    }

    #[test]
    fn a_read_marks_the_recording_watched_and_wakes_its_worker_once() {
        let (rec, reg) = listed("viewers-read");
        assert!(!rec.viewers.watched());
        assert!(note_reader("viewers-read"));
        assert!(rec.viewers.watched());
        assert!(note_reader("viewers-read"));
        assert_eq!(
            rec.wakes.load(Ordering::SeqCst),
            1,
            "woken when watching starts"
        );
        drop(reg);
        assert!(
            !note_reader("viewers-read"),
            "off the list once unregistered"
        );
        assert!(!note_reader("no-such-recording"));
    }

    #[test]
    fn watching_decays_after_the_ttl() {
        let v = Viewers::default();
        v.note();
        assert!(v.watched());
        // As if the read was longer ago than the TTL.
        v.until_ms
            .store(v.now_ms().saturating_sub(1), Ordering::SeqCst);
        assert!(!v.watched());
        // A waiting read counts whatever the time.
        v.waiting.fetch_add(1, Ordering::SeqCst);
        assert!(v.watched());
    }

    #[test]
    fn a_waiting_read_returns_when_the_recording_writes() {
        let (rec, _reg) = listed("viewers-grow");
        let grown = Arc::new(AtomicBool::new(false));
        let writer = {
            let (rec, grown) = (rec.clone(), grown.clone());
            std::thread::spawn(move || {
                // Write once the read waits (counted as a viewer meanwhile).
                while rec.viewers.waiting.load(Ordering::SeqCst) == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                assert!(rec.viewers.watched());
                grown.store(true, Ordering::SeqCst);
                rec.viewers.wrote();
            })
        };
        let started = Instant::now();
        let got = wait_for_growth("viewers-grow", Duration::from_secs(30), || {
            grown.load(Ordering::SeqCst)
        });
        writer.join().unwrap();
        assert!(got);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "woken by the write, not by the timeout"
        );
        assert!(rec.viewers.watched(), "still watched right after the read");
        assert!(
            rec.wakes.load(Ordering::SeqCst) >= 1,
            "the worker was woken"
        );
    }

    #[test]
    fn a_waiting_read_returns_at_its_timeout_or_the_end() {
        let (rec, _reg) = listed("viewers-idle");
        let started = Instant::now();
        assert!(!wait_for_growth(
            "viewers-idle",
            Duration::from_millis(50),
            || false
        ));
        assert!(started.elapsed() >= Duration::from_millis(50));
        let ender = {
            let rec = rec.clone();
            std::thread::spawn(move || {
                while rec.viewers.waiting.load(Ordering::SeqCst) == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                rec.viewers.end();
            })
        };
        let started = Instant::now();
        assert!(!wait_for_growth(
            "viewers-idle",
            Duration::from_secs(30),
            || false
        ));
        ender.join().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "woken by the end"
        );
        // Once ended, a read no longer waits.
        assert!(!wait_for_growth(
            "viewers-idle",
            Duration::from_secs(30),
            || false
        ));
        assert_eq!(rec.viewers.waiting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn reads_of_recordings_not_in_progress_never_wait() {
        let started = Instant::now();
        assert!(!wait_for_growth(
            "viewers-none",
            Duration::from_secs(30),
            || false
        ));
        assert!(wait_for_growth(
            "viewers-none",
            Duration::from_secs(30),
            || true
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn reads_past_the_limit_do_not_wait_but_still_count_as_viewers() {
        let rec = Rec::default();
        let waiting = AtomicUsize::new(3);
        let started = Instant::now();
        let got = wait_limited(&rec, &waiting, 3, Duration::from_secs(30), &mut || false);
        assert!(!got);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(waiting.load(Ordering::SeqCst), 3);
        assert!(rec.viewers.watched());
        assert_eq!(rec.wakes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn query_and_range_forms() {
        assert_eq!(open_range_start("bytes=1234-"), Some(1234));
        assert_eq!(open_range_start("bytes=0-"), Some(0));
        assert_eq!(open_range_start("bytes=0-99"), None);
        assert_eq!(open_range_start("bytes=-10"), None);
        assert_eq!(open_range_start("bytes=1-,5-"), None);
        assert_eq!(open_range_start("items=1-"), None);
        assert_eq!(wait_param("10"), Some(Duration::from_secs(10)));
        assert_eq!(wait_param("3"), Some(Duration::from_secs(3)));
        assert_eq!(wait_param("3600"), Some(MAX_WAIT));
        assert_eq!(wait_param("0"), None);
        assert_eq!(wait_param("-1"), None);
        assert_eq!(wait_param("soon"), None);
    }
}
