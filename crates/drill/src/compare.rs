//! `geoha drill compare A.json B.json`: what got better or worse from a baseline (A)
//! to a candidate (B), metric by metric and event by event.

use std::fmt;

use crate::report::Report;

/// Latency changes smaller than this share (or than 0.05 ms) count as noise.
const LATENCY_NOISE_SHARE: f64 = 0.05;
const LATENCY_NOISE_MS: f64 = 0.05;

/// Direction of a change, from A to B.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// B is better.
    Better,
    /// B is worse.
    Worse,
    /// No meaningful difference.
    Same,
    /// Not comparable (informational row).
    Info,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::Better => "better",
            Change::Worse => "WORSE",
            Change::Same => "same",
            Change::Info => "",
        })
    }
}

/// One compared metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// What is compared.
    pub metric: String,
    /// The value in A.
    pub a: String,
    /// The value in B.
    pub b: String,
    /// Which way it went.
    pub change: Change,
}

/// The comparison of two reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Metric rows.
    pub rows: Vec<Row>,
    /// Caveats (different scenario, rate, target).
    pub notes: Vec<String>,
}

impl Comparison {
    /// Rows where B is worse.
    pub fn worse(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.change == Change::Worse)
    }

    /// Rows where B is better.
    pub fn better(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.change == Change::Better)
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<34}{:>16}{:>16}  change", "metric", "A", "B")?;
        for r in &self.rows {
            writeln!(f, "{:<34}{:>16}{:>16}  {}", r.metric, r.a, r.b, r.change)?;
        }
        let (better, worse) = (self.better().count(), self.worse().count());
        writeln!(f, "\n{better} better, {worse} worse")?;
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

/// Lower is better for counts: any difference counts.
fn count_change(a: u64, b: u64) -> Change {
    match b.cmp(&a) {
        std::cmp::Ordering::Less => Change::Better,
        std::cmp::Ordering::Greater => Change::Worse,
        std::cmp::Ordering::Equal => Change::Same,
    }
}

/// Lower is better for latencies, with a noise band.
fn latency_change(a: f64, b: f64) -> Change {
    let band = (a * LATENCY_NOISE_SHARE).max(LATENCY_NOISE_MS);
    if b < a - band {
        Change::Better
    } else if b > a + band {
        Change::Worse
    } else {
        Change::Same
    }
}

/// Lower is better for durations; `None` (never) is the worst.
fn seconds_change(a: Option<f64>, b: Option<f64>) -> Change {
    match (a, b) {
        (None, None) => Change::Same,
        (Some(_), None) => Change::Worse,
        (None, Some(_)) => Change::Better,
        (Some(a), Some(b)) if (a - b).abs() < 0.01 => Change::Same,
        (Some(a), Some(b)) if b < a => Change::Better,
        _ => Change::Worse,
    }
}

fn secs(v: Option<f64>) -> String {
    v.map_or("never".to_string(), |v| format!("{v:.3}s"))
}

/// Compares candidate `b` against baseline `a`.
pub fn compare(a: &Report, b: &Report) -> Comparison {
    let mut rows = Vec::new();
    let mut row = |metric: String, a: String, b: String, change: Change| {
        rows.push(Row {
            metric,
            a,
            b,
            change,
        })
    };
    row(
        "availability %".into(),
        format!("{:.3}", a.availability_pct),
        format!("{:.3}", b.availability_pct),
        if (a.availability_pct - b.availability_pct).abs() < 0.0005 {
            Change::Same
        } else if b.availability_pct > a.availability_pct {
            Change::Better
        } else {
            Change::Worse
        },
    );
    row(
        "failed".into(),
        a.failed.to_string(),
        b.failed.to_string(),
        count_change(a.failed, b.failed),
    );
    for kind in crate::outcome::FailureKind::ALL {
        let (x, y) = (a.failed_by_kind.get(kind), b.failed_by_kind.get(kind));
        if x > 0 || y > 0 {
            row(
                format!("  failed: {kind}"),
                x.to_string(),
                y.to_string(),
                count_change(x, y),
            );
        }
    }
    let lat = [
        ("latency p50 ms", a.latency_ms.p50, b.latency_ms.p50),
        ("latency p99 ms", a.latency_ms.p99, b.latency_ms.p99),
        ("latency p99.9 ms", a.latency_ms.p999, b.latency_ms.p999),
        ("latency max ms", a.latency_ms.max, b.latency_ms.max),
    ];
    // Latency covers successful requests only: with none on one side there is
    // nothing to compare.
    let comparable = a.ok > 0 && b.ok > 0;
    for (name, x, y) in lat {
        row(
            name.into(),
            format!("{x:.2}"),
            format!("{y:.2}"),
            if comparable {
                latency_change(x, y)
            } else {
                Change::Info
            },
        );
    }
    row(
        "achieved rate req/s".into(),
        format!("{:.1}", a.achieved_rate),
        format!("{:.1}", b.achieved_rate),
        Change::Info,
    );
    for (i, (ea, eb)) in a.events.iter().zip(&b.events).enumerate() {
        let n = i + 1;
        row(
            format!("E{n} failed"),
            ea.failed.to_string(),
            eb.failed.to_string(),
            count_change(ea.failed, eb.failed),
        );
        row(
            format!("E{n} recovery"),
            secs(ea.recovery_s),
            secs(eb.recovery_s),
            seconds_change(ea.recovery_s, eb.recovery_s),
        );
        if ea.shift_s.is_some() || eb.shift_s.is_some() || ea.target != eb.target {
            row(
                format!("E{n} shift"),
                secs(ea.shift_s),
                secs(eb.shift_s),
                seconds_change(ea.shift_s, eb.shift_s),
            );
        }
    }
    let mut notes = Vec::new();
    if a.scenario != b.scenario {
        notes.push(format!(
            "different scenarios: {} vs {}",
            a.scenario.as_deref().unwrap_or("none"),
            b.scenario.as_deref().unwrap_or("none")
        ));
    }
    if a.target_rate != b.target_rate {
        notes.push(format!(
            "different target rates: {} vs {} req/s (failure counts scale with rate)",
            a.target_rate, b.target_rate
        ));
    }
    if a.events.len() != b.events.len() {
        notes.push(format!(
            "different event counts: {} vs {} (only the first {} are compared)",
            a.events.len(),
            b.events.len(),
            a.events.len().min(b.events.len())
        ));
    }
    for (i, (ea, eb)) in a.events.iter().zip(&b.events).enumerate() {
        if ea.action != eb.action {
            notes.push(format!(
                "E{} differs: {:?} vs {:?}",
                i + 1,
                ea.action,
                eb.action
            ));
        }
    }
    if !b.kept_up {
        notes.push("B's load generator fell behind; its numbers understate the load".into());
    }
    if !a.kept_up {
        notes.push("A's load generator fell behind; its numbers understate the load".into());
    }
    Comparison { rows, notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ok: u64, failed: u64, p50: f64) -> Report {
        Report {
            schema_version: 1,
            scenario: None,
            description: None,
            target: "http://t/".into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            duration_s: 1.0,
            elapsed_s: 1.0,
            target_rate: 10.0,
            achieved_rate: 10.0,
            kept_up: true,
            connections: 1,
            timeout_ms: 1000,
            sent: ok + failed,
            ok,
            failed,
            unsent: 0,
            expired_before_send: 0,
            behind_schedule: 0,
            max_schedule_lag_ms: 0.0,
            availability_pct: ok as f64 * 100.0 / (ok + failed) as f64,
            failed_by_kind: crate::outcome::FailedByKind {
                timeout: failed,
                ..Default::default()
            },
            latency_ms: crate::report::Latency {
                p50,
                ..Default::default()
            },
            recovery_p99_threshold_ms: 25.0,
            by_region: Default::default(),
            by_replica: Default::default(),
            timeline: vec![],
            events: vec![],
        }
    }

    #[test]
    fn latency_is_compared_only_when_both_sides_had_successes() {
        let row = |c: &Comparison, m: &str| c.rows.iter().find(|r| r.metric == m).unwrap().change;
        let c = compare(&report(10, 0, 1.0), &report(10, 0, 5.0));
        assert_eq!(row(&c, "latency p50 ms"), Change::Worse);
        assert_eq!(row(&c, "failed"), Change::Same);
        let c = compare(&report(0, 10, 0.0), &report(10, 0, 5.0));
        assert_eq!(row(&c, "latency p50 ms"), Change::Info);
        assert_eq!(row(&c, "failed"), Change::Better);
        assert_eq!(row(&c, "availability %"), Change::Better);
        assert_eq!(row(&c, "  failed: timeout"), Change::Better);
    }

    #[test]
    fn changes_have_the_right_direction() {
        assert_eq!(count_change(5, 0), Change::Better);
        assert_eq!(count_change(0, 1), Change::Worse);
        assert_eq!(latency_change(10.0, 10.3), Change::Same);
        assert_eq!(latency_change(10.0, 12.0), Change::Worse);
        assert_eq!(latency_change(10.0, 8.0), Change::Better);
        assert_eq!(seconds_change(Some(1.0), None), Change::Worse);
        assert_eq!(seconds_change(None, Some(9.0)), Change::Better);
        assert_eq!(seconds_change(Some(1.0), Some(0.2)), Change::Better);
    }
}
