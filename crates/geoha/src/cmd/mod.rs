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

use tracing_subscriber::filter::Targets;

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
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let setting = ["GEOHA_LOG", "RUST_LOG"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().map(|v| (name, v)));
    let (filter, problem) = log_filter(setting);
    // Colours only on a terminal: logs piped to files stay plain text.
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Pretty => registry.with(layer.compact()).init(),
        LogFormat::Json => registry.with(layer.json()).init(),
    }
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

/// The log filter from `GEOHA_LOG` (or `RUST_LOG`): `target=level` directives such as
/// `info,geoha_frontdoor=debug`. `Targets` covers what people write there without
/// `EnvFilter`'s regex engine (a third of a megabyte in the image). A bad setting logs at
/// `info` and says why.
fn log_filter(setting: Option<(&str, String)>) -> (Targets, Option<String>) {
    let default = || Targets::new().with_default(tracing::Level::INFO);
    match setting {
        Some((_, text)) if text.trim().is_empty() => (default(), None),
        Some((name, text)) => match text.parse::<Targets>() {
            Ok(filter) => (filter, None),
            Err(err) => (
                default(),
                Some(format!(
                    "{name}={text:?} is not a log filter ({err}); logging at info"
                )),
            ),
        },
        None => (default(), None),
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

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn log_filters_take_target_directives_and_report_bad_ones() {
        let (f, problem) = log_filter(Some(("GEOHA_LOG", "warn,geoha_frontdoor=debug".into())));
        assert!(problem.is_none());
        assert!(f.would_enable("geoha_frontdoor::forward", &Level::DEBUG));
        assert!(!f.would_enable("hyper::proto", &Level::INFO));
        assert!(f.would_enable("hyper::proto", &Level::WARN));
        let (f, problem) = log_filter(Some(("GEOHA_LOG", "geoha=loud".into())));
        assert!(problem.unwrap().contains("GEOHA_LOG"));
        assert!(f.would_enable("anything", &Level::INFO));
        assert!(!f.would_enable("anything", &Level::DEBUG));
        let (f, problem) = log_filter(None);
        assert!(problem.is_none() && f.would_enable("x", &Level::INFO));
    }
}
