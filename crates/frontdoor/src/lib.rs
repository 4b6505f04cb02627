//! geoha's global HTTP router: Azure Front Door's routing contract (probe windows,
//! priority -> latency band -> weighted random, fail open, retry on connect failure,
//! 504 on origin timeout), with faster failover (passive ejection, retry budget, slow
//! start, per-try timeouts) and an admin API.
//!
//! # Layout
//! - [`config`]: the TOML shape, typed values, validation with file/line/key errors.
//! - [`route`]: host and path patterns to origin groups (most specific wins).
//! - [`probe`]: `ProbeWindow` and the per-origin prober (fresh connection per probe).
//! - [`select`]: the `Selector` (healthy -> priority -> latency band -> weight; fail open).
//! - [`eject`]: passive health (`Ejector`): consecutive failures eject, time grows.
//! - [`retry`]: the `RetryBudget`.
//! - [`origin`]: run-time origin state (survives reloads) and config generations.
//! - `forward`: one request: headers, tries, retries, streaming bodies, upgrades.
//! - `pool`, `body`: origin connections and bodies; `server`, `tls`: client listeners.
//! - `dataplane`: the worker threads that serve client connections (one event loop each).
//! - [`admin`]: the admin API and `/metrics`; [`metrics`]: counters and rendering.
//! - [`error`]: `FrontdoorError` (stops `run`) and `ForwardError` (one request, one
//!   place that turns it into a status).
//!
//! The entry point is [`run`]: it takes bound listeners, a reload channel and a shutdown
//! future; the binary owns sockets, files and signals.
#![forbid(unsafe_code)]

pub mod admin;
mod affinity;
mod body;
pub mod config;
mod dataplane;
pub mod eject;
pub mod error;
mod forward;
pub mod metrics;
pub mod origin;
mod pool;
pub mod probe;
pub mod retry;
pub mod route;
pub mod select;
mod server;
mod tls;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use admin::{GroupReport, OriginReport, OriginsReport};
pub use config::{
    AdminConfig, Config, ConfigError, ConfigProblem, Limits, ListenerConfig, OriginConfig,
    OriginGroupConfig, PassiveHealthConfig, Priority, ProbeConfig, ProbeMethod, RetryConfig,
    RouteConfig, TlsConfig, TryTimeoutConfig, Weight,
};
pub use error::{ForwardError, FrontdoorError};
pub use forward::{HOPS_HEADER, REF_HEADER};
pub use metrics::LatencySnapshot;

use crate::dataplane::{DataPlane, WorkerLoad};
use crate::metrics::FrontdoorStats;
use crate::origin::Routing;
use crate::retry::RetryBudget;
use crate::server::ConnectionSet;

/// Listeners bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// Client traffic; `traffic[i]` uses `cfg.listeners[i].tls` when that entry exists.
    pub traffic: Vec<TcpListener>,
    /// The admin API and `/metrics`.
    pub admin: Option<TcpListener>,
}

/// What the request path, the admin API and the background tasks share.
#[derive(Debug)]
pub(crate) struct Frontdoor {
    pub(crate) routing: ArcSwap<Routing>,
    pub(crate) budget: ArcSwap<RetryBudget>,
    pub(crate) stats: FrontdoorStats,
    /// Open client connections per data-plane worker (fixed at start).
    pub(crate) workers: WorkerLoad,
    pub(crate) draining: AtomicBool,
    /// Serializes reloads (SIGHUP and the admin API may race).
    reload_lock: Mutex<()>,
    /// Cancels the probers of the current generation.
    probers: Mutex<CancellationToken>,
    background: CancellationToken,
    tasks: TaskTracker,
}

impl Frontdoor {
    fn new(cfg: Arc<Config>) -> Self {
        Frontdoor {
            budget: ArcSwap::from_pointee(RetryBudget::new(&cfg.retry)),
            workers: WorkerLoad::new(cfg.worker_count()),
            routing: ArcSwap::from_pointee(Routing::build(cfg, None)),
            stats: FrontdoorStats::default(),
            draining: AtomicBool::new(false),
            reload_lock: Mutex::new(()),
            probers: Mutex::new(CancellationToken::new()),
            background: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// Starts one prober per origin of the current generation, stopping the previous
    /// generation's (probe history lives in the origins, so it carries over).
    fn restart_probers(&self) {
        let routing = self.routing.load_full();
        let token = self.background.child_token();
        let old = {
            let mut current = self
                .probers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            std::mem::replace(&mut *current, token.clone())
        };
        old.cancel();
        for g in &routing.groups {
            if !g.cfg.probe.enabled {
                continue;
            }
            for o in &g.origins {
                self.tasks.spawn(probe::run_prober(
                    Arc::clone(&o.rt),
                    o.probe_host(),
                    g.cfg.probe.clone(),
                    token.clone(),
                ));
            }
        }
    }

    /// Validates and applies a new config; the old one stays on error. In-flight
    /// requests finish on the generation they started with.
    pub(crate) fn reload(&self, cfg: Arc<Config>) -> Result<(), ConfigError> {
        cfg.validate()?;
        let _guard = self
            .reload_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let previous = self.routing.load_full();
        if previous.cfg.listeners != cfg.listeners
            || previous.cfg.admin.as_ref().map(|a| a.address)
                != cfg.admin.as_ref().map(|a| a.address)
            || previous.cfg.limits.max_connections != cfg.limits.max_connections
            || previous.cfg.workers != cfg.workers
        {
            tracing::warn!(
                "listener addresses, TLS, max_connections and workers apply only after a restart"
            );
        }
        let next = Routing::build(Arc::clone(&cfg), Some(&previous));
        if previous.cfg.retry != cfg.retry {
            self.budget.store(Arc::new(RetryBudget::new(&cfg.retry)));
        }
        self.routing.store(Arc::new(next));
        self.restart_probers();
        self.stats.reloads.fetch_add(1, Ordering::Relaxed);
        tracing::info!(groups = cfg.origin_groups.len(), "config reloaded");
        Ok(())
    }

    fn in_flight(&self) -> i64 {
        let routing = self.routing.load();
        routing
            .groups
            .iter()
            .flat_map(|g| g.origins.iter())
            .map(|o| o.rt.stats.in_flight.load(Ordering::Relaxed))
            .sum()
    }
}

/// Runs the front door on `listeners` until `shutdown` completes, then drains: the
/// admin `/healthz` turns 503, listeners stop accepting, open connections finish their
/// requests (HTTP/1 keep-alive off, HTTP/2 GOAWAY) within `cfg.drain_deadline`.
///
/// Client connections are served by [`Config::worker_count`] threads that `run` starts,
/// each with its own current-thread runtime; accepting, probes, reloads and the admin
/// API run on the caller's runtime. The threads are stopped and joined before `run`
/// returns (dropping the future stops them too).
///
/// Each new value on `reloads` is validated and applied (a bad one is logged and the
/// running config stays). `POST /admin/reload` re-reads `cfg.source` (set by
/// [`Config::from_file`]) or takes a TOML body.
pub async fn run(
    cfg: Arc<Config>,
    listeners: Listeners,
    mut reloads: watch::Receiver<Arc<Config>>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), FrontdoorError> {
    cfg.validate()?;
    let mut acceptors = Vec::new();
    for (i, _) in listeners.traffic.iter().enumerate() {
        let acceptor = match cfg
            .listeners
            .get(i)
            .and_then(|l| l.tls.as_ref().map(|t| (l, t)))
        {
            Some((l, tls_cfg)) => {
                Some(
                    tls::load(tls_cfg)
                        .await
                        .map_err(|reason| FrontdoorError::Tls {
                            listener: l.address.to_string(),
                            reason,
                        })?,
                )
            }
            None => None,
        };
        acceptors.push(acceptor);
    }

    let fd = Arc::new(Frontdoor::new(Arc::clone(&cfg)));
    let connections = ConnectionSet::default();
    let data_plane = DataPlane::start(&fd, acceptors, &connections)?;
    fd.restart_probers();
    let permits = Arc::new(Semaphore::new(cfg.limits.max_connections));
    let stop_accepting = CancellationToken::new();
    let mut accept_loops = Vec::new();

    for (index, listener) in listeners.traffic.into_iter().enumerate() {
        let addr = listener
            .local_addr()
            .map_err(|source| FrontdoorError::Listener {
                addr: "?".into(),
                source,
            })?;
        let tls = cfg.listeners.get(index).is_some_and(|l| l.tls.is_some());
        let scheme = if tls { "https" } else { "http" };
        tracing::info!(%addr, scheme, "listening addr={addr}");
        if let Some(dispatcher) = data_plane.dispatcher() {
            accept_loops.push(tokio::spawn(server::accept_loop(
                listener,
                index,
                dispatcher,
                Arc::clone(&permits),
                stop_accepting.clone(),
            )));
        }
    }
    if let Some(listener) = listeners.admin {
        let addr = listener
            .local_addr()
            .map_err(|source| FrontdoorError::Listener {
                addr: "?".into(),
                source,
            })?;
        tracing::info!(%addr, "listening addr={addr} (admin)");
        accept_loops.push(tokio::spawn(admin::accept_loop(
            listener,
            Arc::clone(&fd),
            connections.clone(),
            stop_accepting.clone(),
        )));
    }

    reloads.borrow_and_update();
    let mut reloads_open = true;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            changed = reloads.changed(), if reloads_open => match changed {
                Ok(()) => {
                    let next = Arc::clone(&reloads.borrow_and_update());
                    if let Err(err) = fd.reload(next) {
                        fd.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!("reload refused, keeping the running config:\n{err}");
                    }
                }
                // The sender is gone: no more reloads, keep serving.
                Err(_) => reloads_open = false,
            },
        }
    }

    fd.draining.store(true, Ordering::Relaxed);
    tracing::info!("shutdown: draining");
    stop_accepting.cancel();
    for task in accept_loops {
        let _ = task.await;
    }
    let deadline = fd.routing.load().cfg.drain_deadline;
    if !connections.drain(deadline).await {
        tracing::warn!(
            in_flight = fd.in_flight(),
            "drain deadline {deadline:?} passed; cutting off the rest"
        );
    }
    data_plane.stop().await;
    fd.background.cancel();
    fd.tasks.close();
    fd.tasks.wait().await;
    tracing::info!("front door stopped");
    Ok(())
}
