//! `LabPlan`: what the lab runs and where, derived from a topology before anything
//! starts. Every replica gets its own loopback address `127.<region>.<zone>.<n>` (region
//! and zone are recognisable in the address) and a link address on the same IP, where
//! the lab's `LinkProxy` stands between the front door and the replica.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// One replica's place in the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaPlan {
    /// `<region>-z<zone>-r<n>`, e.g. `eastus2-z1-r0`.
    pub name: String,
    /// Region name.
    pub region: String,
    /// Zone label within the region.
    pub zone: String,
    /// Where the replica process listens.
    pub addr: SocketAddr,
    /// Where the front door connects (the link proxy in front of the replica).
    pub link_addr: SocketAddr,
    /// Front door priority of the region (1 = preferred).
    pub priority: u8,
    /// Front door weight of the region.
    pub weight: u16,
    /// Version label the replica reports.
    pub version: String,
}

/// A region as the lab shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionPlan {
    /// Region name, e.g. `eastus2`.
    pub name: String,
    /// Role, e.g. `green`.
    pub role: String,
    /// Zone labels.
    pub zones: Vec<String>,
    /// Front door priority.
    pub priority: u8,
    /// Front door weight.
    pub weight: u16,
}

/// Health probe settings handed to the front door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbePlan {
    /// Probe path, e.g. `/`.
    pub path: String,
    /// `HEAD` or `GET`.
    pub method: String,
    /// Time between probes.
    pub interval: Duration,
    /// Probes remembered.
    pub sample_size: u32,
    /// Successes among them for healthy.
    pub successful_samples_required: u32,
    /// Latency band width.
    pub additional_latency_ms: u32,
}

/// Everything the lab starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPlan {
    /// Environment name, e.g. `dev`.
    pub environment: String,
    /// Regions in topology order.
    pub regions: Vec<RegionPlan>,
    /// Replicas in topology order (region, zone, index).
    pub replicas: Vec<ReplicaPlan>,
    /// Front door traffic listener.
    pub frontdoor_listen: SocketAddr,
    /// Front door probe settings.
    pub probe: ProbePlan,
    /// Overall origin response timeout.
    pub origin_response_timeout: Duration,
    /// Cookie affinity on/off.
    pub session_affinity: bool,
    /// Replicas' drain delay (kept short in the lab: the front door drains them first).
    pub replica_drain_delay: Duration,
    /// Regions holding a registry replica: (index in `regions`, name).
    pub registry_regions: Vec<(usize, String)>,
    /// Port of the registry replicas (0: any free port).
    pub registry_port: u16,
    /// Repository name of the API image.
    pub image_name: String,
}

/// Address of replica `n` of zone `z` of region `r` (all 0-based): `127.<r+1>.<z+1>.<n+1>`.
/// The link proxy shares the IP and listens on `link_port`.
pub fn replica_ip(region: usize, zone: usize, n: usize) -> Ipv4Addr {
    let octet = |i: usize| u8::try_from(i + 1).unwrap_or(u8::MAX);
    Ipv4Addr::new(127, octet(region), octet(zone), octet(n))
}

/// Ports used when the topology asks for fixed ports.
pub const DEFAULT_REPLICA_PORT: u16 = 8080;
/// The link proxy's port next to a replica on a fixed port.
pub const DEFAULT_LINK_PORT: u16 = 18080;
/// The registry replicas' port (on `127.<region>.0.1`).
pub const DEFAULT_REGISTRY_PORT: u16 = 5000;

/// What the lab decides that the topology does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// Port every replica listens on (0: any free port, for tests running labs in
    /// parallel).
    pub replica_port: u16,
    /// Port of the link proxy next to each replica (0 with `replica_port` 0).
    pub link_port: u16,
    /// Overrides the topology's front door address.
    pub frontdoor_listen: Option<SocketAddr>,
    /// Port of the registry replicas (0 with `replica_port` 0).
    pub registry_port: u16,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            replica_port: DEFAULT_REPLICA_PORT,
            link_port: DEFAULT_LINK_PORT,
            frontdoor_listen: None,
            registry_port: DEFAULT_REGISTRY_PORT,
        }
    }
}

impl LabPlan {
    /// The plan for a topology: one replica per (region, zone, n) on
    /// `127.<region>.<zone>.<n>`, named `<region>-z<zone>-r<n>`.
    pub fn from_topology(
        topology: &geoha_topology::Topology,
        options: &PlanOptions,
    ) -> Result<LabPlan, String> {
        let link_port = if options.replica_port == 0 {
            0
        } else {
            options.link_port
        };
        let mut replicas = Vec::new();
        let mut regions = Vec::new();
        for (ri, region) in topology.regions.iter().enumerate() {
            for (zi, zone) in region.zones.iter().enumerate() {
                for n in 0..region.replicas_per_zone as usize {
                    let ip = replica_ip(ri, zi, n);
                    replicas.push(ReplicaPlan {
                        name: format!("{}-z{zone}-r{n}", region.name),
                        region: region.name.clone(),
                        zone: zone.clone(),
                        addr: SocketAddr::from((ip, options.replica_port)),
                        link_addr: SocketAddr::from((ip, link_port)),
                        priority: region.priority,
                        weight: region.weight,
                        version: topology.image.version.clone(),
                    });
                }
            }
            regions.push(RegionPlan {
                name: region.name.clone(),
                role: region.role.clone(),
                zones: region.zones.clone(),
                priority: region.priority,
                weight: region.weight,
            });
        }
        let fd = &topology.frontdoor;
        let plan = LabPlan {
            environment: topology.environment.clone(),
            regions,
            replicas,
            frontdoor_listen: options.frontdoor_listen.unwrap_or(fd.listen),
            probe: ProbePlan {
                path: fd.probe.path.clone(),
                method: fd.probe.method.as_str().to_string(),
                interval: fd.probe.interval,
                sample_size: fd.probe.sample_size,
                successful_samples_required: fd.probe.successful_samples_required,
                additional_latency_ms: fd.probe.additional_latency_ms,
            },
            origin_response_timeout: fd.origin_response_timeout,
            session_affinity: fd.session_affinity,
            // The front door stops sending first (ejection, shutdown order), so replicas
            // need only a short grace before they stop accepting.
            replica_drain_delay: Duration::from_millis(300),
            registry_regions: topology
                .registry_regions()
                .iter()
                .filter_map(|r| {
                    let i = topology.regions.iter().position(|x| x.name == r.name)?;
                    Some((i, r.name.clone()))
                })
                .collect(),
            registry_port: if options.replica_port == 0 {
                0
            } else {
                options.registry_port
            },
            image_name: topology.image.name.clone(),
        };
        plan.check()?;
        Ok(plan)
    }

    /// Replica names in a region.
    pub fn replicas_in_region<'a>(
        &'a self,
        region: &'a str,
    ) -> impl Iterator<Item = &'a ReplicaPlan> + 'a {
        self.replicas.iter().filter(move |r| r.region == region)
    }

    /// Plan limits the address scheme can express (255 regions, zones, replicas).
    pub fn check(&self) -> Result<(), String> {
        if self.replicas.is_empty() {
            return Err("the topology has no replicas".into());
        }
        let mut names: Vec<&str> = self.replicas.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("replica name {} appears twice", w[0]));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_encode_region_zone_and_replica() {
        assert_eq!(replica_ip(0, 0, 0), Ipv4Addr::new(127, 1, 1, 1));
        assert_eq!(replica_ip(1, 2, 0), Ipv4Addr::new(127, 2, 3, 1));
    }

    #[test]
    fn the_default_topology_plans_six_replicas_on_recognisable_addresses() {
        let plan = LabPlan::from_topology(
            &geoha_topology::Topology::builtin_default(),
            &PlanOptions::default(),
        )
        .unwrap();
        assert_eq!(plan.replicas.len(), 6);
        let r = &plan.replicas[4];
        assert_eq!(r.name, "centralus-z2-r0");
        assert_eq!(r.addr, "127.2.2.1:8080".parse().unwrap());
        assert_eq!(r.link_addr, "127.2.2.1:18080".parse().unwrap());
        assert_eq!(plan.frontdoor_listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(plan.probe.method, "HEAD");
        assert_eq!(plan.regions[1].role, "blue");
    }

    #[test]
    fn port_zero_gives_free_ports_to_replicas_and_links() {
        let opts = PlanOptions {
            replica_port: 0,
            frontdoor_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..PlanOptions::default()
        };
        let plan =
            LabPlan::from_topology(&geoha_topology::Topology::builtin_default(), &opts).unwrap();
        assert!(plan
            .replicas
            .iter()
            .all(|r| r.addr.port() == 0 && r.link_addr.port() == 0));
        assert_eq!(plan.frontdoor_listen.port(), 0);
    }
}
