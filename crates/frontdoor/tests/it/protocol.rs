//! Protocols and streams: HTTP/2 (cleartext and TLS with ALPN), Upgrade pass-through,
//! streamed bodies both ways, session affinity, graceful shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use geoha_frontdoor::{ListenerConfig, Listeners, TlsConfig};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

#[tokio::test]
async fn http2_clients_are_served_over_cleartext() {
    let a = Origin::start("a").await;
    let fd = Fd::start(config(&[("a", a.addr)])).await;
    let stream = TcpStream::connect(fd.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = Request::get("http://test.example/echo")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert!(resp.headers().contains_key("x-geoha-ref"));
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"a");
    }
    let seen = a.last_seen();
    assert_eq!(seen.headers["host"], "test.example");
    assert_eq!(seen.headers["x-forwarded-host"], "test.example");
    assert_eq!(seen.headers["via"], "2 geoha");
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures")
        .join(name)
}

#[tokio::test]
async fn tls_listener_negotiates_h2_and_http1_by_alpn() {
    use tokio_rustls::rustls;
    let a = Origin::start("a").await;
    let mut cfg = config(&[("a", a.addr)]);
    let traffic = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = traffic.local_addr().unwrap();
    cfg.listeners = vec![ListenerConfig {
        address: addr,
        tls: Some(TlsConfig {
            cert: fixture("leaf.pem"),
            key: fixture("leaf.key"),
        }),
    }];
    let cfg = Arc::new(cfg);
    let (_reloads, rx) = tokio::sync::watch::channel(Arc::clone(&cfg));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(geoha_frontdoor::run(
        cfg,
        Listeners {
            traffic: vec![traffic],
            admin: None,
        },
        rx,
        async move {
            let _ = stopped.await;
        },
    ));

    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(fixture("ca.pem")).unwrap();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    for (alpn, want) in [
        (b"h2".to_vec(), http::Version::HTTP_2),
        (b"http/1.1".to_vec(), http::Version::HTTP_11),
    ] {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        client.alpn_protocols = vec![alpn];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        let resp = if want == http::Version::HTTP_2 {
            let (mut s, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            let req = Request::get("https://localhost/")
                .body(Empty::<Bytes>::new())
                .unwrap();
            s.send_request(req).await.unwrap()
        } else {
            let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            let req = Request::get("/")
                .header("host", "localhost")
                .body(Empty::<Bytes>::new())
                .unwrap();
            s.send_request(req).await.unwrap()
        };
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), want);
        assert_eq!(a.last_seen().headers["x-forwarded-proto"], "https");
    }
    let _ = stop.send(());
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_missing_certificate_stops_run_with_a_clear_error() {
    let mut cfg = config(&[("a", dead_addr().await)]);
    let traffic = TcpListener::bind("127.0.0.1:0").await.unwrap();
    cfg.listeners = vec![ListenerConfig {
        address: traffic.local_addr().unwrap(),
        tls: Some(TlsConfig {
            cert: fixture("missing.pem"),
            key: fixture("leaf.key"),
        }),
    }];
    let cfg = Arc::new(cfg);
    let (_tx, rx) = tokio::sync::watch::channel(Arc::clone(&cfg));
    let err = geoha_frontdoor::run(
        cfg,
        Listeners {
            traffic: vec![traffic],
            admin: None,
        },
        rx,
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

#[tokio::test]
async fn upgrade_is_passed_through() {
    let a = Origin::start("a").await;
    let fd = Fd::start(config(&[("a", a.addr)])).await;
    let mut s = TcpStream::connect(fd.addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 1, "closed early: {}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    s.write_all(b"ping-pong").await.unwrap();
    let mut buf = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping-pong");
}

#[tokio::test]
async fn response_bodies_are_streamed() {
    let a = Origin::start("a").await;
    let fd = Fd::start(config(&[("a", a.addr)])).await;
    let stream = TcpStream::connect(fd.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/stream")
        .header("host", "x")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let mut body = resp.into_body();
    // The first chunk arrives while the origin still holds the second.
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("first chunk not streamed")
        .unwrap()
        .unwrap();
    assert_eq!(first.data_ref().unwrap().as_ref(), b"first;");
    a.state.release.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"second");
}

#[tokio::test]
async fn request_bodies_are_streamed() {
    let a = Origin::start("a").await;
    let fd = Fd::start(config(&[("a", a.addr)])).await;
    let stream = TcpStream::connect(fd.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, body) = channel_body();
    tx.send(Bytes::from(vec![1u8; 1000])).await.unwrap();
    let req = Request::post("/first-chunk")
        .header("host", "x")
        .body(body)
        .unwrap();
    // The origin answers after the first chunk: a proxy that buffered the whole body
    // would wait for the rest forever.
    let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .expect("the request body was buffered")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let n = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&n[..], b"1000");
    drop(tx);
}

#[tokio::test]
async fn a_large_upload_streams_through() {
    let a = Origin::start("a").await;
    let fd = Fd::start(config(&[("a", a.addr)])).await;
    let stream = TcpStream::connect(fd.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let (tx, body) = channel_body();
    let feed = tokio::spawn(async move {
        let chunk = Bytes::from(vec![9u8; 256 * 1024]);
        for _ in 0..256 {
            tx.send(chunk.clone()).await.unwrap();
        }
    });
    let req = Request::post("/upload")
        .header("host", "x")
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let n = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&n[..], (64u64 << 20).to_string().as_bytes());
    feed.await.unwrap();
}

#[tokio::test]
async fn session_affinity_pins_a_client_until_its_origin_fails() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    cfg.origin_groups[0].session_affinity = true;
    let fd = Fd::start(cfg).await;
    let first = fd.get("/").await;
    let cookie = first
        .header("set-cookie")
        .expect("affinity cookie")
        .to_string();
    assert!(cookie.starts_with("geoha_affinity="), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_string();
    let pinned = first.text();
    for _ in 0..20 {
        let ans = request(fd.addr, "GET", "/", &[("cookie", &pair)], Bytes::new())
            .await
            .unwrap();
        assert_eq!(ans.text(), pinned);
        assert!(
            ans.header("set-cookie").is_none(),
            "no new cookie while pinned"
        );
    }
    fd.admin_post(&format!("/admin/origins/{pinned}/disable"), "")
        .await;
    let moved = request(fd.addr, "GET", "/", &[("cookie", &pair)], Bytes::new())
        .await
        .unwrap();
    assert_ne!(moved.text(), pinned);
    let new_cookie = moved.header("set-cookie").expect("cookie re-issued");
    assert_ne!(new_cookie.split(';').next().unwrap(), pair);
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_refuses_new_connections() {
    let a = Origin::start("a").await;
    let mut fd = Fd::start(config(&[("a", a.addr)])).await;
    let addr = fd.addr;
    let slow =
        tokio::spawn(async move { request(addr, "GET", "/slow?ms=400", &[], Bytes::new()).await });
    fd.wait_origin("a", "busy", |o| o.in_flight == 1).await;
    let run = fd.shutdown();
    let ans = slow.await.unwrap().unwrap();
    assert_eq!((ans.status, ans.text().as_str()), (200, "a"));
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("drain took too long")
        .unwrap()
        .unwrap();
    let after = request(addr, "GET", "/", &[], Bytes::new()).await;
    assert!(after.is_err(), "served after shutdown: {after:?}");
}

#[tokio::test]
async fn connections_spread_evenly_over_the_workers_and_all_drain_on_shutdown() {
    let a = Origin::start("a").await;
    let mut cfg = config(&[("a", a.addr)]);
    cfg.workers = 3;
    let mut fd = Fd::start(cfg).await;
    let addr = fd.addr;
    // Six slow requests, each on its own connection: the balance puts two on each worker.
    let slow: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(
                async move { request(addr, "GET", "/slow?ms=600", &[], Bytes::new()).await },
            )
        })
        .collect();
    fd.wait_origin("a", "busy with all six", |o| o.in_flight == 6)
        .await;
    let metrics = fd.metrics().await;
    for worker in 0..3 {
        let line = format!("geoha_frontdoor_worker_connections_open{{worker=\"{worker}\"}} 2\n");
        assert!(metrics.contains(&line), "no {line:?} in\n{metrics}");
    }
    let run = fd.shutdown();
    for s in slow {
        let ans = s.await.unwrap().unwrap();
        assert_eq!((ans.status, ans.text().as_str()), (200, "a"));
    }
    // `run` returns once every worker thread has ended.
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("drain took too long")
        .unwrap()
        .unwrap();
    let after = request(addr, "GET", "/", &[], Bytes::new()).await;
    assert!(after.is_err(), "served after shutdown: {after:?}");
}
