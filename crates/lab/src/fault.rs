//! Faults: what can be broken (`FaultTarget`) and how (`FaultRequest`), as the control
//! API and `geoha fault` speak them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::link::PartitionMode;
use crate::plan::LabPlan;

/// Which replicas a fault hits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultTarget {
    /// `replica:NAME`
    Replica(String),
    /// `zone:REGION-ZONE`, e.g. `zone:eastus2-1`
    Zone {
        /// Region name.
        region: String,
        /// Zone label.
        zone: String,
    },
    /// `region:NAME`
    Region(String),
    /// `registry:REGION`, the region's registry replica (`kill` and `heal` only).
    Registry(String),
}

impl FromStr for FaultTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            format!("target {s:?}: expected replica:NAME, zone:REGION-ZONE or region:NAME")
        })?;
        if name.is_empty() {
            return Err(format!("target {s:?}: empty name"));
        }
        match kind {
            "replica" => Ok(FaultTarget::Replica(name.to_string())),
            "region" => Ok(FaultTarget::Region(name.to_string())),
            "registry" => Ok(FaultTarget::Registry(name.to_string())),
            "zone" => {
                let (region, zone) = name.rsplit_once('-').ok_or_else(|| {
                    format!("target {s:?}: a zone is REGION-ZONE, e.g. zone:eastus2-1")
                })?;
                Ok(FaultTarget::Zone {
                    region: region.to_string(),
                    zone: zone.to_string(),
                })
            }
            other => Err(format!(
                "target {s:?}: unknown kind {other:?} (replica, zone, region or registry)"
            )),
        }
    }
}

impl fmt::Display for FaultTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultTarget::Replica(n) => write!(f, "replica:{n}"),
            FaultTarget::Zone { region, zone } => write!(f, "zone:{region}-{zone}"),
            FaultTarget::Region(n) => write!(f, "region:{n}"),
            FaultTarget::Registry(n) => write!(f, "registry:{n}"),
        }
    }
}

impl FaultTarget {
    /// Indices (into `plan.replicas`) of the replicas the target names; an error when it
    /// names nothing, listing what exists.
    pub fn resolve(&self, plan: &LabPlan) -> Result<Vec<usize>, String> {
        let hits: Vec<usize> = plan
            .replicas
            .iter()
            .enumerate()
            .filter(|(_, r)| match self {
                FaultTarget::Replica(n) => &r.name == n,
                FaultTarget::Zone { region, zone } => &r.region == region && &r.zone == zone,
                FaultTarget::Region(n) => &r.region == n,
                FaultTarget::Registry(_) => false,
            })
            .map(|(i, _)| i)
            .collect();
        if hits.is_empty() {
            let known = match self {
                FaultTarget::Replica(_) => plan
                    .replicas
                    .iter()
                    .map(|r| r.name.clone())
                    .collect::<Vec<_>>(),
                FaultTarget::Zone { .. } => {
                    let mut z: Vec<String> = plan
                        .replicas
                        .iter()
                        .map(|r| format!("{}-{}", r.region, r.zone))
                        .collect();
                    z.dedup();
                    z
                }
                FaultTarget::Region(_) => plan.regions.iter().map(|r| r.name.clone()).collect(),
                FaultTarget::Registry(_) => plan
                    .registry_regions
                    .iter()
                    .map(|(_, n)| n.clone())
                    .collect(),
            };
            return Err(format!(
                "{self} matches nothing; known: {}",
                known.join(", ")
            ));
        }
        Ok(hits)
    }
}

/// The fault actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultAction {
    /// SIGKILL; the supervisor restarts it unless `stay_down`.
    Kill,
    /// SIGSTOP.
    Freeze,
    /// SIGCONT.
    Thaw,
    /// Latency on the link.
    Slow,
    /// Packet loss on the link.
    Loss,
    /// Cut the link between the front door and the replica.
    Partition,
    /// Answer 5xx for a share of requests.
    ErrorRate,
    /// Undo every fault on the target.
    Heal,
}

impl FromStr for FaultAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
            format!(
                "unknown fault {s:?}: kill, freeze, thaw, slow, loss, partition, error-rate or heal"
            )
        })
    }
}

/// A fault as the control API receives it (`POST /v1/faults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// What to do.
    pub action: FaultAction,
    /// `replica:NAME`, `zone:REGION-ZONE` or `region:NAME`.
    pub target: String,
    /// `slow`: added latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// `slow`: uniform jitter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    /// `loss`: probability 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// `error-rate`: share 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// `kill`: do not restart until healed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stay_down: Option<bool>,
    /// `kill`: restart after this many milliseconds (default: the supervisor's backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_after_ms: Option<u64>,
    /// `partition`: `blackhole` (default) or `refuse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PartitionMode>,
}

/// A validated fault, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// SIGKILL.
    Kill {
        /// Keep it down until healed.
        stay_down: bool,
        /// Restart delay.
        restart_after: Option<Duration>,
    },
    /// SIGSTOP.
    Freeze,
    /// SIGCONT.
    Thaw,
    /// Link latency.
    Slow {
        /// Added latency.
        latency: Duration,
        /// Jitter.
        jitter: Duration,
    },
    /// Link loss.
    Loss(f64),
    /// Link cut.
    Partition(PartitionMode),
    /// Injected 5xx share.
    ErrorRate(f64),
    /// Undo all.
    Heal,
}

impl FaultRequest {
    /// Validates the request into a target and a fault; messages name the bad field.
    pub fn validate(&self) -> Result<(FaultTarget, Fault), String> {
        let target: FaultTarget = self.target.parse()?;
        let share = |name: &str, v: Option<f64>| -> Result<f64, String> {
            let v = v.ok_or_else(|| format!("{:?} needs `{name}`", self.action))?;
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(format!("{name}: {v} must be between 0 and 1"))
            }
        };
        let fault = match self.action {
            FaultAction::Kill => Fault::Kill {
                stay_down: self.stay_down.unwrap_or(false),
                restart_after: self.restart_after_ms.map(Duration::from_millis),
            },
            FaultAction::Freeze => Fault::Freeze,
            FaultAction::Thaw => Fault::Thaw,
            FaultAction::Slow => Fault::Slow {
                latency: Duration::from_millis(
                    self.latency_ms
                        .ok_or("slow needs `latency_ms`")?
                        .min(600_000),
                ),
                jitter: Duration::from_millis(self.jitter_ms.unwrap_or(0).min(600_000)),
            },
            FaultAction::Loss => Fault::Loss(share("loss", self.loss)?),
            FaultAction::Partition => Fault::Partition(self.mode.unwrap_or_default()),
            FaultAction::ErrorRate => Fault::ErrorRate(share("rate", self.rate)?),
            FaultAction::Heal => Fault::Heal,
        };
        Ok((target, fault))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print() {
        for s in [
            "replica:eastus2-z1-r0",
            "zone:eastus2-1",
            "region:centralus",
        ] {
            assert_eq!(s.parse::<FaultTarget>().unwrap().to_string(), s);
        }
        assert_eq!(
            "zone:east-us-2-3".parse::<FaultTarget>().unwrap(),
            FaultTarget::Zone {
                region: "east-us-2".into(),
                zone: "3".into()
            }
        );
        assert!("pod:x".parse::<FaultTarget>().is_err());
        assert!("zone:nodash".parse::<FaultTarget>().is_err());
        assert!("region".parse::<FaultTarget>().is_err());
    }

    #[test]
    fn requests_validate_their_parameters() {
        let req: FaultRequest =
            serde_json::from_str(r#"{"action":"error-rate","target":"region:a","rate":1.5}"#)
                .unwrap();
        assert!(req.validate().unwrap_err().contains("rate"));
        let req: FaultRequest =
            serde_json::from_str(r#"{"action":"slow","target":"region:a"}"#).unwrap();
        assert!(req.validate().unwrap_err().contains("latency_ms"));
        let req: FaultRequest =
            serde_json::from_str(r#"{"action":"kill","target":"replica:a","stay_down":true}"#)
                .unwrap();
        assert_eq!(
            req.validate().unwrap().1,
            Fault::Kill {
                stay_down: true,
                restart_after: None
            }
        );
        assert!(serde_json::from_str::<FaultRequest>(
            r#"{"action":"kill","target":"replica:a","bogus":1}"#
        )
        .is_err());
        assert!("explode".parse::<FaultAction>().is_err());
        assert_eq!(
            "error-rate".parse::<FaultAction>(),
            Ok(FaultAction::ErrorRate)
        );
    }
}
