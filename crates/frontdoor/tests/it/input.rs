//! Bad client input: each limit answers with its own status and affects no other client.

use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::routing::raw_request;
use crate::support::*;

fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn malformed_request_is_400_and_oversized_headers_431() {
    let a = Origin::start("a").await;
    let fd = Fd::start(config(&[("a", a.addr)])).await;
    let raw = raw_request(fd.addr, b"GARBAGE\r\n\r\n").await;
    assert_eq!(status_of(&raw), 400, "{raw}");
    let raw = raw_request(
        fd.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&raw), 400, "{raw}");
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let raw = raw_request(fd.addr, big.as_bytes()).await;
    assert_eq!(status_of(&raw), 431, "{raw}");
    // The front door still serves.
    assert_eq!(fd.get("/").await.status, 200);
}

#[tokio::test]
async fn body_over_the_limit_is_413_declared_or_streamed() {
    let a = Origin::start("a").await;
    let mut cfg = config(&[("a", a.addr)]);
    cfg.limits.max_body_bytes = Some(1000);
    let fd = Fd::start(cfg).await;
    let ans = request(
        fd.addr,
        "POST",
        "/upload",
        &[],
        Bytes::from(vec![0u8; 2000]),
    )
    .await
    .unwrap();
    assert_eq!(ans.status, 413, "{}", ans.text());
    let ans = request(
        fd.addr,
        "POST",
        "/upload",
        &[],
        Bytes::from(vec![0u8; 1000]),
    )
    .await
    .unwrap();
    assert_eq!((ans.status, ans.text().as_str()), (200, "1000"));
    // Chunked: the limit trips while streaming.
    let mut chunked =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"1f4\r\n");
        chunked.extend_from_slice(&[b'z'; 500]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let raw = raw_request(fd.addr, &chunked).await;
    assert_eq!(status_of(&raw), 413, "{raw}");
}

#[tokio::test]
async fn slow_header_senders_are_cut_without_affecting_others() {
    let a = Origin::start("a").await;
    let mut cfg = config(&[("a", a.addr)]);
    cfg.limits.header_read_timeout = Duration::from_millis(300);
    let fd = Fd::start(cfg).await;
    let mut slow = tokio::net::TcpStream::connect(fd.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(fd.addr).await.unwrap();
    // Others are served meanwhile.
    assert_eq!(fd.get("/").await.status, 200);
    let started = tokio::time::Instant::now();
    for s in [&mut slow, &mut silent] {
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(Duration::from_secs(3), async {
            let mut all = Vec::new();
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return all,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
        .expect("the slow connection was not closed");
        // Either closed silently or with a 408.
        let text = String::from_utf8_lossy(&read);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn random_request_garbage_never_breaks_the_front_door() {
    let a = Origin::start("a").await;
    let fd = Fd::start(config(&[("a", a.addr)])).await;
    let base =
        b"GET /echo HTTP/1.1\r\nHost: test.example\r\nX-Geoha-Hops: 1\r\nCookie: a=b\r\n\r\n";
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for _ in 0..60 {
        let mut req = base.to_vec();
        for _ in 0..rng.random_range(1..6) {
            let i = rng.random_range(0..req.len() - 4);
            req[i] = rng.random();
        }
        let raw = raw_request(fd.addr, &req).await;
        let status = status_of(&raw);
        assert!(
            raw.is_empty() || (100..600).contains(&status),
            "{:?} -> {raw:?}",
            String::from_utf8_lossy(&req)
        );
    }
    assert_eq!(fd.get("/").await.status, 200);
}
