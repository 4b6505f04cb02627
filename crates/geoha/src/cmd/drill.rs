//! `geoha drill`: open-loop load against the lab (or any URL), scripted faults, and a
//! JSON / HTML / terminal report; `geoha drill compare A.json B.json`.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use geoha_drill::{
    compare, verdict, DrillError, DrillPlan, LabEndpoint, LabState, Objectives, Progress, Report,
    Scenario, TargetUrl, BUILTIN_NAMES,
};

use crate::exit::BadInput;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct DrillArgs {
    #[command(subcommand)]
    command: Option<DrillCommand>,
    /// A built-in scenario (zone-loss, region-loss, region-loss-and-return,
    /// replica-freeze, slow-region, flapping-replica, partition, error-burst) or a
    /// scenario file (TOML). Without one: steady load, no faults.
    scenario: Option<String>,
    /// Where the load goes [default: the running lab's front door].
    #[arg(long)]
    target: Option<String>,
    /// Requests per second [default: the scenario's, else 500].
    #[arg(long)]
    rate: Option<f64>,
    /// How long the load runs, e.g. 30s, 2m [default: the scenario's, else 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Most requests in flight (one connection each).
    #[arg(long, default_value_t = DrillPlan::DEFAULT_CONNECTIONS)]
    connections: usize,
    /// Per-request timeout, connect included.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Write the JSON report here (schema: crates/drill/schema/drill-report.schema.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Objective: at most N failed requests (exit 1 otherwise).
    #[arg(long)]
    max_failed: Option<u64>,
    /// Objective: every event recovers within DUR (exit 1 otherwise).
    #[arg(long, value_parser = humantime::parse_duration)]
    max_recovery: Option<Duration>,
    /// A second counts as recovered when its p99 is at or under DUR [default: 3x the
    /// p99 before the first fault, at least 25ms].
    #[arg(long, value_parser = humantime::parse_duration)]
    recovery_p99: Option<Duration>,
    /// The lab's control API [default: from the running lab's state file].
    #[arg(long)]
    control: Option<String>,
    /// Bearer token for --control.
    #[arg(long, env = "GEOHA_CONTROL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// List the built-in scenarios and exit.
    #[arg(long)]
    list: bool,
}

#[derive(Debug, Subcommand)]
enum DrillCommand {
    /// Show what got better or worse from a baseline report A to a report B.
    Compare {
        /// Baseline report (JSON).
        a: PathBuf,
        /// Candidate report (JSON).
        b: PathBuf,
    },
}

/// Bad input exits 64, anything else 1.
fn drill_error(e: DrillError) -> anyhow::Error {
    if e.is_bad_input() {
        BadInput(e.to_string()).into()
    } else {
        anyhow::Error::new(e)
    }
}

pub(crate) fn run(args: DrillArgs) -> anyhow::Result<ExitCode> {
    if let Some(DrillCommand::Compare { a, b }) = &args.command {
        let a = Report::read_file(a).map_err(|e| BadInput(e.to_string()))?;
        let b = Report::read_file(b).map_err(|e| BadInput(e.to_string()))?;
        print!("{}", compare(&a, &b));
        return Ok(ExitCode::SUCCESS);
    }
    if args.list {
        for name in BUILTIN_NAMES {
            let s = Scenario::builtin(name).expect("built-in");
            println!("{name:<24} {}", s.description);
        }
        return Ok(ExitCode::SUCCESS);
    }

    // Everything is read and validated before the runtime starts (blocking I/O here).
    let scenario = args
        .scenario
        .as_deref()
        .map(Scenario::resolve)
        .transpose()
        .map_err(drill_error)?;
    let state = match &args.control {
        Some(_) => None,
        None => LabState::read(&geoha_lab::state::state_dir()).map_err(drill_error)?,
    };
    let control = match (&args.control, &state) {
        (Some(url), _) => {
            Some(LabEndpoint::new(url, args.token.as_deref().unwrap_or("")).map_err(drill_error)?)
        }
        (None, Some(state)) => Some(state.endpoint().map_err(drill_error)?),
        (None, None) => None,
    };
    let target = match (&args.target, &state) {
        (Some(t), _) => t.clone(),
        (None, Some(state)) => state.frontdoor_url.clone(),
        (None, None) => {
            return Err(BadInput(
                "no --target URL and no running lab (start one with `geoha up`)".into(),
            )
            .into())
        }
    };
    let mut plan = DrillPlan::new(TargetUrl::parse(&target).map_err(drill_error)?, scenario);
    if let Some(rate) = args.rate {
        plan.rate = rate;
    }
    if let Some(duration) = args.duration {
        plan.duration = duration;
    }
    plan.connections = args.connections;
    plan.timeout = args.timeout;
    plan.control = control;
    plan.recovery_p99 = args.recovery_p99;
    plan.validate().map_err(drill_error)?;

    let progress = if args.quiet || !std::io::stderr().is_terminal() {
        Progress::hidden()
    } else {
        Progress::stderr()
    };
    let rt = super::runtime()?;
    let report = rt
        .block_on(geoha_drill::run_until(plan, progress, async {
            let _ = tokio::signal::ctrl_c().await;
        }))
        .map_err(drill_error)?;

    print!("{}", geoha_drill::report::summary::render(&report));
    if let Some(path) = &args.json {
        report
            .write_json_file(path)
            .context("writing the JSON report")?;
        println!("JSON report: {}", path.display());
    }
    if let Some(path) = &args.html {
        report
            .write_html_file(path)
            .context("writing the HTML report")?;
        println!("HTML report: {}", path.display());
    }
    let objectives = Objectives {
        max_failed: args.max_failed,
        max_recovery: args.max_recovery,
    };
    let verdict = verdict(&report, &objectives);
    if args.max_failed.is_some() || args.max_recovery.is_some() {
        println!("{verdict}");
    }
    Ok(if verdict.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
