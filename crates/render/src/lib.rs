//! `geoha render`: the real-cloud deployment of a topology — Kubernetes manifests
//! (kustomize base + one overlay per region), Bicep for the registry, the clusters and
//! Front Door, and a GitHub Actions workflow that builds once and rolls out region by
//! region behind a health gate.
//!
//! # Layout
//! - `plan` derives every name and number the outputs share (cluster names, ingress
//!   host names, replicas, registry login server, the pinned image) and refuses
//!   topologies Azure cannot run (zones outside 1–3, probe intervals Front Door rejects).
//! - `k8s` emits the Kubernetes objects as typed serde structs written as YAML.
//! - `bicep` emits `main.bicep`, its local modules and `main.parameters.json`.
//! - `workflow` emits `.github/workflows/deploy.yml` (written to `github/workflows/`).
//! - `tree` holds [`RenderedTree`] and [`write_tree`] (atomic writes, never outside
//!   the output directory).
//!
//! Invariant: rendering is a pure function of `(&Topology, &RenderOptions)`: no clock,
//! no environment, no I/O, so the built-in default's output is committed under
//! `deploy/` and a golden-file test proves it is reproduced byte for byte.
#![forbid(unsafe_code)]

mod bicep;
mod k8s;
mod plan;
mod tree;
mod workflow;

use geoha_topology::{Topology, TopologyError};

pub use k8s::{DRAIN_DEADLINE_SECONDS, DRAIN_DELAY_SECONDS, PRE_STOP_SLEEP_SECONDS};
pub use tree::{write_tree, RenderedTree};

/// The digest written when none is given: well-formed (so every tool accepts the
/// manifests) and obviously fake. CI replaces it with the digest it just pushed by
/// running `geoha render --image-digest sha256:...`.
pub const PLACEHOLDER_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// What the topology does not say about a rendering.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// `sha256:<64 hex>` of the pushed image; [`PLACEHOLDER_DIGEST`] when `None`.
    pub image_digest: Option<String>,
}

/// Why a topology could not be rendered, or a tree not written.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The topology itself is invalid.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The topology is valid for the lab but cannot be deployed to Azure as written.
    #[error("{key}: {message}")]
    Unsupported {
        /// Topology key, e.g. `frontdoor.probe.interval`.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// `--image-digest` is not `sha256:` followed by 64 lowercase hex digits.
    #[error("image digest {0:?} is not sha256:<64 lowercase hex digits>")]
    BadDigest(String),
    /// A tree entry would be written outside the output directory.
    #[error("refusing to write {path:?}: not a plain relative path inside the output directory")]
    UnsafePath {
        /// The offending relative path.
        path: String,
    },
    /// Writing the tree failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory being written.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Serializing an object failed (a bug: every emitted type serializes).
    #[error("cannot serialize {path}: {message}")]
    Serialize {
        /// The file being produced.
        path: String,
        /// The serializer's message.
        message: String,
    },
}

impl RenderError {
    /// True when the user's input is at fault (the topology or the digest): the CLI
    /// exits 64 for these and 1 for the rest (I/O).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            RenderError::Topology(_) | RenderError::Unsupported { .. } | RenderError::BadDigest(_)
        )
    }
}

/// Renders the whole deployment of `topology`: paths are relative to the output
/// directory (`deploy/` in this repository) and sorted, contents end with a newline.
pub fn render(topology: &Topology, opts: &RenderOptions) -> Result<RenderedTree, RenderError> {
    let plan = plan::Plan::new(topology, opts)?;
    let mut tree = RenderedTree::default();
    tree.push("README.md", readme(&plan));
    tree.push(
        "topology.toml",
        format!(
            "# {}\n# The topology this tree was rendered from; the workflow renders from it.\n{}",
            plan.banner(),
            topology.to_toml_string()
        ),
    );
    k8s::render(&plan, &mut tree)?;
    bicep::render(&plan, &mut tree)?;
    workflow::render(&plan, &mut tree);
    tree.sort();
    Ok(tree)
}

/// Renders `topology` with the placeholder digest and writes it under `out` (the
/// shape `ARCHITECTURE.md` names); returns how many files were written.
pub fn write(topology: &Topology, out: &std::path::Path) -> Result<usize, RenderError> {
    let tree = render(topology, &RenderOptions::default())?;
    write_tree(&tree, out)?;
    Ok(tree.len())
}

fn readme(plan: &plan::Plan<'_>) -> String {
    let regions: Vec<String> = plan
        .regions
        .iter()
        .map(|r| format!("- `k8s/overlays/{}`: cluster `{}`", r.name, r.cluster))
        .collect();
    format!(
        "# Deployment of environment `{env}` (generated)\n\
         \n\
         Written by `geoha render` from `topology.toml`; edit the topology and render\n\
         again rather than editing these files. How to deploy, step by step:\n\
         `docs/deploy.md`.\n\
         \n\
         Image (every region pulls through the registry's one login server, and Azure\n\
         serves each pull from the nearest geo-replica):\n\
         \n\
         \x20   {image}\n\
         \n\
         - `bicep/main.bicep` + `bicep/main.parameters.json`: resource group, registry,\n\
         \x20 one AKS cluster per region, Front Door.\n\
         - `k8s/base`: the API (Deployment, Service, PodDisruptionBudget, HPA, Ingress).\n\
         {regions}\n\
         - `github/workflows/deploy.yml`: copy to `.github/workflows/`.\n",
        env = plan.environment,
        image = plan.image_ref(),
        regions = regions.join("\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_and_digest_problems_are_bad_input_and_io_is_not() {
        let bad_digest = render(
            &Topology::builtin_default(),
            &RenderOptions {
                image_digest: Some("sha256:abc".into()),
            },
        )
        .unwrap_err();
        assert!(bad_digest.is_bad_input(), "{bad_digest}");
        let mut t = Topology::builtin_default();
        t.regions.clear();
        let invalid = render(&t, &RenderOptions::default()).unwrap_err();
        assert!(invalid.is_bad_input(), "{invalid}");
        let io = RenderError::Io {
            path: "x".into(),
            source: std::io::Error::other("disk full"),
        };
        assert!(!io.is_bad_input());
    }

    #[test]
    fn write_renders_and_writes_the_whole_tree() {
        let dir = tempfile::tempdir().unwrap();
        let n = write(&Topology::builtin_default(), dir.path()).unwrap();
        assert_eq!(
            n,
            render(&Topology::builtin_default(), &RenderOptions::default())
                .unwrap()
                .len()
        );
        assert!(dir
            .path()
            .join("k8s/overlays/eastus2/kustomization.yaml")
            .is_file());
        assert!(dir.path().join("bicep/main.bicep").is_file());
    }
}
