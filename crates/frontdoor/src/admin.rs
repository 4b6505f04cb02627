//! The admin API, on its own listener. `/admin/*` needs `Authorization: Bearer <token>`
//! (`admin.token`); `/healthz` and `/metrics` are open (probes and scrapers).
//!
//! | request | answer |
//! |---|---|
//! | `GET /healthz` | 200 `ok`, 503 once shutdown started |
//! | `GET /metrics` | Prometheus text |
//! | `GET /admin/origins` | [`OriginsReport`] JSON |
//! | `POST /admin/origins/{name}/drain` | no new requests; in-flight ones finish |
//! | `POST /admin/origins/{name}/enable` / `disable` | admin state (kept across reloads) |
//! | `POST /admin/reload` | empty body: re-read the config file; TOML body: use it |

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::body::{full, ServedBody};
use crate::config::Config;
use crate::metrics::{self, OriginMetricsView};
use crate::origin::AdminState;
use crate::server::{until_drained, ConnectionSet};
use crate::Frontdoor;

/// A reload body larger than this is refused.
const MAX_RELOAD_BYTES: usize = 1 << 20;
/// Bound for reading a reload body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// `GET /admin/origins`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OriginsReport {
    /// Every group.
    pub groups: Vec<GroupReport>,
}

/// One origin group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupReport {
    /// Group name.
    pub name: String,
    /// Its origins.
    pub origins: Vec<OriginReport>,
}

/// One origin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OriginReport {
    /// Name.
    pub name: String,
    /// Address.
    pub address: String,
    /// Region label.
    pub region: Option<String>,
    /// Zone label.
    pub zone: Option<String>,
    /// Priority 1..=5.
    pub priority: u8,
    /// Weight 1..=1000.
    pub weight: u16,
    /// Admin state is "enabled".
    pub enabled: bool,
    /// Admin state is "draining".
    pub draining: bool,
    /// Healthy by probes.
    pub healthy: bool,
    /// Ejected by passive health.
    pub ejected: bool,
    /// While ejected: when the ejection time ends, Unix time in milliseconds (then a
    /// successful probe re-admits the origin).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ejected_until_ms: Option<u64>,
    /// Probe results, oldest first.
    pub probe_window: Vec<bool>,
    /// Mean latency of the successful probes in the window.
    pub probe_latency_ms: Option<f64>,
    /// Slow-start factor (1.0 = full weight).
    pub ramp: f64,
    /// Tries sent.
    pub requests_total: u64,
    /// Failed tries.
    pub failures_total: u64,
    /// Failed tries by kind (the `kind` label of `geoha_frontdoor_origin_failures_total`).
    #[serde(default)]
    pub failures_by_kind: std::collections::BTreeMap<String, u64>,
    /// Times to response headers of its answered tries so far (the metric's buckets).
    #[serde(default)]
    pub latency: crate::metrics::LatencySnapshot,
    /// Share of the group's tries over the last 10 s (0..1).
    pub share: f64,
    /// Tries in flight.
    pub in_flight: i64,
    /// Current per-try timeout (absent: off).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub try_timeout_ms: Option<f64>,
}

/// Serves the admin API until `stop` is cancelled.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    fd: Arc<Frontdoor>,
    connections: ConnectionSet,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => return,
        };
        let Ok((stream, _peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let fd = Arc::clone(&fd);
        let counted = connections.token();
        let drain = connections.drain_signal();
        tokio::spawn(async move {
            let _counted = counted;
            let service = service_fn(move |req| {
                let fd = Arc::clone(&fd);
                async move { Ok::<_, Infallible>(handle(&fd, req).await) }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let _ = until_drained(conn, &drain, |c| c.graceful_shutdown()).await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<ServedBody> {
    let mut r = Response::new(full(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<ServedBody> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn handle(fd: &Frontdoor, req: Request<Incoming>) -> Response<ServedBody> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => {
            return if fd.draining.load(Ordering::Relaxed) {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else {
                text(StatusCode::OK, "ok\n")
            };
        }
        (&Method::GET, "/metrics") => {
            let mut r = text(StatusCode::OK, render_metrics(fd));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return r;
        }
        _ => {}
    }
    if !path.starts_with("/admin/") {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if !authorized(fd, &req) {
        let mut r = text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    if (&method, path.as_str()) == (&Method::GET, "/admin/origins") {
        return json(StatusCode::OK, &origins_report(fd));
    }
    if (&method, path.as_str()) == (&Method::POST, "/admin/reload") {
        return reload(fd, req).await;
    }
    if let Some(rest) = path.strip_prefix("/admin/origins/") {
        if let Some((name, action)) = rest.split_once('/') {
            let state = match action {
                "drain" => Some(AdminState::Draining),
                "enable" => Some(AdminState::Enabled),
                "disable" => Some(AdminState::Disabled),
                _ => None,
            };
            if let Some(state) = state {
                if method != Method::POST {
                    return text(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
                }
                let routing = fd.routing.load();
                let Some((_, origin)) = routing.origin(name) else {
                    return text(StatusCode::NOT_FOUND, format!("no origin named {name:?}\n"));
                };
                origin.rt.set_admin(state, Instant::now());
                tracing::info!(origin = %name, ?state, "admin state changed");
                return json(
                    StatusCode::OK,
                    &serde_json::json!({ "origin": name, "state": action }),
                );
            }
        }
    }
    text(StatusCode::NOT_FOUND, "not found\n")
}

fn authorized(fd: &Frontdoor, req: &Request<Incoming>) -> bool {
    let routing = fd.routing.load();
    let Some(admin) = &routing.cfg.admin else {
        return false;
    };
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    constant_time_eq(given.trim().as_bytes(), admin.token.as_bytes())
}

/// Compares without an early exit, so timing does not reveal the token's prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn reload(fd: &Frontdoor, req: Request<Incoming>) -> Response<ServedBody> {
    let body = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(req.into_body(), MAX_RELOAD_BYTES).collect(),
    )
    .await;
    let body = match body {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => return text(StatusCode::BAD_REQUEST, format!("reading the body: {e}\n")),
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "body not received in time\n"),
    };
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        let source = fd.routing.load().cfg.source.clone();
        match source {
            Some(path) => Config::from_file(path).await,
            None => {
                return text(
                    StatusCode::CONFLICT,
                    "this front door was not started from a file: POST the TOML as the body\n",
                )
            }
        }
    } else {
        match std::str::from_utf8(&body) {
            Ok(t) => Config::from_toml_str(t, "<request body>").map(|mut c| {
                c.source = fd.routing.load().cfg.source.clone();
                c
            }),
            Err(_) => return text(StatusCode::BAD_REQUEST, "body is not UTF-8\n"),
        }
    };
    match parsed.and_then(|cfg| fd.reload(Arc::new(cfg))) {
        Ok(()) => json(StatusCode::OK, &serde_json::json!({ "reloaded": true })),
        Err(err) => {
            fd.stats.reloads_failed.fetch_add(1, Ordering::Relaxed);
            text(StatusCode::BAD_REQUEST, format!("{err}\n"))
        }
    }
}

fn origins_report(fd: &Frontdoor) -> OriginsReport {
    let routing = fd.routing.load();
    let now = Instant::now();
    let wall_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let groups = routing
        .groups
        .iter()
        .map(|g| {
            let recent: Vec<u64> = g
                .origins
                .iter()
                .map(|o| o.rt.stats.recent.sum(now))
                .collect();
            let total: u64 = recent.iter().sum();
            let origins = g
                .origins
                .iter()
                .zip(&recent)
                .map(|(o, &recent)| {
                    let st = o.rt.status(now, g.cfg.slow_start);
                    OriginReport {
                        name: o.cfg.name.clone(),
                        address: o.cfg.address.to_string(),
                        region: o.cfg.region.clone(),
                        zone: o.cfg.zone.clone(),
                        priority: o.cfg.priority.get(),
                        weight: o.cfg.weight.get(),
                        enabled: st.admin == AdminState::Enabled,
                        draining: st.admin == AdminState::Draining,
                        healthy: st.healthy,
                        ejected: st.ejected,
                        ejected_until_ms: st.ejected_until.map(|until| {
                            let left = until.saturating_duration_since(now);
                            (wall_now + left).as_millis() as u64
                        }),
                        probe_window: st.probe_window,
                        probe_latency_ms: st.probe_latency.map(|d| d.as_secs_f64() * 1000.0),
                        ramp: st.ramp,
                        requests_total: o.rt.stats.requests.load(Ordering::Relaxed),
                        failures_total: o.rt.stats.failures_total(),
                        failures_by_kind: crate::metrics::FailureKind::ALL
                            .iter()
                            .map(|&k| (k.label().to_string(), o.rt.stats.failures(k)))
                            .collect(),
                        share: if total == 0 {
                            0.0
                        } else {
                            recent as f64 / total as f64
                        },
                        in_flight: o.rt.stats.in_flight.load(Ordering::Relaxed),
                        latency: o.rt.stats.latency.snapshot(),
                        try_timeout_ms: g
                            .cfg
                            .try_timeout
                            .for_origin(o.rt.stats.recent_latency.p99())
                            .map(|d| d.as_secs_f64() * 1000.0),
                    }
                })
                .collect();
            GroupReport {
                name: g.cfg.name.clone(),
                origins,
            }
        })
        .collect();
    OriginsReport { groups }
}

fn render_metrics(fd: &Frontdoor) -> String {
    let routing = fd.routing.load();
    let now = Instant::now();
    let mut views = Vec::new();
    for g in &routing.groups {
        for o in &g.origins {
            let st = o.rt.status(now, g.cfg.slow_start);
            views.push(OriginMetricsView {
                group: &g.cfg.name,
                origin: &o.cfg.name,
                healthy: st.healthy,
                ejected: st.ejected,
                probe_latency: st.probe_latency,
                try_timeout: g
                    .cfg
                    .try_timeout
                    .for_origin(o.rt.stats.recent_latency.p99()),
                stats: &o.rt.stats,
            });
        }
    }
    metrics::render(&fd.stats, &fd.workers.open(), &views)
}
