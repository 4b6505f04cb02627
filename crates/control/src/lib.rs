//! The lab's control API contract, shared by the lab (which serves it), `geoha fault`
//! and the drill (which send it): what can be broken ([`FaultTarget`]), how
//! ([`FaultAction`], [`PartitionMode`]) and the request body ([`FaultRequest`],
//! `POST /v1/faults`). One definition, so a target the lab accepts is one a drill
//! scenario can name.

#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a fault hits.
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
    /// `registry:REGION`, the region's registry replica (`kill`, `partition`, `heal`).
    Registry(String),
}

impl FromStr for FaultTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            format!(
                "target {s:?}: expected replica:NAME, zone:REGION-ZONE, region:NAME or registry:REGION"
            )
        })?;
        if name.is_empty() {
            return Err(format!("target {s:?}: empty name"));
        }
        match kind {
            "replica" => Ok(FaultTarget::Replica(name.to_string())),
            "region" => Ok(FaultTarget::Region(name.to_string())),
            "registry" => Ok(FaultTarget::Registry(name.to_string())),
            "zone" => {
                let (region, zone) = name
                    .rsplit_once('-')
                    .filter(|(r, z)| !r.is_empty() && !z.is_empty())
                    .ok_or_else(|| {
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

/// The fault actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultAction {
    /// SIGKILL (or `docker kill`); the supervisor restarts it unless `stay_down`.
    Kill,
    /// SIGSTOP (or `docker pause`).
    Freeze,
    /// SIGCONT (or `docker unpause`).
    Thaw,
    /// Added latency on the link.
    Slow,
    /// Packet loss on the link.
    Loss,
    /// The link is cut.
    Partition,
    /// A share of requests answered 5xx.
    ErrorRate,
    /// Undo every fault on the target.
    Heal,
}

impl FaultAction {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultAction::Kill => "kill",
            FaultAction::Freeze => "freeze",
            FaultAction::Thaw => "thaw",
            FaultAction::Slow => "slow",
            FaultAction::Loss => "loss",
            FaultAction::Partition => "partition",
            FaultAction::ErrorRate => "error-rate",
            FaultAction::Heal => "heal",
        }
    }

    /// True for actions that put a target back (its answers should return, not stop).
    pub fn restores(self) -> bool {
        matches!(self, FaultAction::Thaw | FaultAction::Heal)
    }
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

/// How a partition behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionMode {
    /// Accept and never answer (packets silently dropped).
    #[default]
    Blackhole,
    /// Close new connections at once (connection refused / reset).
    Refuse,
}

impl PartitionMode {
    /// The wire name (`blackhole`, `refuse`).
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionMode::Blackhole => "blackhole",
            PartitionMode::Refuse => "refuse",
        }
    }
}

/// A fault as the control API receives it (`POST /v1/faults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// What to do.
    pub action: FaultAction,
    /// A [`FaultTarget`] in its text form.
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

impl FaultRequest {
    /// A request with no options.
    pub fn new(action: FaultAction, target: &FaultTarget) -> FaultRequest {
        FaultRequest {
            action,
            target: target.to_string(),
            latency_ms: None,
            jitter_ms: None,
            loss: None,
            rate: None,
            stay_down: None,
            restart_after_ms: None,
            mode: None,
        }
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
            "registry:eastus2",
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
        for bad in [
            "pod:x",
            "zone:nodash",
            "zone:-1",
            "zone:a-",
            "region",
            "region:",
        ] {
            assert!(bad.parse::<FaultTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn actions_have_one_wire_name() {
        for a in [
            FaultAction::Kill,
            FaultAction::Freeze,
            FaultAction::Thaw,
            FaultAction::Slow,
            FaultAction::Loss,
            FaultAction::Partition,
            FaultAction::ErrorRate,
            FaultAction::Heal,
        ] {
            assert_eq!(a.as_str().parse::<FaultAction>(), Ok(a));
            assert_eq!(
                serde_json::to_value(a).unwrap(),
                serde_json::Value::String(a.as_str().into())
            );
        }
        assert!("explode".parse::<FaultAction>().is_err());
        assert!(FaultAction::Heal.restores() && !FaultAction::Kill.restores());
    }

    #[test]
    fn requests_skip_absent_options_and_refuse_unknown_fields() {
        let mut req = FaultRequest::new(FaultAction::Slow, &FaultTarget::Region("a".into()));
        req.latency_ms = Some(200);
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"action": "slow", "target": "region:a", "latency_ms": 200})
        );
        assert!(serde_json::from_str::<FaultRequest>(
            r#"{"action":"kill","target":"replica:a","bogus":1}"#
        )
        .is_err());
        let req: FaultRequest =
            serde_json::from_str(r#"{"action":"partition","target":"registry:a","mode":"refuse"}"#)
                .unwrap();
        assert_eq!(req.mode, Some(PartitionMode::Refuse));
        for m in [PartitionMode::Blackhole, PartitionMode::Refuse] {
            assert_eq!(
                serde_json::to_value(m).unwrap(),
                serde_json::Value::String(m.as_str().into())
            );
        }
    }
}
