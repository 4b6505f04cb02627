//! The lab's registry replicas: one `geoha_registry` per registry region, in-process,
//! each on its region's address block (`127.<region>.0.1`), peered in a full mesh
//! (replication needs it), anonymous pull, push with a credential the lab generates.
//!
//! In container mode the lab pushes the image **once**, to the first region's replica,
//! waits until every replica serves it, and starts each replica container from
//! `<its region's registry>/<image>@<digest>`, so every region pulls from its own
//! replica (a region without a replica pulls from the first one).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::containers::ContainerError;

/// User name of the lab's push credential.
pub const PUSH_USER: &str = "geoha";

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
}

impl LabRegistry {
    /// Serving now.
    pub fn is_up(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::Relaxed)
    }
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

    let mut listeners = Vec::new();
    for (r, name) in regions {
        let addr = SocketAddr::from((registry_ip(*r), port));
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("registry of {name} on {addr}: {e}"))?;
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        listeners.push((name.clone(), addr, l));
    }
    let addrs: Vec<(String, SocketAddr)> =
        listeners.iter().map(|(n, a, _)| (n.clone(), *a)).collect();
    let mut replicas = Vec::new();
    for (name, addr, listener) in listeners {
        let mut cfg = geoha_registry::Config::new(name.clone(), dir.join(&name));
        cfg.listen = addr;
        cfg.anonymous_pull = true;
        cfg.htpasswd = Some(htpasswd.clone());
        cfg.replication.secret = Some(secret.clone());
        for (peer, peer_addr) in addrs.iter().filter(|(p, _)| *p != name) {
            cfg.peers.push(geoha_registry::Peer {
                id: peer.clone(),
                url: geoha_registry::HttpUrl::try_from(format!("http://{peer_addr}"))
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
        };
        spawn_replica(tasks, &reg, listener, token);
        tracing::info!(region = %name, "registry replica started on {addr}");
        replicas.push(reg);
    }
    Ok(LabRegistries {
        replicas,
        password,
        docker_config: dir.join("docker"),
        tasks: tasks.clone(),
        parent: stop,
    })
}

impl LabRegistries {
    /// The replica `region` pulls from: its own while it serves, else the first one
    /// that does (a region's registry outage does not stop its replicas from starting).
    pub fn for_region(&self, region: &str) -> Option<&LabRegistry> {
        self.replicas
            .iter()
            .find(|r| r.region == region && r.is_up())
            .or_else(|| self.replicas.iter().find(|r| r.is_up()))
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

    /// `heal registry:REGION`: serves again from the same storage and address.
    pub async fn heal(&self, region: &str) -> Result<(), String> {
        let reg = self.named(region)?;
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

    /// Pushes `image` once, to the first replica, as `name:tag`; returns its digest
    /// once every replica serves the manifest.
    pub async fn push_once(
        &self,
        image: &str,
        name: &str,
        tag: &str,
    ) -> Result<String, ContainerError> {
        let first = self
            .replicas
            .iter()
            .find(|r| r.is_up())
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
        // Every serving replica has it before any container starts (a killed one catches
        // up from its durable log when healed).
        let path = format!("/v2/{name}/manifests/{digest}");
        for r in self.replicas.iter().filter(|r| r.is_up()) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let ok = crate::admin_client::call(
                    r.addr,
                    http::Method::HEAD,
                    &path,
                    None,
                    None,
                    Duration::from_secs(2),
                )
                .await
                .is_ok_and(|(s, _)| s.is_success());
                if ok {
                    break;
                }
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
