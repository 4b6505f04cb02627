//! Every name and number the rendered files share, derived once from the topology.
//!
//! The Kubernetes overlays, the Bicep parameters and the workflow must agree on cluster
//! names, ingress host names and the pinned image; deriving them here (and nowhere
//! else) keeps them in step. This is also where a topology that the lab accepts but
//! Azure would reject is refused, with the topology key to fix.

use std::time::Duration;

use geoha_topology::Topology;

use crate::{RenderError, RenderOptions, PLACEHOLDER_DIGEST};

/// Kubernetes keeps fewer than this many replicas per region in the deployment only
/// by scaling up: two replicas cannot lose one to a zone outage and a second to a
/// rolling update at the same time.
pub(crate) const MIN_REPLICAS_PER_REGION: u32 = 3;

/// Azure availability zones a cluster's node pool can span.
const AZURE_ZONES: [&str; 3] = ["1", "2", "3"];

/// The derived deployment.
#[derive(Debug)]
pub(crate) struct Plan<'t> {
    pub(crate) topology: &'t Topology,
    pub(crate) environment: String,
    pub(crate) resource_group: String,
    pub(crate) registry_name: String,
    /// `<registry>.azurecr.io/<image name>`: geo-replicas share the login server; Azure
    /// serves each pull from the replica nearest to the cluster.
    pub(crate) image_repository: String,
    /// `sha256:...`.
    pub(crate) image_digest: String,
    /// The registry's home location (the first region holding a replica).
    pub(crate) registry_location: String,
    /// Other locations holding a replica (one replication each).
    pub(crate) registry_replica_locations: Vec<String>,
    pub(crate) frontdoor_name: String,
    pub(crate) frontdoor_endpoint: String,
    pub(crate) origin_response_timeout_s: u64,
    pub(crate) probe_interval_s: u64,
    pub(crate) regions: Vec<RegionPlan>,
}

/// One region: its cluster, its share of the traffic, its ingress.
#[derive(Debug)]
pub(crate) struct RegionPlan {
    /// Azure location, e.g. `eastus2` (also the overlay directory name).
    pub(crate) name: String,
    /// `green`, `blue`, ... (empty when the topology gives none).
    pub(crate) role: String,
    /// AKS cluster name.
    pub(crate) cluster: String,
    /// Availability zones, a subset of 1–3.
    pub(crate) zones: Vec<String>,
    /// Deployment replicas (and HPA minimum).
    pub(crate) replicas: u32,
    /// HPA maximum.
    pub(crate) max_replicas: u32,
    /// Front Door priority (1–5).
    pub(crate) priority: u8,
    /// Front Door weight (1–1000).
    pub(crate) weight: u16,
    /// DNS label on the ingress controller's public IP.
    pub(crate) ingress_dns_label: String,
    /// `<label>.<location>.cloudapp.azure.com`: the Front Door origin and smoke-test host.
    pub(crate) ingress_host: String,
    /// Front Door origin name.
    pub(crate) origin_name: String,
}

impl<'t> Plan<'t> {
    pub(crate) fn new(topology: &'t Topology, opts: &RenderOptions) -> Result<Self, RenderError> {
        topology.validate()?;
        let image_digest = match &opts.image_digest {
            Some(d) if is_sha256_digest(d) => d.clone(),
            Some(d) => return Err(RenderError::BadDigest(d.clone())),
            None => PLACEHOLDER_DIGEST.to_string(),
        };
        let environment = topology.environment.clone();
        let registry_name = topology.registry_name();
        if !(5..=50).contains(&registry_name.len()) {
            return Err(unsupported(
                "registry.name",
                format!("{registry_name:?} must be 5-50 letters or digits (set registry.name)"),
            ));
        }
        let login_server = format!("{}.azurecr.io", registry_name.to_ascii_lowercase());
        let registry_regions = topology.registry_regions();
        let Some((home, others)) = registry_regions.split_first() else {
            return Err(unsupported(
                "registry.replicas",
                "at least one region must hold the registry".into(),
            ));
        };

        let fd = &topology.frontdoor;
        let origin_response_timeout_s = whole_seconds(
            "frontdoor.origin_response_timeout",
            fd.origin_response_timeout,
            16..=240,
        )?;
        let probe_interval_s =
            whole_seconds("frontdoor.probe.interval", fd.probe.interval, 1..=255)?;

        let mut regions = Vec::new();
        for (i, r) in topology.regions.iter().enumerate() {
            for (z, zone) in r.zones.iter().enumerate() {
                if !AZURE_ZONES.contains(&zone.as_str()) {
                    return Err(unsupported(
                        &format!("region[{i}].zones[{z}]"),
                        format!(
                            "Azure availability zones are \"1\", \"2\" and \"3\", got {zone:?}"
                        ),
                    ));
                }
            }
            let cluster = r.cluster_name(&environment);
            let cluster_ok = cluster
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
            if !cluster_ok {
                return Err(unsupported(
                    &format!("region[{i}].cluster"),
                    format!("{cluster:?}: AKS names are letters, digits, '-' and '_'"),
                ));
            }
            let label = if r.role.is_empty() { &r.name } else { &r.role };
            let ingress_dns_label = format!("geoha-{environment}-{label}");
            if ingress_dns_label.len() > 63 {
                return Err(unsupported(
                    &format!("region[{i}].role"),
                    format!("DNS label {ingress_dns_label:?} is longer than 63 characters"),
                ));
            }
            let from_topology = r.zones.len() as u32 * r.replicas_per_zone;
            let replicas = from_topology.max(MIN_REPLICAS_PER_REGION);
            regions.push(RegionPlan {
                name: r.name.clone(),
                role: r.role.clone(),
                cluster,
                zones: r.zones.clone(),
                replicas,
                max_replicas: replicas * 3,
                priority: r.priority,
                weight: r.weight,
                ingress_host: format!("{ingress_dns_label}.{}.cloudapp.azure.com", r.name),
                ingress_dns_label,
                origin_name: r.name.clone(),
            });
        }

        Ok(Plan {
            topology,
            resource_group: topology.resource_group(),
            image_repository: format!("{login_server}/{}", topology.image.name),
            registry_name,
            image_digest,
            registry_location: home.name.clone(),
            registry_replica_locations: others.iter().map(|r| r.name.clone()).collect(),
            frontdoor_name: topology.frontdoor_name(),
            frontdoor_endpoint: format!("geoha-{environment}"),
            origin_response_timeout_s,
            probe_interval_s,
            regions,
            environment,
        })
    }

    /// The image reference every manifest uses: `<repository>@sha256:...`.
    pub(crate) fn image_ref(&self) -> String {
        format!("{}@{}", self.image_repository, self.image_digest)
    }

    /// The first line of every generated text file, after the comment marker.
    pub(crate) fn banner(&self) -> String {
        format!(
            "Generated by `geoha render` (environment {:?}): edit the topology instead.",
            self.environment
        )
    }
}

/// `sha256:` followed by 64 lowercase hex digits.
pub(crate) fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

fn whole_seconds(
    key: &str,
    d: Duration,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, RenderError> {
    if d.subsec_nanos() != 0 || !range.contains(&d.as_secs()) {
        return Err(unsupported(
            key,
            format!(
                "Azure Front Door needs whole seconds in {}..={} s, got {d:?}",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(d.as_secs())
}

fn unsupported(key: &str, message: String) -> RenderError {
    RenderError::Unsupported {
        key: key.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_must_be_sha256_with_64_lowercase_hex_digits() {
        assert!(is_sha256_digest(PLACEHOLDER_DIGEST));
        assert!(is_sha256_digest(&format!("sha256:{}", "ab12".repeat(16))));
        for bad in [
            "",
            "sha256:",
            "sha512:0000",
            &format!("sha256:{}", "AB12".repeat(16)),
            &format!("sha256:{}", "0".repeat(63)),
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            assert!(!is_sha256_digest(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_default_topology_gets_three_replicas_per_region_and_shared_names() {
        let t = Topology::builtin_default();
        let plan = Plan::new(&t, &RenderOptions::default()).unwrap();
        assert_eq!(plan.image_repository, "geohadevacr.azurecr.io/geoha-api");
        assert_eq!(plan.registry_location, "eastus2");
        assert_eq!(plan.registry_replica_locations, ["centralus"]);
        assert_eq!(plan.probe_interval_s, 1);
        let green = &plan.regions[0];
        assert_eq!(green.cluster, "aks-dev-green");
        assert_eq!(green.replicas, 3);
        assert_eq!(
            green.ingress_host,
            "geoha-dev-green.eastus2.cloudapp.azure.com"
        );
    }

    #[test]
    fn a_one_zone_region_still_gets_three_replicas() {
        let mut t = Topology::builtin_default();
        t.regions[0].zones = vec!["2".into()];
        let plan = Plan::new(&t, &RenderOptions::default()).unwrap();
        assert_eq!(plan.regions[0].replicas, MIN_REPLICAS_PER_REGION);
        t.regions[0].zones = vec!["1".into(), "2".into()];
        t.regions[0].replicas_per_zone = 4;
        let plan = Plan::new(&t, &RenderOptions::default()).unwrap();
        assert_eq!(plan.regions[0].replicas, 8);
    }

    #[test]
    fn azure_limits_are_refused_with_the_topology_key() {
        type Change = fn(&mut Topology);
        let cases: [(&str, Change); 4] = [
            ("region[1].zones[0]", |t| {
                t.regions[1].zones = vec!["a".into()]
            }),
            ("frontdoor.probe.interval", |t| {
                t.frontdoor.probe.interval = Duration::from_millis(1500)
            }),
            ("frontdoor.origin_response_timeout", |t| {
                t.frontdoor.origin_response_timeout = Duration::from_secs(5)
            }),
            ("region[0].cluster", |t| {
                t.regions[0].cluster = Some("aks.green".into())
            }),
        ];
        for (key, change) in cases {
            let mut t = Topology::builtin_default();
            change(&mut t);
            match Plan::new(&t, &RenderOptions::default()) {
                Err(RenderError::Unsupported { key: got, .. }) => assert_eq!(got, key),
                other => panic!("{key}: expected Unsupported, got {other:?}"),
            }
        }
        let opts = RenderOptions {
            image_digest: Some("latest".into()),
        };
        assert!(matches!(
            Plan::new(&Topology::builtin_default(), &opts),
            Err(RenderError::BadDigest(_))
        ));
    }
}
