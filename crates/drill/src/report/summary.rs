//! The terminal summary: a few lines of totals and one row per event.

use std::fmt::Write as _;

use crate::outcome::FailureKind;
use crate::report::Report;

/// Renders the summary (plain text, no colour codes, about 110 columns wide).
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "geoha drill: {} -> {}",
        r.scenario.as_deref().unwrap_or("steady load"),
        r.target
    );
    let _ = writeln!(
        out,
        "  requests    sent {}  ok {}  failed {}  availability {:.3}%",
        r.sent, r.ok, r.failed, r.availability_pct
    );
    let keep = if r.kept_up {
        "kept up".to_string()
    } else {
        format!(
            "FELL BEHIND: {} sent late, {} expired before send, {} unsent, worst lag {:.1} ms",
            r.behind_schedule, r.expired_before_send, r.unsent, r.max_schedule_lag_ms
        )
    };
    let _ = writeln!(
        out,
        "  rate        target {} req/s, achieved {:.1} req/s ({keep})",
        r.target_rate, r.achieved_rate
    );
    let l = &r.latency_ms;
    let _ = writeln!(
        out,
        "  latency ms  p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        l.p50, l.p99, l.p999, l.max
    );
    if r.failed > 0 {
        let kinds: Vec<String> = FailureKind::ALL
            .iter()
            .filter(|k| r.failed_by_kind.get(**k) > 0)
            .map(|k| format!("{k} {}", r.failed_by_kind.get(*k)))
            .collect();
        let _ = writeln!(out, "  failures    {}", kinds.join("  "));
    }
    if !r.by_region.is_empty() {
        let total: u64 = r.by_region.values().sum();
        let regions: Vec<String> = r
            .by_region
            .iter()
            .map(|(k, v)| format!("{k} {v} ({:.1}%)", *v as f64 * 100.0 / total.max(1) as f64))
            .collect();
        let _ = writeln!(out, "  regions     {}", regions.join("  "));
    }
    if !r.events.is_empty() {
        let _ = writeln!(
            out,
            "\n  {:<4}{:>9}  {:<36}{:>8}{:>10}{:>9}{:>9}{:>12}",
            "#", "at", "action", "failed", "recovery", "shift", "return", "outage p99"
        );
        let secs = |v: Option<f64>, none: &str| v.map_or(none.to_string(), |v| format!("{v:.3}s"));
        for (i, e) in r.events.iter().enumerate() {
            let mut action = e.action.clone();
            if e.error.is_some() {
                action = format!("{action} (FAILED)");
            }
            if action.chars().count() > 35 {
                action = action.chars().take(34).collect::<String>() + "…";
            }
            let _ = writeln!(
                out,
                "  {:<4}{:>8.3}s  {:<36}{:>8}{:>10}{:>9}{:>9}{:>12}",
                format!("E{}", i + 1),
                e.at_s,
                action,
                e.failed,
                secs(e.recovery_s, "never"),
                secs(e.shift_s, "-"),
                secs(e.return_s, "-"),
                e.outage_latency_ms
                    .map_or("-".to_string(), |l| format!("{:.1}ms", l.p99)),
            );
        }
        for (i, e) in r.events.iter().enumerate() {
            if let Some(err) = &e.error {
                let _ = writeln!(out, "  E{}: {}", i + 1, err);
            }
        }
    }
    out
}
