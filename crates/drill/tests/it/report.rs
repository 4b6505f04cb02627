//! Report outputs: the JSON validates against the published schema, the HTML page is
//! self-contained and has its charts, reports round-trip and compare.

use std::time::Duration;

use geoha_drill::{compare, DrillPlan, Progress, Report, Scenario, TargetUrl};

use crate::fakes::{Reply, Target};

const SCHEMA: &str = include_str!("../../schema/drill-report.schema.json");

/// A short run with failures, two regions and two (shell) events.
async fn sample_report(fail_every: u64) -> Report {
    let target = Target::start(move |n| match n {
        n if fail_every > 0 && n % fail_every == 0 => Reply::Status(502),
        n if n % 2 == 0 => Reply::Answer("eastus2-z1-r0"),
        _ => Reply::Answer("centralus-z3-r1"),
    })
    .await;
    let scenario = Scenario::from_toml(
        "[[step]]\nat = \"300ms\"\nrun = \"true\"\nwatch = \"region:eastus2\"\n[[step]]\nat = \"1s\"\nrun = \"true\"\n",
        "sample.toml",
    )
    .unwrap();
    let mut p = DrillPlan::new(TargetUrl::parse(&target.url()).unwrap(), Some(scenario));
    p.rate = 300.0;
    p.duration = Duration::from_millis(1500);
    p.connections = 32;
    geoha_drill::run(p, Progress::hidden()).await.unwrap()
}

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

fn errors(v: &jsonschema::Validator, doc: &serde_json::Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_report_validates_against_the_schema() {
    let report = sample_report(10).await;
    assert!(report.failed > 0 && report.events.len() == 2);
    let doc: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let v = validator();
    assert_eq!(errors(&v, &doc), Vec::<String>::new());
    // The fields DESIGN.md promises are there.
    for key in [
        "sent",
        "ok",
        "failed",
        "failed_by_kind",
        "target_rate",
        "achieved_rate",
        "latency_ms",
        "by_region",
        "timeline",
        "events",
    ] {
        assert!(doc.get(key).is_some(), "{key}");
    }
    for key in ["p50", "p99", "p999", "max"] {
        assert!(doc["latency_ms"][key].is_number(), "{key}");
    }
    for key in ["at_s", "action", "failed", "recovery_s", "shift_s"] {
        assert!(doc["events"][0].get(key).is_some(), "{key}");
    }
    // The schema is enforced: a missing field or an undocumented one fails.
    let mut missing = doc.clone();
    missing.as_object_mut().unwrap().remove("sent");
    assert!(!errors(&v, &missing).is_empty());
    let mut extra = doc.clone();
    extra["events"][0]["surprise"] = serde_json::json!(1);
    assert!(!errors(&v, &extra).is_empty());
    let mut wrong = doc;
    wrong["failed_by_kind"]["timeout"] = serde_json::json!(-1);
    assert!(!errors(&v, &wrong).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_is_self_contained_and_has_the_charts() {
    let report = sample_report(10).await;
    let html = geoha_drill::report::html::render(&report);
    assert!(html.starts_with("<!DOCTYPE html>"));
    for id in ["chart-throughput", "chart-latency", "chart-share"] {
        assert_eq!(
            html.matches(&format!("<svg id=\"{id}\"")).count(),
            1,
            "{id}"
        );
    }
    assert_eq!(
        html.matches("<svg ").count(),
        html.matches("</svg>").count()
    );
    // One fault marker per event in each chart.
    assert_eq!(
        html.matches("class=\"fault-marker\"").count(),
        3 * report.events.len()
    );
    // Stacked areas, one per region; throughput bars for ok and failed seconds.
    assert_eq!(html.matches("<polygon class=\"region\"").count(), 2);
    assert!(html.contains("data-region=\"eastus2\"") && html.contains("data-region=\"centralus\""));
    assert!(html.matches("<rect class=\"ok\"").count() >= 2);
    assert!(html.matches("<rect class=\"failed\"").count() >= 1);
    assert!(html.matches("<polyline class=\"p99\"").count() >= 1);
    assert!(html.contains("<table id=\"events\">") && html.contains("<table id=\"summary\">"));
    // Self-contained: no scripts, no external resources of any kind.
    assert!(!html.contains("<script"));
    assert!(!html.contains(" src=") && !html.contains(" href=") && !html.contains("url("));
    assert!(!html.contains("<link"));
    // The only URLs are the SVG namespace and the target as text.
    let urls = html.matches("http://").count() + html.matches("https://").count();
    let allowed = html.matches("http://www.w3.org/2000/svg").count()
        + html.matches(report.target.as_str()).count();
    assert_eq!(urls, allowed);
    balanced_tags(&html);
}

/// Every opened element is closed in order (void elements aside): a cheap well-formedness
/// check of what `render` writes.
fn balanced_tags(html: &str) {
    const VOID: [&str; 4] = ["meta", "br", "!DOCTYPE", "line"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').expect("unclosed tag") + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        let self_closing = tag.ends_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/')
            .collect();
        if self_closing || VOID.contains(&name.as_str()) {
            continue;
        }
        if tag.starts_with('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.as_str()),
                "mismatched </{name}>"
            );
        } else {
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_round_trip_through_files_and_compare() {
    let (good, bad) = tokio::join!(sample_report(0), sample_report(5));
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    good.write_json_file(&a).unwrap();
    bad.write_json_file(&b).unwrap();
    bad.write_html_file(&dir.path().join("b.html")).unwrap();
    let (a, b) = (
        Report::read_file(&a).unwrap(),
        Report::read_file(&b).unwrap(),
    );
    assert_eq!(a, good);
    assert_eq!(b, bad);
    assert!(Report::read_file(&dir.path().join("b.html")).is_err());

    let cmp = compare(&a, &b);
    let worse: Vec<&str> = cmp.worse().map(|r| r.metric.as_str()).collect();
    assert!(
        worse.contains(&"failed") && worse.contains(&"availability %"),
        "{cmp}"
    );
    assert!(worse.contains(&"  failed: http_5xx"), "{cmp}");
    let back = compare(&b, &a);
    assert!(back.better().any(|r| r.metric == "failed"), "{back}");
    assert!(cmp.to_string().contains("WORSE"));
}

/// Renders the page with headless Chromium (scripts/render-report-png.sh) when one is
/// installed; the script exits 2 when there is none, and the test then says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_report_renders_in_headless_chromium() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/render-report-png.sh");
    let report = sample_report(10).await;
    let dir = tempfile::tempdir().unwrap();
    let (html, png) = (dir.path().join("r.html"), dir.path().join("r.png"));
    report.write_html_file(&html).unwrap();
    let run = tokio::process::Command::new("bash")
        .arg(script)
        .arg(&html)
        .arg(&png)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("chromium took over 90 s")
        .unwrap();
    match out.status.code() {
        Some(0) => {
            assert!(png.exists());
            // To look at it: DRILL_PNG_OUT=/tmp/drill.png cargo test -p geoha-drill chromium
            if let Some(keep) = std::env::var_os("DRILL_PNG_OUT") {
                std::fs::copy(&png, keep).unwrap();
            }
        }
        Some(2) => eprintln!("skipped: no headless Chromium installed"),
        _ => panic!(
            "render failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
