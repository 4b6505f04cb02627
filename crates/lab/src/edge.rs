//! The edge of the lab: the plan derived from a topology, the front door the lab runs
//! in-process in front of the replicas' links, and the front door's view of origin
//! health (read over its admin API, as any operator would).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// How the lab reads the front door's view of an origin (`GET /admin/origins`);
/// unknown fields are ignored so the admin API can grow.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OriginView {
    /// Origin name (= replica name).
    pub name: String,
    /// Healthy by probes.
    #[serde(default)]
    pub healthy: bool,
    /// Ejected by passive health.
    #[serde(default)]
    pub ejected: bool,
    /// Recent traffic share.
    #[serde(default)]
    pub share: f64,
}

#[derive(Debug, Deserialize)]
struct GroupsView {
    groups: Vec<GroupView>,
}

#[derive(Debug, Deserialize)]
struct GroupView {
    origins: Vec<OriginView>,
}

/// Parses the admin API's origin list into a map by name.
pub fn parse_origins(body: &[u8]) -> Result<HashMap<String, OriginView>, String> {
    let groups: GroupsView = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(groups
        .groups
        .into_iter()
        .flat_map(|g| g.origins)
        .map(|o| (o.name.clone(), o))
        .collect())
}

/// Reads origin health from a front door admin API; `None` when it does not answer.
pub async fn fetch_origins(
    admin: SocketAddr,
    token: &str,
    timeout: Duration,
) -> Option<HashMap<String, OriginView>> {
    let (status, body) = crate::admin_client::call(
        admin,
        http::Method::GET,
        "/admin/origins",
        Some(token),
        None,
        timeout,
    )
    .await
    .ok()?;
    if !status.is_success() {
        return None;
    }
    parse_origins(&body).ok()
}

/// The front door as the lab runs it.
#[derive(Debug)]
pub struct Edge {
    admin: SocketAddr,
    token: String,
    stop: tokio_util::sync::CancellationToken,
}

impl Edge {
    /// Starts the front door in front of the plan's links.
    pub async fn start(
        _plan: &crate::plan::LabPlan,
        _traffic: tokio::net::TcpListener,
        _tasks: &tokio_util::task::TaskTracker,
        _stop: tokio_util::sync::CancellationToken,
    ) -> Result<Edge, String> {
        Err("front door wiring pending".into())
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Origin health by replica name; `None` if the admin API does not answer.
    pub async fn origins(&self) -> Option<HashMap<String, OriginView>> {
        fetch_origins(self.admin, &self.token, Duration::from_secs(1)).await
    }

    /// Stops the front door (drains in-flight requests).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}
