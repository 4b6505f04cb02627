//! HTTP routes: identity (`/default/`), Swagger UI (`/`), OpenAPI (`/openapi.json`,
//! `/swagger.json`), probes (`/livez`, `/readyz`, `/startupz`) and `/metrics`.
//!
//! Every GET route answers HEAD too (axum strips the body), because the global router
//! probes `HEAD /`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::swagger_assets;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

use crate::drain::DrainState;
use crate::identity::CardCache;
use crate::metrics::{ApiMetrics, RouteLabel};

/// What the handlers share: each piece is handed over as its own `Arc`.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The pre-rendered identity body.
    pub card: Arc<CardCache>,
    /// Readiness.
    pub drain: DrainState,
    /// Request metrics.
    pub metrics: Arc<ApiMetrics>,
    /// Whether to log one line per request.
    pub access_log: bool,
    /// Pre-built `x-geoha-*` response headers.
    pub identity_headers: Arc<IdentityHeaders>,
    /// Injected failures (chaos drills, rollout tests); none by default.
    pub injected: Arc<InjectedFailures>,
    /// Injected delay before `/default/` answers; zero by default.
    pub injected_latency: std::time::Duration,
}

/// Answers a fixed share of `/default/` requests with 500, spread evenly (request `n`
/// fails when `floor((n+1)·share)` passes `floor(n·share)`): exact, and no random number
/// on the request path.
#[derive(Debug, Default)]
pub struct InjectedFailures {
    share: f64,
    seen: std::sync::atomic::AtomicU64,
}

impl InjectedFailures {
    /// A share in 0..=1 (clamped).
    pub fn new(share: f64) -> Self {
        InjectedFailures {
            share: share.clamp(0.0, 1.0),
            seen: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether this request fails.
    fn hit(&self) -> bool {
        if self.share <= 0.0 {
            return false;
        }
        let n = self.seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as f64;
        ((n + 1.0) * self.share).floor() > (n * self.share).floor()
    }
}

impl Shared {
    /// Bundles the pieces the handlers need.
    pub fn new(
        card: Arc<CardCache>,
        drain: DrainState,
        metrics: Arc<ApiMetrics>,
        access_log: bool,
    ) -> Self {
        let identity_headers = Arc::new(IdentityHeaders::new(&card));
        Shared {
            card,
            drain,
            metrics,
            access_log,
            identity_headers,
            injected: Arc::new(InjectedFailures::default()),
            injected_latency: std::time::Duration::ZERO,
        }
    }

    /// Answers `/default/` only after `delay` (a slow version for rollout tests).
    pub fn with_injected_latency(mut self, delay: std::time::Duration) -> Self {
        self.injected_latency = delay;
        self
    }

    /// Answers this share of `/default/` requests with 500 (see [`InjectedFailures`]).
    pub fn with_injected_failures(mut self, share: f64) -> Self {
        self.injected = Arc::new(InjectedFailures::new(share));
        self
    }
}

/// Where the Swagger UI assets are served; `/` serves the page that loads them.
const DOCS_PREFIX: &str = "/docs";

/// Builds the service's router.
pub fn router(shared: Shared) -> Router {
    let openapi = Bytes::from(crate::openapi::document_json());
    let openapi_handler = move || {
        let body = openapi.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    };
    Router::new()
        .route("/default/", get(default_slash))
        .route("/default", get(default_bare))
        .route("/", get(swagger_page))
        .route(DOCS_PREFIX, get(swagger_page))
        .route("/docs/", get(swagger_page))
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|h: HeaderMap| async move { swagger_assets::BUNDLE_JS.respond(&h) }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|h: HeaderMap| async move { swagger_assets::STYLESHEET.respond(&h) }),
        )
        .route("/openapi.json", get(openapi_handler.clone()))
        .route("/swagger.json", get(openapi_handler))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/startupz", get(startupz))
        .route("/metrics", get(metrics))
        .with_state(shared.clone())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared, observe))
}

/// `x-geoha-*` headers naming who answered, built once: load generators and the drill
/// read them without parsing the body.
#[derive(Debug, Clone)]
pub struct IdentityHeaders(Vec<(&'static str, HeaderValue)>);

impl IdentityHeaders {
    fn new(card: &CardCache) -> Self {
        let id = card.identity();
        let pairs = [
            ("x-geoha-region", &id.region),
            ("x-geoha-zone", &id.zone),
            ("x-geoha-replica", &id.replica),
        ];
        IdentityHeaders(
            pairs
                .into_iter()
                .filter_map(|(name, v)| HeaderValue::from_str(v).ok().map(|v| (name, v)))
                .collect(),
        )
    }
}

fn identity_response(shared: &Shared) -> Response {
    if shared.injected.hit() {
        let mut resp = Response::new(Body::from(r#"{"error":"injected failure"}"#));
        *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return resp;
    }
    let mut resp = Response::new(Body::from(shared.card.body()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (name, value) in &shared.identity_headers.0 {
        h.insert(*name, value.clone());
    }
    resp
}

/// Counts every request by route and status and, when asked, logs it.
async fn observe(State(shared): State<Shared>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = RouteLabel::for_path(req.uri().path());
    let method = shared.access_log.then(|| req.method().clone());
    let path = shared.access_log.then(|| req.uri().path().to_string());
    shared.metrics.begin();
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    shared.metrics.end(route, resp.status().as_u16(), elapsed);
    if let (Some(method), Some(path)) = (method, path) {
        tracing::info!(target: "access", %method, %path, status = resp.status().as_u16(),
            micros = elapsed.as_micros() as u64, "request");
    }
    resp
}

/// Who answered: hostname, public IP, region, zone, replica, version.
#[utoipa::path(get, path = "/default/", tag = "default",
    responses((status = 200, description = "The replica that answered", body = crate::identity::IdentityCard)))]
pub(crate) async fn default_slash(State(shared): State<Shared>) -> Response {
    injected_delay(&shared).await;
    identity_response(&shared)
}

/// Same as `/default/` (the reference accepts both).
#[utoipa::path(get, path = "/default", tag = "default",
    responses((status = 200, description = "The replica that answered", body = crate::identity::IdentityCard)))]
pub(crate) async fn default_bare(State(shared): State<Shared>) -> Response {
    injected_delay(&shared).await;
    identity_response(&shared)
}

async fn injected_delay(shared: &Shared) {
    if !shared.injected_latency.is_zero() {
        tokio::time::sleep(shared.injected_latency).await;
    }
}

async fn swagger_page() -> impl IntoResponse {
    // The same page at `/` and `/docs`: absolute asset URLs work from both.
    let page = format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8" />
<meta name="viewport" content="width=device-width, initial-scale=1" />
<title>geoha API</title>
<link rel="stylesheet" href="{DOCS_PREFIX}/swagger-ui.css" />
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS_PREFIX}/swagger-ui-bundle.js"></script>
<script>
window.onload = () => {{ window.ui = SwaggerUIBundle({{ url: '/openapi.json', dom_id: '#swagger-ui' }}); }};
</script>
</body>
</html>"#
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page)
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/livez", tag = "probes",
    responses((status = 200, description = "Alive", body = String, content_type = "text/plain")))]
pub(crate) async fn livez() -> &'static str {
    "ok\n"
}

/// Readiness: 200 while the replica wants traffic, 503 once it drains.
#[utoipa::path(get, path = "/readyz", tag = "probes",
    responses(
        (status = 200, description = "Ready", body = String, content_type = "text/plain"),
        (status = 503, description = "Draining", body = String, content_type = "text/plain")))]
pub(crate) async fn readyz(State(shared): State<Shared>) -> (StatusCode, &'static str) {
    if shared.drain.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// Start-up: 200 once the service listens (it never waits on the IP lookup).
#[utoipa::path(get, path = "/startupz", tag = "probes",
    responses((status = 200, description = "Started", body = String, content_type = "text/plain")))]
pub(crate) async fn startupz() -> &'static str {
    "ok\n"
}

/// Prometheus text exposition of the request metrics.
#[utoipa::path(get, path = "/metrics", tag = "probes",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4")))]
pub(crate) async fn metrics(State(shared): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
}

async fn not_found() -> (
    StatusCode,
    [(header::HeaderName, &'static str); 1],
    &'static str,
) {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "application/json")],
        "{\"message\":\"not found\"}",
    )
}

#[cfg(test)]
mod injected_tests {
    use super::InjectedFailures;

    #[test]
    fn injected_failures_hit_exactly_the_share() {
        for (share, n, want) in [
            (0.0, 100, 0),
            (1.0, 100, 100),
            (0.25, 100, 25),
            (0.3, 1000, 300),
        ] {
            let f = InjectedFailures::new(share);
            let hits = (0..n).filter(|_| f.hit()).count();
            assert_eq!(hits, want, "share {share}");
        }
    }
}
