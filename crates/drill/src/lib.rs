//! geoha-drill: measures what users feel when a replica, a zone or a region fails.
//!
//! A drill sends open-loop, constant-rate HTTP load at a target (the lab's front door
//! or any `http://` URL), runs a scenario's fault steps on schedule (through the lab's
//! control API or shell commands), and reports per second and per event: failures by
//! kind, latency from the intended send time, which region answered, time to recovery
//! and time until traffic left the faulted target.
//!
//! # Layout
//! - `load`: the open-loop generator (pacer, connection pool, classification).
//! - `timeline`: per-second buckets by intended send time.
//! - [`scenario`]: built-in and TOML scenarios; `steps` runs them.
//! - [`control`]: the lab's control API client and its state file.
//! - [`report`]: the JSON report, its analysis, the HTML page, the terminal summary.
//! - [`mod@compare`] and [`mod@verdict`]: judging a report against a baseline or objectives.
//!
//! The library never reads flags, environment or signals and never exits; the binary
//! does (`crates/geoha/src/cmd/drill.rs`).
#![forbid(unsafe_code)]

pub mod compare;
pub mod control;
pub mod error;
pub(crate) mod load;
pub mod outcome;
pub mod progress;
pub mod report;
pub mod scenario;
pub(crate) mod steps;
pub mod target;
pub(crate) mod timeline;
pub mod verdict;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

pub use crate::compare::{compare, Comparison};
pub use crate::control::{LabEndpoint, LabState};
pub use crate::error::DrillError;
pub use crate::outcome::{FailedByKind, FailureKind};
pub use crate::progress::Progress;
pub use crate::report::Report;
pub use crate::scenario::{Scenario, BUILTIN_NAMES};
pub use crate::target::TargetUrl;
pub use crate::verdict::{verdict, Objectives, Verdict};

use crate::load::{LiveCounts, LoadShape, OpenLoopLoad, ResolvedTarget};
use crate::report::build::{build, RunFacts};
use crate::scenario::StepAction;
use crate::steps::EventRecord;

/// Bound on resolving the target's host name.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The schedule starts this long after setup, so the first requests are not late.
const START_LEAD: Duration = Duration::from_millis(20);
/// Upper bounds that catch typos (`--rate 5000000`) before they hurt the machine.
const MAX_RATE: f64 = 200_000.0;
const MAX_CONNECTIONS: usize = 20_000;
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// What to run.
#[derive(Debug, Clone)]
pub struct DrillPlan {
    /// Where the load goes.
    pub target: TargetUrl,
    /// Requests per second.
    pub rate: f64,
    /// How long the load runs.
    pub duration: Duration,
    /// Most requests in flight at once (each on its own HTTP/1.1 connection).
    pub connections: usize,
    /// Per-request timeout, connect included.
    pub timeout: Duration,
    /// Fault steps to run, if any.
    pub scenario: Option<Scenario>,
    /// The lab's control API (needed when the scenario has lab faults).
    pub control: Option<LabEndpoint>,
    /// A second counts as recovered when its p99 is at or under this; `None` derives
    /// it from the seconds before the first event (3 x their p99, at least 25 ms).
    pub recovery_p99: Option<Duration>,
}

impl DrillPlan {
    /// Default rate.
    pub const DEFAULT_RATE: f64 = 500.0;
    /// Default length without a scenario.
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);
    /// Default bound on requests in flight: enough for 500 req/s against a target
    /// that stalls for the whole default timeout.
    pub const DEFAULT_CONNECTIONS: usize = 1024;
    /// Default per-request timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// A plan with defaults; a scenario's own rate and duration win over them (the
    /// caller then applies explicit flags).
    pub fn new(target: TargetUrl, scenario: Option<Scenario>) -> DrillPlan {
        DrillPlan {
            target,
            rate: scenario
                .as_ref()
                .and_then(|s| s.rate)
                .unwrap_or(Self::DEFAULT_RATE),
            duration: scenario
                .as_ref()
                .and_then(|s| s.duration)
                .unwrap_or(Self::DEFAULT_DURATION),
            connections: Self::DEFAULT_CONNECTIONS,
            timeout: Self::DEFAULT_TIMEOUT,
            scenario,
            control: None,
            recovery_p99: None,
        }
    }

    /// Checks the plan before anything starts.
    pub fn validate(&self) -> Result<(), DrillError> {
        let bad = |m: String| Err(DrillError::BadInput(m));
        if !(self.rate > 0.0 && self.rate <= MAX_RATE) {
            return bad(format!(
                "--rate must be in (0, {MAX_RATE}], got {}",
                self.rate
            ));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad("--duration must be between 1ms and 24h".into());
        }
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            return bad(format!(
                "--connections must be in 1..={MAX_CONNECTIONS}, got {}",
                self.connections
            ));
        }
        if self.timeout.is_zero() {
            return bad("--timeout must be positive".into());
        }
        if (self.rate * self.duration.as_secs_f64()).round() < 1.0 {
            return bad("--rate x --duration is less than one request".into());
        }
        if let Some(s) = &self.scenario {
            if let Some(late) = s.steps.iter().find(|st| st.at >= self.duration) {
                return bad(format!(
                    "scenario {}: a step at {} falls after the run ends ({}); use a longer --duration",
                    s.name,
                    humantime::format_duration(late.at),
                    humantime::format_duration(self.duration)
                ));
            }
            if s.needs_lab() && self.control.is_none() {
                return Err(DrillError::NoLab {
                    scenario: s.name.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Runs a drill to the end. See [`run_until`].
pub async fn run(plan: DrillPlan, progress: Progress) -> Result<Report, DrillError> {
    run_until(plan, progress, std::future::pending()).await
}

/// Runs a drill until its schedule is done or `stop` resolves (Ctrl-C in the binary:
/// the report then covers what ran, with the rest counted as `unsent`). Afterwards
/// the scenario's cleanup actions run, and the report is built.
pub async fn run_until(
    plan: DrillPlan,
    progress: Progress,
    stop: impl Future<Output = ()>,
) -> Result<Report, DrillError> {
    plan.validate()?;
    let addr = plan.target.resolve(RESOLVE_TIMEOUT).await?;
    if let (Some(scenario), Some(control)) = (&plan.scenario, &plan.control) {
        if scenario.needs_lab() {
            check_lab(scenario, control).await?;
        }
    }
    let shape = LoadShape {
        rate: plan.rate,
        duration: plan.duration,
        connections: plan.connections,
        timeout: plan.timeout,
    };
    let live = Arc::new(LiveCounts::default());
    let load = OpenLoopLoad::new(
        ResolvedTarget {
            addr,
            host: plan.target.host_header(),
            path: plan.target.path().clone(),
        },
        &shape,
        Arc::clone(&live),
    );
    let target_text = plan.target.to_string();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now() + START_LEAD).to_string();
    let start = Instant::now() + START_LEAD;
    tracing::info!(target = %target_text, rate = plan.rate, duration = ?plan.duration,
        scenario = plan.scenario.as_ref().map(|s| s.name.as_str()), "drill starting");

    let log: Arc<Mutex<Vec<EventRecord>>> = Arc::default();
    let steps_task = plan.scenario.as_ref().map(|s| {
        tokio::spawn(steps::run_steps(
            s.steps.clone(),
            plan.control.clone(),
            target_text.clone(),
            start,
            Arc::clone(&log),
        ))
    });
    let progress_task = tokio::spawn(progress.clone().drive(
        Arc::clone(&live),
        plan.duration,
        start,
    ));

    let pacer = load.run(shape, start, stop).await;

    progress_task.abort();
    progress.finish();
    if let Some(task) = steps_task {
        if !task.is_finished() {
            tracing::warn!("the load ended before every scenario step ran; the rest are skipped");
            task.abort();
        }
        let _ = task.await;
    }
    if let Some(s) = &plan.scenario {
        for action in &s.cleanup {
            if let Err(e) = steps::perform(action, plan.control.as_ref(), &target_text).await {
                tracing::warn!(action = %action, error = %e, "drill cleanup step failed");
            }
        }
    }
    let events = log.lock().map(|l| l.clone()).unwrap_or_default();
    // Every request task recorded before returning its permit, so the timeline is
    // complete; a task may still hold its `Arc` for an instant, hence take, not unwrap.
    let mut timeline = {
        let mut guard = load.timeline.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *guard, timeline::Timeline::new(0))
    };
    let measured = plan.duration.min(pacer.send_window);
    timeline.pad_to(measured.as_secs_f64().ceil() as usize);
    let facts = RunFacts {
        scenario: plan
            .scenario
            .as_ref()
            .map(|s| (s.name.clone(), s.description.clone())),
        target: target_text,
        started_at,
        duration: plan.duration,
        rate: plan.rate,
        connections: plan.connections,
        timeout: plan.timeout,
        recovery_p99: plan.recovery_p99,
    };
    Ok(build(&facts, &pacer, &timeline, &events))
}

/// Before the load starts: the lab answers, and every fault target names something in
/// it (a scenario written for another topology fails here, not halfway through).
async fn check_lab(scenario: &Scenario, control: &LabEndpoint) -> Result<(), DrillError> {
    let status = control
        .status()
        .await
        .map_err(|reason| DrillError::Control {
            url: control.url(),
            reason,
        })?;
    let replicas: Vec<outcome::Answerer> = status
        .get("replicas")
        .and_then(|r| r.as_array())
        .map(|list| {
            list.iter()
                .map(|r| {
                    let field =
                        |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                    outcome::Answerer {
                        region: field("region"),
                        zone: field("zone"),
                        replica: field("name"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if replicas.is_empty() {
        // A status without replicas tells nothing to check against.
        return Ok(());
    }
    let actions = scenario
        .steps
        .iter()
        .map(|s| &s.action)
        .chain(&scenario.cleanup);
    for action in actions {
        if let StepAction::Fault(f) = action {
            if !replicas
                .iter()
                .any(|r| scenario::target_matches(&f.target, r))
            {
                let names: Vec<&str> = replicas.iter().map(|r| r.replica.as_str()).collect();
                return Err(DrillError::BadInput(format!(
                    "scenario {}: {} matches no replica of the running lab ({})",
                    scenario.name,
                    f.target,
                    names.join(", ")
                )));
            }
        }
    }
    Ok(())
}
