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
    /// Probe results, oldest first (only real probes; a new origin has none).
    #[serde(default)]
    pub probe_window: Vec<bool>,
    /// Requests in flight to it.
    #[serde(default)]
    pub in_flight: i64,
    /// Tries sent to it.
    #[serde(default)]
    pub requests_total: u64,
    /// Tries that failed (any kind).
    #[serde(default)]
    pub failures_total: u64,
    /// Failed tries by kind (`hedge_lost`, `status_5xx`, ...).
    #[serde(default)]
    pub failures_by_kind: std::collections::BTreeMap<String, u64>,
    /// Times to response headers of its answered tries so far.
    #[serde(default)]
    pub latency: geoha_frontdoor::LatencySnapshot,
}

impl OriginView {
    /// Healthy, not ejected, and its latest probe really answered 200 (a new origin is
    /// healthy by Front Door's rules before any probe ran; readiness wants proof).
    pub fn proven_healthy(&self) -> bool {
        self.healthy && !self.ejected && self.probe_window.last() == Some(&true)
    }
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
    /// Starts the front door in-process in front of the plan's links: one origin group
    /// `api`, one origin per replica (its link address), the region's priority and
    /// weight, the topology's probe, and an admin API on a free loopback port.
    pub async fn start(
        plan: &crate::plan::LabPlan,
        traffic: tokio::net::TcpListener,
        tasks: &tokio_util::task::TaskTracker,
        stop: tokio_util::sync::CancellationToken,
    ) -> Result<Edge, String> {
        let token = crate::random_token();
        let cfg = frontdoor_config(plan, &token)?;
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("cannot bind the admin listener: {e}"))?;
        let admin_addr = admin
            .local_addr()
            .map_err(|e| format!("admin listener: {e}"))?;
        let cfg = std::sync::Arc::new(cfg);
        // The lab never reloads; the sender lives as long as the front door.
        let (reloads, rx) = tokio::sync::watch::channel(std::sync::Arc::clone(&cfg));
        let shutdown = stop.clone();
        tasks.spawn(async move {
            let _keep = reloads;
            let listeners = geoha_frontdoor::Listeners {
                traffic: vec![traffic],
                admin: Some(admin),
            };
            if let Err(err) =
                geoha_frontdoor::run(
                    cfg,
                    listeners,
                    rx,
                    async move { shutdown.cancelled().await },
                )
                .await
            {
                tracing::error!(%err, "front door stopped");
            }
        });
        tracing::info!("listening addr={admin_addr} (front door admin API)");
        Ok(Edge {
            admin: admin_addr,
            token,
            stop,
        })
    }

    /// The admin API's bearer token.
    pub fn token(&self) -> &str {
        &self.token
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

/// The front door configuration for a plan.
pub fn frontdoor_config(
    plan: &crate::plan::LabPlan,
    admin_token: &str,
) -> Result<geoha_frontdoor::Config, String> {
    use geoha_frontdoor::{
        AdminConfig, Config, ListenerConfig, OriginConfig, OriginGroupConfig, Priority,
        ProbeConfig, ProbeMethod, RetryConfig, RouteConfig, TryTimeoutConfig, Weight,
    };
    let method = match plan.probe.method.as_str() {
        "GET" => ProbeMethod::Get,
        _ => ProbeMethod::Head,
    };
    let mut origins = Vec::new();
    for r in &plan.replicas {
        let mut o = OriginConfig::new(&r.name, r.link_addr);
        o.priority =
            Priority::new(r.priority).ok_or_else(|| format!("{}: bad priority", r.name))?;
        o.weight = Weight::new(r.weight).ok_or_else(|| format!("{}: bad weight", r.name))?;
        o.region = Some(r.region.clone());
        o.zone = Some(r.zone.clone());
        origins.push(o);
    }
    let cfg = Config {
        listeners: vec![ListenerConfig {
            address: plan.frontdoor_listen,
            tls: None,
        }],
        admin: Some(AdminConfig {
            address: None,
            token: admin_token.to_string(),
        }),
        routes: vec![RouteConfig {
            origin_group: "api".into(),
            ..RouteConfig::default()
        }],
        origin_groups: vec![OriginGroupConfig {
            name: "api".into(),
            session_affinity: plan.session_affinity,
            origin_response_timeout: plan.origin_response_timeout,
            // Gray failures (frozen, black-holed replicas) cost one try, not the whole
            // origin timeout: idempotent requests move on after 4 x the origin's p99.
            try_timeout: TryTimeoutConfig::adaptive(
                4.0,
                Duration::from_millis(250),
                Duration::from_secs(2),
            ),
            // A slow or frozen replica costs a hedge delay, not a try timeout: after 3 x
            // the fastest replica's p99 (at least 10 ms) a copy goes elsewhere.
            hedge: TryTimeoutConfig::adaptive(
                3.0,
                Duration::from_millis(10),
                Duration::from_millis(500),
            ),
            probe: ProbeConfig {
                path: plan.probe.path.clone(),
                method,
                interval: plan.probe.interval,
                sample_size: plan.probe.sample_size,
                successful_samples_required: plan.probe.successful_samples_required,
                additional_latency_ms: plan.probe.additional_latency_ms,
                ..ProbeConfig::default()
            },
            origins,
            ..OriginGroupConfig::default()
        }],
        // A replica answering 5xx (a bad version mid-rollout, an injected error burst)
        // costs users nothing while another replica answers: GETs go elsewhere, paid by
        // the retry budget, and the 5xx still counts against the replica.
        retry: RetryConfig {
            on_5xx: true,
            ..RetryConfig::default()
        },
        ..Config::default()
    };
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}
