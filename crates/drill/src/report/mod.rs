//! The drill report: a dedicated, documented structure (it is an API boundary: see
//! `schema/drill-report.schema.json`), built once at the end of a run, written as JSON
//! ([`Report::to_json`]), as a self-contained HTML page ([`html::render`]) and as a
//! terminal summary ([`summary::render`]).

pub(crate) mod build;
pub mod html;
pub mod summary;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::DrillError;
use crate::outcome::FailedByKind;

/// The report format version; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything a drill measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The scenario's name, if one ran.
    pub scenario: Option<String>,
    /// The scenario's description.
    pub description: Option<String>,
    /// The URL the load went to.
    pub target: String,
    /// Wall-clock start, RFC 3339 (UTC).
    pub started_at: String,
    /// The configured length of the load, seconds.
    pub duration_s: f64,
    /// From the start to the last response, seconds.
    pub elapsed_s: f64,
    /// Requests per second asked for.
    pub target_rate: f64,
    /// Requests per second put on the wire (over the send window, which stretches
    /// when the generator falls behind).
    pub achieved_rate: f64,
    /// True when the generator kept its schedule: achieved rate within 2% of the
    /// target, nothing unsent and nothing expired before sending.
    pub kept_up: bool,
    /// Most requests in flight at once (each on its own connection).
    pub connections: u64,
    /// Per-request timeout, milliseconds.
    pub timeout_ms: u64,
    /// Requests due: each either answered or failed (`ok + failed`).
    pub sent: u64,
    /// Requests answered with a 1xx-3xx status.
    pub ok: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Scheduled requests never due because the run was stopped early.
    pub unsent: u64,
    /// Requests that found every connection busy until their deadline (intended time
    /// + timeout): never sent, counted as timeouts. Raise `connections` when non-zero.
    pub expired_before_send: u64,
    /// Requests sent more than 5 ms after their intended time.
    pub behind_schedule: u64,
    /// The worst send lag, milliseconds.
    pub max_schedule_lag_ms: f64,
    /// `ok / sent` as a percentage.
    pub availability_pct: f64,
    /// Failures by kind.
    pub failed_by_kind: FailedByKind,
    /// Latency of successful requests from their intended send time.
    pub latency_ms: Latency,
    /// A second counts as recovered when all its requests succeed and its p99 is at
    /// or under this.
    pub recovery_p99_threshold_ms: f64,
    /// Successful answers per region (from `x-geoha-region` or the body's `region`).
    pub by_region: BTreeMap<String, u64>,
    /// Successful answers per replica.
    pub by_replica: BTreeMap<String, u64>,
    /// One entry per second of intended send time.
    pub timeline: Vec<Second>,
    /// One entry per scenario step.
    pub events: Vec<Event>,
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// Latency of one second (or one outage), milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowLatency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// One second of the run (requests bucketed by intended send time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the start.
    pub t: u64,
    /// Requests due in this second.
    pub sent: u64,
    /// Successful ones.
    pub ok: u64,
    /// Failed ones.
    pub failed: u64,
    /// Failed ones by kind.
    pub failed_by_kind: FailedByKind,
    /// Latency of the successful ones; `null` when none succeeded.
    pub latency_ms: Option<WindowLatency>,
    /// Successful answers per region.
    pub by_region: BTreeMap<String, u64>,
}

/// What one scenario step did to the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it was issued, seconds since the start.
    pub at_s: f64,
    /// When the scenario planned it.
    pub planned_at_s: f64,
    /// What it was, e.g. `kill region:eastus2 stay-down`.
    pub action: String,
    /// `fault` (lab control API) or `shell`.
    pub kind: String,
    /// The target whose answers were watched (for `shift_s` / `return_s`).
    pub target: Option<String>,
    /// True when the action itself succeeded.
    pub applied: bool,
    /// Why the action failed.
    pub error: Option<String>,
    /// How long the action took, seconds.
    pub took_s: f64,
    /// Requests due from this event's second up to the next event's.
    pub sent: u64,
    /// Of those, failed.
    pub failed: u64,
    /// Failed by kind.
    pub failed_by_kind: FailedByKind,
    /// Fault to recovery: the end of the last bad request before the first second
    /// with 100% success and p99 under the threshold; `null` when it never recovered.
    pub recovery_s: Option<f64>,
    /// Fault to the faulted target's last answer before the first second with none
    /// from it (0 when none came after the fault); `null` when it answered in every
    /// second up to the next event, or nothing is watched, or the step restores.
    pub shift_s: Option<f64>,
    /// For heal/thaw: to the first answer from the target again; `null` if none.
    pub return_s: Option<f64>,
    /// Latency of successful requests from the event until recovery.
    pub outage_latency_ms: Option<WindowLatency>,
}

impl Report {
    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// Parses a report written by [`Report::to_json`].
    pub fn from_json(text: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Reads a report file (blocking I/O: for the CLI, outside the runtime).
    pub fn read_file(path: &Path) -> Result<Report, DrillError> {
        let err = |reason: String| DrillError::Report {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Report::from_json(&text).map_err(|e| err(format!("not a drill report: {e}")))
    }

    /// Writes the JSON report (blocking I/O).
    pub fn write_json_file(&self, path: &Path) -> Result<(), DrillError> {
        write_file(path, self.to_json().as_bytes())
    }

    /// Writes the HTML report (blocking I/O).
    pub fn write_html_file(&self, path: &Path) -> Result<(), DrillError> {
        write_file(path, html::render(self).as_bytes())
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), DrillError> {
    std::fs::write(path, bytes).map_err(|e| DrillError::Report {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}
