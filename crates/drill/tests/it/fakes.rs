//! Test servers: an HTTP target whose every answer is scripted by request number, and
//! a fake lab control API that records the calls it gets.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// What the target does with one request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reply {
    /// 200 with identity headers for this replica (`<region>-z<zone>-r<n>`).
    Answer(&'static str),
    /// 200 with the identity only in the JSON body.
    AnswerInBody(&'static str),
    /// 200 with identity headers and `connection: close` (the server closes after).
    AnswerAndClose(&'static str),
    /// This status, no identity.
    Status(u16),
    /// Close the connection without answering.
    Reset,
    /// Answer after this long.
    Delay(Duration, &'static str),
}

/// What the target saw.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) requests: AtomicU64,
    pub(crate) answered_ok: AtomicU64,
    pub answered_5xx: AtomicU64,
    pub(crate) resets: AtomicU64,
    /// Arrival times of every request.
    pub(crate) arrivals: Mutex<Vec<Instant>>,
}

type Script = Arc<dyn Fn(u64) -> Reply + Send + Sync>;

/// A scripted HTTP/1.1 target on 127.0.0.1:0.
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) counts: Arc<Counts>,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Target {
    pub(crate) async fn start(script: impl Fn(u64) -> Reply + Send + Sync + 'static) -> Target {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let script: Script = Arc::new(script);
        let accept = {
            let counts = Arc::clone(&counts);
            let tasks = Arc::clone(&tasks);
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let counts = Arc::clone(&counts);
                    let script = Arc::clone(&script);
                    let conn = tokio::spawn(async move {
                        let svc = service_fn(move |_req| {
                            let counts = Arc::clone(&counts);
                            let script = Arc::clone(&script);
                            async move { respond(&counts, &script).await }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                    tasks.lock().unwrap().push(conn.abort_handle());
                }
            })
        };
        tasks.lock().unwrap().push(accept.abort_handle());
        Target {
            addr,
            counts,
            tasks,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/default/", self.addr)
    }

    /// Dies like a killed process: the listener and every connection go away.
    pub(crate) fn kill(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    pub(crate) fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::SeqCst)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug)]
struct ResetOnPurpose;
impl std::fmt::Display for ResetOnPurpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reset on purpose")
    }
}
impl std::error::Error for ResetOnPurpose {}

fn identity(replica: &str) -> (String, String) {
    let (region, rest) = replica.split_once("-z").unwrap();
    (region.to_string(), rest[..1].to_string())
}

async fn respond(
    counts: &Counts,
    script: &Script,
) -> Result<hyper::Response<Full<Bytes>>, ResetOnPurpose> {
    let n = counts.requests.fetch_add(1, Ordering::SeqCst);
    counts.arrivals.lock().unwrap().push(Instant::now());
    let reply = script(n);
    let answer = |replica: &str, headers: bool, close: bool| {
        let (region, zone) = identity(replica);
        let body = format!(
            r#"{{"hostname":"h","ip":"127.0.0.1","region":"{region}","zone":"{zone}","replica":"{replica}"}}"#
        );
        let mut b = hyper::Response::builder().header("content-type", "application/json");
        if headers {
            b = b
                .header("x-geoha-region", &region)
                .header("x-geoha-zone", &zone)
                .header("x-geoha-replica", replica);
        }
        if close {
            b = b.header("connection", "close");
        }
        counts.answered_ok.fetch_add(1, Ordering::SeqCst);
        Ok(b.body(Full::new(Bytes::from(body))).unwrap())
    };
    match reply {
        Reply::Answer(r) => answer(r, true, false),
        Reply::AnswerInBody(r) => answer(r, false, false),
        Reply::AnswerAndClose(r) => answer(r, true, true),
        Reply::Delay(d, r) => {
            tokio::time::sleep(d).await;
            answer(r, true, false)
        }
        Reply::Status(code) => {
            if code >= 500 {
                counts.answered_5xx.fetch_add(1, Ordering::SeqCst);
            }
            Ok(hyper::Response::builder()
                .status(code)
                .body(Full::new(Bytes::from_static(b"no\n")))
                .unwrap())
        }
        Reply::Reset => {
            counts.resets.fetch_add(1, Ordering::SeqCst);
            Err(ResetOnPurpose)
        }
    }
}

/// A fake lab control API: checks the bearer token, records fault bodies, and runs a
/// hook per fault (e.g. killing a [`Target`]).
pub(crate) struct FakeLab {
    pub(crate) url: String,
    pub(crate) token: String,
    pub(crate) faults: Arc<Mutex<Vec<serde_json::Value>>>,
    pub(crate) unauthorized: Arc<AtomicU64>,
}

type Hook = Arc<dyn Fn(&serde_json::Value) + Send + Sync>;

#[derive(Clone)]
struct LabState {
    token: String,
    faults: Arc<Mutex<Vec<serde_json::Value>>>,
    unauthorized: Arc<AtomicU64>,
    replicas: serde_json::Value,
    hook: Hook,
}

impl FakeLab {
    /// `replicas`: names like `eastus2-z1-r0` that `/v1/status` lists.
    pub(crate) async fn start(
        replicas: &[&str],
        hook: impl Fn(&serde_json::Value) + Send + Sync + 'static,
    ) -> FakeLab {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let token = "test-token-123".to_string();
        let faults: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let unauthorized = Arc::new(AtomicU64::new(0));
        let replicas = serde_json::Value::Array(
            replicas
                .iter()
                .map(|r| {
                    let (region, zone) = identity(r);
                    serde_json::json!({"name": r, "region": region, "zone": zone,
                        "addr": "127.0.0.1:1", "healthy": true, "restarts": 0,
                        "version": "test", "faults": []})
                })
                .collect(),
        );
        let state = LabState {
            token: token.clone(),
            faults: Arc::clone(&faults),
            unauthorized: Arc::clone(&unauthorized),
            replicas,
            hook: Arc::new(hook),
        };
        let app = Router::new()
            .route("/v1/status", get(status))
            .route("/v1/faults", post(fault))
            .with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeLab {
            url,
            token,
            faults,
            unauthorized,
        }
    }

    pub(crate) fn recorded(&self) -> Vec<serde_json::Value> {
        self.faults.lock().unwrap().clone()
    }
}

fn authorized(state: &LabState, headers: &HeaderMap) -> bool {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {}", state.token));
    if !ok {
        state.unauthorized.fetch_add(1, Ordering::SeqCst);
    }
    ok
}

async fn status(
    State(state): State<LabState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, StatusCode> {
    if !authorized(&state, &headers) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    Ok(Json(serde_json::json!({
        "frontdoor": {"listen": "127.0.0.1:8080"},
        "replicas": state.replicas,
    })))
}

async fn fault(
    State(state): State<LabState>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Result<Json<serde_json::Value>, (StatusCode, Json<serde_json::Value>)> {
    if !authorized(&state, &headers) {
        return Err((
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "bad token"})),
        ));
    }
    (state.hook)(&body);
    state.faults.lock().unwrap().push(body);
    Ok(Json(serde_json::json!({"ok": true, "applied": []})))
}
