//! `geoha topology check|show` and `geoha import`: the topology file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use geoha_topology::Topology;

use crate::exit::BadInput;

/// The topology in `path`, or the built-in default; a bad file is the user's input (64).
pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Topology> {
    match path {
        Some(p) => Topology::from_file(p).map_err(|e| BadInput(e.to_string()).into()),
        None => Ok(Topology::builtin_default()),
    }
}

#[derive(Debug, Args)]
pub(crate) struct TopologyArgs {
    #[command(subcommand)]
    command: TopologyCommand,
}

#[derive(Debug, Subcommand)]
enum TopologyCommand {
    /// Validate a topology file; every problem is listed with file, line and key.
    Check {
        /// The topology file.
        file: PathBuf,
    },
    /// Print a topology with every default filled in [default: the built-in one].
    Show {
        /// The topology file.
        file: Option<PathBuf>,
    },
}

pub(crate) fn run(args: TopologyArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TopologyCommand::Check { file } => {
            let t = load(Some(&file))?;
            println!(
                "{}: ok: environment {}, {} regions, {} replicas, front door {}",
                file.display(),
                t.environment,
                t.regions.len(),
                t.replica_count(),
                t.frontdoor.listen
            );
        }
        TopologyCommand::Show { file } => {
            let t = load(file.as_deref())?;
            print!("{}", t.to_toml_string());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The reference's `variables.json`.
    file: PathBuf,
    /// Write the topology here [default: stdout].
    #[arg(short, long)]
    output: Option<PathBuf>,
}

pub(crate) fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("{}: cannot read", args.file.display()))
        .map_err(|e| BadInput(format!("{e:#}")))?;
    let imported =
        geoha_topology::import::from_variables_json(&text, &args.file.display().to_string())
            .map_err(|e| BadInput(e.to_string()))?;
    for note in &imported.notes {
        eprintln!("note: {note}");
    }
    let body = format!(
        "# Imported from {} by `geoha import`; Front Door settings are the reference's.\n{}",
        args.file.display(),
        imported.topology.to_toml_string()
    );
    match args.output {
        Some(out) => {
            std::fs::write(&out, body)
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!("wrote {}", out.display());
        }
        None => print!("{body}"),
    }
    Ok(ExitCode::SUCCESS)
}
