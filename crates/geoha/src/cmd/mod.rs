//! One module per subcommand: each turns its clap arguments into a library config,
//! wires sockets and signals, and returns an exit code.

pub(crate) mod api;
pub(crate) mod drill;
pub(crate) mod frontdoor;
pub(crate) mod lab;
pub(crate) mod registry;
pub(crate) mod render;
pub(crate) mod topology;

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat};

/// Runs the chosen subcommand.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    die_with_parent();
    init_logs(cli.log_format);
    match cli.command {
        Command::Api(args) => api::run(args),
        Command::Registry(args) => registry::run(args),
        Command::Frontdoor(args) => frontdoor::run(args),
        Command::Drill(args) => drill::run(args),
        Command::Up(args) => lab::up(args),
        Command::Down(args) => lab::down(args),
        Command::Status(args) => lab::status(args),
        Command::Fault(args) => lab::fault(args),
        Command::Deploy(args) => lab::deploy(args),
        Command::Topology(args) => topology::run(args),
        Command::Render(args) => render::run(args),
        Command::Import(args) => topology::import(args),
    }
}

fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_env("GEOHA_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.compact().init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// A multi-threaded runtime sized for this machine.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Processes started by `geoha up` carry `GEOHA_PARENT_PID`: they ask the kernel for
/// SIGKILL when that parent dies, so no replica outlives a SIGKILLed lab. The check of
/// the parent's PID after `prctl` closes the race where the parent died first.
fn die_with_parent() {
    let Some(parent) = std::env::var("GEOHA_PARENT_PID")
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return;
    };
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    if nix::unistd::getppid().as_raw() != parent {
        eprintln!("geoha: parent {parent} is gone; exiting");
        std::process::exit(1);
    }
}
