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

/// A running registry replica.
#[derive(Debug, Clone)]
pub struct LabRegistry {
    /// The region it serves.
    pub region: String,
    /// Where it listens.
    pub addr: SocketAddr,
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
    let mut replicas = Vec::new();
    for (name, addr, _) in &listeners {
        replicas.push(LabRegistry {
            region: name.clone(),
            addr: *addr,
        });
    }
    for (name, addr, listener) in listeners {
        let mut cfg = geoha_registry::Config::new(name.clone(), dir.join(&name));
        cfg.listen = addr;
        cfg.anonymous_pull = true;
        cfg.htpasswd = Some(htpasswd.clone());
        cfg.replication.secret = Some(secret.clone());
        for peer in replicas.iter().filter(|p| p.region != name) {
            cfg.peers.push(geoha_registry::Peer {
                id: peer.region.clone(),
                url: geoha_registry::HttpUrl::try_from(format!("http://{}", peer.addr))
                    .map_err(|e| e.to_string())?,
            });
        }
        let stop = stop.clone();
        let label = name.clone();
        tasks.spawn(async move {
            if let Err(err) =
                geoha_registry::run(
                    Arc::new(cfg),
                    listener,
                    async move { stop.cancelled().await },
                )
                .await
            {
                tracing::error!(region = %name, %err, "registry stopped");
            }
        });
        tracing::info!(region = %label, "registry replica started on {addr}");
    }
    Ok(LabRegistries {
        replicas,
        password,
        docker_config: dir.join("docker"),
    })
}

impl LabRegistries {
    /// The replica serving `region`, else the first one.
    pub fn for_region(&self, region: &str) -> Option<&LabRegistry> {
        self.replicas
            .iter()
            .find(|r| r.region == region)
            .or_else(|| self.replicas.first())
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
            .first()
            .ok_or_else(|| ContainerError::Image("no registry replica".into()))?;
        let target = format!("{}/{name}:{tag}", first.addr);
        crate::containers::docker(&["tag", image, &target]).await?;
        let config = self.docker_config.display().to_string();
        std::fs::create_dir_all(&self.docker_config)
            .map_err(|e| ContainerError::Image(format!("{config}: {e}")))?;
        // Every replica: the push goes to the first, pulls go to each region's own.
        for r in &self.replicas {
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
        // Every replica serves it before any replica container starts.
        let path = format!("/v2/{name}/manifests/{digest}");
        for r in &self.replicas {
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
