//! `StatusReport`: the JSON of `geoha status --json` and `GET /v1/status`. These are
//! dedicated report types (an API boundary), not internal state.

use serde::{Deserialize, Serialize};

/// The whole lab as `geoha status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    /// Environment name.
    pub environment: String,
    /// The front door.
    pub frontdoor: FrontdoorReport,
    /// Regions with their replicas' health summarized.
    pub regions: Vec<RegionReport>,
    /// Every replica.
    pub replicas: Vec<ReplicaReport>,
    /// Registry replicas (empty until the registry runs in the lab).
    pub registries: Vec<RegistryReport>,
}

/// The front door's addresses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FrontdoorReport {
    /// Traffic listener.
    pub listen: String,
    /// Admin listener (bearer-token protected).
    pub admin: String,
    /// Whether the front door's admin API answered for this report.
    pub reachable: bool,
}

/// One region.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RegionReport {
    /// Name.
    pub name: String,
    /// Role, e.g. `green`.
    pub role: String,
    /// Front door priority.
    pub priority: u8,
    /// Front door weight.
    pub weight: u16,
    /// Replicas the front door considers healthy.
    pub healthy: usize,
    /// Replicas in the region.
    pub replicas: usize,
    /// Share of recent traffic (0..1).
    pub share: f64,
}

/// One replica.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReplicaReport {
    /// Name, e.g. `eastus2-z1-r0`.
    pub name: String,
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: String,
    /// Where the process listens.
    pub addr: String,
    /// Where the front door connects (the link proxy).
    pub link_addr: String,
    /// Healthy as the front door sees it (probes, not ejected).
    pub healthy: bool,
    /// Ejected by passive health.
    pub ejected: bool,
    /// Restarts by the supervisor.
    pub restarts: u64,
    /// Version label.
    pub version: String,
    /// Container mode: the image it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Process state: running, frozen, restarting, down.
    pub state: String,
    /// Current PID.
    pub pid: Option<u32>,
    /// Faults applied, e.g. `frozen`, `slow 200ms±0ms`.
    pub faults: Vec<String>,
    /// Share of recent front door traffic (0..1).
    pub share: f64,
    /// Requests that crossed the replica's link.
    pub requests: u64,
}

/// A registry replica in the lab.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegistryReport {
    /// Region.
    pub region: String,
    /// Base URL.
    pub url: String,
    /// Serving (false after `geoha fault kill registry:REGION` until `heal`).
    #[serde(default = "serving")]
    pub up: bool,
    /// Faults applied to it (`killed`, `partition (blackhole)`).
    #[serde(default)]
    pub faults: Vec<String>,
}

fn serving() -> bool {
    true
}
