//! Integration tests of the API service on real sockets (127.0.0.1:0).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use geoha_api::{Config, IdentityCard, ReplicaIdentity};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

async fn request(addr: std::net::SocketAddr, method: &str, path: &str) -> Reply {
    request_with(addr, method, path, &[]).await
}

async fn request_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "test");
    let req = headers
        .iter()
        .fold(req, |r, (k, v)| r.header(*k, *v))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("answer within 10s")
        .expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

fn identity() -> ReplicaIdentity {
    ReplicaIdentity {
        hostname: "host-a".into(),
        region: "eastus2".into(),
        zone: "2".into(),
        replica: "eastus2-z2-r0".into(),
        version: "9.9.9".into(),
    }
}

struct Running {
    addr: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

async fn start(cfg: Config) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        geoha_api::run(cfg, listener, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Running {
        addr,
        stop: Some(stop),
        done,
    }
}

#[tokio::test]
async fn default_answers_json_identity_with_and_without_slash() {
    let svc = start(Config::for_identity(identity())).await;
    for path in ["/default/", "/default"] {
        let r = request(svc.addr, "GET", path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.headers["content-type"], "application/json", "{path}");
        let card: IdentityCard = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(card.hostname, "host-a");
        assert_eq!(
            card.ip, "Error",
            "no lookup configured: unknown IP reads Error"
        );
        assert_eq!(card.region, "eastus2");
        assert_eq!(card.zone, "2");
        assert_eq!(card.replica, "eastus2-z2-r0");
        assert_eq!(card.version, "9.9.9");
        assert_eq!(r.headers["x-geoha-region"], "eastus2");
        assert_eq!(r.headers["x-geoha-replica"], "eastus2-z2-r0");
    }
}

#[tokio::test]
async fn root_serves_swagger_ui_and_answers_head_for_probes() {
    let svc = start(Config::for_identity(identity())).await;
    let head = request(svc.addr, "HEAD", "/").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let page = request(svc.addr, "GET", "/").await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("SwaggerUIBundle"), "{html}");
    assert!(html.contains("/openapi.json"));
    // The assets the page loads are embedded and served.
    let css = request(svc.addr, "GET", "/docs/swagger-ui.css").await;
    assert_eq!(css.status, 200);
    let js = request(svc.addr, "GET", "/docs/swagger-ui-bundle.js").await;
    assert_eq!(js.status, 200);
    assert!(js.body.len() > 1_000_000);
    assert!(js.headers.get("content-encoding").is_none());
    assert!(String::from_utf8_lossy(&js.body).contains("SwaggerUIBundle"));
    // Browsers take the embedded gzip bytes as they are.
    let gz = request_with(
        svc.addr,
        "GET",
        "/docs/swagger-ui-bundle.js",
        &[("accept-encoding", "gzip, deflate, br")],
    )
    .await;
    assert_eq!(gz.status, 200);
    assert_eq!(gz.headers["content-encoding"], "gzip");
    assert_eq!(gz.headers["vary"], "accept-encoding");
    assert_eq!(&gz.body[..2], &[0x1f, 0x8b]);
    assert!(gz.body.len() < js.body.len() / 2);
    assert!(gz.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    // The page is also at /docs.
    let docs = request(svc.addr, "GET", "/docs").await;
    assert_eq!(docs.status, 200);
    assert!(String::from_utf8_lossy(&docs.body).contains("/docs/swagger-ui-bundle.js"));
}

#[tokio::test]
async fn openapi_document_lists_default_at_both_paths() {
    let svc = start(Config::for_identity(identity())).await;
    for path in ["/openapi.json", "/swagger.json"] {
        let r = request(svc.addr, "GET", path).await;
        assert_eq!(r.status, 200);
        let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert!(
            doc["paths"]["/default/"]["get"].is_object(),
            "{path}: {doc}"
        );
        assert!(doc["components"]["schemas"]["IdentityCard"].is_object());
    }
}

#[tokio::test]
async fn probes_answer_get_and_head() {
    let svc = start(Config::for_identity(identity())).await;
    for path in ["/livez", "/readyz", "/startupz"] {
        for method in ["GET", "HEAD"] {
            assert_eq!(
                request(svc.addr, method, path).await.status,
                200,
                "{method} {path}"
            );
        }
    }
    assert_eq!(request(svc.addr, "GET", "/nope").await.status, 404);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let svc = start(Config::for_identity(identity())).await;
    for _ in 0..3 {
        request(svc.addr, "GET", "/default/").await;
    }
    request(svc.addr, "GET", "/missing").await;
    let m = request(svc.addr, "GET", "/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8_lossy(&m.body);
    assert!(
        text.contains("geoha_api_requests_total{route=\"/default/\",code=\"200\"} 3"),
        "{text}"
    );
    assert!(text.contains("geoha_api_requests_total{route=\"unmatched\",code=\"404\"} 1"));
    assert!(text.contains("geoha_api_request_duration_seconds_count{route=\"/default/\"} 3"));
    assert!(text.contains("geoha_api_build_info{version=\"9.9.9\"} 1"));
}

#[tokio::test]
async fn public_ip_comes_from_the_lookup_url_in_the_background() {
    // A lookup server that answers with an address, like ipify.
    let lookup = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lookup_addr = lookup.local_addr().unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "20.30.40.50\n" }));
    tokio::spawn(async move { axum::serve(lookup, app).await });

    let mut cfg = Config::for_identity(identity());
    cfg.ip_lookup = Some(
        geoha_api::IpLookup::new(
            &format!("http://{lookup_addr}/"),
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .unwrap(),
    );
    let svc = start(cfg).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let r = request(svc.addr, "GET", "/default/").await;
        let card: IdentityCard = serde_json::from_slice(&r.body).unwrap();
        if card.ip == "20.30.40.50" {
            return;
        }
        last = card.ip;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("ip never became 20.30.40.50; last {last}");
}

#[tokio::test]
async fn unreachable_lookup_never_delays_a_request() {
    // A lookup server that accepts and never answers: the request must not wait on it.
    let black_hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = black_hole.local_addr().unwrap();
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = black_hole.accept().await {
            held.push(s);
        }
    });
    let mut cfg = Config::for_identity(identity());
    cfg.ip_lookup = Some(
        geoha_api::IpLookup::new(
            &format!("http://{hole_addr}/"),
            Duration::from_secs(30),
            Duration::from_secs(60),
        )
        .unwrap(),
    );
    let svc = start(cfg).await;
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        request(svc.addr, "GET", "/default/"),
    )
    .await
    .expect("answered without waiting on the lookup");
    let card: IdentityCard = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(card.ip, "Error");
}

#[tokio::test]
async fn shutdown_turns_readiness_503_and_keeps_serving_during_the_delay() {
    let mut cfg = Config::for_identity(identity());
    cfg.drain_delay = Duration::from_millis(600);
    let mut svc = start(cfg).await;
    assert_eq!(request(svc.addr, "GET", "/readyz").await.status, 200);
    svc.stop.take().unwrap().send(()).unwrap();
    // Readiness flips at once; the identity route still answers during the delay.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    loop {
        let r = request(svc.addr, "GET", "/readyz").await;
        if r.status == 503 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readyz never turned 503"
        );
    }
    assert_eq!(request(svc.addr, "GET", "/default/").await.status, 200);
    tokio::time::timeout(Duration::from_secs(5), svc.done)
        .await
        .expect("run returns after the drain")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(svc.addr).await.is_err());
}

#[tokio::test]
async fn in_flight_request_finishes_during_drain() {
    // The service's real router plus a slow route, served by the same drain sequence.
    let drain = geoha_api::DrainState::new();
    let metrics = Arc::new(geoha_api::metrics::ApiMetrics::new("t"));
    let card = Arc::new(geoha_api::identity::CardCache::new(identity()));
    let shared = geoha_api::routes::Shared::new(card, drain.clone(), Arc::clone(&metrics), false);
    let (entered_tx, entered_rx) = tokio::sync::mpsc::channel::<()>(1);
    let app = geoha_api::routes::router(shared).route(
        "/slow",
        axum::routing::get(move || {
            let entered = entered_tx.clone();
            async move {
                let _ = entered.send(()).await;
                tokio::time::sleep(Duration::from_millis(700)).await;
                "slow done"
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(geoha_api::drain::serve_with_drain(
        listener,
        app,
        async move {
            let _ = stopped.await;
        },
        drain,
        metrics,
        Duration::ZERO,
        Duration::from_secs(5),
    ));
    let slow = tokio::spawn(async move { request(addr, "GET", "/slow").await });
    let mut entered_rx = entered_rx;
    entered_rx.recv().await.unwrap();
    stop.send(()).unwrap();
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"slow done");
    done.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "new connections are refused after the drain"
    );
}

#[tokio::test]
async fn injected_latency_slows_default_but_not_probes() {
    let mut cfg = Config::for_identity(identity());
    cfg.inject_latency = Duration::from_millis(200);
    let svc = start(cfg).await;
    let t = std::time::Instant::now();
    assert_eq!(request(svc.addr, "GET", "/readyz").await.status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    let t = std::time::Instant::now();
    assert_eq!(request(svc.addr, "GET", "/default/").await.status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
}
