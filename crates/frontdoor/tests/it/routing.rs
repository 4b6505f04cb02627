//! Front Door's routing contract, one rule per test.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use geoha_frontdoor::{Priority, RouteConfig, Weight};

use crate::support::*;

#[tokio::test]
async fn forwards_with_forwarded_headers_and_echoes_the_reference() {
    let a = Origin::start("a").await;
    let fd = Fd::start(config(&[("a", a.addr)])).await;
    let ans = request(
        fd.addr,
        "GET",
        "/echo?x=1",
        &[
            ("x-forwarded-for", "10.0.0.1"),
            ("connection", "x-private"),
            ("x-private", "secret"),
            ("x-keep", "yes"),
        ],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(ans.status, 200, "{}", ans.text());
    let seen = a.last_seen();
    let h = |n: &str| seen.headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(seen.uri, "/echo?x=1");
    assert_eq!(h("x-forwarded-for").as_deref(), Some("10.0.0.1, 127.0.0.1"));
    assert_eq!(h("x-forwarded-host").as_deref(), Some("test.example"));
    assert_eq!(h("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        h("host").as_deref(),
        Some("test.example"),
        "client host kept"
    );
    assert_eq!(h("via").as_deref(), Some("1.1 geoha"));
    assert_eq!(h("x-geoha-hops").as_deref(), Some("1"));
    assert_eq!(h("x-keep").as_deref(), Some("yes"));
    assert_eq!(h("x-private"), None, "named by Connection: hop-by-hop");
    let reference = h("x-geoha-ref").expect("reference sent to origin");
    assert_eq!(reference.len(), 16);
    assert_eq!(
        ans.header("x-geoha-ref"),
        Some(reference.as_str()),
        "echoed"
    );
    assert_eq!(ans.header("via"), Some("1.1 geoha"));
    assert_eq!(ans.header("x-origin"), Some("a"));
}

#[tokio::test]
async fn host_header_can_be_set_per_origin() {
    let a = Origin::start("a").await;
    let mut cfg = config(&[("a", a.addr)]);
    cfg.origin_groups[0].origins[0].host_header = Some("origin.internal".into());
    let fd = Fd::start(cfg).await;
    assert_eq!(fd.get("/").await.status, 200);
    assert_eq!(a.last_seen().headers["host"], "origin.internal");
}

#[tokio::test]
async fn routes_pick_the_most_specific_match_and_unknown_routes_get_404() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let mut cfg = config(&[("a", a.addr)]);
    let mut g2 = cfg.origin_groups[0].clone();
    g2.name = "v2".into();
    g2.origins = vec![geoha_frontdoor::OriginConfig::new("b", b.addr)];
    cfg.origin_groups.push(g2);
    cfg.routes = vec![
        RouteConfig {
            hosts: vec!["test.example".into()],
            paths: vec!["/*".into()],
            origin_group: "api".into(),
        },
        RouteConfig {
            hosts: vec!["test.example".into()],
            paths: vec!["/v2/*".into()],
            origin_group: "v2".into(),
        },
    ];
    let fd = Fd::start(cfg).await;
    assert_eq!(fd.get("/v1/x").await.text(), "a");
    assert_eq!(fd.get("/v2/x").await.text(), "b");
    let raw = raw_request(fd.addr, b"GET / HTTP/1.1\r\nHost: other.example\r\n\r\n").await;
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    assert!(raw.contains("ref "), "{raw}");
}

#[tokio::test]
async fn only_probe_200_counts_and_each_probe_uses_a_fresh_connection() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    b.state.probe_status.store(204, Ordering::Relaxed);
    let fd = Fd::start(config(&[("a", a.addr), ("b", b.addr)])).await;
    fd.wait_origin("b", "unhealthy", |o| !o.healthy).await;
    fd.wait_origin("a", "probed 4 times", |o| o.probe_window.len() == 4)
        .await;
    let ra = fd.origin("a").await;
    assert!(ra.healthy);
    assert!(
        ra.probe_latency_ms.is_some(),
        "probe latency recorded: {ra:?}"
    );
    let by = spread(&fd, 40).await;
    assert_eq!(by.get("a"), Some(&40), "{by:?}");
    // Healthy again after successful_samples_required (2) successes.
    b.state.probe_status.store(200, Ordering::Relaxed);
    fd.wait_origin("b", "healthy", |o| o.healthy).await;
    let probes = b.state.probes.load(Ordering::Relaxed);
    assert!(probes >= 4);
    assert!(
        !b.state.probe_reused_connection.load(Ordering::Relaxed),
        "a probe reused a connection"
    );
    assert!(b.state.connections.load(Ordering::Relaxed) >= probes);
}

#[tokio::test]
async fn lowest_priority_value_gets_all_traffic() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    cfg.origin_groups[0].origins[0].priority = Priority::new(2).unwrap();
    let fd = Fd::start(cfg).await;
    let by = spread(&fd, 30).await;
    assert_eq!(by.get("b"), Some(&30), "{by:?}");
    // When priority 1 is unavailable, priority 2 takes over.
    assert_eq!(
        fd.admin_post("/admin/origins/b/disable", "").await.status,
        200
    );
    let by = spread(&fd, 10).await;
    assert_eq!(by.get("a"), Some(&10), "{by:?}");
}

#[tokio::test]
async fn latency_band_excludes_origins_slower_than_fastest_plus_additional() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    b.state.probe_delay_ms.store(120, Ordering::Relaxed);
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    cfg.origin_groups[0].probe.additional_latency_ms = 20;
    let fd = Fd::start(cfg.clone()).await;
    fd.wait_origin("b", "slow by probes", |o| {
        o.probe_latency_ms.is_some_and(|l| l > 100.0) && o.probe_window.len() >= 2
    })
    .await;
    let by = spread(&fd, 30).await;
    assert_eq!(by.get("a"), Some(&30), "{by:?}");
    // A wider band includes b.
    cfg.origin_groups[0].probe.additional_latency_ms = 1000;
    fd.reloads.send(std::sync::Arc::new(cfg)).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let by = spread(&fd, 20).await;
        if by.contains_key("b") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "b never got traffic: {by:?}"
        );
    }
}

#[tokio::test]
async fn weights_split_traffic() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    cfg.origin_groups[0].origins[0].weight = Weight::new(900).unwrap();
    cfg.origin_groups[0].origins[1].weight = Weight::new(100).unwrap();
    let fd = Fd::start(cfg).await;
    let by = spread(&fd, 200).await;
    let a_n = *by.get("a").unwrap_or(&0);
    // Expected 180 ± 4.2 sd.
    assert!((160..=197).contains(&a_n), "{by:?}");
}

#[tokio::test]
async fn all_unhealthy_fails_open_to_every_enabled_origin() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    a.state.probe_status.store(500, Ordering::Relaxed);
    b.state.probe_status.store(500, Ordering::Relaxed);
    let fd = Fd::start(config(&[("a", a.addr), ("b", b.addr)])).await;
    fd.wait_origin("a", "unhealthy", |o| !o.healthy).await;
    fd.wait_origin("b", "unhealthy", |o| !o.healthy).await;
    let by = spread(&fd, 40).await;
    assert!(by.contains_key("a") && by.contains_key("b"), "{by:?}");
}

#[tokio::test]
async fn a_group_of_one_always_uses_its_origin() {
    let a = Origin::start("a").await;
    a.state.probe_status.store(503, Ordering::Relaxed);
    let fd = Fd::start(config(&[("a", a.addr)])).await;
    fd.wait_origin("a", "unhealthy", |o| !o.healthy).await;
    assert_eq!(fd.get("/").await.text(), "a");
}

#[tokio::test]
async fn connect_failure_is_retried_on_another_origin_post_body_included() {
    let a = Origin::start("a").await;
    let dead = dead_addr().await;
    let mut cfg = config(&[("dead", dead), ("a", a.addr)]);
    // Keep selecting the dead origin: no probes, no ejection.
    cfg.origin_groups[0].probe.enabled = false;
    cfg.origin_groups[0].passive.enabled = false;
    let fd = Fd::start(cfg).await;
    for _ in 0..20 {
        let ans = fd.get("/").await;
        assert_eq!((ans.status, ans.text().as_str()), (200, "a"));
    }
    for _ in 0..10 {
        let ans = request(
            fd.addr,
            "POST",
            "/upload",
            &[],
            Bytes::from(vec![7u8; 1000]),
        )
        .await
        .unwrap();
        assert_eq!((ans.status, ans.text().as_str()), (200, "1000"));
    }
    let dead_report = fd.origin("dead").await;
    assert!(
        dead_report.failures_total > 0,
        "the dead origin was tried: {dead_report:?}"
    );
}

#[tokio::test]
async fn connection_closed_before_headers_retries_gets_but_not_posts_with_a_sent_body() {
    let a = Origin::start("a").await;
    let (closing, seen) = closing_origin().await;
    let mut cfg = config(&[("closing", closing), ("a", a.addr)]);
    cfg.origin_groups[0].probe.enabled = false;
    cfg.origin_groups[0].passive.enabled = false;
    let fd = Fd::start(cfg).await;
    for _ in 0..20 {
        assert_eq!(fd.get("/").await.text(), "a");
    }
    assert!(
        seen.load(Ordering::Relaxed) > 0,
        "the closing origin was tried"
    );
    // A POST whose body went out is not retried: some answers are 502.
    let mut codes = Vec::new();
    for _ in 0..30 {
        let ans = request(fd.addr, "POST", "/upload", &[], Bytes::from(vec![1u8; 100]))
            .await
            .unwrap();
        codes.push(ans.status);
        if ans.status == 502 {
            assert!(ans.text().contains("ref "), "{}", ans.text());
        }
    }
    assert!(codes.contains(&502) && codes.contains(&200), "{codes:?}");
}

#[tokio::test]
async fn a_reused_connection_closed_by_the_origin_is_not_an_origin_failure() {
    let addr = one_answer_per_connection_origin().await;
    let mut cfg = config(&[("once", addr)]);
    cfg.origin_groups[0].probe.enabled = false;
    let fd = Fd::start(cfg).await;
    for _ in 0..20 {
        let ans = fd.get("/").await;
        assert_eq!((ans.status, ans.text().as_str()), (200, "once"));
    }
    let report = fd.origin("once").await;
    assert_eq!(report.failures_total, 0, "{report:?}");
    assert!(!report.ejected);
}

#[tokio::test]
async fn origin_response_timeout_is_504_with_the_reference() {
    let a = Origin::start("a").await;
    a.set_mode(Mode::Frozen);
    let mut cfg = config(&[("a", a.addr)]);
    cfg.origin_groups[0].origin_response_timeout = Duration::from_millis(300);
    let fd = Fd::start(cfg).await;
    let started = tokio::time::Instant::now();
    let ans = fd.get("/").await;
    let took = started.elapsed();
    assert_eq!(ans.status, 504, "{}", ans.text());
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let reference = ans.header("x-geoha-ref").unwrap().to_string();
    assert!(ans.text().contains(&reference), "{}", ans.text());
}

#[tokio::test]
async fn no_origin_enabled_is_503_and_none_reachable_is_502() {
    let a = Origin::start("a").await;
    let fd = Fd::start(config(&[("a", a.addr)])).await;
    fd.admin_post("/admin/origins/a/disable", "").await;
    let ans = fd.get("/").await;
    assert_eq!(ans.status, 503, "{}", ans.text());
    assert!(ans.text().contains("ref "), "{}", ans.text());

    let dead = dead_addr().await;
    let fd2 = Fd::start(config(&[("dead", dead)])).await;
    let ans = fd2.get("/").await;
    assert_eq!(ans.status, 502, "{}", ans.text());
    assert!(ans.text().contains(ans.header("x-geoha-ref").unwrap()));
}

#[tokio::test]
async fn hop_counter_detects_loops_with_508() {
    let a = Origin::start("a").await;
    let fd = Fd::start(config(&[("a", a.addr)])).await;
    let ans = request(fd.addr, "GET", "/", &[("x-geoha-hops", "7")], Bytes::new())
        .await
        .unwrap();
    assert_eq!(ans.status, 200);
    assert_eq!(a.last_seen().headers["x-geoha-hops"], "8");
    let ans = request(fd.addr, "GET", "/", &[("x-geoha-hops", "8")], Bytes::new())
        .await
        .unwrap();
    assert_eq!(ans.status, 508, "{}", ans.text());
    let ans = request(
        fd.addr,
        "GET",
        "/",
        &[("x-geoha-hops", "many")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(ans.status, 400);
}

#[tokio::test]
async fn retry_budget_caps_retries() {
    let a = Origin::start("a").await;
    let dead = dead_addr().await;
    let mut cfg = config(&[("dead", dead), ("a", a.addr)]);
    cfg.origin_groups[0].probe.enabled = false;
    cfg.origin_groups[0].passive.enabled = false;
    cfg.retry.budget_percent = 0.0;
    cfg.retry.min_retries_per_second = 0;
    let fd = Fd::start(cfg).await;
    let by = spread(&fd, 40).await;
    assert!(
        by.get("status 502").is_some_and(|&n| n > 0),
        "no retry budget: {by:?}"
    );
}

/// Sends raw bytes and returns what came back until the server closed or 2 s passed.
pub(crate) async fn raw_request(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") && !out.is_empty() {
            // Enough for a status line and headers; give the body a moment.
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await
            {
                out.extend_from_slice(&buf[..n]);
            }
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
