//! Container mode: every replica is a Docker container instead of a process.
//!
//! - One user-defined bridge network per region (`geoha-<env>-<region>`); zones are
//!   labels. Each replica gets a fixed address in its region's subnet
//!   (`<subnet>.<zone>.<n+2>`), so a restarted container comes back where the front
//!   door expects it.
//! - The supervisor runs `docker run --rm` in the foreground as its "child": the CLI
//!   exits when the container does, so crash detection and restarts work as for
//!   processes. Faults map to the engine: kill → `docker kill`, freeze/thaw →
//!   `docker pause`/`unpause`, partition → `docker network disconnect`/`connect`.
//! - Everything the lab creates carries the label `geoha.lab=<env>`; start-up removes
//!   leftovers of a killed run with that label, and shutdown removes what it created.
//!   Nothing without the label is touched.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// The label every container and network of a lab carries (value: the environment).
pub const LAB_LABEL: &str = "geoha.lab";
/// The port the API listens on inside its container.
pub const CONTAINER_PORT: u16 = 8080;
/// Bound for one Docker CLI call (pulls and builds excepted).
const DOCKER_CALL: Duration = Duration::from_secs(60);

/// Why container mode cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No Docker Engine.
    #[error("container mode needs Docker: {0}")]
    NoDocker(String),
    /// A Docker CLI call failed.
    #[error("docker {args}: {message}")]
    Docker {
        /// The arguments.
        args: String,
        /// stderr or the I/O error.
        message: String,
    },
    /// The image cannot be built from this executable.
    #[error("{0}")]
    Image(String),
}

/// Runs `docker ARGS`, bounded; returns trimmed stdout.
pub async fn docker(args: &[&str]) -> Result<String, ContainerError> {
    docker_within(args, DOCKER_CALL).await
}

/// `docker ARGS` with `input` on stdin (e.g. `login --password-stdin`), bounded.
pub async fn docker_stdin(args: &[&str], input: &str) -> Result<String, ContainerError> {
    run_docker(args, Some(input), DOCKER_CALL).await
}

/// `docker ARGS` bounded by `within`; returns trimmed stdout.
pub async fn docker_within(args: &[&str], within: Duration) -> Result<String, ContainerError> {
    run_docker(args, None, within).await
}

/// The one way the lab runs the Docker CLI: optional stdin, the whole call (writing
/// stdin included) bounded by `within`, stderr as the error, trimmed stdout.
async fn run_docker(
    args: &[&str],
    input: Option<&str>,
    within: Duration,
) -> Result<String, ContainerError> {
    use tokio::io::AsyncWriteExt as _;
    let fail = |message: String| ContainerError::Docker {
        args: args.join(" "),
        message,
    };
    let mut child = Command::new("docker")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let work = async {
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input.as_bytes()).await?;
        }
        child.wait_with_output().await
    };
    let out = tokio::time::timeout(within, work)
        .await
        .map_err(|_| fail(format!("no answer within {within:?}")))?
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Checks that the Docker Engine answers.
pub async fn check_docker() -> Result<(), ContainerError> {
    match docker(&["version", "--format", "{{.Server.Version}}"]).await {
        Ok(_) => Ok(()),
        Err(ContainerError::Docker { message, .. }) => Err(ContainerError::NoDocker(message)),
        Err(e) => Err(e),
    }
}

/// Removes containers and networks left by an earlier (killed) lab of `env`.
pub async fn remove_leftovers(env: &str) -> Result<usize, ContainerError> {
    let filter = format!("label={LAB_LABEL}={env}");
    let ids = docker(&["ps", "-aq", "--filter", &filter]).await?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(&ids);
        docker(&args).await?;
    }
    let nets = docker(&["network", "ls", "-q", "--filter", &filter]).await?;
    for net in nets.split_whitespace() {
        docker(&["network", "rm", net]).await?;
    }
    Ok(ids.len())
}

/// A region's network as created.
#[derive(Debug, Clone)]
pub struct RegionNetwork {
    /// Network name.
    pub name: String,
    /// Network address and prefix length of its subnet.
    pub subnet: (Ipv4Addr, u8),
}

impl RegionNetwork {
    /// The fixed address of replica `n` of zone index `z`: `<subnet>.<z+1>.<n+2>`
    /// (`.1` of the subnet is the gateway).
    pub fn replica_ip(&self, z: usize, n: usize) -> Result<Ipv4Addr, ContainerError> {
        let (base, prefix) = self.subnet;
        let host = ((z as u32 + 1) << 8) | (n as u32 + 2);
        let size = 1u32.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        if prefix > 22 || host >= size.saturating_sub(1) {
            return Err(ContainerError::Image(format!(
                "network {} ({base}/{prefix}) is too small for zone {} replica {n}",
                self.name,
                z + 1
            )));
        }
        Ok(Ipv4Addr::from(u32::from(base) + host))
    }
}

/// Creates the region's network on a subnet the engine picks as free.
pub async fn create_network(env: &str, region: &str) -> Result<RegionNetwork, ContainerError> {
    let name = format!("geoha-{env}-{region}");
    let label = format!("{LAB_LABEL}={env}");
    docker(&["network", "create", "--label", &label, &name]).await?;
    let subnet = docker(&[
        "network",
        "inspect",
        "-f",
        "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
        &name,
    ])
    .await?;
    let subnet = subnet
        .split_whitespace()
        .find_map(parse_v4_subnet)
        .ok_or_else(|| ContainerError::Docker {
            args: format!("network inspect {name}"),
            message: format!("no IPv4 subnet in {subnet:?}"),
        })?;
    // Fixed container addresses (`--ip`) need a user-configured subnet: keep the one the
    // engine chose (free by construction) and declare it.
    docker(&["network", "rm", &name]).await?;
    let cidr = format!("{}/{}", subnet.0, subnet.1);
    docker(&[
        "network", "create", "--label", &label, "--subnet", &cidr, &name,
    ])
    .await?;
    Ok(RegionNetwork { name, subnet })
}

fn parse_v4_subnet(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, prefix) = s.split_once('/')?;
    Some((ip.parse().ok()?, prefix.parse().ok()?))
}

/// How the supervisor starts one replica container.
#[derive(Debug, Clone)]
pub struct ContainerLaunch {
    /// Image reference (a tag or `repo@sha256:...`).
    pub image: String,
    /// Container name.
    pub name: String,
    /// The region's network.
    pub network: String,
    /// Fixed address on it.
    pub ip: Ipv4Addr,
    /// Environment label value.
    pub env: String,
    /// Docker client config with the registries' credentials (pulls need them).
    pub docker_config: Option<std::path::PathBuf>,
}

impl ContainerLaunch {
    /// The replica's address as the link proxy reaches it.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((self.ip, CONTAINER_PORT))
    }
}

/// `docker run` in the foreground for one replica (the API arguments follow).
pub fn run_command(launch: &ContainerLaunch, api_args: &[String], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("docker");
    if let Some(config) = &launch.docker_config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(["run", "--rm", "--name", &launch.name])
        .arg("--label")
        .arg(format!("{LAB_LABEL}={}", launch.env))
        .args(["--network", &launch.network, "--ip"])
        .arg(launch.ip.to_string())
        // What the rendered Kubernetes manifests ask for, here too.
        .args([
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--stop-timeout",
            "3",
        ]);
    for (k, v) in env {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    cmd.arg(&launch.image).args(api_args);
    cmd
}

/// Best effort, bounded: used by faults and shutdown (errors are logged).
pub async fn engine_fault(args: &[&str]) {
    if let Err(err) = docker_within(args, Duration::from_secs(10)).await {
        tracing::warn!(%err, "container fault");
    }
}

/// True when `exe` has no ELF interpreter (a static binary that runs `FROM scratch`).
pub fn is_static_executable(exe: &Path) -> std::io::Result<bool> {
    let data = std::fs::read(exe)?;
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an ELF64 file");
    if data.get(..5) != Some(b"\x7fELF\x02") {
        return Err(invalid());
    }
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u64_at = |o: usize| {
        data.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let phoff = u64_at(0x20).ok_or_else(invalid)? as usize;
    let phentsize = u16_at(0x36).ok_or_else(invalid)? as usize;
    let phnum = u16_at(0x38).ok_or_else(invalid)? as usize;
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = data
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(invalid)?;
        if p_type == PT_INTERP {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The project's Dockerfile (FROM scratch; copies `geoha`).
const DOCKERFILE: &str = include_str!("../../../Dockerfile");

/// Builds the geoha image from `exe` with the project's Dockerfile; returns the tag.
pub async fn build_image(exe: &Path, tag: &str) -> Result<String, ContainerError> {
    let is_static = is_static_executable(exe)
        .map_err(|e| ContainerError::Image(format!("{}: {e}", exe.display())))?;
    if !is_static {
        return Err(ContainerError::Image(format!(
            "{} is dynamically linked and cannot run FROM scratch; build the static one \
             with scripts/image.sh (it tags geoha:dev) and pass --image geoha:dev, or run \
             a static geoha (target/x86_64-unknown-linux-gnu/image/geoha)",
            exe.display()
        )));
    }
    let ctx = tempfile_dir()?;
    let result = async {
        std::fs::write(ctx.join("Dockerfile"), DOCKERFILE)
            .and_then(|()| std::fs::copy(exe, ctx.join("geoha")).map(|_| ()))
            .map_err(|e| ContainerError::Image(format!("staging the image context: {e}")))?;
        let ctx_str = ctx.display().to_string();
        docker_within(
            &["build", "-q", "-t", tag, &ctx_str],
            Duration::from_secs(300),
        )
        .await
    }
    .await;
    let _ = std::fs::remove_dir_all(&ctx);
    result.map(|_| tag.to_string())
}

fn tempfile_dir() -> Result<std::path::PathBuf, ContainerError> {
    let dir = std::env::temp_dir().join(format!(
        "geoha-image-{}-{}",
        std::process::id(),
        crate::random_token()
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| ContainerError::Image(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_addresses_are_fixed_inside_the_region_subnet() {
        let net = RegionNetwork {
            name: "n".into(),
            subnet: ("172.20.0.0".parse().unwrap(), 16),
        };
        assert_eq!(net.replica_ip(0, 0).unwrap(), Ipv4Addr::new(172, 20, 1, 2));
        assert_eq!(net.replica_ip(2, 1).unwrap(), Ipv4Addr::new(172, 20, 3, 3));
        let small = RegionNetwork {
            name: "s".into(),
            subnet: ("192.168.0.0".parse().unwrap(), 24),
        };
        assert!(small.replica_ip(0, 0).is_err());
        let twenty = RegionNetwork {
            name: "t".into(),
            subnet: ("192.168.16.0".parse().unwrap(), 20),
        };
        assert_eq!(
            twenty.replica_ip(2, 0).unwrap(),
            Ipv4Addr::new(192, 168, 19, 2)
        );
        assert!(twenty.replica_ip(15, 0).is_err());
    }

    #[test]
    fn subnets_parse() {
        assert_eq!(
            parse_v4_subnet("172.18.0.0/16"),
            Some((Ipv4Addr::new(172, 18, 0, 0), 16))
        );
        assert_eq!(parse_v4_subnet("fd00::/64"), None);
    }

    #[test]
    fn static_detection_reads_the_elf_program_headers() {
        // The test binary itself is dynamically linked (the default target).
        let me = std::env::current_exe().unwrap();
        assert!(!is_static_executable(&me).unwrap());
        let dir = std::env::temp_dir().join(format!("geoha-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_elf = dir.join("x");
        std::fs::write(&not_elf, b"#!/bin/sh\n").unwrap();
        assert!(is_static_executable(&not_elf).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
