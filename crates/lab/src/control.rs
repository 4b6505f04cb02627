//! The lab's control API (loopback, bearer token): status and faults for `geoha
//! status`, `geoha fault`, `geoha down` and drills.
//!
//! - `GET /v1/status` → [`StatusReport`](crate::report::StatusReport)
//! - `POST /v1/faults` with a [`FaultRequest`] → `{"ok":true,"applied":[names]}`
//! - `POST /v1/shutdown` → stops the lab (as Ctrl-C would)
//! - `POST /v1/deploy` with a [`DeployRequest`](crate::rollout::DeployRequest) → 202,
//!   the rollout runs in the background; 409 while one runs
//! - `GET /v1/deploy` → the [`RolloutRecord`](crate::rollout::RolloutRecord) of the
//!   current or last rollout (404 before the first)
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
        .route("/v1/deploy", post(deploy).get(deploy_record))
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

async fn deploy(State(lab): State<Arc<LabInner>>, body: axum::body::Bytes) -> Response {
    let req: crate::rollout::DeployRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("bad deploy request: {e}")})),
            )
                .into_response()
        }
    };
    match crate::rollout::start(&lab, req) {
        Ok(()) => (StatusCode::ACCEPTED, Json(json!({"ok": true}))).into_response(),
        Err(e) if e.contains("already running") => {
            (StatusCode::CONFLICT, Json(json!({"error": e}))).into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    }
}

async fn deploy_record(State(lab): State<Arc<LabInner>>) -> Response {
    let record = lab
        .rollout
        .lock()
        .ok()
        .and_then(|r| r.as_ref().and_then(crate::rollout::RolloutLog::snapshot));
    match record {
        Some(r) => Json(r).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no rollout yet"})),
        )
            .into_response(),
    }
}
