//! The lab's control API (loopback, bearer token): status and faults for `geoha
//! status`, `geoha fault`, `geoha down` and drills.
//!
//! - `GET /v1/status` → [`StatusReport`](crate::report::StatusReport)
//! - `POST /v1/faults` with a [`FaultRequest`] → `{"ok":true,"applied":[names]}`
//! - `POST /v1/shutdown` → stops the lab (as Ctrl-C would)
//! - `GET /healthz` → 200 (no token)

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::fault::FaultRequest;
use crate::LabInner;

/// Builds the control router; every route but `/healthz` needs the bearer token.
pub(crate) fn router(lab: Arc<LabInner>) -> Router {
    let guarded = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/faults", post(fault))
        .route("/v1/shutdown", post(shutdown))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&lab),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(guarded)
        .with_state(lab)
}

async fn require_token(State(lab): State<Arc<LabInner>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if constant_time_eq(t.as_bytes(), lab.token.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"error": "missing or wrong bearer token (see lab.json)"})),
        )
            .into_response(),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn status(State(lab): State<Arc<LabInner>>) -> Response {
    Json(lab.status().await).into_response()
}

async fn fault(State(lab): State<Arc<LabInner>>, body: axum::body::Bytes) -> Response {
    let req: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("bad fault request: {e}")})),
            )
                .into_response()
        }
    };
    match lab.apply(&req).await {
        Ok(applied) => Json(json!({"ok": true, "applied": applied})).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": e}))).into_response(),
    }
}

async fn shutdown(State(lab): State<Arc<LabInner>>) -> Response {
    lab.stop.cancel();
    Json(json!({"ok": true})).into_response()
}
