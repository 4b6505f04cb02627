//! Objectives and the verdict: did the run meet what was asked of it? A missed
//! objective is not an error; the binary maps it to exit code 1 so drills gate CI.

use std::fmt;
use std::time::Duration;

use crate::report::Report;

/// What the run must achieve (`--max-failed`, `--max-recovery`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Objectives {
    /// At most this many failed requests in the whole run.
    pub max_failed: Option<u64>,
    /// Every event recovers within this (an event that never recovers misses it).
    pub max_recovery: Option<Duration>,
}

/// One objective that was missed.
#[derive(Debug, Clone, PartialEq)]
pub enum Miss {
    /// Too many failed requests.
    Failed {
        /// Failed requests.
        failed: u64,
        /// The objective.
        max: u64,
    },
    /// An event took too long to recover (or never did: `recovery_s` is `None`).
    Recovery {
        /// Event number, from 1.
        event: usize,
        /// The event's action.
        action: String,
        /// Seconds to recovery.
        recovery_s: Option<f64>,
        /// The objective.
        max: Duration,
    },
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::Failed { failed, max } => {
                write!(f, "{failed} failed requests, objective at most {max}")
            }
            Miss::Recovery {
                event,
                action,
                recovery_s,
                max,
            } => match recovery_s {
                Some(s) => write!(
                    f,
                    "E{event} ({action}) recovered in {s:.3}s, objective at most {}",
                    humantime::format_duration(*max)
                ),
                None => write!(
                    f,
                    "E{event} ({action}) never recovered, objective at most {}",
                    humantime::format_duration(*max)
                ),
            },
        }
    }
}

/// The judgement of a report against objectives.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    /// Every missed objective (empty when all were met).
    pub misses: Vec<Miss>,
}

impl Verdict {
    /// True when every objective was met.
    pub fn passed(&self) -> bool {
        self.misses.is_empty()
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed() {
            return f.write_str("objectives met");
        }
        writeln!(f, "objectives missed:")?;
        for m in &self.misses {
            writeln!(f, "  - {m}")?;
        }
        Ok(())
    }
}

/// Judges `report` against `objectives`.
pub fn verdict(report: &Report, objectives: &Objectives) -> Verdict {
    let mut misses = Vec::new();
    if let Some(max) = objectives.max_failed {
        if report.failed > max {
            misses.push(Miss::Failed {
                failed: report.failed,
                max,
            });
        }
    }
    if let Some(max) = objectives.max_recovery {
        for (i, e) in report.events.iter().enumerate() {
            let missed = match e.recovery_s {
                Some(s) => s > max.as_secs_f64(),
                None => true,
            };
            if missed {
                misses.push(Miss::Recovery {
                    event: i + 1,
                    action: e.action.clone(),
                    recovery_s: e.recovery_s,
                    max,
                });
            }
        }
    }
    Verdict { misses }
}
