//! The sample API service every region runs: a faithful, faster replacement of the
//! reference's Flask/flask-restx app.
//!
//! # Layout
//! - [`identity`]: who answers (`ReplicaIdentity`) and the pre-rendered `/default/` body.
//! - [`public_ip`]: the background public-IP lookup; requests never wait on it.
//! - [`routes`]: the HTTP routes (identity, Swagger UI, OpenAPI, probes, metrics).
//! - [`openapi`]: the OpenAPI 3 document, generated from the handlers by utoipa.
//! - [`metrics`]: lock-free request counters and latency histograms, Prometheus text.
//! - [`drain`]: readiness and the shutdown sequence (not ready → delay → drain → exit).
//!
//! The entry point is [`run`]: it takes a bound listener and a shutdown future, so the
//! binary owns sockets and signals and tests run everything in one process.
#![forbid(unsafe_code)]

pub mod drain;
pub mod identity;
pub mod metrics;
pub mod openapi;
pub mod public_ip;
pub mod routes;
mod swagger_assets;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use drain::DrainState;
pub use identity::{IdentityCard, ReplicaIdentity};
pub use public_ip::IpLookup;

/// Everything the service needs to run; built by the binary from flags and environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Labels for the answers (region, zone, replica, version).
    pub identity: ReplicaIdentity,
    /// Where and how often to look up the public IP; `None` disables the lookup (the
    /// answer then says `"Error"`, as the reference does when its lookup fails).
    pub ip_lookup: Option<IpLookup>,
    /// How long the listener keeps serving after shutdown starts while `/readyz` says 503,
    /// so that load balancers notice before connections are refused.
    pub drain_delay: Duration,
    /// Upper bound for in-flight requests to finish once the listener stops accepting.
    pub drain_deadline: Duration,
    /// Log one line per request (off by default so logging never decides throughput).
    pub access_log: bool,
    /// Chaos: answer this share (0..=1) of `/default/` requests with 500; probes stay
    /// healthy, so only live traffic notices (drills, rollout tests of a bad version).
    pub inject_errors: f64,
    /// Chaos: answer `/default/` only after this long (a "slow version"); probes stay
    /// fast.
    pub inject_latency: Duration,
}

impl Config {
    /// A config for tests and embedding: no IP lookup, no drain delay, 5 s deadline.
    pub fn for_identity(identity: ReplicaIdentity) -> Self {
        Config {
            identity,
            ip_lookup: None,
            drain_delay: Duration::ZERO,
            drain_deadline: Duration::from_secs(5),
            access_log: false,
            inject_errors: 0.0,
            inject_latency: Duration::ZERO,
        }
    }
}

/// Errors that stop the service.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The listener failed in a way that is not a per-connection error.
    #[error("listener {addr}: {source}")]
    Listener {
        /// The listening address, for the message.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Serves the API on `listener` until `shutdown` completes, then drains: `/readyz` turns
/// 503 at once, the listener keeps serving for `drain_delay`, then stops accepting and
/// waits up to `drain_deadline` for in-flight requests.
pub async fn run(
    cfg: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ApiError> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let drain = DrainState::new();
    let metrics = Arc::new(metrics::ApiMetrics::new(&cfg.identity.version));
    let card = Arc::new(identity::CardCache::new(cfg.identity.clone()));
    let background = CancellationToken::new();

    if let Some(lookup) = cfg.ip_lookup.clone() {
        tokio::spawn(public_ip::refresh_forever(
            lookup,
            Arc::clone(&card),
            background.clone(),
        ));
    }

    let app = routes::router(
        routes::Shared::new(card, drain.clone(), Arc::clone(&metrics), cfg.access_log)
            .with_injected_failures(cfg.inject_errors)
            .with_injected_latency(cfg.inject_latency),
    );

    tracing::info!(%addr, region = %cfg.identity.region, zone = %cfg.identity.zone,
        replica = %cfg.identity.replica, "listening addr={addr}");

    let result = drain::serve_with_drain(
        listener,
        app,
        shutdown,
        drain,
        metrics,
        cfg.drain_delay,
        cfg.drain_deadline,
    )
    .await;
    background.cancel();
    result.map_err(|source| ApiError::Listener { addr, source })
}
