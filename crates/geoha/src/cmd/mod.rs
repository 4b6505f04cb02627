//! One module per subcommand: each turns its clap arguments into a library config,
//! wires sockets and signals, and returns an exit code.

pub(crate) mod api;

use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat};

/// Runs the chosen subcommand.
pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    init_logs(cli.log_format);
    match cli.command {
        Command::Api(args) => api::run(args),
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
