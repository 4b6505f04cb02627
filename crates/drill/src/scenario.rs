//! Scenarios: timelines of actions at offsets from the start of the load. An action is
//! a lab fault (sent to the lab's control API) or a shell command (`sh -c`, with a
//! timeout), so the same drill can break a local lab or call `az`/`kubectl` against a
//! real deployment. Built-in scenarios fit the default lab topology: regions `eastus2`
//! and `centralus`, zones `1`-`3`, replicas named `<region>-z<zone>-r<n>`.
//!
//! A scenario file is TOML:
//!
//! ```toml
//! name = "eastus2-outage"
//! description = "eastus2 dies for 15 s"
//! duration = "30s"          # optional: the run's default length
//! rate = 500                # optional: the run's default rate
//!
//! [[step]]
//! at = "5s"
//! action = "kill"           # kill|freeze|thaw|slow|loss|partition|error-rate|heal
//! target = "region:eastus2" # replica:NAME | zone:REGION-ZONE | region:NAME
//! stay_down = true          # options: latency_ms, jitter_ms, loss, rate, stay_down
//!
//! [[step]]
//! at = "20s"
//! run = "kubectl --context green scale deploy/api --replicas=2"
//! timeout = "60s"           # default 30s
//! watch = "region:eastus2"  # optional: whose answers must stop (for shift_s)
//!
//! [[cleanup]]               # run after the load stops, not measured
//! action = "heal"
//! target = "region:eastus2"
//! ```

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::error::DrillError;
use crate::outcome::Answerer;

/// Default timeout of a shell step.
pub const DEFAULT_SHELL_TIMEOUT: Duration = Duration::from_secs(30);

/// The built-in scenario names.
pub const BUILTIN_NAMES: [&str; 8] = [
    "zone-loss",
    "region-loss",
    "region-loss-and-return",
    "replica-freeze",
    "slow-region",
    "flapping-replica",
    "partition",
    "error-burst",
];

/// A timeline of actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Its name (a built-in name or the file's `name`).
    pub name: String,
    /// One line for people.
    pub description: String,
    /// The run length this scenario was written for.
    pub duration: Option<Duration>,
    /// The rate this scenario was written for.
    pub rate: Option<f64>,
    /// Actions during the run, in time order.
    pub steps: Vec<Step>,
    /// Actions after the load stops (put things back); not measured.
    pub cleanup: Vec<StepAction>,
}

/// One action at an offset.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Offset from the start of the load.
    pub at: Duration,
    /// What to do.
    pub action: StepAction,
    /// Whose answers should stop after this step (for `shift_s`); defaults to the
    /// fault's target.
    pub watch: Option<FaultTarget>,
}

impl Step {
    /// The target whose answers `shift_s` watches, if any.
    pub fn watched(&self) -> Option<&FaultTarget> {
        self.watch.as_ref().or(match &self.action {
            StepAction::Fault(f) => Some(&f.target),
            StepAction::Shell { .. } => None,
        })
    }
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepAction {
    /// A fault sent to the lab's control API.
    Fault(LabFault),
    /// `sh -c COMMAND`, killed after `timeout`.
    Shell {
        /// The command line.
        command: String,
        /// How long it may run.
        timeout: Duration,
    },
}

impl fmt::Display for StepAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepAction::Fault(fault) => fault.fmt(f),
            StepAction::Shell { command, .. } => write!(f, "sh -c {command:?}"),
        }
    }
}

pub use geoha_control::{FaultAction, FaultTarget};

/// True when `who` is (part of) `target`. Zones also match by the replica naming
/// convention `<region>-z<zone>-r<n>` when the answer has no zone label. A registry
/// answers no API requests: it matches nothing.
pub fn target_matches(target: &FaultTarget, who: &Answerer) -> bool {
    match target {
        FaultTarget::Replica(name) => &who.replica == name,
        FaultTarget::Region(name) => {
            &who.region == name
                || (who.region.is_empty() && who.replica.starts_with(&format!("{name}-z")))
        }
        FaultTarget::Zone { region, zone } => {
            (&who.region == region && &who.zone == zone)
                || who.replica.starts_with(&format!("{region}-z{zone}-"))
        }
        FaultTarget::Registry(_) => false,
    }
}

/// A fault as the lab's control API takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct LabFault {
    /// What to do.
    pub action: FaultAction,
    /// To what.
    pub target: FaultTarget,
    /// `slow`: added latency.
    pub latency_ms: Option<u64>,
    /// `slow`: jitter.
    pub jitter_ms: Option<u64>,
    /// `loss`: probability 0..=1.
    pub loss: Option<f64>,
    /// `error-rate`: share 0..=1.
    pub rate: Option<f64>,
    /// `kill`: no restart until healed.
    pub stay_down: Option<bool>,
}

impl LabFault {
    /// A fault with no options.
    pub fn new(action: FaultAction, target: FaultTarget) -> LabFault {
        LabFault {
            action,
            target,
            latency_ms: None,
            jitter_ms: None,
            loss: None,
            rate: None,
            stay_down: None,
        }
    }

    /// The `POST /v1/faults` body.
    pub fn to_json(&self) -> serde_json::Value {
        let mut req = geoha_control::FaultRequest::new(self.action, &self.target);
        req.latency_ms = self.latency_ms;
        req.jitter_ms = self.jitter_ms;
        req.loss = self.loss;
        req.rate = self.rate;
        req.stay_down = self.stay_down;
        // A plain struct of strings and numbers always serializes.
        serde_json::to_value(req).unwrap_or(serde_json::Value::Null)
    }

    fn validate(&self) -> Result<(), String> {
        let share = |name: &str, v: Option<f64>| match v {
            Some(v) if (0.0..=1.0).contains(&v) => Ok(()),
            Some(v) => Err(format!("{name} must be between 0 and 1, got {v}")),
            None => Err(format!("{} needs {name} (0..1)", self.action.as_str())),
        };
        match self.action {
            FaultAction::Slow if self.latency_ms.is_none() => {
                Err("slow needs latency_ms".to_string())
            }
            FaultAction::Loss => share("loss", self.loss),
            FaultAction::ErrorRate => share("rate", self.rate),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for LabFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action.as_str(), self.target)?;
        if let Some(v) = self.latency_ms {
            write!(f, " latency={v}ms")?;
        }
        if let Some(v) = self.jitter_ms {
            write!(f, " jitter={v}ms")?;
        }
        if let Some(v) = self.loss {
            write!(f, " loss={v}")?;
        }
        if let Some(v) = self.rate {
            write!(f, " rate={v}")?;
        }
        if self.stay_down == Some(true) {
            write!(f, " stay-down")?;
        }
        Ok(())
    }
}

// === built-in scenarios ===

fn fault(action: FaultAction, target: &str) -> LabFault {
    LabFault::new(action, target.parse().expect("built-in targets parse"))
}

fn at(secs: u64, fault: LabFault) -> Step {
    Step {
        at: Duration::from_secs(secs),
        action: StepAction::Fault(fault),
        watch: None,
    }
}

fn heal(target: &str) -> StepAction {
    StepAction::Fault(fault(FaultAction::Heal, target))
}

impl Scenario {
    /// A built-in scenario by name.
    pub fn builtin(name: &str) -> Option<Scenario> {
        use FaultAction::*;
        let kill_down = |target: &str| LabFault {
            stay_down: Some(true),
            ..fault(Kill, target)
        };
        let (description, duration, steps, cleanup): (&str, u64, Vec<Step>, Vec<&str>) = match name {
            "zone-loss" => (
                "zone 1 of eastus2 dies at 5 s and comes back at 20 s; the other zones carry the load",
                30,
                vec![at(5, kill_down("zone:eastus2-1")), at(20, fault(Heal, "zone:eastus2-1"))],
                vec!["zone:eastus2-1"],
            ),
            "region-loss" => (
                "all of eastus2 dies at 5 s and stays down; centralus carries the load",
                25,
                vec![at(5, kill_down("region:eastus2"))],
                vec!["region:eastus2"],
            ),
            "region-loss-and-return" => (
                "eastus2 dies at 5 s and returns at 20 s (failback)",
                35,
                vec![at(5, kill_down("region:eastus2")), at(20, fault(Heal, "region:eastus2"))],
                vec!["region:eastus2"],
            ),
            "replica-freeze" => (
                "replica eastus2-z1-r0 stops answering (SIGSTOP) at 5 s and thaws at 20 s",
                30,
                vec![at(5, fault(Freeze, "replica:eastus2-z1-r0")), at(20, fault(Thaw, "replica:eastus2-z1-r0"))],
                vec!["replica:eastus2-z1-r0"],
            ),
            "slow-region" => (
                "eastus2 gets 200 ms of added latency from 5 s to 20 s",
                30,
                vec![
                    at(5, LabFault { latency_ms: Some(200), ..fault(Slow, "region:eastus2") }),
                    at(20, fault(Heal, "region:eastus2")),
                ],
                vec!["region:eastus2"],
            ),
            "flapping-replica" => (
                "replica eastus2-z1-r0 is killed at 5, 9, 13 and 17 s; the supervisor restarts it each time",
                25,
                [5, 9, 13, 17].into_iter().map(|s| at(s, fault(Kill, "replica:eastus2-z1-r0"))).collect(),
                vec!["replica:eastus2-z1-r0"],
            ),
            "partition" => (
                "the link to centralus is cut at 5 s and restored at 20 s",
                30,
                vec![at(5, fault(Partition, "region:centralus")), at(20, fault(Heal, "region:centralus"))],
                vec!["region:centralus"],
            ),
            "error-burst" => (
                "eastus2 answers half of its requests with 5xx from 5 s to 15 s",
                25,
                vec![
                    at(5, LabFault { rate: Some(0.5), ..fault(ErrorRate, "region:eastus2") }),
                    at(15, fault(Heal, "region:eastus2")),
                ],
                vec!["region:eastus2"],
            ),
            _ => return None,
        };
        Some(Scenario {
            name: name.to_string(),
            description: description.to_string(),
            duration: Some(Duration::from_secs(duration)),
            rate: None,
            steps,
            cleanup: cleanup.into_iter().map(heal).collect(),
        })
    }

    /// A built-in name, or else a scenario file to read. Reads the file with blocking
    /// I/O: call it before the runtime starts (as the CLI does).
    pub fn resolve(name_or_path: &str) -> Result<Scenario, DrillError> {
        if let Some(s) = Scenario::builtin(name_or_path) {
            return Ok(s);
        }
        let path = std::path::Path::new(name_or_path);
        if !path.exists() {
            return Err(DrillError::Scenario {
                origin: name_or_path.to_string(),
                message: format!(
                    "neither a built-in scenario ({}) nor a file",
                    BUILTIN_NAMES.join(", ")
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| DrillError::Scenario {
            origin: name_or_path.to_string(),
            message: e.to_string(),
        })?;
        Scenario::from_toml(&text, name_or_path)
    }

    /// Parses a scenario file; `origin` names it in errors (which carry line numbers).
    pub fn from_toml(text: &str, origin: &str) -> Result<Scenario, DrillError> {
        let err = |message: String| DrillError::Scenario {
            origin: origin.to_string(),
            message,
        };
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            err(match line {
                Some(l) => format!("line {l}: {}", e.message()),
                None => e.message().to_string(),
            })
        })?;
        let mut steps = Vec::with_capacity(raw.step.len());
        for spanned in raw.step {
            let line = line_of(text, spanned.span().start);
            let raw_step = spanned.into_inner();
            let at = raw_step.at.ok_or_else(|| {
                err(format!(
                    "line {line}: step: missing `at` (e.g. at = \"5s\")"
                ))
            })?;
            let watch = match &raw_step.watch {
                Some(w) => Some(
                    w.parse()
                        .map_err(|e| err(format!("line {line}: watch: {e}")))?,
                ),
                None => None,
            };
            let action = raw_step
                .into_action()
                .map_err(|e| err(format!("line {line}: step: {e}")))?;
            steps.push(Step { at, action, watch });
        }
        steps.sort_by_key(|s| s.at);
        let mut cleanup = Vec::with_capacity(raw.cleanup.len());
        for spanned in raw.cleanup {
            let line = line_of(text, spanned.span().start);
            let raw_step = spanned.into_inner();
            if raw_step.at.is_some() {
                return Err(err(format!(
                    "line {line}: cleanup: `at` makes no sense here (cleanup runs after the load)"
                )));
            }
            cleanup.push(
                raw_step
                    .into_action()
                    .map_err(|e| err(format!("line {line}: cleanup: {e}")))?,
            );
        }
        if let Some(rate) = raw.rate {
            if !(rate > 0.0 && rate.is_finite()) {
                return Err(err(format!("rate must be positive, got {rate}")));
            }
        }
        if let Some(d) = raw.duration {
            if let Some(late) = steps.iter().find(|s| s.at >= d) {
                return Err(err(format!(
                    "a step at {} is not before the end of the run ({})",
                    humantime::format_duration(late.at),
                    humantime::format_duration(d)
                )));
            }
        }
        Ok(Scenario {
            name: raw.name.unwrap_or_else(|| origin.to_string()),
            description: raw.description.unwrap_or_default(),
            duration: raw.duration,
            rate: raw.rate,
            steps,
            cleanup,
        })
    }

    /// True when a step or cleanup action needs the lab's control API.
    pub fn needs_lab(&self) -> bool {
        self.steps
            .iter()
            .map(|s| &s.action)
            .chain(&self.cleanup)
            .any(|a| matches!(a, StepAction::Fault(_)))
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    #[serde(default, with = "humantime_serde")]
    duration: Option<Duration>,
    rate: Option<f64>,
    #[serde(default)]
    step: Vec<toml::Spanned<RawStep>>,
    #[serde(default)]
    cleanup: Vec<toml::Spanned<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(default, with = "humantime_serde")]
    at: Option<Duration>,
    action: Option<String>,
    target: Option<String>,
    latency_ms: Option<u64>,
    jitter_ms: Option<u64>,
    loss: Option<f64>,
    rate: Option<f64>,
    stay_down: Option<bool>,
    run: Option<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    watch: Option<String>,
}

impl RawStep {
    fn into_action(self) -> Result<StepAction, String> {
        match (self.action, self.run) {
            (Some(_), Some(_)) => Err("has both `action` and `run`; a step does one".into()),
            (None, None) => Err("needs `action` (a lab fault) or `run` (a shell command)".into()),
            (None, Some(command)) => {
                if self.target.is_some() || self.latency_ms.is_some() || self.loss.is_some() {
                    return Err("fault options on a `run` step".into());
                }
                if command.trim().is_empty() {
                    return Err("`run` is empty".into());
                }
                Ok(StepAction::Shell {
                    command,
                    timeout: self.timeout.unwrap_or(DEFAULT_SHELL_TIMEOUT),
                })
            }
            (Some(action), None) => {
                if self.timeout.is_some() {
                    return Err("`timeout` is for `run` steps".into());
                }
                let target = self.target.ok_or("a fault needs `target`")?;
                let fault = LabFault {
                    action: action.parse()?,
                    target: target.parse()?,
                    latency_ms: self.latency_ms,
                    jitter_ms: self.jitter_ms,
                    loss: self.loss,
                    rate: self.rate,
                    stay_down: self.stay_down,
                };
                fault.validate()?;
                Ok(StepAction::Fault(fault))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_exists_and_fits_its_duration() {
        for name in BUILTIN_NAMES {
            let s = Scenario::builtin(name).unwrap();
            assert_eq!(s.name, name);
            let d = s.duration.unwrap();
            assert!(!s.steps.is_empty());
            assert!(s.steps.iter().all(|st| st.at < d), "{name}");
            assert!(s.needs_lab());
            assert!(!s.cleanup.is_empty());
        }
        assert!(Scenario::builtin("nope").is_none());
        let zl = Scenario::builtin("zone-loss").unwrap();
        let StepAction::Fault(f) = &zl.steps[0].action else {
            panic!()
        };
        assert_eq!(
            f.to_json(),
            serde_json::json!({"action":"kill","target":"zone:eastus2-1","stay_down":true})
        );
        let slow = Scenario::builtin("slow-region").unwrap();
        let StepAction::Fault(f) = &slow.steps[0].action else {
            panic!()
        };
        assert_eq!(f.to_json()["latency_ms"], 200);
    }

    #[test]
    fn parses_a_file_with_faults_and_shell_steps() {
        let text = r#"
name = "custom"
duration = "30s"
rate = 250

[[step]]
at = "20s"
run = "echo hi"
watch = "region:eastus2"

[[step]]
at = "5s"
action = "error-rate"
target = "zone:eastus2-2"
rate = 0.25

[[cleanup]]
action = "heal"
target = "zone:eastus2-2"
"#;
        let s = Scenario::from_toml(text, "custom.toml").unwrap();
        assert_eq!(s.name, "custom");
        assert_eq!(s.rate, Some(250.0));
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.steps[0].at, Duration::from_secs(5)); // sorted
        assert_eq!(s.steps[0].watched().unwrap().to_string(), "zone:eastus2-2");
        assert_eq!(
            s.steps[1].action,
            StepAction::Shell {
                command: "echo hi".into(),
                timeout: DEFAULT_SHELL_TIMEOUT
            }
        );
        assert_eq!(s.steps[1].watched().unwrap().to_string(), "region:eastus2");
        assert_eq!(s.cleanup.len(), 1);
    }

    #[test]
    fn bad_files_name_the_line() {
        let cases = [
            (
                "[[step]]\nat = \"5s\"\naction = \"explode\"\ntarget = \"region:x\"\n",
                "line 1",
                "unknown fault",
            ),
            ("\n\n[[step]]\nat = \"5s\"\n", "line 3", "needs `action`"),
            (
                "[[step]]\nat = \"5s\"\naction = \"slow\"\ntarget = \"region:x\"\n",
                "line 1",
                "latency_ms",
            ),
            (
                "[[step]]\nat = \"5s\"\naction = \"kill\"\ntarget = \"zone:x\"\n",
                "line 1",
                "REGION-ZONE",
            ),
            ("[[step]]\nat = \"nope\"\nrun = \"true\"\n", "line 2", ""),
            ("bogus = 1\n", "line 1", "unknown field"),
            (
                "duration = \"10s\"\n[[step]]\nat = \"10s\"\nrun = \"true\"\n",
                "",
                "not before the end",
            ),
        ];
        for (text, line, what) in cases {
            let e = Scenario::from_toml(text, "f.toml").unwrap_err().to_string();
            assert!(e.contains(line) && e.contains(what), "{text:?} -> {e}");
            assert!(e.starts_with("scenario f.toml: "), "{e}");
        }
    }

    #[test]
    fn targets_match_answers() {
        let who = |region: &str, zone: &str, replica: &str| Answerer {
            region: region.into(),
            zone: zone.into(),
            replica: replica.into(),
        };
        let a = who("eastus2", "1", "eastus2-z1-r0");
        let zone: FaultTarget = "zone:eastus2-1".parse().unwrap();
        assert!(target_matches(&zone, &a));
        assert!(!target_matches(
            &zone,
            &who("eastus2", "2", "eastus2-z2-r0")
        ));
        assert!(target_matches(&zone, &who("", "", "eastus2-z1-r1")));
        let region: FaultTarget = "region:eastus2".parse().unwrap();
        assert!(target_matches(&region, &a));
        assert!(!target_matches(
            &region,
            &who("centralus", "1", "centralus-z1-r0")
        ));
        let replica: FaultTarget = "replica:eastus2-z1-r0".parse().unwrap();
        assert!(target_matches(&replica, &a));
        assert!(!target_matches(
            &replica,
            &who("eastus2", "1", "eastus2-z1-r1")
        ));
    }
}
