//! `LinkProxy`: every link fault changes what crosses the link.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use geoha_lab::link::{run_link, LinkFaults, LinkStats, PartitionMode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

struct Setup {
    link: SocketAddr,
    faults: watch::Sender<LinkFaults>,
    upstream_hits: Arc<AtomicU64>,
    stats: Arc<LinkStats>,
    _stop: tokio_util::sync::DropGuard,
}

async fn setup() -> Setup {
    let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr = upstream.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&hits);
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            h.fetch_add(1, Ordering::Relaxed);
            async { "origin" }
        }),
    );
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(upstream, app)
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await;
    });
    let link = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link_addr = link.local_addr().unwrap();
    let (faults, rx) = watch::channel(LinkFaults::default());
    let stats = Arc::new(LinkStats::default());
    tokio::spawn(run_link(
        link,
        upstream_addr,
        rx,
        Arc::clone(&stats),
        stop.clone(),
    ));
    Setup {
        link: link_addr,
        faults,
        upstream_hits: hits,
        stats,
        _stop: stop.drop_guard(),
    }
}

/// One GET on a fresh connection: Ok(status) or Err(why).
async fn get(addr: SocketAddr, within: Duration) -> Result<u16, String> {
    let work = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = http::Request::get("/")
            .header("host", "t")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        Ok(status)
    };
    tokio::time::timeout(within, work)
        .await
        .map_err(|_| "timeout".to_string())?
}

#[tokio::test]
async fn healthy_link_forwards() {
    let s = setup().await;
    assert_eq!(get(s.link, Duration::from_secs(2)).await, Ok(200));
    assert_eq!(s.upstream_hits.load(Ordering::Relaxed), 1);
    assert_eq!(s.stats.requests.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn slow_link_adds_latency() {
    let s = setup().await;
    s.faults
        .send_modify(|f| f.latency = Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(get(s.link, Duration::from_secs(3)).await, Ok(200));
    assert!(started.elapsed() >= Duration::from_millis(300));
    s.faults.send_replace(LinkFaults::default());
    let started = Instant::now();
    assert_eq!(get(s.link, Duration::from_secs(3)).await, Ok(200));
    assert!(started.elapsed() < Duration::from_millis(250));
}

#[tokio::test]
async fn error_rate_one_answers_503_without_reaching_the_replica() {
    let s = setup().await;
    s.faults.send_modify(|f| f.error_rate = 1.0);
    for _ in 0..5 {
        assert_eq!(get(s.link, Duration::from_secs(2)).await, Ok(503));
    }
    assert_eq!(s.upstream_hits.load(Ordering::Relaxed), 0);
    assert_eq!(s.stats.injected_errors.load(Ordering::Relaxed), 5);
}

#[tokio::test]
async fn blackhole_partition_accepts_and_never_answers_until_healed() {
    let s = setup().await;
    s.faults
        .send_modify(|f| f.partition = Some(PartitionMode::Blackhole));
    assert_eq!(
        get(s.link, Duration::from_millis(400)).await,
        Err("timeout".into())
    );
    assert_eq!(s.upstream_hits.load(Ordering::Relaxed), 0);
    s.faults.send_replace(LinkFaults::default());
    assert_eq!(get(s.link, Duration::from_secs(2)).await, Ok(200));
}

#[tokio::test]
async fn refuse_partition_closes_connections() {
    let s = setup().await;
    s.faults
        .send_modify(|f| f.partition = Some(PartitionMode::Refuse));
    let r = get(s.link, Duration::from_secs(2)).await;
    assert!(r.is_err() && r != Err("timeout".into()), "{r:?}");
}

#[tokio::test]
async fn dead_replica_closes_the_connection_instead_of_inventing_a_502() {
    // Nothing listens on this address once the listener is dropped.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let link = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let link_addr = link.local_addr().unwrap();
    let (_faults, rx) = watch::channel(LinkFaults::default());
    let stop = CancellationToken::new();
    tokio::spawn(run_link(
        link,
        dead_addr,
        rx,
        Arc::new(LinkStats::default()),
        stop.clone(),
    ));
    let r = get(link_addr, Duration::from_secs(3)).await;
    assert!(r.is_err() && r != Err("timeout".into()), "{r:?}");
    stop.cancel();
}
