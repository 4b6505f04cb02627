//! Readiness and the shutdown sequence.
//!
//! On shutdown: `/readyz` turns 503 at once; the listener keeps accepting for
//! `drain_delay` (load balancers need a few probe intervals to notice); then it stops
//! accepting, asks every connection to finish (HTTP/1 keep-alive off, HTTP/2 GOAWAY) and
//! waits up to `drain_deadline` for in-flight requests.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::metrics::ApiMetrics;

/// Slow header senders are cut after this long (slowloris protection).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the service still wants new traffic.
#[derive(Debug, Clone, Default)]
pub struct DrainState {
    draining: Arc<AtomicBool>,
}

impl DrainState {
    /// Ready, not draining.
    pub fn new() -> Self {
        Self::default()
    }

    /// True once shutdown has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn start(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

enum Phase {
    Serving,
    Draining,
}

/// Serves `app` on `listener` and runs the shutdown sequence once `shutdown` completes.
/// Public so that tests (and other services) can serve their own router the same way.
pub async fn serve_with_drain(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send,
    drain: DrainState,
    metrics: Arc<ApiMetrics>,
    drain_delay: Duration,
    drain_deadline: Duration,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    // HTTP/1.1 only: origins are reached over HTTP/1.1 by the front door, and skipping
    // the HTTP/2 preface sniffing measured ~8% more req/s (docs/benchmarks.md).
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let service = TowerToHyperService::new(app);

    let mut phase = Phase::Serving;
    tokio::pin!(shutdown);
    // Armed only once draining starts (reset below).
    let delay = tokio::time::sleep(Duration::from_secs(86_400));
    tokio::pin!(delay);
    let mut accept_backoff = Duration::from_millis(5);

    loop {
        let accepted = tokio::select! {
            () = &mut shutdown, if matches!(phase, Phase::Serving) => {
                drain.start();
                metrics.set_ready(false);
                tracing::info!(?drain_delay, "shutdown requested: not ready, still serving");
                phase = Phase::Draining;
                delay.as_mut().reset(tokio::time::Instant::now() + drain_delay);
                continue;
            }
            () = &mut delay, if matches!(phase, Phase::Draining) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, _peer) = match accepted {
            Ok(conn) => {
                accept_backoff = Duration::from_millis(5);
                conn
            }
            Err(err) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(%err, "accept failed; backing off {accept_backoff:?}");
                tokio::time::sleep(accept_backoff).await;
                accept_backoff = (accept_backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service.clone())
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(err = %err, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!(
        in_flight = metrics.in_flight(),
        ?drain_deadline,
        "stopped accepting; draining"
    );
    match tokio::time::timeout(drain_deadline, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained"),
        Err(_) => tracing::warn!(
            cut_off = metrics.in_flight(),
            "drain deadline passed; cutting off in-flight requests"
        ),
    }
    Ok(())
}
