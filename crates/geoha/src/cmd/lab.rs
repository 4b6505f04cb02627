//! `geoha up`, `geoha status`, `geoha fault`, `geoha down`: the local multi-region lab.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use geoha_lab::fault::{FaultAction, FaultRequest};
use geoha_lab::link::PartitionMode;
use geoha_lab::report::StatusReport;
use geoha_lab::state::{state_dir, LabState};
use geoha_lab::{Lab, LabOptions};

use crate::exit::BadInput;

/// Control API calls are loopback calls: a short bound.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Topology file [default: the built-in reference topology].
    topology: Option<PathBuf>,
    /// Front door listen address [default: the topology's, 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Run replicas as containers (Docker) instead of processes (also
    /// `runtime = "containers"` in the topology).
    #[arg(long)]
    containers: bool,
    /// Container mode: the geoha image to run [default: built from this executable
    /// with the project's Dockerfile, which needs a static geoha; scripts/image.sh
    /// builds one as geoha:dev].
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    /// Control API address (loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    control: SocketAddr,
    /// Replica port: 0 picks a free port per replica (used by tests running labs in
    /// parallel); the default keeps replicas on :8080 of their own address.
    #[arg(long, hide = true)]
    replica_port: Option<u16>,
    /// How long to wait for every replica to be healthy behind the front door.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    ready_timeout: Duration,
}

pub(crate) fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let topology = crate::cmd::topology::load(args.topology.as_deref())?;
    let containers = args.containers || topology.runtime == geoha_topology::Runtime::Containers;
    if args.image.is_some() && !containers {
        bail!(BadInput("--image needs --containers".into()));
    }
    let mut options = geoha_lab::plan::PlanOptions::default();
    if let Some(port) = args.replica_port {
        options.replica_port = port;
    }
    if let Some(listen) = args.listen {
        options.frontdoor_listen = Some(listen);
    }
    let plan = geoha_lab::plan::LabPlan::from_topology(&topology, &options)
        .map_err(|e| BadInput(format!("topology: {e}")))?;
    let exe = std::env::current_exe().context("cannot find the geoha executable")?;
    let rt = super::runtime()?;
    rt.block_on(async move {
        // Installed first: a signal while the lab starts stops it once it has started.
        let stop_signal = crate::signals::shutdown();
        let started = std::time::Instant::now();
        let container_image = if containers {
            Some(container_image(args.image, &exe, &topology).await?)
        } else {
            None
        };
        let lab = Lab::start(
            plan,
            LabOptions {
                exe,
                control_listen: args.control,
                state_dir: state_dir(),
                container_image,
            },
        )
        .await?;
        let healthy = lab.wait_healthy(args.ready_timeout).await;
        let report = lab.status().await;
        print_table(&report);
        match healthy {
            Ok(_) => println!(
                "\nall {} replicas healthy behind the front door in {:.2}s",
                report.replicas.len(),
                started.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("\nwarning: {e}"),
        }
        println!(
            "try:   curl http://{}/default/\nstatus: geoha status   faults: geoha fault kill region:{}   stop: Ctrl-C or geoha down",
            lab.frontdoor_addr(),
            report.regions.first().map(|r| r.name.as_str()).unwrap_or("NAME"),
        );
        if let Some(reg) = report.registries.first() {
            println!(
                "push:  docker login {} -u {} --password-stdin < {}",
                reg.url.trim_start_matches("http://"),
                geoha_lab::registries::PUSH_USER,
                lab.state_dir()
                    .join("registry")
                    .join(geoha_lab::registries::PUSH_PASSWORD_FILE)
                    .display()
            );
        }
        tracing::info!(control = %lab.control_url(), "lab running");
        tokio::select! {
            () = stop_signal => {}
            () = lab.stop_requested() => tracing::info!("stop requested through the control API"),
        }
        eprintln!("stopping: draining replicas...");
        lab.shutdown().await;
        eprintln!("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The image replicas run in container mode: `--image`, else one built from this
/// executable (which must be static to run FROM scratch).
async fn container_image(
    image: Option<String>,
    exe: &std::path::Path,
    topology: &geoha_topology::Topology,
) -> anyhow::Result<String> {
    use geoha_lab::containers::{build_image, check_docker, ContainerError};
    check_docker().await.map_err(|e| BadInput(e.to_string()))?;
    if let Some(image) = image {
        return Ok(image);
    }
    let tag = format!("{}:{}", topology.image.name, topology.image.version);
    eprintln!("building image {tag} from {} ...", exe.display());
    match build_image(exe, &tag).await {
        Ok(tag) => Ok(tag),
        Err(e @ ContainerError::Image(_)) => Err(BadInput(e.to_string()).into()),
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Print the JSON document (for scripts).
    #[arg(long)]
    json: bool,
    /// Print once even on a terminal (default: refresh every second on a terminal).
    #[arg(long)]
    once: bool,
    /// Control API URL [default: from the state file].
    #[arg(long)]
    control: Option<String>,
    /// Control API token [default: from the state file].
    #[arg(long, env = "GEOHA_CONTROL_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// Where the control API is and its token: flags first, then the state file.
fn control_target(
    control: Option<String>,
    token: Option<String>,
) -> anyhow::Result<(SocketAddr, String)> {
    let state = LabState::read(&state_dir()).map_err(|e| anyhow::anyhow!(e))?;
    let url = match (control, &state) {
        (Some(u), _) => u,
        (None, Some(s)) => s.control_url.clone(),
        (None, None) => bail!(
            "no running lab found (no {}); start one with `geoha up`, or pass --control URL",
            geoha_lab::state::state_file(&state_dir()).display()
        ),
    };
    let token = token.or_else(|| state.map(|s| s.token)).unwrap_or_default();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse::<SocketAddr>()
        .map_err(|_| BadInput(format!("--control: {url:?} is not http://IP:PORT")))?;
    Ok((addr, token))
}

/// One control API call; the answer as JSON (`null` when it is not JSON).
async fn control_call(
    addr: SocketAddr,
    token: &str,
    method: http::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> anyhow::Result<(http::StatusCode, serde_json::Value)> {
    let (status, body) =
        geoha_lab::admin_client::call(addr, method, path, Some(token), body, CONTROL_TIMEOUT)
            .await
            .context("the lab's control API did not answer (is `geoha up` still running?)")?;
    Ok((status, serde_json::from_slice(&body).unwrap_or_default()))
}

async fn fetch_status(addr: SocketAddr, token: &str) -> anyhow::Result<StatusReport> {
    let (status, answer) = control_call(addr, token, http::Method::GET, "/v1/status", None).await?;
    if !status.is_success() {
        bail!("control API answered {status}: {answer}");
    }
    serde_json::from_value(answer).context("unexpected status document")
}

pub(crate) fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let (addr, token) = control_target(args.control, args.token)?;
    let rt = super::runtime()?;
    rt.block_on(async move {
        let refresh = !args.json && !args.once && std::io::stdout().is_terminal();
        loop {
            let report = fetch_status(addr, &token).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(ExitCode::SUCCESS);
            }
            if refresh {
                // Clear the screen and home the cursor: a refreshing view.
                print!("\x1b[2J\x1b[H");
            }
            print_table(&report);
            if !refresh {
                return Ok(ExitCode::SUCCESS);
            }
            println!("\n(refreshing every second; Ctrl-C to quit)");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}

fn print_table(report: &StatusReport) {
    println!(
        "environment {}   front door http://{}   (admin {}{})",
        report.environment,
        report.frontdoor.listen,
        report.frontdoor.admin,
        if report.frontdoor.reachable {
            ""
        } else {
            ", NOT ANSWERING"
        }
    );
    println!();
    println!(
        "{:<12} {:<6} {:>4} {:>6} {:>9} {:>7}",
        "REGION", "ROLE", "PRIO", "WEIGHT", "HEALTHY", "SHARE"
    );
    for r in &report.regions {
        println!(
            "{:<12} {:<6} {:>4} {:>6} {:>9} {:>6.0}%",
            r.name,
            r.role,
            r.priority,
            r.weight,
            format!("{}/{}", r.healthy, r.replicas),
            r.share * 100.0
        );
    }
    println!();
    println!(
        "{:<18} {:<10} {:<5} {:<20} {:<8} {:<11} {:>6} {:>8} {:>6}  FAULTS",
        "REPLICA", "REGION", "ZONE", "ADDRESS", "HEALTH", "STATE", "SHARE", "REQUESTS", "RESTARTS"
    );
    for r in &report.replicas {
        let health = if r.ejected {
            "ejected"
        } else if r.healthy {
            "healthy"
        } else {
            "down"
        };
        println!(
            "{:<18} {:<10} {:<5} {:<20} {:<8} {:<11} {:>5.0}% {:>8} {:>8}  {}",
            r.name,
            r.region,
            r.zone,
            r.addr,
            health,
            r.state,
            r.share * 100.0,
            r.requests,
            r.restarts,
            r.faults.join(", ")
        );
    }
    if !report.registries.is_empty() {
        println!();
        println!("{:<12} {:<26} {:<8}  FAULTS", "REGISTRY", "URL", "STATE");
        for r in &report.registries {
            println!(
                "{:<12} {:<26} {:<8}  {}",
                r.region,
                r.url,
                if r.up { "serving" } else { "down" },
                r.faults.join(", ")
            );
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct FaultArgs {
    /// kill | freeze | thaw | slow | loss | partition | error-rate | heal
    action: String,
    /// replica:NAME | zone:REGION-ZONE | region:NAME | registry:REGION
    target: String,
    /// The share for `error-rate` and `loss` (0..1), e.g. `geoha fault error-rate region:x 0.3`.
    value: Option<f64>,
    /// `slow`: added latency, e.g. 200ms.
    #[arg(long, value_parser = humantime::parse_duration)]
    latency: Option<Duration>,
    /// `slow`: uniform jitter on top of the latency.
    #[arg(long, value_parser = humantime::parse_duration)]
    jitter: Option<Duration>,
    /// `error-rate`/`loss`: the share (0..1), same as VALUE.
    #[arg(long)]
    rate: Option<f64>,
    /// `kill`: keep it down until `heal`.
    #[arg(long)]
    stay_down: bool,
    /// `kill`: restart after this long.
    #[arg(long, value_parser = humantime::parse_duration)]
    restart_after: Option<Duration>,
    /// `partition`: blackhole (accept, never answer; default) or refuse.
    #[arg(long)]
    mode: Option<String>,
    /// Control API URL [default: from the state file].
    #[arg(long)]
    control: Option<String>,
    /// Control API token [default: from the state file].
    #[arg(long, env = "GEOHA_CONTROL_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub(crate) fn fault(args: FaultArgs) -> anyhow::Result<ExitCode> {
    let action: FaultAction = args.action.parse().map_err(BadInput)?;
    let share = args.rate.or(args.value);
    let mode = match args.mode.as_deref() {
        None => None,
        Some("blackhole") => Some(PartitionMode::Blackhole),
        Some("refuse") => Some(PartitionMode::Refuse),
        Some(m) => bail!(BadInput(format!(
            "--mode: {m:?} is not blackhole or refuse"
        ))),
    };
    let req = FaultRequest {
        action,
        target: args.target.clone(),
        latency_ms: args.latency.map(|d| d.as_millis() as u64),
        jitter_ms: args.jitter.map(|d| d.as_millis() as u64),
        loss: (action == FaultAction::Loss).then_some(share).flatten(),
        rate: (action == FaultAction::ErrorRate)
            .then_some(share)
            .flatten(),
        stay_down: args.stay_down.then_some(true),
        restart_after_ms: args.restart_after.map(|d| d.as_millis() as u64),
        mode,
    };
    // Validate here too, so a typo exits 64 before any call.
    geoha_lab::fault::validate(&req).map_err(BadInput)?;
    let (addr, token) = control_target(args.control, args.token)?;
    let rt = super::runtime()?;
    rt.block_on(async move {
        let (status, answer) = control_call(
            addr,
            &token,
            http::Method::POST,
            "/v1/faults",
            Some(serde_json::to_vec(&req)?),
        )
        .await?;
        if status.is_success() {
            let names: Vec<String> = answer["applied"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            println!("{} {}: {}", args.action, args.target, names.join(", "));
            Ok(ExitCode::SUCCESS)
        } else if status.is_client_error() {
            bail!(BadInput(
                answer["error"].as_str().unwrap_or("rejected").to_string()
            ))
        } else {
            bail!("control API answered {status}")
        }
    })
}

#[derive(Debug, Args)]
pub(crate) struct DownArgs {
    /// Control API URL [default: from the state file].
    #[arg(long)]
    control: Option<String>,
    /// Control API token [default: from the state file].
    #[arg(long, env = "GEOHA_CONTROL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How long to wait for the lab to stop.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    wait: Duration,
}

pub(crate) fn down(args: DownArgs) -> anyhow::Result<ExitCode> {
    let state = LabState::read(&state_dir()).map_err(|e| anyhow::anyhow!(e))?;
    let (addr, token) = control_target(args.control, args.token)?;
    let rt = super::runtime()?;
    rt.block_on(async move {
        let (status, _) =
            control_call(addr, &token, http::Method::POST, "/v1/shutdown", None).await?;
        if !status.is_success() {
            bail!("control API answered {status}");
        }
        if let Some(s) = state {
            let deadline = tokio::time::Instant::now() + args.wait;
            while s.is_alive() {
                if tokio::time::Instant::now() > deadline {
                    bail!(
                        "the lab (pid {}) did not stop within {:?}",
                        s.pid,
                        args.wait
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        println!("lab stopped");
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    /// The version label the new replicas report (and the image tag pushed).
    #[arg(long)]
    version: String,
    /// Process mode: the executable the new replicas run [default: the current one].
    #[arg(long, value_name = "PATH", conflicts_with = "image")]
    binary: Option<PathBuf>,
    /// Container mode: the image the new replicas run [default: the current one].
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    /// How long a new replica may take to become ready.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    ready_timeout: Duration,
    /// How long each new replica's live traffic is watched before the next step.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    bake: Duration,
    /// Largest share of failed tries on a new replica during its bake (0..1).
    #[arg(long, default_value_t = 0.01)]
    max_error_rate: f64,
    /// Largest p99 time to response headers of a new replica's answers during its bake.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    max_p99: Duration,
    /// Control API URL [default: from the state file].
    #[arg(long)]
    control: Option<String>,
    /// Control API token [default: from the state file].
    #[arg(long, env = "GEOHA_CONTROL_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub(crate) fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let binary = match &args.binary {
        Some(b) => Some(
            std::fs::canonicalize(b)
                .map_err(|e| BadInput(format!("--binary {}: {e}", b.display())))?,
        ),
        None => None,
    };
    let req = geoha_lab::rollout::DeployRequest {
        version: args.version.clone(),
        binary,
        image: args.image.clone(),
        ready_timeout_ms: args.ready_timeout.as_millis() as u64,
        bake_ms: args.bake.as_millis() as u64,
        max_error_rate: args.max_error_rate,
        max_p99_ms: args.max_p99.as_millis().min(u128::from(u64::MAX)) as u64,
    };
    req.validate().map_err(BadInput)?;
    let (addr, token) = control_target(args.control, args.token)?;
    let rt = super::runtime()?;
    rt.block_on(async move {
        let (status, answer) = control_call(
            addr,
            &token,
            http::Method::POST,
            "/v1/deploy",
            Some(serde_json::to_vec(&req)?),
        )
        .await?;
        if status == http::StatusCode::BAD_REQUEST {
            bail!(BadInput(
                answer["error"].as_str().unwrap_or("rejected").to_string()
            ));
        }
        if !status.is_success() {
            bail!(
                "control API answered {status}: {}",
                answer["error"].as_str().unwrap_or("")
            );
        }
        println!(
            "deploying version {} (region by region, one replica at a time)",
            req.version
        );
        let mut shown = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (status, answer) =
                control_call(addr, &token, http::Method::GET, "/v1/deploy", None).await?;
            if !status.is_success() {
                bail!("control API answered {status}");
            }
            let record: geoha_lab::rollout::RolloutRecord =
                serde_json::from_value(answer).context("unexpected rollout record")?;
            for s in record.steps.iter().skip(shown) {
                println!(
                    "{:>8.2}s  {:<18} {:<14} {}",
                    s.at_s, s.replica, s.action, s.detail
                );
            }
            shown = record.steps.len();
            use geoha_lab::rollout::RolloutState;
            match record.state {
                RolloutState::Running => continue,
                RolloutState::Succeeded => {
                    println!(
                        "deployed {} in {:.1}s",
                        record.version,
                        record.duration_s.unwrap_or_default()
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                state => {
                    eprintln!(
                        "rollout of {} stopped ({}): {}",
                        record.version,
                        serde_json::to_value(state)?.as_str().unwrap_or("failed"),
                        record.reason.unwrap_or_default()
                    );
                    return Ok(ExitCode::from(1));
                }
            }
        }
    })
}
