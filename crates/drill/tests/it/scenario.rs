//! Scenarios end to end: fault steps through a fake lab control API, shell steps,
//! and the checks made before any load is sent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use geoha_drill::{
    verdict, DrillError, DrillPlan, LabEndpoint, Objectives, Progress, Scenario, TargetUrl,
};

use crate::fakes::{FakeLab, Reply, Target};

fn plan(url: &str, scenario: Scenario, rate: f64, duration_ms: u64) -> DrillPlan {
    let mut p = DrillPlan::new(TargetUrl::parse(url).unwrap(), Some(scenario));
    p.rate = rate;
    p.duration = Duration::from_millis(duration_ms);
    p.connections = 64;
    p.timeout = Duration::from_millis(500);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_with_nowhere_to_go_is_reported() {
    let target = Arc::new(Target::start(|_| Reply::Answer("eastus2-z1-r0")).await);
    let victim = Arc::clone(&target);
    let lab = FakeLab::start(&["eastus2-z1-r0"], move |fault| {
        if fault["action"] == "kill" {
            victim.kill();
        }
    })
    .await;
    let scenario = Scenario::from_toml(
        r#"
name = "only-replica-dies"
[[step]]
at = "1s"
action = "kill"
target = "replica:eastus2-z1-r0"
stay_down = true
[[cleanup]]
action = "heal"
target = "replica:eastus2-z1-r0"
"#,
        "test.toml",
    )
    .unwrap();
    let mut p = plan(&target.url(), scenario, 200.0, 2500);
    p.control = Some(LabEndpoint::new(&lab.url, &lab.token).unwrap());
    let report = geoha_drill::run(p, Progress::hidden()).await.unwrap();

    let calls = lab.recorded();
    assert_eq!(
        calls,
        vec![
            serde_json::json!({"action":"kill","target":"replica:eastus2-z1-r0","stay_down":true}),
            serde_json::json!({"action":"heal","target":"replica:eastus2-z1-r0"}),
        ]
    );
    assert_eq!(lab.unauthorized.load(Ordering::SeqCst), 0);

    assert_eq!(report.events.len(), 1);
    let e = &report.events[0];
    assert!(e.applied, "{:?}", e.error);
    assert!(e.at_s >= 1.0 && e.at_s < 1.2, "{}", e.at_s);
    // Everything from the kill on failed, and nothing before it.
    assert_eq!(report.timeline[0].failed, 0);
    assert_eq!(e.failed, report.failed);
    let after_kill: u64 = report.timeline[1..].iter().map(|s| s.sent).sum();
    assert!(e.failed + 5 >= after_kill, "{} of {after_kill}", e.failed);
    assert!(e.failed >= 250, "{}", e.failed);
    assert_eq!(
        e.failed_by_kind.connect_refused + e.failed_by_kind.reset,
        e.failed,
        "{:?}",
        e.failed_by_kind
    );
    assert_eq!(
        e.recovery_s, None,
        "nowhere to fail over to: never recovers"
    );
    let shift = e.shift_s.expect("the dead replica stopped answering");
    assert!(shift < 0.1, "{shift}");
    assert!(report.availability_pct < 50.0);

    let v = verdict(
        &report,
        &Objectives {
            max_failed: Some(0),
            max_recovery: Some(Duration::from_secs(1)),
        },
    );
    assert!(!v.passed());
    assert_eq!(v.misses.len(), 2, "{v}");
    assert!(v.to_string().contains("never recovered"), "{v}");
    let summary = geoha_drill::report::summary::render(&report);
    assert!(summary.contains("never"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instant_failover_has_no_failures_and_a_short_shift() {
    // A stand-in for a front door that moves traffic the moment the fault lands.
    let failed_over = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&failed_over);
    let target = Target::start(move |n| {
        if flag.load(Ordering::SeqCst) || n % 2 == 1 {
            Reply::Answer("centralus-z1-r0")
        } else {
            Reply::Answer("eastus2-z1-r0")
        }
    })
    .await;
    let flag = Arc::clone(&failed_over);
    let lab = FakeLab::start(&["eastus2-z1-r0", "centralus-z1-r0"], move |fault| {
        flag.store(fault["action"] == "kill", Ordering::SeqCst);
    })
    .await;
    let scenario = Scenario::from_toml(
        r#"
[[step]]
at = "1s"
action = "kill"
target = "region:eastus2"
[[step]]
at = "2s"
action = "heal"
target = "region:eastus2"
"#,
        "failover.toml",
    )
    .unwrap();
    let mut p = plan(&target.url(), scenario, 200.0, 3000);
    p.control = Some(LabEndpoint::new(&lab.url, &lab.token).unwrap());
    let report = geoha_drill::run(p, Progress::hidden()).await.unwrap();
    assert_eq!(report.failed, 0);
    let (kill, heal) = (&report.events[0], &report.events[1]);
    assert_eq!(kill.recovery_s, Some(0.0));
    assert!(kill.shift_s.unwrap() < 0.05, "{:?}", kill.shift_s);
    assert_eq!(kill.target.as_deref(), Some("region:eastus2"));
    assert!(heal.return_s.unwrap() < 0.05, "{:?}", heal.return_s);
    assert_eq!(heal.shift_s, None);
    // Second 1 is centralus but for a request or two due before the kill landed;
    // seconds 0 and 2 are split.
    assert!(
        report.timeline[1]
            .by_region
            .get("eastus2")
            .copied()
            .unwrap_or(0)
            <= 2
    );
    assert!(report.timeline[1].by_region["centralus"] >= 195);
    assert!(report.timeline[2].by_region["eastus2"] > 50);
    assert!(verdict(
        &report,
        &Objectives {
            max_failed: Some(0),
            max_recovery: Some(Duration::from_secs(1))
        }
    )
    .passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_steps_run_on_schedule_and_failures_are_recorded() {
    let target = Target::start(|_| Reply::Answer("eastus2-z1-r0")).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let text = format!(
        r#"
[[step]]
at = "200ms"
run = "echo \"$GEOHA_DRILL_TARGET\" > '{}'"
[[step]]
at = "400ms"
run = "echo nope >&2; exit 3"
"#,
        marker.display()
    );
    let scenario = Scenario::from_toml(&text, "shell.toml").unwrap();
    assert!(!scenario.needs_lab());
    let report = geoha_drill::run(
        plan(&target.url(), scenario, 100.0, 1000),
        Progress::hidden(),
    )
    .await
    .unwrap();
    let written = std::fs::read_to_string(&marker).unwrap();
    assert_eq!(written.trim(), target.url());
    let (ok, bad) = (&report.events[0], &report.events[1]);
    assert!(ok.applied && ok.kind == "shell");
    assert!(ok.at_s >= 0.2 && ok.at_s < 0.35, "{}", ok.at_s);
    assert!(!bad.applied);
    assert!(bad.error.as_deref().unwrap().contains("nope"));
    assert_eq!(ok.target, None);
}

#[tokio::test]
async fn a_lab_scenario_without_a_lab_does_not_start() {
    let scenario = Scenario::builtin("zone-loss").unwrap();
    let p = DrillPlan::new(
        TargetUrl::parse("http://127.0.0.1:9").unwrap(),
        Some(scenario),
    );
    assert_eq!(
        p.duration,
        Duration::from_secs(30),
        "the scenario's own length"
    );
    let e = geoha_drill::run(p, Progress::hidden()).await.unwrap_err();
    assert!(matches!(e, DrillError::NoLab { .. }), "{e}");
}

#[tokio::test]
async fn steps_after_the_end_are_bad_input() {
    let scenario = Scenario::builtin("region-loss-and-return").unwrap();
    let mut p = DrillPlan::new(
        TargetUrl::parse("http://127.0.0.1:9").unwrap(),
        Some(scenario),
    );
    p.duration = Duration::from_secs(10);
    p.control = Some(LabEndpoint::new("http://127.0.0.1:9", "t").unwrap());
    let e = geoha_drill::run(p, Progress::hidden()).await.unwrap_err();
    assert!(
        e.is_bad_input() && e.to_string().contains("after the run ends"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_is_checked_before_any_load() {
    let target = Target::start(|_| Reply::Answer("eastus2-z1-r0")).await;
    let lab = FakeLab::start(&["westus-z1-r0"], |_| {}).await;
    let scenario = Scenario::builtin("zone-loss").unwrap();

    // A scenario written for another topology.
    let mut p = DrillPlan::new(
        TargetUrl::parse(&target.url()).unwrap(),
        Some(scenario.clone()),
    );
    p.control = Some(LabEndpoint::new(&lab.url, &lab.token).unwrap());
    let e = geoha_drill::run(p, Progress::hidden()).await.unwrap_err();
    assert!(
        e.is_bad_input() && e.to_string().contains("matches no replica"),
        "{e}"
    );

    // A wrong token.
    let mut p = DrillPlan::new(TargetUrl::parse(&target.url()).unwrap(), Some(scenario));
    p.control = Some(LabEndpoint::new(&lab.url, "wrong").unwrap());
    let e = geoha_drill::run(p, Progress::hidden()).await.unwrap_err();
    assert!(matches!(e, DrillError::Control { .. }), "{e}");
    assert!(e.to_string().contains("401"), "{e}");

    assert_eq!(target.get(&target.counts.requests), 0, "no load was sent");
    assert!(lab.recorded().is_empty(), "no fault was sent");
}

#[test]
fn every_scenario_file_under_bench_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let s = geoha_drill::Scenario::from_toml(&text, &path.display().to_string())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                s.name,
                path.file_stem().unwrap().to_str().unwrap(),
                "a scenario file is named after its scenario"
            );
            seen += 1;
        }
    }
    assert!(seen >= 6, "{seen} scenario files in {}", dir.display());
}
