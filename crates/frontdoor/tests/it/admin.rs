//! The admin API, reloads and `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use geoha_frontdoor::{Config, OriginConfig};

use crate::support::*;

#[tokio::test]
async fn admin_needs_the_bearer_token_but_healthz_and_metrics_do_not() {
    let a = Origin::start("a").await;
    let fd = Fd::start(config(&[("a", a.addr)])).await;
    let ans = request(fd.admin, "GET", "/admin/origins", &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(ans.status, 401);
    assert_eq!(ans.header("www-authenticate"), Some("Bearer"));
    let ans = request(
        fd.admin,
        "POST",
        "/admin/origins/a/disable",
        &[("authorization", "Bearer wrong")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(ans.status, 401);
    assert_eq!(
        fd.get("/").await.status,
        200,
        "the wrong token changed nothing"
    );
    for path in ["/healthz", "/metrics"] {
        let ans = request(fd.admin, "GET", path, &[], Bytes::new())
            .await
            .unwrap();
        assert_eq!(ans.status, 200, "{path}");
    }
}

#[tokio::test]
async fn origins_report_has_the_documented_fields() {
    let a = Origin::start("a").await;
    let mut cfg = config(&[("a", a.addr)]);
    cfg.origin_groups[0].origins[0].region = Some("eastus2".into());
    cfg.origin_groups[0].origins[0].zone = Some("1".into());
    let fd = Fd::start(cfg).await;
    fd.wait_origin("a", "probed", |o| !o.probe_window.is_empty())
        .await;
    assert_eq!(fd.get("/").await.status, 200);
    let ans = request(
        fd.admin,
        "GET",
        "/admin/origins",
        &[("authorization", &format!("Bearer {TOKEN}"))],
        Bytes::new(),
    )
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&ans.body).unwrap();
    let o = &v["groups"][0]["origins"][0];
    assert_eq!(v["groups"][0]["name"], "api");
    for key in [
        "name",
        "address",
        "region",
        "zone",
        "priority",
        "weight",
        "enabled",
        "draining",
        "healthy",
        "ejected",
        "probe_window",
        "probe_latency_ms",
        "requests_total",
        "failures_total",
        "failures_by_kind",
        "share",
        "in_flight",
    ] {
        assert!(o.get(key).is_some(), "missing {key}: {o}");
    }
    assert_eq!(o["region"], "eastus2");
    assert_eq!(o["requests_total"], 1);
    assert_eq!(o["share"], 1.0);
}

#[tokio::test]
async fn drain_stops_new_requests_and_lets_in_flight_ones_finish() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let mut cfg = config(&[("a", a.addr), ("b", b.addr)]);
    cfg.origin_groups[0].origins[1].priority = geoha_frontdoor::Priority::new(2).unwrap();
    let fd = Fd::start(cfg).await;
    let addr = fd.addr;
    let slow = tokio::spawn(async move {
        request(addr, "GET", "/slow?ms=400", &[], Bytes::new())
            .await
            .unwrap()
    });
    fd.wait_origin("a", "busy", |o| o.in_flight == 1).await;
    let ans = fd.admin_post("/admin/origins/a/drain", "").await;
    assert_eq!(ans.status, 200, "{}", ans.text());
    let report = fd.origin("a").await;
    assert!(report.draining && !report.enabled, "{report:?}");
    assert_eq!(fd.get("/").await.text(), "b", "no new requests to a");
    let done = slow.await.unwrap();
    assert_eq!(
        (done.status, done.text().as_str()),
        (200, "a"),
        "in-flight finished"
    );
    fd.wait_origin("a", "idle", |o| o.in_flight == 0).await;
    assert_eq!(
        fd.admin_post("/admin/origins/a/enable", "").await.status,
        200
    );
    assert_eq!(fd.get("/").await.text(), "a");
    assert_eq!(
        fd.admin_post("/admin/origins/nope/enable", "").await.status,
        404
    );
}

#[tokio::test]
async fn reload_by_body_keeps_probe_history_and_bad_config_keeps_the_old_one() {
    let a = Origin::start("a").await;
    let c = Origin::start("c").await;
    let cfg = config(&[("a", a.addr)]);
    let fd = Fd::start(cfg.clone()).await;
    fd.wait_origin("a", "probed 3 times", |o| o.probe_window.len() >= 3)
        .await;

    let mut next = cfg.clone();
    next.origin_groups[0]
        .origins
        .push(OriginConfig::new("c", c.addr));
    next.origin_groups[0].origins[0].priority = geoha_frontdoor::Priority::new(2).unwrap();
    let ans = fd
        .admin_post("/admin/reload", &next.to_toml_string().unwrap())
        .await;
    assert_eq!(ans.status, 200, "{}", ans.text());
    let report = fd.origin("a").await;
    assert!(report.probe_window.len() >= 3, "history kept: {report:?}");
    assert_eq!(report.priority, 2);
    assert_eq!(fd.get("/").await.text(), "c");

    // A bad config (by the admin API or the reload channel) changes nothing.
    let bad = next
        .to_toml_string()
        .unwrap()
        .replace("priority = 2", "priority = 9");
    let ans = fd.admin_post("/admin/reload", &bad).await;
    assert_eq!(ans.status, 400);
    assert!(ans.text().contains("priority"), "{}", ans.text());
    let mut invalid = next.clone();
    invalid.routes[0].origin_group = "missing".into();
    fd.reloads.send(Arc::new(invalid)).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = request(fd.admin, "GET", "/metrics", &[], Bytes::new())
            .await
            .unwrap();
        if m.text().contains("geoha_frontdoor_reloads_failed_total 2") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", m.text());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fd.get("/").await.text(), "c");
}

#[tokio::test]
async fn reload_with_an_empty_body_rereads_the_config_file() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("frontdoor.toml");
    let cfg = config(&[("a", a.addr)]);
    std::fs::write(&path, cfg.to_toml_string().unwrap()).unwrap();
    let loaded = Config::from_file(path.clone()).await.unwrap();
    assert_eq!(loaded.source.as_deref(), Some(path.as_path()));
    let fd = Fd::start(loaded).await;
    assert_eq!(fd.get("/").await.text(), "a");
    let mut next = cfg.clone();
    next.origin_groups[0].origins = vec![OriginConfig::new("b", b.addr)];
    std::fs::write(&path, next.to_toml_string().unwrap()).unwrap();
    let ans = fd.admin_post("/admin/reload", "").await;
    assert_eq!(ans.status, 200, "{}", ans.text());
    assert_eq!(fd.get("/").await.text(), "b");
    // A broken file: the error names file, line and key; the running config stays.
    std::fs::write(&path, "[[route]]\norigin_group = \"api\"\nhosts = 5\n").unwrap();
    let ans = fd.admin_post("/admin/reload", "").await;
    assert_eq!(ans.status, 400);
    let msg = ans.text();
    assert!(
        msg.contains("frontdoor.toml:3:") && msg.contains("route[0].hosts"),
        "{msg}"
    );
    assert_eq!(fd.get("/").await.text(), "b");
}

#[tokio::test]
async fn five_hundreds_eject_an_origin() {
    let a = Origin::start("a").await;
    let b = Origin::start("b").await;
    b.set_mode(Mode::Status(500));
    let fd = Fd::start(config(&[("a", a.addr), ("b", b.addr)])).await;
    let by = spread(&fd, 40).await;
    assert!(by.get("status 500").is_some_and(|&n| n <= 3), "{by:?}");
    let report = fd.origin("b").await;
    assert!(report.ejected, "{report:?}");
    assert!(report.ejected_until_ms.is_some());
    // The admin API breaks failures down by kind, as the metric does.
    assert_eq!(report.failures_by_kind["status_5xx"], 3, "{report:?}");
    assert_eq!(report.failures_by_kind["hedge_lost"], 0, "{report:?}");
    assert_eq!(
        report.failures_by_kind.values().sum::<u64>(),
        report.failures_total
    );
    let m = request(fd.admin, "GET", "/metrics", &[], Bytes::new())
        .await
        .unwrap();
    assert!(
        m.text().contains(
            "geoha_frontdoor_origin_failures_total{group=\"api\",origin=\"b\",kind=\"status_5xx\"} 3"
        ),
        "{}",
        m.text()
    );
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let a = Origin::start("a").await;
    let fd = Fd::start(config(&[("a", a.addr)])).await;
    assert_eq!(fd.get("/").await.status, 200);
    let m = request(fd.admin, "GET", "/metrics", &[], Bytes::new())
        .await
        .unwrap();
    assert!(
        m.text()
            .contains("geoha_frontdoor_responses_total{class=\"2xx\"} 1"),
        "{}",
        m.text()
    );
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed: skipping the lint (CI installs it)");
        return;
    };
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&m.body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
