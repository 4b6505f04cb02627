//! `geoha registry`: one OCI registry replica; `geoha registry gc`: garbage collection.
//!
//! Both forms of the command-line contract work: `--config FILE` alone (everything in
//! the file), or `--listen ADDR --data DIR [--name REPLICA] [--peer URL]...` with an
//! optional `--config FILE` whose values the flags override.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use geoha_registry::{Config, Peer, RegistryError};

use crate::exit::BadInput;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RegistryArgs {
    #[command(subcommand)]
    action: Option<RegistryAction>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum RegistryAction {
    /// Remove unreferenced blobs and abandoned uploads older than the grace period.
    Gc(GcArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Registry config (TOML; see docs/registry.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on [default: the config's `listen`, else 127.0.0.1:5000].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Storage directory (overrides the config's `storage`).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// This replica's id (overrides `replica_id`) [default: registry].
    #[arg(long, value_name = "REPLICA")]
    name: Option<String>,
    /// A peer replica, `ID=http://host:port` or just the URL; repeat for each peer.
    #[arg(long = "peer", value_name = "URL")]
    peers: Vec<String>,
}

#[derive(Debug, Args)]
struct GcArgs {
    /// Registry config whose `storage` is collected.
    #[arg(long, value_name = "FILE", required_unless_present = "data")]
    config: Option<PathBuf>,
    /// Storage directory (instead of, or overriding, the config's).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Keep anything younger than this, so in-flight pushes are never collected.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// Report what would be removed, remove nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) fn run(args: RegistryArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(RegistryAction::Gc(gc)) => run_gc(gc),
        None => serve(args.serve),
    }
}

/// Reads and validates the config file; its errors name file, line and key (exit 64).
fn load(path: &Path) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BadInput(format!("{}: cannot read: {e}", path.display())))?;
    Ok(Config::from_toml_str(&text, path).map_err(|e| BadInput(e.to_string()))?)
}

fn into_config(args: ServeArgs) -> anyhow::Result<Config> {
    let mut cfg = match &args.config {
        Some(path) => load(path)?,
        None => {
            let data = args.data.clone().ok_or_else(|| {
                BadInput("geoha registry: give --config FILE or --data DIR".to_owned())
            })?;
            Config::new(
                args.name.clone().unwrap_or_else(|| "registry".to_owned()),
                data,
            )
        }
    };
    if let Some(listen) = args.listen {
        cfg.listen = listen;
    }
    if let Some(data) = args.data {
        cfg.storage = data;
    }
    if let Some(name) = args.name {
        cfg.replica_id = name;
    }
    for p in args.peers {
        let (id, url) = match p.split_once('=') {
            Some((id, url)) => (id.to_owned(), url.to_owned()),
            None => {
                let id = p
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    .replace([':', '/'], "-");
                (id, p.clone())
            }
        };
        let url = url
            .try_into()
            .map_err(|e: String| BadInput(format!("--peer {p}: {e}")))?;
        cfg.peers.push(Peer { id, url });
    }
    // Re-validate after the overrides (ids, duplicate peers).
    cfg.validate(Path::new("<command line>"))
        .map_err(|e| BadInput(e.to_string()))?;
    Ok(cfg)
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let cfg = into_config(args)?;
    let rt = super::runtime()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.listen))?;
        match geoha_registry::run(Arc::new(cfg), listener, crate::signals::shutdown()).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            // A config that parses but cannot be used (htpasswd missing or malformed) is
            // the user's input: 64.
            Err(e @ (RegistryError::Config { .. } | RegistryError::Htpasswd { .. })) => {
                Err(BadInput(e.to_string()).into())
            }
            Err(
                e @ RegistryError::Io {
                    what: "reading htpasswd",
                    ..
                },
            ) => Err(BadInput(e.to_string()).into()),
            Err(e) => Err(anyhow::Error::new(e).context("registry stopped")),
        }
    })
}

fn run_gc(args: GcArgs) -> anyhow::Result<ExitCode> {
    let storage = match (&args.data, &args.config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => load(c)?.storage,
        (None, None) => return Err(BadInput("give --config FILE or --data DIR".to_owned()).into()),
    };
    let report = if args.dry_run {
        geoha_registry::gc_plan(&storage, args.grace)
    } else {
        geoha_registry::gc(&storage, args.grace)
    }
    .with_context(|| format!("collecting garbage in {}", storage.display()))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}
