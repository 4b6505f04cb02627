//! Bodies on both sides of the proxy, streamed frame by frame (never buffered).
//!
//! - [`ReplayableBody`]: the client's request body, shared by the tries of one request
//!   until one of them starts reading it. A try that failed before touching the body
//!   (connect refused, pooled connection closed) leaves it in place, so the request can
//!   go to another origin, POSTs included.
//! - [`OriginBody`]: an origin's response body; on its end the connection goes back to
//!   the pool, and the origin's in-flight count drops whenever it ends or is dropped.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Boxed error of a body.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the server sends to clients.
pub(crate) type ServedBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// A short, complete body (error pages, admin answers).
pub(crate) fn full(bytes: impl Into<Bytes>) -> ServedBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The request body went over `limits.max_body_bytes` while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body over the {limit}-byte limit")]
pub(crate) struct BodyTooLarge {
    pub(crate) limit: u64,
}

/// Another try already took the body (never happens in order; a guard, not a path).
#[derive(Debug, thiserror::Error)]
#[error("request body already consumed by an earlier try")]
struct BodyTaken;

#[derive(Debug)]
struct Shared {
    slot: Mutex<Option<Incoming>>,
    seen: AtomicU64,
    limit: Option<u64>,
    over_limit: AtomicBool,
}

/// The client's request body, handed to tries one at a time.
#[derive(Debug, Clone)]
pub(crate) struct ReplayableBody {
    /// `None`: the request has no body (every try can send "nothing").
    shared: Option<Arc<Shared>>,
}

impl ReplayableBody {
    pub(crate) fn new(incoming: Incoming, limit: Option<u64>) -> Self {
        if incoming.is_end_stream() {
            return ReplayableBody { shared: None };
        }
        ReplayableBody {
            shared: Some(Arc::new(Shared {
                slot: Mutex::new(Some(incoming)),
                seen: AtomicU64::new(0),
                limit,
                over_limit: AtomicBool::new(false),
            })),
        }
    }

    /// True if the request has no body at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.shared.is_none()
    }

    /// True while no try has started reading the body: another try can still send it.
    pub(crate) fn is_untouched(&self) -> bool {
        match &self.shared {
            None => true,
            Some(s) => s.slot.lock().map(|g| g.is_some()).unwrap_or(false),
        }
    }

    /// True once the body went over its limit.
    pub(crate) fn over_limit(&self) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|s| s.over_limit.load(Ordering::Relaxed))
    }

    /// The body one try sends.
    pub(crate) fn for_try(&self) -> OutBody {
        match &self.shared {
            None => OutBody {
                state: OutState::Empty,
            },
            Some(s) => OutBody {
                state: OutState::Waiting(Arc::clone(s)),
            },
        }
    }
}

#[derive(Debug)]
enum OutState {
    Empty,
    Waiting(Arc<Shared>),
    Reading(Incoming, Arc<Shared>),
}

/// The request body one try sends to an origin.
#[derive(Debug)]
pub(crate) struct OutBody {
    state: OutState,
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                OutState::Empty => return Poll::Ready(None),
                OutState::Waiting(shared) => {
                    let taken = shared.slot.lock().ok().and_then(|mut g| g.take());
                    match taken {
                        Some(inc) => {
                            let shared = Arc::clone(shared);
                            this.state = OutState::Reading(inc, shared);
                        }
                        None => return Poll::Ready(Some(Err(Box::new(BodyTaken)))),
                    }
                }
                OutState::Reading(inc, shared) => {
                    let frame = match Pin::new(inc).poll_frame(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(None) => return Poll::Ready(None),
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Box::new(e)))),
                        Poll::Ready(Some(Ok(frame))) => frame,
                    };
                    if let Some(data) = frame.data_ref() {
                        let seen = shared.seen.fetch_add(data.len() as u64, Ordering::Relaxed)
                            + data.len() as u64;
                        if let Some(limit) = shared.limit {
                            if seen > limit {
                                shared.over_limit.store(true, Ordering::Relaxed);
                                return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit }))));
                            }
                        }
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            OutState::Empty => true,
            OutState::Waiting(s) => s
                .slot
                .lock()
                .map(|g| g.as_ref().is_none_or(|b| b.is_end_stream()))
                .unwrap_or(true),
            OutState::Reading(inc, _) => inc.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            OutState::Empty => SizeHint::with_exact(0),
            OutState::Waiting(s) => s
                .slot
                .lock()
                .ok()
                .and_then(|g| g.as_ref().map(|b| b.size_hint()))
                .unwrap_or_default(),
            OutState::Reading(inc, _) => inc.size_hint(),
        }
    }
}

/// Runs when an origin's response body ends or is dropped.
pub(crate) trait BodyEnd: Send + 'static {
    /// `complete`: the body was read to its end (the connection can be reused).
    fn finish(self: Box<Self>, complete: bool);
}

/// An origin's response body with its end-of-body hook.
pub(crate) struct OriginBody {
    inner: Incoming,
    on_end: Option<Box<dyn BodyEnd>>,
}

impl std::fmt::Debug for OriginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginBody").finish_non_exhaustive()
    }
}

impl OriginBody {
    pub(crate) fn new(inner: Incoming, on_end: Box<dyn BodyEnd>) -> Self {
        let mut body = OriginBody {
            inner,
            on_end: Some(on_end),
        };
        if body.inner.is_end_stream() {
            body.end(true);
        }
        body
    }

    fn end(&mut self, complete: bool) {
        if let Some(hook) = self.on_end.take() {
            hook.finish(complete);
        }
    }
}

impl Body for OriginBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.end(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                this.end(false);
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    this.end(true);
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for OriginBody {
    fn drop(&mut self) {
        self.end(false);
    }
}
