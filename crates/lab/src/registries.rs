//! The lab's registry replicas: one `geoha_registry` per registry region, in-process,
//! each on its region's address block (`127.<region>.0.1`), peered in a full mesh
//! (replication needs it), anonymous pull, push with a credential the lab generates.
//!
//! Replication between two replicas goes through a [`crate::link`] proxy per direction,
//! so `geoha fault partition registry:REGION` can cut a replica off from its peers
//! (replication and read-through stop both ways; it still serves its own region) and
//! `heal` lets anti-entropy converge again.
//!
//! In container mode the lab pushes the image **once**, to the first region's replica
//! that is up and not partitioned, waits until every such replica serves it, and starts
//! each replica container from `<its region's registry>/<image>@<digest>`, so every
//! region pulls from its own replica. A region whose replica is down, or does not serve
//! the digest (cut off by a partition), pulls from another replica that does.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::containers::ContainerError;
use crate::link::{LinkFaults, LinkStats, PartitionMode};

/// User name of the lab's push credential.
pub const PUSH_USER: &str = "geoha";

/// File (in the lab's registry directory) holding [`PUSH_USER`]'s password, mode 0600.
pub const PUSH_PASSWORD_FILE: &str = "push-password";

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// A registry replica of the lab.
#[derive(Debug, Clone)]
pub struct LabRegistry {
    /// The region it serves.
    pub region: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its configuration (a restart after `kill` reuses it, storage included).
    cfg: Arc<geoha_registry::Config>,
    /// Serving now (`kill` stops it until `heal`).
    up: Arc<std::sync::atomic::AtomicBool>,
    /// Stops the current run.
    stop: Arc<std::sync::Mutex<CancellationToken>>,
    /// Cut off from its peers (`partition registry:REGION`) until `heal`.
    partition: Arc<std::sync::Mutex<Option<PartitionMode>>>,
}

impl LabRegistry {
    /// Serving now.
    pub fn is_up(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The partition cutting it off from its peers, if any.
    pub fn partition(&self) -> Option<PartitionMode> {
        self.partition.lock().map(|p| *p).unwrap_or(None)
    }

    /// Up and not cut off: what it acknowledges replicates.
    fn connected(&self) -> bool {
        self.is_up() && self.partition().is_none()
    }

    /// Faults for `geoha status` (`killed`, `partition (blackhole)`).
    pub fn faults(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.is_up() {
            out.push("killed".to_string());
        }
        if let Some(mode) = self.partition() {
            out.push(format!("partition ({})", mode.as_str()));
        }
        out
    }

    /// Whether it serves manifest `name@digest` now (a bounded HEAD: a cut-off replica
    /// may stall on a read-through to its peers).
    async fn serves(&self, name: &str, digest: &str) -> bool {
        self.is_up()
            && crate::admin_client::call(
                self.addr,
                http::Method::HEAD,
                &format!("/v2/{name}/manifests/{digest}"),
                None,
                None,
                Duration::from_secs(2),
            )
            .await
            .is_ok_and(|(s, _)| s.is_success())
    }
}

/// The replication path from one replica to another (requests `from` sends to `to`).
#[derive(Debug)]
struct PeerLink {
    from: String,
    to: String,
    faults: watch::Sender<LinkFaults>,
}

/// The lab's registries and the push credential.
#[derive(Debug, Clone)]
pub struct LabRegistries {
    /// One per registry region, in region order.
    pub replicas: Vec<LabRegistry>,
    /// Password of [`PUSH_USER`].
    pub password: String,
    /// Docker client config directory used for `docker login` (kept out of the user's).
    pub docker_config: PathBuf,
    /// One per ordered pair of replicas.
    links: Arc<Vec<PeerLink>>,
    tasks: TaskTracker,
    parent: CancellationToken,
}

fn spawn_replica(
    tasks: &TaskTracker,
    reg: &LabRegistry,
    listener: TcpListener,
    stop: CancellationToken,
) {
    let cfg = Arc::clone(&reg.cfg);
    let name = reg.region.clone();
    let up = Arc::clone(&reg.up);
    up.store(true, std::sync::atomic::Ordering::Relaxed);
    tasks.spawn(async move {
        if let Err(err) =
            geoha_registry::run(cfg, listener, async move { stop.cancelled().await }).await
        {
            tracing::error!(region = %name, %err, "registry stopped");
        }
    });
}

/// Address of region `r`'s registry (0-based): `127.<r+1>.0.1`.
pub fn registry_ip(region: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, u8::try_from(region + 1).unwrap_or(u8::MAX), 0, 1)
}

/// Binds and starts the replicas. `regions` are `(index in the topology, name)`.
pub async fn start(
    regions: &[(usize, String)],
    port: u16,
    dir: &Path,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> Result<LabRegistries, String> {
    let password = crate::random_token();
    let secret = crate::random_token();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let hash = bcrypt::hash(&password, 6).map_err(|e| format!("bcrypt: {e}"))?;
    let htpasswd = dir.join("htpasswd");
    std::fs::write(&htpasswd, format!("{PUSH_USER}:{hash}\n"))
        .map_err(|e| format!("{}: {e}", htpasswd.display()))?;
    // The push credential, for developers pushing to the lab's registries (owner-only).
    let secret_file = dir.join(PUSH_PASSWORD_FILE);
    write_private(&secret_file, &password)
        .map_err(|e| format!("{}: {e}", secret_file.display()))?;

    let mut listeners = Vec::new();
    for (r, name) in regions {
        let addr = SocketAddr::from((registry_ip(*r), port));
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("registry of {name} on {addr}: {e}"))?;
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        listeners.push((name.clone(), addr, l));
    }
    // The replication links: one proxy per direction, on the sender's address block.
    let mut links = Vec::new();
    let mut link_addrs: Vec<(String, String, SocketAddr)> = Vec::new();
    for ((from_index, from), _) in regions.iter().zip(&listeners) {
        for (to, to_addr, _) in listeners.iter().filter(|(n, _, _)| n != from) {
            let bind = SocketAddr::from((registry_ip(*from_index), 0));
            let l = TcpListener::bind(bind)
                .await
                .map_err(|e| format!("registry link {from} -> {to} on {bind}: {e}"))?;
            let addr = l.local_addr().map_err(|e| e.to_string())?;
            let (faults, rx) = watch::channel(LinkFaults::default());
            tasks.spawn(crate::link::run_link(
                l,
                *to_addr,
                rx,
                Arc::new(LinkStats::default()),
                stop.clone(),
            ));
            link_addrs.push((from.clone(), to.clone(), addr));
            links.push(PeerLink {
                from: from.clone(),
                to: to.clone(),
                faults,
            });
        }
    }
    let mut replicas = Vec::new();
    for (name, addr, listener) in listeners {
        let mut cfg = geoha_registry::Config::new(name.clone(), dir.join(&name));
        cfg.listen = addr;
        cfg.anonymous_pull = true;
        cfg.htpasswd = Some(htpasswd.clone());
        cfg.replication.secret = Some(secret.clone());
        for (_, peer, link) in link_addrs.iter().filter(|(from, _, _)| *from == name) {
            cfg.peers.push(geoha_registry::Peer {
                id: peer.clone(),
                url: geoha_registry::HttpUrl::try_from(format!("http://{link}"))
                    .map_err(|e| e.to_string())?,
            });
        }
        let token = stop.child_token();
        let reg = LabRegistry {
            region: name.clone(),
            addr,
            cfg: Arc::new(cfg),
            up: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            stop: Arc::new(std::sync::Mutex::new(token.clone())),
            partition: Arc::new(std::sync::Mutex::new(None)),
        };
        spawn_replica(tasks, &reg, listener, token);
        tracing::info!(region = %name, "registry replica started on {addr}");
        replicas.push(reg);
    }
    Ok(LabRegistries {
        replicas,
        password,
        docker_config: dir.join("docker"),
        links: Arc::new(links),
        tasks: tasks.clone(),
        parent: stop,
    })
}

impl LabRegistries {
    /// The replica `region` pulls `name@digest` from: its own while it serves the
    /// digest, else the first one that does (a region's registry outage or partition
    /// does not stop its replicas from starting). `None` when no replica serves it.
    pub async fn source_for(&self, region: &str, name: &str, digest: &str) -> Option<&LabRegistry> {
        let own = self.replicas.iter().find(|r| r.region == region);
        if let Some(own) = own {
            if own.serves(name, digest).await {
                return Some(own);
            }
        }
        for r in self.replicas.iter().filter(|r| r.region != region) {
            if r.serves(name, digest).await {
                tracing::warn!(region, from = %r.region, "the region's registry replica does not serve {digest}: pulling from another");
                return Some(r);
            }
        }
        None
    }

    /// `kill registry:REGION`: the replica stops serving (connections refused).
    pub fn kill(&self, region: &str) -> Result<(), String> {
        let reg = self.named(region)?;
        reg.up.store(false, std::sync::atomic::Ordering::Relaxed);
        if let Ok(t) = reg.stop.lock() {
            t.cancel();
        }
        tracing::warn!(region, "registry replica killed");
        Ok(())
    }

    /// `partition registry:REGION`: cuts the replica off from its peers, both ways
    /// (replication and read-through); it keeps serving its own region.
    pub fn partition(&self, region: &str, mode: PartitionMode) -> Result<(), String> {
        let reg = self.named(region)?;
        if let Ok(mut p) = reg.partition.lock() {
            *p = Some(mode);
        }
        self.apply_partitions();
        tracing::warn!(region, ?mode, "registry replica partitioned from its peers");
        Ok(())
    }

    /// Sets every replication link from the replicas' partitions: a link is cut while
    /// either end is partitioned (with the mode of the sender's partition, if any).
    fn apply_partitions(&self) {
        let mode_of = |region: &str| {
            self.replicas
                .iter()
                .find(|r| r.region == region)
                .and_then(LabRegistry::partition)
        };
        for link in self.links.iter() {
            let cut = mode_of(&link.from).or_else(|| mode_of(&link.to));
            link.faults.send_modify(|f| f.partition = cut);
        }
    }

    /// `heal registry:REGION`: ends its partition, and a killed replica serves again
    /// from the same storage and address.
    pub async fn heal(&self, region: &str) -> Result<(), String> {
        let reg = self.named(region)?;
        if let Ok(mut p) = reg.partition.lock() {
            *p = None;
        }
        self.apply_partitions();
        if reg.is_up() {
            return Ok(());
        }
        // The old listener closes as its run winds down: retry the bind briefly.
        let mut last = String::new();
        for _ in 0..50 {
            match TcpListener::bind(reg.addr).await {
                Ok(listener) => {
                    let token = self.parent.child_token();
                    if let Ok(mut t) = reg.stop.lock() {
                        *t = token.clone();
                    }
                    spawn_replica(&self.tasks, reg, listener, token);
                    tracing::info!(region, "registry replica back");
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "registry of {region}: cannot listen on {} again: {last}",
            reg.addr
        ))
    }

    fn named(&self, region: &str) -> Result<&LabRegistry, String> {
        self.replicas
            .iter()
            .find(|r| r.region == region)
            .ok_or_else(|| {
                let known: Vec<&str> = self.replicas.iter().map(|r| r.region.as_str()).collect();
                format!(
                    "registry:{region} matches nothing; known: {}",
                    known.join(", ")
                )
            })
    }

    /// Pushes `image` once, as `name:tag`, to the first replica that is up and not
    /// partitioned (else the first one up); returns its digest once every such replica
    /// serves the manifest.
    pub async fn push_once(
        &self,
        image: &str,
        name: &str,
        tag: &str,
    ) -> Result<String, ContainerError> {
        let first = self
            .replicas
            .iter()
            .find(|r| r.connected())
            .or_else(|| self.replicas.iter().find(|r| r.is_up()))
            .ok_or_else(|| ContainerError::Image("no registry replica is serving".into()))?;
        let target = format!("{}/{name}:{tag}", first.addr);
        crate::containers::docker(&["tag", image, &target]).await?;
        let config = self.docker_config.display().to_string();
        std::fs::create_dir_all(&self.docker_config)
            .map_err(|e| ContainerError::Image(format!("{config}: {e}")))?;
        // Every serving replica: the push goes to the first, pulls to each region's own.
        for r in self.replicas.iter().filter(|r| r.is_up()) {
            let server = r.addr.to_string();
            crate::containers::docker_stdin(
                &[
                    "--config",
                    &config,
                    "login",
                    "-u",
                    PUSH_USER,
                    "--password-stdin",
                    &server,
                ],
                &self.password,
            )
            .await?;
        }
        let out = crate::containers::docker_within(
            &["--config", &config, "push", &target],
            Duration::from_secs(300),
        )
        .await?;
        let digest = out
            .split_whitespace()
            .find(|w| w.starts_with("sha256:") && w.len() == 71)
            .ok_or_else(|| ContainerError::Docker {
                args: format!("push {target}"),
                message: format!("no digest in the output: {out}"),
            })?
            .to_string();
        // Every connected replica has it before any container starts (a killed or cut-off
        // one catches up by anti-entropy when healed).
        for r in self
            .replicas
            .iter()
            .filter(|r| r.connected() || r.addr == first.addr)
        {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !r.serves(name, &digest).await {
                if tokio::time::Instant::now() > deadline {
                    return Err(ContainerError::Image(format!(
                        "registry of {} does not serve {digest} after 30 s",
                        r.region
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(digest)
    }
}
