//! `geoha render`: the Kubernetes manifests, Bicep and CI workflow of a topology.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use geoha_render::{render, write_tree, RenderOptions};

use crate::exit::BadInput;

#[derive(Debug, Args)]
pub(crate) struct RenderArgs {
    /// Topology file [default: the built-in topology].
    topology: Option<PathBuf>,
    /// Topology file (same as the positional argument).
    #[arg(long = "config", value_name = "TOPOLOGY", conflicts_with = "topology")]
    config: Option<PathBuf>,
    /// Directory to write into (created if missing; each file is replaced atomically,
    /// files the rendering does not name are left alone).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Digest of the pushed image, sha256:<64 hex> [default: a placeholder of zeros
    /// that CI replaces].
    #[arg(long, value_name = "sha256:...")]
    image_digest: Option<String>,
}

pub(crate) fn run(mut args: RenderArgs) -> anyhow::Result<ExitCode> {
    if args.topology.is_none() {
        args.topology = args.config.take();
    }
    let topology = super::topology::load(args.topology.as_deref())?;
    let source = args.topology.as_deref().map_or_else(
        || "<built-in default>".to_string(),
        |p| p.display().to_string(),
    );
    let opts = RenderOptions {
        image_digest: args.image_digest,
    };
    // A topology Azure cannot run or a malformed digest is bad input (64); I/O is 1.
    let tree = render(&topology, &opts).map_err(|e| -> anyhow::Error {
        if e.is_bad_input() {
            BadInput(format!("{source}: {e}")).into()
        } else {
            e.into()
        }
    })?;
    write_tree(&tree, &args.out)
        .with_context(|| format!("cannot write the deployment into {}", args.out.display()))?;
    println!("wrote {} files to {}", tree.len(), args.out.display());
    Ok(ExitCode::SUCCESS)
}
