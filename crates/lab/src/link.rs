//! `LinkProxy`: the network link between the front door and one replica, where link
//! faults happen. Linux tc/netem is not available, so latency, loss, partitions and
//! injected 5xx are applied here, in user space, one HTTP/1.1 connection upstream per
//! connection downstream (so connection-level behaviour stays faithful: a dead replica
//! still looks like a closed connection, never like a made-up 502).
//!
//! Fault semantics:
//! - `slow`: every request waits `latency` (+ uniform `jitter`) before it is forwarded.
//! - `loss`: each request is "lost" with probability `loss`; a lost request is delayed
//!   by a TCP retransmission timeout (200 ms, doubling while losses repeat), as TCP
//!   would hide packet loss.
//! - `partition` (black hole, the default): new connections are accepted and never
//!   answered, and requests on open connections stall until the partition heals — the
//!   gray failure a real partition is. `refuse` mode closes new connections at once.
//! - `error-rate`: a share of requests is answered `503` by the link, as a failing
//!   replica would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::Rng;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

/// How long the link waits for the replica to accept a connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// First retransmission timeout of an emulated lost packet.
const LOSS_RTO: Duration = Duration::from_millis(200);

pub use geoha_control::PartitionMode;

/// The faults currently applied to a link; the default is a healthy link.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkFaults {
    /// Added latency per request.
    pub latency: Duration,
    /// Uniform jitter added on top of `latency`.
    pub jitter: Duration,
    /// Probability that a request is lost once (0..=1).
    pub loss: f64,
    /// Share of requests answered 503 by the link (0..=1).
    pub error_rate: f64,
    /// Whether the link is cut.
    pub partition: Option<PartitionMode>,
}

impl LinkFaults {
    /// Human-readable list for `geoha status`.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.latency.is_zero() || !self.jitter.is_zero() {
            out.push(format!(
                "slow {}ms±{}ms",
                self.latency.as_millis(),
                self.jitter.as_millis()
            ));
        }
        if self.loss > 0.0 {
            out.push(format!("loss {:.0}%", self.loss * 100.0));
        }
        if self.error_rate > 0.0 {
            out.push(format!("error-rate {:.0}%", self.error_rate * 100.0));
        }
        if let Some(mode) = self.partition {
            out.push(format!("partition ({})", mode.as_str()));
        }
        out
    }
}

/// Counters of one link.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Requests forwarded to the replica (or answered by an injected error).
    pub requests: AtomicU64,
    /// Requests answered 503 by the link.
    pub injected_errors: AtomicU64,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Serves the link on `listener`, forwarding to `upstream`, until `stop` is cancelled.
pub async fn run_link(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Receiver<LinkFaults>,
    stats: Arc<LinkStats>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((downstream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = downstream.set_nodelay(true);
        let faults = faults.clone();
        let stats = Arc::clone(&stats);
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = serve_connection(downstream, upstream, faults, stats) => {}
            }
        });
    }
}

async fn serve_connection(
    downstream: TcpStream,
    upstream: SocketAddr,
    mut faults: watch::Receiver<LinkFaults>,
    stats: Arc<LinkStats>,
) {
    // A cut link: hold the connection (black hole) until the partition heals, or drop it.
    let partition = faults.borrow().partition;
    match partition {
        Some(PartitionMode::Refuse) => return,
        Some(PartitionMode::Blackhole) => {
            let _held = downstream;
            let _ = faults.wait_for(|f| f.partition.is_none()).await;
            return; // the peer long gave up; a new connection will be made
        }
        None => {}
    }
    let upstream =
        match tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
            Ok(Ok(s)) => s,
            // The replica is down: close, as the real network would refuse.
            _ => return,
        };
    let _ = upstream.set_nodelay(true);
    let Ok((sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await
    else {
        return;
    };
    let upstream_conn = tokio::spawn(conn);
    let sender = Arc::new(Mutex::new(sender));

    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let sender = Arc::clone(&sender);
        let mut faults = faults.clone();
        let stats = Arc::clone(&stats);
        async move { forward(req, &sender, &mut faults, &stats).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .serve_connection(TokioIo::new(downstream), service)
        .await;
    upstream_conn.abort();
}

/// Error that makes hyper close the downstream connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("upstream connection failed: {0}")]
struct UpstreamGone(String);

async fn forward(
    req: hyper::Request<Incoming>,
    sender: &Mutex<hyper::client::conn::http1::SendRequest<Incoming>>,
    faults: &mut watch::Receiver<LinkFaults>,
    stats: &LinkStats,
) -> Result<hyper::Response<ProxyBody>, UpstreamGone> {
    // A partition that starts while the connection is open stalls its requests.
    if faults.borrow().partition.is_some() {
        let _ = faults.wait_for(|f| f.partition.is_none()).await;
    }
    let current = faults.borrow().clone();
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let (delay, inject_error) = {
        let mut rng = rand::rng();
        let mut delay = current.latency;
        if !current.jitter.is_zero() {
            delay += current.jitter.mul_f64(rng.random::<f64>());
        }
        let mut rto = LOSS_RTO;
        // Bounded: at most 6 consecutive losses (200 ms .. 6.4 s).
        for _ in 0..6 {
            if current.loss > 0.0 && rng.random::<f64>() < current.loss {
                delay += rto;
                rto *= 2;
            } else {
                break;
            }
        }
        let inject = current.error_rate > 0.0 && rng.random::<f64>() < current.error_rate;
        (delay, inject)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if inject_error {
        stats.injected_errors.fetch_add(1, Ordering::Relaxed);
        let body = Full::new(Bytes::from_static(b"injected by geoha lab (error-rate)\n"))
            .map_err(|never: Infallible| match never {})
            .boxed();
        let mut resp = hyper::Response::new(body);
        *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        return Ok(resp);
    }
    let mut sender = sender.lock().await;
    sender
        .ready()
        .await
        .map_err(|e| UpstreamGone(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| UpstreamGone(e.to_string()))?;
    Ok(resp.map(|b| b.boxed()))
}
