//! The open-loop load generator: requests leave on a fixed schedule (request `i` is
//! due at `start + i / rate`) whether or not earlier ones have come back, and every
//! latency is measured from that *intended* time. A stalled server therefore shows up
//! as long latencies and failures instead of as a slower send rate (no coordinated
//! omission).
//!
//! One pacer task walks the schedule and hands each due request to its own task.
//! A semaphore bounds requests in flight to `connections`; each in-flight request holds
//! one HTTP/1.1 connection, taken from an idle pool (most recently used first, so a
//! fast server needs few connections) or opened on demand. When every connection is
//! busy the pacer waits; the wait counts in the latency and in `behind_schedule`, and
//! a request still waiting at its deadline (intended time + timeout) fails as a
//! timeout without being sent, as it would have for its user.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::outcome::{Answerer, FailureKind, Outcome};
use crate::timeline::Timeline;

/// A request dispatched later than this after its intended time counts as behind
/// schedule (tokio's timer ticks in milliseconds, so a little lag is normal).
pub(crate) const BEHIND_THRESHOLD: Duration = Duration::from_millis(5);

/// Bodies larger than this are cut off (and the request counts as `other`): the
/// drill reads answers to learn who gave them, not to download files.
const MAX_BODY_BYTES: usize = 256 * 1024;

type Sender = SendRequest<Empty<Bytes>>;

/// Counters the progress bar reads while the run goes on.
#[derive(Debug, Default)]
pub(crate) struct LiveCounts {
    /// Requests dispatched.
    pub(crate) sent: AtomicU64,
    /// Requests that succeeded.
    pub(crate) ok: AtomicU64,
    /// Requests that failed.
    pub(crate) failed: AtomicU64,
    /// Requests dispatched later than their schedule allowed.
    pub(crate) behind: AtomicU64,
}

/// The shape of the load.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadShape {
    pub(crate) rate: f64,
    pub(crate) duration: Duration,
    pub(crate) connections: usize,
    pub(crate) timeout: Duration,
}

impl LoadShape {
    /// How many requests the schedule holds.
    pub(crate) fn total(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).round() as u64
    }
}

/// Where requests go, resolved.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedTarget {
    pub(crate) addr: SocketAddr,
    pub(crate) host: HeaderValue,
    pub(crate) path: http::uri::PathAndQuery,
}

/// What the pacer saw.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PacerSummary {
    /// Requests put on the wire.
    pub(crate) dispatched: u64,
    /// Requests that waited for a free connection past their deadline (intended time
    /// plus timeout): never sent, counted as timeouts.
    pub(crate) expired: u64,
    /// Scheduled requests never due because the run was stopped.
    pub(crate) unsent: u64,
    /// Requests sent later than [`BEHIND_THRESHOLD`] after their intended time.
    pub(crate) behind: u64,
    /// The worst lag between an intended and an actual send.
    pub(crate) max_lag: Duration,
    /// The span over which requests were sent: the configured duration when on
    /// schedule, longer when the generator fell behind, shorter when stopped early.
    pub(crate) send_window: Duration,
    /// From the start to the last response.
    pub(crate) elapsed: Duration,
}

/// State shared by the pacer and the request tasks.
#[derive(Debug)]
pub(crate) struct OpenLoopLoad {
    target: ResolvedTarget,
    idle: Mutex<Vec<Sender>>,
    pub(crate) timeline: Mutex<Timeline>,
    pub(crate) live: Arc<LiveCounts>,
}

impl OpenLoopLoad {
    pub(crate) fn new(
        target: ResolvedTarget,
        shape: &LoadShape,
        live: Arc<LiveCounts>,
    ) -> Arc<OpenLoopLoad> {
        Arc::new(OpenLoopLoad {
            target,
            idle: Mutex::new(Vec::with_capacity(shape.connections)),
            timeline: Mutex::new(Timeline::new(shape.duration.as_secs() as usize + 1)),
            live,
        })
    }

    /// Runs the schedule from `start` until it is done or `stop` resolves, then waits
    /// for the requests in flight (each bounded by the timeout).
    pub(crate) async fn run(
        self: &Arc<Self>,
        shape: LoadShape,
        start: Instant,
        stop: impl Future<Output = ()>,
    ) -> PacerSummary {
        let total = shape.total();
        let permits = Arc::new(Semaphore::new(shape.connections));
        let mut summary = PacerSummary {
            dispatched: 0,
            expired: 0,
            unsent: 0,
            behind: 0,
            max_lag: Duration::ZERO,
            send_window: shape.duration,
            elapsed: Duration::ZERO,
        };
        let mut stopped_at = None;
        let mut last_send = start;
        tokio::pin!(stop);
        let mut since_yield = 0u32;
        for i in 0..total {
            let intended = start + Duration::from_secs_f64(i as f64 / shape.rate);
            // The user gives up `timeout` after they meant to send, whether the request
            // left on time or waited for a connection.
            let deadline = intended + shape.timeout;
            if intended > Instant::now() {
                since_yield = 0;
                tokio::select! {
                    biased;
                    _ = &mut stop => { stopped_at = Some(Instant::now()); break; }
                    _ = tokio::time::sleep_until(intended) => {}
                }
            } else {
                // Catching up without sleeping: let the request tasks run now and then
                // (matters on a current-thread runtime).
                since_yield += 1;
                if since_yield.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
            let permit = match Arc::clone(&permits).try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => tokio::select! {
                    biased;
                    _ = &mut stop => { stopped_at = Some(Instant::now()); break; }
                    p = Arc::clone(&permits).acquire_owned() => p.ok(),
                    _ = tokio::time::sleep_until(deadline) => None,
                },
            };
            let now = Instant::now();
            let lag = now.saturating_duration_since(intended);
            if lag > BEHIND_THRESHOLD {
                summary.behind += 1;
                self.live.behind.fetch_add(1, Ordering::Relaxed);
            }
            summary.max_lag = summary.max_lag.max(lag);
            self.live.sent.fetch_add(1, Ordering::Relaxed);
            let intended_offset = intended - start;
            let Some(permit) = permit.filter(|_| now < deadline) else {
                // Every connection stayed busy until this request's deadline: it never
                // left, and for its user it timed out.
                summary.expired += 1;
                self.finish(
                    intended_offset,
                    shape.timeout,
                    Outcome::Failed(FailureKind::Timeout),
                );
                continue;
            };
            summary.dispatched += 1;
            last_send = now;
            let load = Arc::clone(self);
            tokio::spawn(async move {
                let conn = load.take_idle();
                let outcome = match tokio::time::timeout_at(deadline, load.exchange(conn)).await {
                    Ok((outcome, conn)) => {
                        if let Some(conn) = conn {
                            load.put_idle(conn);
                        }
                        outcome
                    }
                    Err(_) => Outcome::Failed(FailureKind::Timeout),
                };
                // From the intended send time: a request that waited for a free
                // connection waited on the user's clock too.
                let latency = Instant::now().saturating_duration_since(intended);
                load.finish(intended_offset, latency, outcome);
                drop(permit);
            });
        }
        summary.unsent = total - summary.dispatched - summary.expired;
        summary.send_window = match stopped_at {
            Some(at) => at - start,
            None => {
                let on_schedule = last_send.saturating_duration_since(start)
                    + Duration::from_secs_f64(1.0 / shape.rate);
                on_schedule.max(shape.duration)
            }
        };
        // Every request task holds a permit until it has recorded its outcome.
        let _ = permits.acquire_many(shape.connections as u32).await;
        summary.elapsed = start.elapsed();
        summary
    }

    fn finish(&self, intended_offset: Duration, latency: Duration, outcome: Outcome) {
        match outcome {
            Outcome::Ok(_) => self.live.ok.fetch_add(1, Ordering::Relaxed),
            Outcome::Failed(_) => self.live.failed.fetch_add(1, Ordering::Relaxed),
        };
        // A short critical section, never held across an await.
        if let Ok(mut timeline) = self.timeline.lock() {
            timeline.record(intended_offset, latency, outcome);
        }
    }

    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(conn) = idle.pop() {
            // A connection the server closed while idle is not the service failing.
            if !conn.is_closed() && conn.is_ready() {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, conn: Sender) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    /// One request on `conn` (or a new connection): its outcome, and the connection
    /// when it can carry another request.
    async fn exchange(&self, conn: Option<Sender>) -> (Outcome, Option<Sender>) {
        let mut conn = match conn {
            Some(c) => c,
            None => match self.connect().await {
                Ok(c) => c,
                Err(kind) => return (Outcome::Failed(kind), None),
            },
        };
        let req = Request::get(self.target.path.as_str())
            .header(header::HOST, self.target.host.clone())
            .header(header::USER_AGENT, "geoha-drill")
            .body(Empty::<Bytes>::new());
        let req = match req {
            Ok(r) => r,
            Err(_) => return (Outcome::Failed(FailureKind::Other), None),
        };
        let resp = match conn.send_request(req).await {
            Ok(r) => r,
            Err(e) => return (Outcome::Failed(FailureKind::of_hyper(&e)), None),
        };
        let (parts, body) = resp.into_parts();
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                let kind = e
                    .downcast_ref::<hyper::Error>()
                    .map_or(FailureKind::Other, FailureKind::of_hyper);
                return (Outcome::Failed(kind), None);
            }
        };
        let outcome = if parts.status.is_server_error() {
            Outcome::Failed(FailureKind::Http5xx)
        } else if parts.status.is_client_error() {
            Outcome::Failed(FailureKind::Other)
        } else {
            let who =
                Answerer::from_headers(&parts.headers).or_else(|| Answerer::from_json_body(&body));
            Outcome::Ok(who)
        };
        let reusable = !conn.is_closed();
        (outcome, reusable.then_some(conn))
    }

    async fn connect(&self) -> Result<Sender, FailureKind> {
        let stream = TcpStream::connect(self.target.addr)
            .await
            .map_err(|e| FailureKind::of_io(&e))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| FailureKind::of_hyper(&e))?;
        // Ends when the server closes or the sender is dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}
