//! The topology file: one description of the system (environment, regions, zones,
//! replicas, routing, probes, registry replicas, image) that the lab runs, the renderer
//! deploys and the drill measures. The counterpart of the reference's `variables.json`.
//!
//! - [`Topology::from_toml_str`] parses strictly (unknown keys are errors) and validates;
//!   every problem names the file, line, column and key, and all are reported at once.
//! - [`Topology::builtin_default`] mirrors the reference (dev, eastus2 green, centralus
//!   blue, three zones each, priority 1 weight 50) with a probe fast enough to watch.
//! - [`Topology::azure_reference`] is the reference's own Front Door settings.
//! - [`import::from_variables_json`] converts the reference's `variables.json`.
//!
//! Invariant: a `Topology` returned by any constructor here has passed [`Topology::validate`].
#![forbid(unsafe_code)]

mod error;
pub mod import;
mod locate;
mod validate;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::{Problem, TopologyError};

/// The whole system, as the user described it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Environment name, e.g. `dev` (lowercase letters, digits, `-`).
    pub environment: String,
    /// How the lab runs replicas: OS processes (default) or containers.
    #[serde(default)]
    pub runtime: Runtime,
    /// Azure resource group for rendered infrastructure [default: `rg-geoha-<environment>`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    /// The API image.
    #[serde(default)]
    pub image: ImageSpec,
    /// The global router.
    #[serde(default)]
    pub frontdoor: FrontDoorSpec,
    /// The geo-replicated registry.
    #[serde(default)]
    pub registry: RegistrySpec,
    /// Regions, in order (the first is the primary for pushes).
    #[serde(rename = "region")]
    pub regions: Vec<RegionSpec>,
}

/// Process or container mode for the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// Every replica is an OS process on its own loopback address.
    #[default]
    Processes,
    /// Every replica is a container pulled from its region's registry.
    Containers,
}

/// The API image every region runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Repository name, e.g. `geoha-api` (the reference's `microserviceApiImageName`).
    #[serde(default = "default_image_name")]
    pub name: String,
    /// Version label the replicas report and the tag pushed.
    #[serde(default = "default_version")]
    pub version: String,
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec {
            name: default_image_name(),
            version: default_version(),
        }
    }
}

/// The global router (Azure Front Door in the cloud, `geoha frontdoor` in the lab).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontDoorSpec {
    /// Front Door profile name in the cloud (the reference's `frontDoor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where the lab's front door listens.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Wait for an origin's response headers (retries included); then 504.
    #[serde(default = "default_origin_timeout", with = "humantime_serde")]
    pub origin_response_timeout: Duration,
    /// Cookie-based session affinity.
    #[serde(default)]
    pub session_affinity: bool,
    /// Health probe.
    #[serde(default)]
    pub probe: ProbeSpec,
}

impl Default for FrontDoorSpec {
    fn default() -> Self {
        FrontDoorSpec {
            name: None,
            listen: default_listen(),
            origin_response_timeout: default_origin_timeout(),
            session_affinity: false,
            probe: ProbeSpec::default(),
        }
    }
}

/// Probe method: Front Door allows HEAD and GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ProbeMethod {
    /// `HEAD` (the reference's choice: no body to transfer).
    #[default]
    #[serde(rename = "HEAD")]
    Head,
    /// `GET`.
    #[serde(rename = "GET")]
    Get,
}

impl ProbeMethod {
    /// The method as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMethod::Head => "HEAD",
            ProbeMethod::Get => "GET",
        }
    }
}

/// Front Door's health probe settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// Path probed on every origin.
    #[serde(default = "default_probe_path")]
    pub path: String,
    /// `HEAD` or `GET`.
    #[serde(default)]
    pub method: ProbeMethod,
    /// Time between probes of one origin.
    #[serde(default = "default_probe_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Probes remembered per origin.
    #[serde(default = "default_sample_size")]
    pub sample_size: u32,
    /// Successful probes among them for the origin to count as healthy.
    #[serde(default = "default_samples_required")]
    pub successful_samples_required: u32,
    /// Latency band: origins within the fastest probe latency plus this share traffic.
    #[serde(default)]
    pub additional_latency_ms: u32,
}

impl Default for ProbeSpec {
    fn default() -> Self {
        ProbeSpec {
            path: default_probe_path(),
            method: ProbeMethod::Head,
            interval: default_probe_interval(),
            sample_size: default_sample_size(),
            successful_samples_required: default_samples_required(),
            additional_latency_ms: 0,
        }
    }
}

/// The geo-replicated registry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySpec {
    /// Registry name in the cloud (the reference's `containerRegistryName`; 5–50
    /// alphanumerics) [default: `geoha<environment>acr` without dashes].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Regions holding a replica [default: every region].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
}

/// One region: a cluster across zones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSpec {
    /// Azure location name, e.g. `eastus2` (lowercase letters, digits, `-`).
    pub name: String,
    /// Role label, e.g. `green` or `blue`.
    #[serde(default)]
    pub role: String,
    /// Availability zones [default: `["1", "2", "3"]`].
    #[serde(default = "default_zones")]
    pub zones: Vec<String>,
    /// API replicas in each zone.
    #[serde(default = "default_replicas_per_zone")]
    pub replicas_per_zone: u32,
    /// Front Door priority of this region's origin (1–5, lower first).
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Front Door weight of this region's origin (1–1000).
    #[serde(default = "default_weight")]
    pub weight: u16,
    /// AKS cluster name [default: `aks-<environment>-<role or name>`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
}

fn default_image_name() -> String {
    "geoha-api".into()
}
fn default_version() -> String {
    env!("CARGO_PKG_VERSION").into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_origin_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_probe_path() -> String {
    "/".into()
}
fn default_probe_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_sample_size() -> u32 {
    4
}
fn default_samples_required() -> u32 {
    2
}
fn default_zones() -> Vec<String> {
    vec!["1".into(), "2".into(), "3".into()]
}
fn default_replicas_per_zone() -> u32 {
    1
}
fn default_priority() -> u8 {
    1
}
fn default_weight() -> u16 {
    50
}

impl Topology {
    /// Parses and validates a topology; `file` names the source in error messages.
    pub fn from_toml_str(text: &str, file: &str) -> Result<Topology, TopologyError> {
        let topology: Topology = toml::from_str(text).map_err(|e| TopologyError::Invalid {
            file: file.to_string(),
            problems: vec![error::from_toml_error(&e, text)],
        })?;
        let problems = validate::problems(&topology);
        if problems.is_empty() {
            return Ok(topology);
        }
        Err(TopologyError::Invalid {
            file: file.to_string(),
            problems: locate::place(problems, text),
        })
    }

    /// Reads, parses and validates a topology file.
    pub fn from_file(path: &Path) -> Result<Topology, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            file: path.display().to_string(),
            source,
        })?;
        Topology::from_toml_str(&text, &path.display().to_string())
    }

    /// Checks a topology built in code (no line numbers: there is no file).
    pub fn validate(&self) -> Result<(), TopologyError> {
        let problems = validate::problems(self);
        if problems.is_empty() {
            return Ok(());
        }
        Err(TopologyError::Invalid {
            file: "<topology>".into(),
            problems: problems
                .into_iter()
                .map(|(key, message)| Problem {
                    line: None,
                    column: None,
                    key,
                    message,
                })
                .collect(),
        })
    }

    /// The TOML text of this topology (parses back to an equal value).
    pub fn to_toml_string(&self) -> String {
        // Every field serializes (no maps with non-string keys): cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// The built-in topology `geoha up` runs without a file: the reference's shape
    /// (environment `dev`; eastus2 green and centralus blue, three zones each, priority
    /// 1 and weight 50 both; HEAD `/`) with a 1 s probe interval so failover is visible
    /// in seconds. The latency band is 50 ms rather than the reference's 0 because on
    /// loopback probe latencies differ by scheduler noise, and a 0 ms band would send
    /// everything to whichever region happened to answer its last probe fastest.
    pub fn builtin_default() -> Topology {
        Topology::from_toml_str(BUILTIN_DEFAULT, "<built-in default>")
            .expect("the built-in default topology is valid")
    }

    /// The reference's own settings (30 s probe, 4 samples, 2 required, 0 ms band,
    /// 30 s origin timeout): what Azure Front Door classic did in the reference.
    pub fn azure_reference() -> Topology {
        Topology::from_toml_str(AZURE_REFERENCE, "examples/azure-reference.toml")
            .expect("the reference topology is valid")
    }

    /// Resource group name for rendered infrastructure.
    pub fn resource_group(&self) -> String {
        self.resource_group
            .clone()
            .unwrap_or_else(|| format!("rg-geoha-{}", self.environment))
    }

    /// Registry name for rendered infrastructure (alphanumerics only, as ACR requires).
    pub fn registry_name(&self) -> String {
        self.registry.name.clone().unwrap_or_else(|| {
            let env: String = self
                .environment
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect();
            format!("geoha{env}acr")
        })
    }

    /// Front Door profile name for rendered infrastructure.
    pub fn frontdoor_name(&self) -> String {
        self.frontdoor
            .name
            .clone()
            .unwrap_or_else(|| format!("fd-geoha-{}", self.environment))
    }

    /// Regions holding a registry replica, in region order.
    pub fn registry_regions(&self) -> Vec<&RegionSpec> {
        if self.registry.replicas.is_empty() {
            return self.regions.iter().collect();
        }
        self.regions
            .iter()
            .filter(|r| self.registry.replicas.contains(&r.name))
            .collect()
    }

    /// Total API replicas.
    pub fn replica_count(&self) -> usize {
        self.regions
            .iter()
            .map(|r| r.zones.len() * r.replicas_per_zone as usize)
            .sum()
    }
}

impl RegionSpec {
    /// AKS cluster name for this region.
    pub fn cluster_name(&self, environment: &str) -> String {
        self.cluster.clone().unwrap_or_else(|| {
            let label = if self.role.is_empty() {
                &self.name
            } else {
                &self.role
            };
            format!("aks-{environment}-{label}")
        })
    }

    /// Replica names in this region: `<region>-z<zone>-r<n>`.
    pub fn replica_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for zone in &self.zones {
            for n in 0..self.replicas_per_zone {
                names.push(format!("{}-z{zone}-r{n}", self.name));
            }
        }
        names
    }
}

/// The built-in default topology's text (also `geoha topology show` output).
pub const BUILTIN_DEFAULT: &str = include_str!("../../../examples/default.toml");
/// The reference's settings (`examples/azure-reference.toml`).
pub const AZURE_REFERENCE: &str = include_str!("../../../examples/azure-reference.toml");

#[cfg(test)]
mod tests;
