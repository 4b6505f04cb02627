//! Failures under load: crashed, frozen and recovering origins.

use std::time::Duration;

use bytes::Bytes;
use geoha_frontdoor::TryTimeoutConfig;

use crate::support::*;

#[tokio::test]
async fn killing_an_origin_under_steady_load_fails_no_client_request() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let fd = Fd::start(config(&[("a", a.addr), ("b", b.addr)])).await;
    // Both serve before the kill.
    fd.wait_origin("b", "probed", |o| !o.probe_window.is_empty())
        .await;
    let b_state = std::sync::Arc::clone(&b.state);
    let (ok, failed, by) = load(fd.addr, 8, async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.kill();
        tokio::time::sleep(Duration::from_millis(700)).await;
    })
    .await;
    assert!(
        failed.is_empty(),
        "{} failed, {ok} ok: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        by.get("b").is_some_and(|&n| n > 0),
        "b served before the kill: {by:?}"
    );
    assert!(by.get("a").is_some_and(|&n| n > 100), "{by:?}");
    assert!(b_state.requests.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let report = fd.origin("b").await;
    assert!(
        report.ejected || !report.healthy,
        "dead origin still in: {report:?}"
    );
}

#[tokio::test]
async fn a_frozen_origin_costs_at_most_the_timeout_and_is_ejected() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    cfg.origin_groups[0].origin_response_timeout = Duration::from_millis(400);
    // A timeout ejects at once (`eject_on_timeout`), not after 5 failures.
    cfg.origin_groups[0].passive.consecutive_failures = 5;
    let fd = Fd::start(cfg).await;
    b.set_mode(Mode::Frozen);
    let mut timeouts = 0;
    for _ in 0..40 {
        let started = tokio::time::Instant::now();
        let ans = fd.get("/").await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1000),
            "a request took {took:?}"
        );
        match ans.status {
            200 => assert_eq!(ans.text(), "a"),
            504 => timeouts += 1,
            other => panic!("unexpected {other}: {}", ans.text()),
        }
    }
    assert!(
        timeouts <= 2,
        "only the requests before ejection time out: {timeouts}"
    );
    let report = fd.origin("b").await;
    assert!(report.ejected || !report.healthy, "{report:?}");
    b.kill();
}

#[tokio::test]
async fn with_a_try_timeout_a_frozen_origin_fails_no_get_and_posts_get_a_clear_504() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    cfg.origin_groups[0].origin_response_timeout = Duration::from_millis(1500);
    cfg.origin_groups[0].try_timeout = TryTimeoutConfig::fixed(Duration::from_millis(100));
    // Keep sending to the frozen origin (no ejection, no probes) to test the retry alone.
    cfg.origin_groups[0].passive.enabled = false;
    cfg.origin_groups[0].probe.enabled = false;
    let fd = Fd::start(cfg).await;
    b.set_mode(Mode::Frozen);
    let (ok, failed, by) = load(fd.addr, 4, tokio::time::sleep(Duration::from_millis(800))).await;
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 20, "{ok}");
    assert_eq!(by.keys().collect::<Vec<_>>(), vec!["a"]);
    // A POST sent to the frozen origin is not retried: it waits for the overall timeout.
    let mut saw_504 = false;
    for _ in 0..20 {
        let started = tokio::time::Instant::now();
        let ans = request(fd.addr, "POST", "/upload", &[], Bytes::from_static(b"x"))
            .await
            .unwrap();
        if ans.status == 504 {
            assert!(
                started.elapsed() >= Duration::from_millis(1400),
                "{:?}",
                started.elapsed()
            );
            assert!(ans.text().contains("ref "));
            saw_504 = true;
            break;
        }
        assert_eq!(ans.status, 200);
    }
    assert!(saw_504, "no POST went to the frozen origin in 20 tries");
    b.kill();
}

#[tokio::test]
async fn failback_after_recovery_respects_slow_start() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let b_addr = b.addr;
    let mut cfg = config(&[("a", a.addr), ("b", b_addr)]);
    cfg.origin_groups[0].slow_start = Duration::from_secs(2);
    let fd = Fd::start(cfg).await;
    b.kill();
    fd.wait_origin("b", "unhealthy", |o| !o.healthy).await;
    drop(b);
    let b = Origin::restart_on("b", b_addr).await;
    fd.wait_origin("b", "healthy", |o| o.healthy && !o.ejected)
        .await;
    let report = fd.origin("b").await;
    assert!(report.ramp < 0.5, "just recovered: {report:?}");
    let early = spread(&fd, 100).await;
    let early_b = *early.get("b").unwrap_or(&0);
    assert!(
        early_b < 30,
        "b ramps up slowly, got {early_b} of 100: {early:?}"
    );
    fd.wait_origin("b", "at full weight", |o| o.ramp >= 1.0)
        .await;
    let late = spread(&fd, 100).await;
    let late_b = *late.get("b").unwrap_or(&0);
    assert!(
        late_b > early_b && late_b >= 30,
        "early {early:?}, late {late:?}"
    );
    drop(b);
}

#[tokio::test]
async fn the_adaptive_try_timeout_follows_the_origins_p99() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    cfg.origin_groups[0].origin_response_timeout = Duration::from_secs(5);
    cfg.origin_groups[0].try_timeout =
        // A floor of 200 ms: the fast origins' p99 (x 4) stays under it even with a 50 ms
        // outlier on a loaded machine, which a 60 ms floor did not survive.
        TryTimeoutConfig::adaptive(4.0, Duration::from_millis(200), Duration::from_secs(2));
    cfg.origin_groups[0].passive.enabled = false;
    cfg.origin_groups[0].probe.enabled = false;
    let fd = Fd::start(cfg).await;
    let report = fd.origin("b").await;
    assert_eq!(
        report.try_timeout_ms,
        Some(2000.0),
        "no answers yet: the ceiling"
    );
    spread(&fd, 100).await;
    for name in ["a", "b"] {
        let r = fd.origin(name).await;
        assert_eq!(
            r.try_timeout_ms,
            Some(200.0),
            "fast origin: the floor: {r:?}"
        );
    }
    b.set_mode(Mode::Frozen);
    for _ in 0..30 {
        let started = tokio::time::Instant::now();
        let ans = fd.get("/").await;
        assert_eq!((ans.status, ans.text().as_str()), (200, "a"));
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
    }
    let m = request(fd.admin, "GET", "/metrics", &[], Bytes::new())
        .await
        .unwrap();
    assert!(
        m.text()
            .contains("geoha_frontdoor_origin_try_timeout_seconds{group=\"api\",origin=\"b\"} 0.2"),
        "{}",
        m.text()
    );
    b.kill();
}

#[tokio::test]
async fn a_black_holed_origin_costs_the_connect_timeout_once_and_is_ejected() {
    let a = Origin::start("a").await;
    let (hole, _keep) = black_hole().await;
    let mut cfg = config(&[("hole", hole), ("a", a.addr)]);
    cfg.origin_groups[0].connect_timeout = Duration::from_millis(150);
    cfg.origin_groups[0].probe.enabled = false;
    cfg.origin_groups[0].passive.consecutive_failures = 5;
    let fd = Fd::start(cfg).await;
    let mut slow = 0;
    for _ in 0..30 {
        let started = tokio::time::Instant::now();
        let ans = fd.get("/").await;
        assert_eq!((ans.status, ans.text().as_str()), (200, "a"));
        if started.elapsed() >= Duration::from_millis(140) {
            slow += 1;
        }
    }
    assert_eq!(slow, 1, "one connect timeout, then ejected");
    let r = fd.origin("hole").await;
    assert!(r.ejected, "{r:?}");
    let m = request(fd.admin, "GET", "/metrics", &[], Bytes::new())
        .await
        .unwrap();
    assert!(
        m.text()
            .contains("origin=\"hole\",kind=\"connect_timeout\"} 1"),
        "{}",
        m.text()
    );
}

#[tokio::test]
async fn a_try_timeout_never_cuts_a_try_that_no_retry_could_replace() {
    // A group of one: nowhere else to go, so a slow answer is awaited.
    let a = Origin::start("a").await;
    let mut cfg = config(&[("a", a.addr)]);
    cfg.origin_groups[0].try_timeout = TryTimeoutConfig::fixed(Duration::from_millis(100));
    let fd = Fd::start(cfg).await;
    let ans = fd.get("/slow?ms=300").await;
    assert_eq!((ans.status, ans.text().as_str()), (200, "a"));

    // No retry budget left: the try keeps its chance until the overall deadline.
    let b = Origin::start("b").await;
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    cfg.origin_groups[0].try_timeout = TryTimeoutConfig::fixed(Duration::from_millis(100));
    cfg.retry.budget_percent = 0.0;
    cfg.retry.min_retries_per_second = 0;
    let fd = Fd::start(cfg).await;
    for _ in 0..4 {
        let ans = fd.get("/slow?ms=300").await;
        assert_eq!(ans.status, 200, "{}", ans.text());
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn hedged_gets_answer_from_the_fast_origin_while_one_is_slow_and_the_slow_one_is_ejected() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    cfg.origin_groups[0].hedge = TryTimeoutConfig::fixed(Duration::from_millis(30));
    let fd = Fd::start(cfg).await;
    // b is alive and probes fine, but every answer takes 600 ms: a gray failure.
    b.set_mode(Mode::Slow(600));
    for _ in 0..30 {
        let started = tokio::time::Instant::now();
        let ans = fd.get("/").await;
        assert_eq!(ans.status, 200);
        assert_eq!(ans.text(), "a");
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "hedge did not cut the wait: {:?}",
            started.elapsed()
        );
    }
    // Consecutive lost hedges eject the latency outlier: later requests go to a only.
    let report = fd.origin("b").await;
    assert!(report.ejected, "{report:?}");
    let m = request(fd.admin, "GET", "/metrics", &[], Bytes::new())
        .await
        .unwrap()
        .text();
    let hedges = metric(&m, "geoha_frontdoor_hedges_total");
    assert!(hedges >= 3, "{m}");
    assert_eq!(
        hedges,
        metric(&m, "geoha_frontdoor_hedges_won_total"),
        "{m}"
    );
    assert!(m.contains("origin=\"b\",kind=\"hedge_lost\"}"), "{m}");
}

#[tokio::test]
async fn hedges_are_paid_by_the_retry_budget_so_they_cannot_double_the_load() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    // Both slower than the hedge delay: every request would hedge without a budget.
    cfg.origin_groups[0].hedge = TryTimeoutConfig::fixed(Duration::from_millis(5));
    cfg.origin_groups[0].passive.enabled = false;
    cfg.retry.budget_percent = 10.0;
    cfg.retry.min_retries_per_second = 1;
    let fd = Fd::start(cfg).await;
    a.set_mode(Mode::Slow(20));
    b.set_mode(Mode::Slow(20));
    let n = 200u64;
    for _ in 0..n {
        assert_eq!(fd.get("/").await.status, 200);
    }
    let seen = a.state.requests.load(std::sync::atomic::Ordering::Relaxed)
        + b.state.requests.load(std::sync::atomic::Ordering::Relaxed);
    // 10% of requests plus 1/s of minimum (the run takes a few seconds) at most.
    assert!(seen >= n, "{seen}");
    assert!(
        seen <= n + n / 10 + 10,
        "hedging amplified the load: {seen} for {n}"
    );
}

#[tokio::test]
async fn posts_are_never_hedged() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    cfg.origin_groups[0].hedge = TryTimeoutConfig::fixed(Duration::from_millis(5));
    let fd = Fd::start(cfg).await;
    a.set_mode(Mode::Slow(50));
    b.set_mode(Mode::Slow(50));
    for _ in 0..20 {
        let ans = request(fd.addr, "POST", "/", &[], Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(ans.status, 200);
    }
    let seen = a.state.requests.load(std::sync::atomic::Ordering::Relaxed)
        + b.state.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(seen, 20);
}

#[tokio::test]
async fn a_hedged_get_between_two_frozen_origins_moves_on_to_a_third_at_the_try_timeout() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let c = Origin::start("c").await;
    let mut cfg = config(&[("a", a.addr), ("b", b.addr), ("c", c.addr)]);
    let g = &mut cfg.origin_groups[0];
    g.hedge = TryTimeoutConfig::fixed(Duration::from_millis(20));
    g.try_timeout = TryTimeoutConfig::fixed(Duration::from_millis(200));
    g.passive.enabled = false;
    let fd = Fd::start(cfg).await;
    a.set_mode(Mode::Frozen);
    b.set_mode(Mode::Frozen);
    for _ in 0..10 {
        let started = tokio::time::Instant::now();
        let ans = fd.get("/").await;
        assert_eq!(ans.status, 200);
        assert_eq!(ans.text(), "c");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    }
    a.kill();
    b.kill();
}

#[tokio::test]
async fn a_fast_5xx_from_the_hedge_copy_does_not_beat_a_slow_good_answer() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    let g = &mut cfg.origin_groups[0];
    // a is always the first try (priority 1), b takes every hedge copy.
    g.origins[1].priority = geoha_frontdoor::Priority::new(2).unwrap();
    g.hedge = TryTimeoutConfig::fixed(Duration::from_millis(10));
    g.passive.enabled = false;
    let fd = Fd::start(cfg).await;
    // a is slow but right; b fails fast (its probes stay healthy).
    a.set_mode(Mode::Slow(100));
    b.set_mode(Mode::Status(500));
    for _ in 0..10 {
        let ans = fd.get("/").await;
        assert_eq!(ans.status, 200, "{}", ans.text());
        assert_eq!(ans.text(), "a");
    }
    // The copies went out and lost to the slower good answer.
    assert!(b.state.requests.load(std::sync::atomic::Ordering::Relaxed) >= 5);
}

#[tokio::test]
async fn with_on_5xx_a_failing_origin_is_hidden_from_clients() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    b.set_mode(Mode::Status(500));
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    cfg.retry.on_5xx = true;
    let fd = Fd::start(cfg).await;
    let by = spread(&fd, 40).await;
    assert_eq!(
        by.get("a"),
        Some(&40),
        "every GET answered by the good origin: {by:?}"
    );
    // b was tried (and ejected after its consecutive 5xx); its answers never reached a client.
    assert!(b.state.requests.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    let report = fd.origin("b").await;
    assert!(report.failures_by_kind["status_5xx"] >= 1, "{report:?}");
    assert!(fd.metrics().await.contains("geoha_frontdoor_retries_total"));
}

#[tokio::test]
async fn with_on_5xx_the_last_5xx_is_returned_when_no_origin_does_better() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    a.set_mode(Mode::Status(503));
    b.set_mode(Mode::Status(500));
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    cfg.retry.on_5xx = true;
    let fd = Fd::start(cfg).await;
    let answer = fd.get("/").await;
    // An origin's own answer (its body names it), not a 502 made up by the front door.
    assert!(
        answer.status == 500 || answer.status == 503,
        "{}",
        answer.status
    );
    assert!(
        answer.text() == "a" || answer.text() == "b",
        "{}",
        answer.text()
    );
    let tries = a.state.requests.load(std::sync::atomic::Ordering::Relaxed)
        + b.state.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(tries, 2, "one try per origin");
}

#[tokio::test]
async fn on_5xx_never_retries_a_request_with_a_body_or_without_the_setting() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    a.set_mode(Mode::Status(500));
    b.set_mode(Mode::Status(500));
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    cfg.retry.on_5xx = true;
    let fd = Fd::start(cfg).await;
    let answer = request(fd.addr, "PUT", "/", &[], Bytes::from_static(b"payload"))
        .await
        .unwrap();
    assert_eq!(answer.status, 500);
    let count = || {
        a.state.requests.load(std::sync::atomic::Ordering::Relaxed)
            + b.state.requests.load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(count(), 1, "a PUT answered 5xx is not sent again");
    // Front Door's contract by default: a GET answered 5xx is returned as it is.
    let plain = Fd::start(config(&[("a", a.addr), ("b", b.addr)])).await;
    assert_eq!(plain.get("/").await.status, 500);
    assert_eq!(count(), 2);
}
