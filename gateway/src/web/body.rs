//! Bodies passed through the proxy unchanged while they are measured: a [`Tap`] counts the bytes
//! and keeps the first few (for a recorded request body), and a [`Counted`] body tells its
//! owner once, when it ended, failed or was dropped unfinished.
//!
//! A body has ended when it says so or when every byte its length announced has passed. The
//! second matters for HTTP/2 upstreams: the stream's end (`END_STREAM`) may come after the last
//! `DATA` frame, and the browser side stops reading a response as soon as its `Content-Length`
//! bytes are written, so the end marker is never polled.

use http_body_util::combinators::BoxBody;
use hudsucker::hyper::body::{Body as _, Bytes, Frame, SizeHint};
use hudsucker::Body;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};

/// Byte counter with a bounded copy of the first bytes.
#[derive(Debug)]
pub struct Tap {
    count: AtomicU64,
    limit: usize,
    kept: Mutex<Vec<u8>>,
}

impl Tap {
    /// A tap keeping at most `limit` bytes (0: count only).
    pub fn new(limit: usize) -> Self {
        Tap {
            count: AtomicU64::new(0),
            limit,
            kept: Mutex::new(Vec::new()),
        }
    }

    /// Notes `data` passing.
    pub fn saw(&self, data: &[u8]) {
        self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        if self.limit > 0 {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            let room = self.limit.saturating_sub(kept.len());
            kept.extend_from_slice(&data[..room.min(data.len())]);
        }
    }

    /// Bytes seen so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The first bytes kept.
    pub fn captured(&self) -> Vec<u8> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Called once with the bytes passed and, if the body did not end normally, why.
pub type OnEnd = Box<dyn FnOnce(u64, Option<String>) + Send + Sync>;

/// A body that measures what passes through it.
pub struct Counted {
    inner: Body,
    tap: std::sync::Arc<Tap>,
    on_end: Option<OnEnd>,
}

impl Counted {
    /// `body` measured by `tap`, reporting its end to `on_end`; as a proxy body.
    pub fn wrap(body: Body, tap: std::sync::Arc<Tap>, on_end: Option<OnEnd>) -> Body {
        Body::from(BoxBody::new(Counted {
            inner: body,
            tap,
            on_end,
        }))
    }

    fn end(&mut self, error: Option<String>) {
        if let Some(f) = self.on_end.take() {
            f(self.tap.count(), error);
        }
    }

    /// Whether the inner body has nothing more to give: at its end, or all of its announced
    /// length passed.
    fn complete(&self) -> bool {
        self.inner.is_end_stream() || self.inner.size_hint().exact() == Some(0)
    }
}

impl hudsucker::hyper::body::Body for Counted {
    type Data = Bytes;
    type Error = hudsucker::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hudsucker::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.tap.saw(d);
                }
                if self.complete() {
                    self.end(None);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let why = format!("body failed: {e}");
                self.end(Some(why));
            }
            Poll::Ready(None) => self.end(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if self.complete() {
            self.end(None);
        } else {
            self.end(Some("cut short before the end of the body".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::Arc;

    #[tokio::test]
    async fn counts_keeps_the_first_bytes_and_reports_once() {
        let tap = Arc::new(Tap::new(4));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let body = Counted::wrap(
            Body::from("hello world"),
            tap.clone(),
            Some(Box::new(move |n, e| s2.lock().unwrap().push((n, e)))),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"hello world");
        assert_eq!(tap.count(), 11);
        assert_eq!(tap.captured(), b"hell");
        assert_eq!(*seen.lock().unwrap(), vec![(11, None)]);
    }

    #[tokio::test]
    async fn a_dropped_body_reports_that_it_was_cut_short() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let stream = futures_like_stream();
        let body = Counted::wrap(
            stream,
            Arc::new(Tap::new(0)),
            Some(Box::new(move |n, e| s2.lock().unwrap().push((n, e)))),
        );
        drop(body);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert!(seen[0].1.as_deref().unwrap().contains("cut short"));
    }

    /// A body announcing `announced` bytes and giving `chunks`, that never says it is at its
    /// end (as an HTTP/2 body whose `END_STREAM` has not arrived yet).
    struct Announced {
        chunks: std::collections::VecDeque<Bytes>,
        remaining: u64,
    }

    impl hudsucker::hyper::body::Body for Announced {
        type Data = Bytes;
        type Error = hudsucker::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, hudsucker::Error>>> {
            let next = self.chunks.pop_front();
            if let Some(c) = &next {
                self.remaining = self.remaining.saturating_sub(c.len() as u64);
            }
            Poll::Ready(next.map(|c| Ok(Frame::data(c))))
        }

        fn is_end_stream(&self) -> bool {
            false
        }

        fn size_hint(&self) -> SizeHint {
            SizeHint::with_exact(self.remaining)
        }
    }

    /// Reads the first frame of a [`Counted`] over [`Announced`] and drops it; what `on_end`
    /// was told.
    async fn first_frame_then_drop(
        announced: u64,
        chunk: &'static [u8],
    ) -> Vec<(u64, Option<String>)> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let inner = Body::from(BoxBody::new(Announced {
            chunks: [Bytes::from_static(chunk)].into(),
            remaining: announced,
        }));
        let mut body = Counted::wrap(
            inner,
            Arc::new(Tap::new(0)),
            Some(Box::new(move |n, e| s2.lock().unwrap().push((n, e)))),
        );
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), chunk);
        drop(body);
        let seen = seen.lock().unwrap().clone();
        seen
    }

    #[tokio::test]
    async fn a_body_whose_announced_length_passed_ended_without_its_end_marker() {
        assert_eq!(first_frame_then_drop(5, b"hello").await, vec![(5, None)]);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_announced_length_was_cut_short() {
        let seen = first_frame_then_drop(11, b"hello").await;
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, 5);
        assert!(seen[0].1.as_deref().unwrap().contains("cut short"));
    }

    /// A body that is not at its end before being read.
    fn futures_like_stream() -> Body {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![Ok(Bytes::from_static(b"a"))];
        Body::from_stream(hudsucker::futures::stream::iter(chunks))
    }
}
