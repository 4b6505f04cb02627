//! The lab: runs a whole topology on this machine — every API replica a real OS
//! process on its own loopback address, each behind a link proxy where network faults
//! happen, all behind the front door — with a supervisor per replica and a control API
//! for status and faults.
//!
//! # Layout
//! - [`plan`]: `LabPlan`, addresses and names derived from the topology.
//! - [`supervisor`]: keeps a replica process running; kill/freeze/thaw.
//! - [`link`]: `LinkProxy`, latency/loss/partition/error-rate between front door and replica.
//! - [`fault`]: targets and fault requests.
//! - [`control`]: the token-protected control API.
//! - [`state`]: `lab.json`, how other commands find a running lab.
//! - [`report`]: the `geoha status --json` document.
//! - [`edge`]: the front door's configuration and health as the lab sees them.
#![forbid(unsafe_code)]

pub mod admin_client;
pub mod containers;
pub mod control;
pub mod edge;
pub mod fault;
pub mod link;
pub mod plan;
pub mod registries;
pub mod report;
pub mod rollout;
pub mod state;
pub mod supervisor;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::fault::{Fault, FaultRequest};
use crate::link::{LinkFaults, LinkStats};
use crate::plan::LabPlan;
use crate::report::{FrontdoorReport, RegionReport, ReplicaReport, StatusReport};
use crate::supervisor::{Launch, ProcessCommand, ProcessState, Supervisor};

/// Errors that keep the lab from starting.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The plan cannot run.
    #[error("invalid lab plan: {0}")]
    Plan(String),
    /// An address the lab needs is taken (often: another `geoha up` is running).
    #[error("{what} {addr} is already in use{hint}")]
    AddressInUse {
        /// What wanted the address.
        what: String,
        /// The address.
        addr: SocketAddr,
        /// e.g. "; another `geoha up` (pid 123) is running"
        hint: String,
    },
    /// Binding failed for another reason.
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        /// What wanted the address.
        what: String,
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not every replica became healthy in time.
    #[error("not healthy after {waited:?}: {unhealthy}")]
    NotReady {
        /// Replicas still unhealthy.
        unhealthy: String,
        /// How long the lab waited.
        waited: Duration,
    },
    /// The front door failed to start.
    #[error("front door: {0}")]
    Frontdoor(String),
    /// Container mode could not start.
    #[error(transparent)]
    Containers(#[from] containers::ContainerError),
    /// Writing the state file failed.
    #[error("state file in {dir}: {source}")]
    State {
        /// The state directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// How to run the lab (everything that is not in the topology).
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// The `geoha` executable that replicas run.
    pub exe: PathBuf,
    /// Control API address (loopback).
    pub control_listen: SocketAddr,
    /// Where `lab.json` and replica logs go.
    pub state_dir: PathBuf,
    /// Container mode: run replicas from this image instead of as processes.
    pub container_image: Option<String>,
}

struct ReplicaSlot {
    supervisor: Supervisor,
    /// What the supervisor runs now (rollouts replace it).
    launch: std::sync::Mutex<Launch>,
    /// Container mode: the container and its network (partitions disconnect it).
    container: Option<containers::ContainerLaunch>,
    /// Disconnected from its network by a `partition` fault (container mode).
    disconnected: std::sync::atomic::AtomicBool,
    faults: watch::Sender<LinkFaults>,
    stats: Arc<LinkStats>,
}

/// Shared by the control API and the handle.
pub(crate) struct LabInner {
    plan: LabPlan,
    slots: Vec<ReplicaSlot>,
    edge: edge::Edge,
    token: String,
    stop: CancellationToken,
    rollout: std::sync::Mutex<Option<rollout::RolloutLog>>,
    registries: Option<registries::LabRegistries>,
}

impl ReplicaSlot {
    fn current_launch(&self) -> Launch {
        self.launch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Has the supervisor run `launch` from now on; returns once it is spawned.
    async fn replace(&self, launch: Launch) -> Result<(), String> {
        let (ack, done) = tokio::sync::oneshot::channel();
        self.supervisor
            .send(ProcessCommand::Replace(Box::new(launch.clone()), ack))
            .await?;
        done.await
            .map_err(|_| "the replica's supervisor stopped".to_string())?;
        *self
            .launch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = launch;
        Ok(())
    }
}

impl std::fmt::Debug for LabInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabInner")
            .field("replicas", &self.plan.replicas.len())
            .finish_non_exhaustive()
    }
}

/// A running lab.
#[derive(Debug)]
pub struct LabHandle {
    inner: Arc<LabInner>,
    control_addr: SocketAddr,
    frontdoor_addr: SocketAddr,
    tasks: TaskTracker,
    background: CancellationToken,
    state_dir: PathBuf,
}

/// Entry point.
#[derive(Debug)]
pub struct Lab;

pub(crate) fn random_token() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn bind(
    addr: SocketAddr,
    what: &str,
    state_dir: &std::path::Path,
) -> Result<TcpListener, LabError> {
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            let hint = match state::LabState::read(state_dir) {
                Ok(Some(s)) if s.is_alive() => format!(
                    "; another `geoha up` (pid {}) is running — stop it with `geoha down`",
                    s.pid
                ),
                _ => "; is another `geoha up` or another program using it?".to_string(),
            };
            LabError::AddressInUse {
                what: what.to_string(),
                addr,
                hint,
            }
        } else {
            LabError::Bind {
                what: what.to_string(),
                addr,
                source,
            }
        }
    })
}

/// Checks that `addr` is free now and returns it with a concrete port (port 0 picks one).
async fn reserve(
    addr: SocketAddr,
    what: &str,
    state_dir: &std::path::Path,
) -> Result<SocketAddr, LabError> {
    let l = bind(addr, what, state_dir).await?;
    l.local_addr().map_err(|source| LabError::Bind {
        what: what.to_string(),
        addr,
        source,
    })
}

impl Lab {
    /// Starts everything in `plan` and returns once it is running (not yet healthy:
    /// see [`LabHandle::wait_healthy`]).
    pub async fn start(mut plan: LabPlan, opts: LabOptions) -> Result<LabHandle, LabError> {
        plan.check().map_err(LabError::Plan)?;
        let dir = opts.state_dir.clone();
        // The front door's address first: it is the one a second lab would collide on.
        let traffic = bind(plan.frontdoor_listen, "front door", &dir).await?;
        let frontdoor_addr = traffic.local_addr().map_err(|source| LabError::Bind {
            what: "front door".into(),
            addr: plan.frontdoor_listen,
            source,
        })?;
        plan.frontdoor_listen = frontdoor_addr;

        let tasks = TaskTracker::new();
        let background = CancellationToken::new();
        // Registry replicas: in-process, one per registry region.
        let registries = if plan.registry_regions.is_empty() {
            None
        } else {
            Some(
                registries::start(
                    &plan.registry_regions,
                    plan.registry_port,
                    &dir.join("registry"),
                    &tasks,
                    background.clone(),
                )
                .await
                .map_err(LabError::Plan)?,
            )
        };

        // Container mode: one network per region, a fixed address per replica.
        let mut launches: Vec<Option<containers::ContainerLaunch>> =
            vec![None; plan.replicas.len()];
        if let Some(image) = &opts.container_image {
            containers::check_docker().await?;
            // Build once, push once (to the first region's registry), then every region
            // pulls by digest from its own replica.
            let pinned = match &registries {
                Some(regs) => {
                    let version = plan
                        .replicas
                        .first()
                        .map(|r| r.version.clone())
                        .unwrap_or_else(|| "latest".into());
                    let digest = regs.push_once(image, &plan.image_name, &version).await?;
                    tracing::info!(%digest, "image pushed once; regions pull from their replica");
                    Some((regs.clone(), digest))
                }
                None => None,
            };
            let removed = containers::remove_leftovers(&plan.environment).await?;
            if removed > 0 {
                tracing::warn!(removed, "removed containers left by an earlier lab");
            }
            for region in plan.regions.clone() {
                let net = containers::create_network(&plan.environment, &region.name).await?;
                // The registry this region pulls from: its own while it serves the image.
                let source = match &pinned {
                    Some((regs, digest)) => regs
                        .source_for(&region.name, &plan.image_name, digest)
                        .await
                        .map(|reg| reg.addr),
                    None => None,
                };
                let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
                for (i, r) in plan.replicas.iter_mut().enumerate() {
                    if r.region != region.name {
                        continue;
                    }
                    let z = region.zones.iter().position(|z| *z == r.zone).unwrap_or(0);
                    let n = per_zone.entry(r.zone.clone()).or_default();
                    let ip = net.replica_ip(z, *n)?;
                    *n += 1;
                    let image = match (&pinned, &source) {
                        (Some((_, digest)), Some(reg)) => {
                            format!("{reg}/{}@{digest}", plan.image_name)
                        }
                        _ => image.clone(),
                    };
                    let launch = containers::ContainerLaunch {
                        docker_config: pinned.as_ref().map(|(regs, _)| regs.docker_config.clone()),
                        image,
                        name: format!("geoha-{}-{}", plan.environment, r.name),
                        network: net.name.clone(),
                        ip,
                        env: plan.environment.clone(),
                    };
                    r.addr = launch.addr();
                    launches[i] = Some(launch);
                }
            }
        }

        let mut link_listeners = Vec::new();
        for (i, r) in plan.replicas.iter_mut().enumerate() {
            if launches[i].is_none() {
                r.addr = reserve(r.addr, &format!("replica {}", r.name), &dir).await?;
            }
            let link = bind(r.link_addr, &format!("link of {}", r.name), &dir).await?;
            r.link_addr = link.local_addr().map_err(|source| LabError::Bind {
                what: "link".into(),
                addr: r.link_addr,
                source,
            })?;
            link_listeners.push(link);
        }
        let control = bind(opts.control_listen, "control API", &dir).await?;
        let control_addr = control.local_addr().map_err(|source| LabError::Bind {
            what: "control API".into(),
            addr: opts.control_listen,
            source,
        })?;

        let logs = dir.join("logs");
        let _ = tokio::fs::create_dir_all(&logs).await;
        let mut slots = Vec::new();
        for ((r, link), container) in plan.replicas.iter().zip(link_listeners).zip(launches) {
            let (faults, faults_rx) = watch::channel(LinkFaults::default());
            let stats = Arc::new(LinkStats::default());
            tasks.spawn(link::run_link(
                link,
                r.addr,
                faults_rx,
                Arc::clone(&stats),
                background.clone(),
            ));
            let launch = Launch {
                exe: opts.exe.clone(),
                replica: r.clone(),
                drain_delay: plan.replica_drain_delay,
                log_file: Some(logs.join(format!("{}.log", r.name))),
                container: container.clone(),
            };
            let supervisor = Supervisor::start(launch.clone());
            slots.push(ReplicaSlot {
                supervisor,
                launch: std::sync::Mutex::new(launch),
                container,
                disconnected: std::sync::atomic::AtomicBool::new(false),
                faults,
                stats,
            });
        }

        // Its own token: shutdown stops the front door before the links and replicas.
        let edge = edge::Edge::start(&plan, traffic, &tasks, background.child_token())
            .await
            .map_err(LabError::Frontdoor)?;

        let inner = Arc::new(LabInner {
            plan,
            slots,
            edge,
            token: random_token(),
            stop: CancellationToken::new(),
            rollout: std::sync::Mutex::new(None),
            registries,
        });
        let app = control::router(Arc::clone(&inner));
        let stop_control = background.clone();
        tasks.spawn(async move {
            let _ = axum::serve(control, app)
                .with_graceful_shutdown(async move { stop_control.cancelled().await })
                .await;
        });
        tracing::info!("listening addr={control_addr} (control API)");

        let state = state::LabState {
            control_url: format!("http://{control_addr}"),
            token: inner.token.clone(),
            frontdoor_url: format!("http://{frontdoor_addr}"),
            pid: std::process::id(),
        };
        state.write(&dir).map_err(|source| LabError::State {
            dir: dir.clone(),
            source,
        })?;

        Ok(LabHandle {
            inner,
            control_addr,
            frontdoor_addr,
            tasks,
            background,
            state_dir: dir,
        })
    }
}

impl LabHandle {
    /// The control API's base URL.
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    /// The control API's bearer token.
    pub fn token(&self) -> &str {
        &self.inner.token
    }

    /// Where clients send traffic.
    pub fn frontdoor_addr(&self) -> SocketAddr {
        self.frontdoor_addr
    }

    /// The state directory (`lab.json`, the registries' data and push credential).
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// The plan with concrete addresses.
    pub fn plan(&self) -> &LabPlan {
        &self.inner.plan
    }

    /// A status snapshot.
    pub async fn status(&self) -> StatusReport {
        self.inner.status().await
    }

    /// Applies a fault.
    pub async fn apply(&self, req: &FaultRequest) -> Result<Vec<String>, String> {
        self.inner.apply(req).await
    }

    /// Completes when someone asked the lab to stop through the control API.
    pub async fn stop_requested(&self) {
        self.inner.stop.cancelled().await;
    }

    /// Waits until the front door sees every replica healthy, each with at least one
    /// real successful probe; returns how long it took.
    pub async fn wait_healthy(&self, within: Duration) -> Result<Duration, LabError> {
        let started = tokio::time::Instant::now();
        let mut last = String::from("front door admin API not answering");
        while started.elapsed() < within {
            if let Some(origins) = self.inner.edge.origins().await {
                let unhealthy: Vec<&str> = self
                    .inner
                    .plan
                    .replicas
                    .iter()
                    .filter(|r| !origins.get(&r.name).is_some_and(|o| o.proven_healthy()))
                    .map(|r| r.name.as_str())
                    .collect();
                if unhealthy.is_empty() {
                    return Ok(started.elapsed());
                }
                last = unhealthy.join(", ");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(LabError::NotReady {
            unhealthy: last,
            waited: within,
        })
    }

    /// Stops everything: the front door stops accepting and drains, replicas drain and
    /// exit, links close, the state file is removed.
    pub async fn shutdown(self) {
        self.inner.edge.stop();
        let stops = self
            .inner
            .slots
            .iter()
            .map(|s| s.supervisor.stop())
            .collect::<Vec<_>>();
        futures_join_all(stops).await;
        if self.inner.slots.iter().any(|s| s.container.is_some()) {
            // Everything labelled for this lab: containers that outlived their CLI, and
            // the networks.
            if let Err(err) = containers::remove_leftovers(&self.inner.plan.environment).await {
                tracing::warn!(%err, "could not remove every container or network");
            }
        }
        self.background.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tasks.wait()).await;
        state::LabState::remove_if_mine(&self.state_dir);
    }
}

async fn futures_join_all<F: std::future::Future<Output = ()>>(futs: Vec<F>) {
    // Few futures (one per replica): join them on one task without a dependency.
    let mut set = Vec::with_capacity(futs.len());
    for f in futs {
        set.push(Box::pin(f));
    }
    for f in set {
        f.await;
    }
}

impl LabInner {
    async fn apply(&self, req: &FaultRequest) -> Result<Vec<String>, String> {
        let (target, fault) = fault::validate(req)?;
        if let fault::FaultTarget::Registry(region) = &target {
            let regs = self
                .registries
                .as_ref()
                .ok_or("this lab runs no registry replicas")?;
            match fault {
                Fault::Kill { .. } => regs.kill(region)?,
                Fault::Partition(mode) => regs.partition(region, mode)?,
                Fault::Heal => regs.heal(region).await?,
                _ => {
                    return Err(format!(
                        "{target}: only kill, partition and heal apply to a registry"
                    ))
                }
            }
            tracing::info!(action = ?req.action, target = %target, "fault applied");
            return Ok(vec![format!("registry:{region}")]);
        }
        let hits = fault::resolve(&target, &self.plan)?;
        let mut applied = Vec::new();
        for i in hits {
            let slot = &self.slots[i];
            let cmd = match &fault {
                Fault::Kill {
                    stay_down,
                    restart_after,
                } => Some(ProcessCommand::Kill {
                    stay_down: *stay_down,
                    restart_after: *restart_after,
                }),
                Fault::Freeze => Some(ProcessCommand::Freeze),
                Fault::Thaw => Some(ProcessCommand::Thaw),
                Fault::Heal => {
                    slot.faults.send_replace(LinkFaults::default());
                    if let Some(c) = &slot.container {
                        if slot
                            .disconnected
                            .swap(false, std::sync::atomic::Ordering::Relaxed)
                        {
                            let ip = c.ip.to_string();
                            containers::engine_fault(&[
                                "network", "connect", "--ip", &ip, &c.network, &c.name,
                            ])
                            .await;
                        }
                    }
                    Some(ProcessCommand::Heal)
                }
                Fault::Partition(_) if slot.container.is_some() => {
                    // Container mode: the network itself is cut (a black hole: the
                    // address stops answering at all).
                    if let Some(c) = &slot.container {
                        containers::engine_fault(&[
                            "network",
                            "disconnect",
                            "-f",
                            &c.network,
                            &c.name,
                        ])
                        .await;
                        slot.disconnected
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    None
                }
                Fault::Slow { latency, jitter } => {
                    slot.faults.send_modify(|f| {
                        f.latency = *latency;
                        f.jitter = *jitter;
                    });
                    None
                }
                Fault::Loss(p) => {
                    slot.faults.send_modify(|f| f.loss = *p);
                    None
                }
                Fault::Partition(mode) => {
                    slot.faults.send_modify(|f| f.partition = Some(*mode));
                    None
                }
                Fault::ErrorRate(p) => {
                    slot.faults.send_modify(|f| f.error_rate = *p);
                    None
                }
            };
            if let Some(cmd) = cmd {
                slot.supervisor.send(cmd).await?;
            }
            applied.push(self.plan.replicas[i].name.clone());
        }
        tracing::info!(action = ?req.action, target = %target, replicas = applied.len(), "fault applied");
        Ok(applied)
    }

    async fn status(&self) -> StatusReport {
        let origins = self.edge.origins().await;
        let reachable = origins.is_some();
        let origins = origins.unwrap_or_default();
        let mut replicas = Vec::new();
        for (r, slot) in self.plan.replicas.iter().zip(&self.slots) {
            let p = slot.supervisor.status();
            let o = origins.get(&r.name);
            let mut faults = Vec::new();
            match p.state {
                ProcessState::Frozen => faults.push("frozen".to_string()),
                ProcessState::Down => faults.push("down".to_string()),
                ProcessState::Restarting => faults.push("restarting".to_string()),
                ProcessState::Running => {}
            }
            faults.extend(slot.faults.borrow().describe());
            if slot.disconnected.load(std::sync::atomic::Ordering::Relaxed) {
                faults.push("partition (network disconnected)".to_string());
            }
            replicas.push(ReplicaReport {
                name: r.name.clone(),
                region: r.region.clone(),
                zone: r.zone.clone(),
                addr: r.addr.to_string(),
                link_addr: r.link_addr.to_string(),
                healthy: o.is_some_and(|o| o.healthy && !o.ejected),
                ejected: o.is_some_and(|o| o.ejected),
                restarts: p.restarts,
                version: p.version.clone(),
                image: p.image.clone(),
                state: serde_json::to_value(p.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                pid: p.pid,
                faults,
                share: o.map_or(0.0, |o| o.share),
                requests: slot
                    .stats
                    .requests
                    .load(std::sync::atomic::Ordering::Relaxed),
            });
        }
        let mut by_region: BTreeMap<&str, (usize, usize, f64)> = BTreeMap::new();
        for r in &replicas {
            let e = by_region.entry(r.region.as_str()).or_default();
            e.0 += usize::from(r.healthy);
            e.1 += 1;
            e.2 += r.share;
        }
        let regions = self
            .plan
            .regions
            .iter()
            .map(|g| {
                let (healthy, n, share) =
                    by_region.get(g.name.as_str()).copied().unwrap_or_default();
                RegionReport {
                    name: g.name.clone(),
                    role: g.role.clone(),
                    priority: g.priority,
                    weight: g.weight,
                    healthy,
                    replicas: n,
                    share,
                }
            })
            .collect();
        StatusReport {
            environment: self.plan.environment.clone(),
            frontdoor: FrontdoorReport {
                listen: self.plan.frontdoor_listen.to_string(),
                admin: self.edge.admin_addr().to_string(),
                reachable,
            },
            regions,
            replicas,
            registries: self
                .registries
                .iter()
                .flat_map(|r| &r.replicas)
                .map(|r| report::RegistryReport {
                    region: r.region.clone(),
                    url: format!("http://{}", r.addr),
                    up: r.is_up(),
                    faults: r.faults(),
                })
                .collect(),
        }
    }
}
