//! Faults: what can be broken (`FaultTarget`) and how (`FaultRequest`), as the control
//! API and `geoha fault` speak them.

use std::time::Duration;

pub use geoha_control::{FaultAction, FaultRequest, FaultTarget, PartitionMode};

use crate::plan::LabPlan;

/// Indices (into `plan.replicas`) of the replicas `target` names; an error when it
/// names nothing, listing what exists.
pub fn resolve(target: &FaultTarget, plan: &LabPlan) -> Result<Vec<usize>, String> {
    let hits: Vec<usize> = plan
        .replicas
        .iter()
        .enumerate()
        .filter(|(_, r)| match target {
            FaultTarget::Replica(n) => &r.name == n,
            FaultTarget::Zone { region, zone } => &r.region == region && &r.zone == zone,
            FaultTarget::Region(n) => &r.region == n,
            FaultTarget::Registry(_) => false,
        })
        .map(|(i, _)| i)
        .collect();
    if hits.is_empty() {
        let known = match target {
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
            "{target} matches nothing; known: {}",
            known.join(", ")
        ));
    }
    Ok(hits)
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

/// Validates a request into a target and a fault; messages name the bad field.
pub fn validate(req: &FaultRequest) -> Result<(FaultTarget, Fault), String> {
    let target: FaultTarget = req.target.parse()?;
    let share = |name: &str, v: Option<f64>| -> Result<f64, String> {
        let v = v.ok_or_else(|| format!("{:?} needs `{name}`", req.action))?;
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(format!("{name}: {v} must be between 0 and 1"))
        }
    };
    let fault = match req.action {
        FaultAction::Kill => Fault::Kill {
            stay_down: req.stay_down.unwrap_or(false),
            restart_after: req.restart_after_ms.map(Duration::from_millis),
        },
        FaultAction::Freeze => Fault::Freeze,
        FaultAction::Thaw => Fault::Thaw,
        FaultAction::Slow => Fault::Slow {
            latency: Duration::from_millis(
                req.latency_ms
                    .ok_or("slow needs `latency_ms`")?
                    .min(600_000),
            ),
            jitter: Duration::from_millis(req.jitter_ms.unwrap_or(0).min(600_000)),
        },
        FaultAction::Loss => Fault::Loss(share("loss", req.loss)?),
        FaultAction::Partition => Fault::Partition(req.mode.unwrap_or_default()),
        FaultAction::ErrorRate => Fault::ErrorRate(share("rate", req.rate)?),
        FaultAction::Heal => Fault::Heal,
    };
    Ok((target, fault))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_validate_their_parameters() {
        let req: FaultRequest =
            serde_json::from_str(r#"{"action":"error-rate","target":"region:a","rate":1.5}"#)
                .unwrap();
        assert!(validate(&req).unwrap_err().contains("rate"));
        let req: FaultRequest =
            serde_json::from_str(r#"{"action":"slow","target":"region:a"}"#).unwrap();
        assert!(validate(&req).unwrap_err().contains("latency_ms"));
        let req: FaultRequest =
            serde_json::from_str(r#"{"action":"kill","target":"replica:a","stay_down":true}"#)
                .unwrap();
        assert_eq!(
            validate(&req).unwrap().1,
            Fault::Kill {
                stay_down: true,
                restart_after: None
            }
        );
        assert!(serde_json::from_str::<FaultRequest>(
            r#"{"action":"kill","target":"replica:a","bogus":1}"#
        )
        .is_err());
    }
}
