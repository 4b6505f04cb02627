//! The HTML report: one self-contained page (inline CSS and SVG drawn here, no
//! scripts, no external resources) that opens offline. Charts: throughput and errors
//! per second with fault markers, latency percentiles per second (log scale), and the
//! traffic share per region as a stacked area.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::outcome::FailureKind;
use crate::report::{Event, Report};

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 36.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

const OK_COLOR: &str = "#2e7d32";
const FAIL_COLOR: &str = "#c62828";
const MARKER_COLOR: &str = "#6a1b9a";
const REGION_COLORS: [&str; 8] = [
    "#1565c0", "#ef6c00", "#00897b", "#8e24aa", "#6d4c41", "#c0ca33", "#d81b60", "#546e7a",
];

/// Renders the whole page.
pub fn render(report: &Report) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let title = match &report.scenario {
        Some(s) => format!("geoha drill: {s}"),
        None => "geoha drill: steady load".to_string(),
    };
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 960px; color: #212121; padding: 0 12px; }}
h1 {{ font-size: 22px; margin-bottom: 4px; }}
h2 {{ font-size: 17px; margin-top: 28px; border-bottom: 1px solid #e0e0e0; padding-bottom: 4px; }}
table {{ border-collapse: collapse; margin: 8px 0; }}
th, td {{ text-align: left; padding: 3px 12px 3px 0; border-bottom: 1px solid #f0f0f0; vertical-align: top; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.muted {{ color: #757575; }}
.bad {{ color: {FAIL_COLOR}; font-weight: 600; }}
.good {{ color: {OK_COLOR}; font-weight: 600; }}
svg {{ background: #fafafa; border: 1px solid #eee; max-width: 100%; height: auto; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #424242; }}
.legend span {{ display: inline-block; margin-right: 14px; }}
.legend i {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: middle; }}
</style>
</head>
<body>
<h1>{title}</h1>
"#,
        title = esc(&title)
    );
    if let Some(d) = report.description.as_deref().filter(|d| !d.is_empty()) {
        let _ = writeln!(page, "<p>{}</p>", esc(d));
    }
    let _ = writeln!(
        page,
        r#"<p class="muted">{target} · started {start} · {rate} req/s for {dur}s over up to {conns} connections · timeout {timeout} ms</p>"#,
        target = esc(&report.target),
        start = esc(&report.started_at),
        rate = fmt_num(report.target_rate),
        dur = fmt_num(report.duration_s),
        conns = report.connections,
        timeout = report.timeout_ms,
    );
    summary_section(&mut page, report);
    events_section(&mut page, report);

    page.push_str("<h2>Throughput and errors</h2>\n");
    legend(
        &mut page,
        &[
            (OK_COLOR, "ok / s".to_string()),
            (FAIL_COLOR, "failed / s".to_string()),
            (MARKER_COLOR, "fault step".to_string()),
        ],
    );
    page.push_str(&throughput_chart(report));
    page.push_str("<h2>Latency percentiles (successful requests, log scale)</h2>\n");
    legend(
        &mut page,
        &[
            (LATENCY_COLORS[0], "p50".to_string()),
            (LATENCY_COLORS[1], "p99".to_string()),
            (LATENCY_COLORS[2], "p99.9".to_string()),
        ],
    );
    page.push_str(&latency_chart(report));
    page.push_str("<h2>Traffic share by region</h2>\n");
    let regions = regions(report);
    if regions.is_empty() {
        page.push_str(r#"<p class="muted">No answer said which region it came from (no <code>x-geoha-region</code> header or <code>region</code> field).</p>"#);
    }
    legend(
        &mut page,
        &regions
            .iter()
            .enumerate()
            .map(|(i, r)| (REGION_COLORS[i % REGION_COLORS.len()], r.clone()))
            .collect::<Vec<_>>(),
    );
    page.push_str(&share_chart(report, &regions));
    page.push_str("<p class=\"muted\">Requests are placed in the second of their intended send time; latency runs from that time (no coordinated omission).</p>\n</body>\n</html>\n");
    page
}

const LATENCY_COLORS: [&str; 3] = ["#1565c0", "#ef6c00", "#c62828"];

fn summary_section(page: &mut String, r: &Report) {
    let avail_class = if r.failed == 0 { "good" } else { "bad" };
    let _ = write!(
        page,
        r#"<h2>Summary</h2>
<table id="summary">
<tr><th>availability</th><td class="num {avail_class}">{avail:.3} %</td></tr>
<tr><th>sent / ok / failed</th><td class="num">{sent} / {ok} / {failed}</td></tr>
<tr><th>failed by kind</th><td>{kinds}</td></tr>
<tr><th>rate (target → achieved)</th><td class="num">{target} → {achieved} req/s{keep}</td></tr>
<tr><th>latency p50 / p99 / p99.9 / max</th><td class="num">{p50} / {p99} / {p999} / {max} ms</td></tr>
<tr><th>answers by region</th><td>{regions}</td></tr>
</table>
"#,
        avail = r.availability_pct,
        sent = r.sent,
        ok = r.ok,
        failed = r.failed,
        kinds = esc(&kinds_text(&r.failed_by_kind)),
        target = fmt_num(r.target_rate),
        achieved = fmt_num(r.achieved_rate),
        keep = if r.kept_up {
            String::new()
        } else {
            format!(
                r#" <span class="bad">(generator fell behind: {} late, {} expired before send, {} unsent)</span>"#,
                r.behind_schedule, r.expired_before_send, r.unsent
            )
        },
        p50 = fmt_num(r.latency_ms.p50),
        p99 = fmt_num(r.latency_ms.p99),
        p999 = fmt_num(r.latency_ms.p999),
        max = fmt_num(r.latency_ms.max),
        regions = esc(&if r.by_region.is_empty() {
            "unknown".to_string()
        } else {
            r.by_region
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }),
    );
}

fn kinds_text(k: &crate::outcome::FailedByKind) -> String {
    let parts: Vec<String> = FailureKind::ALL
        .iter()
        .filter(|kind| k.get(**kind) > 0)
        .map(|kind| format!("{kind}: {}", k.get(*kind)))
        .collect();
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(", ")
    }
}

fn events_section(page: &mut String, r: &Report) {
    page.push_str("<h2>Events</h2>\n");
    if r.events.is_empty() {
        page.push_str("<p class=\"muted\">No fault steps: steady load only.</p>\n");
        return;
    }
    page.push_str("<table id=\"events\">\n<tr><th>#</th><th>at</th><th>action</th><th>failed</th><th>recovery</th><th>shift</th><th>return</th><th>outage p99</th></tr>\n");
    let secs = |v: Option<f64>, none: &str| v.map_or(none.to_string(), |v| format!("{v:.3} s"));
    for (i, e) in r.events.iter().enumerate() {
        let action = match &e.error {
            Some(err) => format!(
                "{} <span class=\"bad\">(failed: {})</span>",
                esc(&e.action),
                esc(err)
            ),
            None => esc(&e.action),
        };
        let _ = writeln!(
            page,
            "<tr><td>E{n}</td><td class=\"num\">{at:.3} s</td><td>{action}</td><td class=\"num {fc}\">{failed}</td><td class=\"num\">{rec}</td><td class=\"num\">{shift}</td><td class=\"num\">{ret}</td><td class=\"num\">{lat}</td></tr>",
            n = i + 1,
            at = e.at_s,
            fc = if e.failed == 0 { "good" } else { "bad" },
            failed = e.failed,
            rec = secs(e.recovery_s, "never"),
            shift = secs(e.shift_s, "–"),
            ret = secs(e.return_s, "–"),
            lat = e
                .outage_latency_ms
                .map_or("–".to_string(), |l| format!("{} ms", fmt_num(l.p99))),
        );
    }
    page.push_str("</table>\n");
}

fn legend(page: &mut String, items: &[(&str, String)]) {
    page.push_str("<div class=\"legend\">");
    for (color, label) in items {
        let _ = write!(
            page,
            "<span><i style=\"background:{color}\"></i>{}</span>",
            esc(label)
        );
    }
    page.push_str("</div>\n");
}

/// Maps seconds and values to pixels.
struct Frame {
    seconds: f64,
}

impl Frame {
    fn x(&self, t: f64) -> f64 {
        LEFT + t / self.seconds * PLOT_W
    }
    fn y_linear(&self, v: f64, max: f64) -> f64 {
        TOP + PLOT_H - (v / max).clamp(0.0, 1.0) * PLOT_H
    }
}

fn svg_open(id: &str, label: &str) -> String {
    format!(
        r#"<svg id="{id}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}">
"#,
        esc(label)
    )
}

/// X axis with second ticks, and the fault markers.
fn x_axis_and_markers(svg: &mut String, f: &Frame, events: &[Event]) {
    let base = TOP + PLOT_H;
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{base}" x2="{}" y2="{base}" stroke="#9e9e9e"/>"##,
        LEFT + PLOT_W
    );
    let step = nice_step(f.seconds, 10.0).max(1.0);
    let mut t = 0.0;
    while t <= f.seconds + 1e-9 {
        let x = f.x(t);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{base}" x2="{x:.1}" y2="{}" stroke="#9e9e9e"/><text x="{x:.1}" y="{}" text-anchor="middle">{}s</text>"##,
            base + 4.0,
            base + 16.0,
            fmt_num(t)
        );
        t += step;
    }
    for (i, e) in events.iter().enumerate() {
        let x = f.x(e.at_s.min(f.seconds));
        let _ = writeln!(
            svg,
            r#"<g class="fault-marker"><title>E{n} at {at:.3} s: {action}</title><line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{base}" stroke="{MARKER_COLOR}" stroke-width="1.5" stroke-dasharray="5,3"/><text x="{tx:.1}" y="{ty}" fill="{MARKER_COLOR}">E{n}</text></g>"#,
            n = i + 1,
            at = e.at_s,
            action = esc(&e.action),
            tx = x + 3.0,
            ty = TOP + 10.0,
        );
    }
}

/// Y axis gridlines and labels for a linear scale.
fn y_axis_linear(svg: &mut String, f: &Frame, max: f64, unit: &str) {
    let step = nice_step(max, 5.0);
    let mut v = 0.0;
    while v <= max + 1e-9 {
        let y = f.y_linear(v, max);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#eeeeee"/><text x="{}" y="{:.1}" text-anchor="end">{}{unit}</text>"##,
            LEFT + PLOT_W,
            LEFT - 6.0,
            y + 4.0,
            fmt_num(v)
        );
        v += step;
    }
}

fn throughput_chart(r: &Report) -> String {
    let f = Frame {
        seconds: (r.timeline.len() as f64).max(1.0),
    };
    let max = r
        .timeline
        .iter()
        .map(|s| (s.ok + s.failed) as f64)
        .fold(1.0, f64::max);
    let max = nice_ceiling(max);
    let mut svg = svg_open("chart-throughput", "requests per second: ok and failed");
    y_axis_linear(&mut svg, &f, max, "");
    let bar_w = (PLOT_W / f.seconds * 0.9).max(0.5);
    for s in &r.timeline {
        let x = f.x(s.t as f64) + (PLOT_W / f.seconds) * 0.05;
        let ok_top = f.y_linear(s.ok as f64, max);
        let all_top = f.y_linear((s.ok + s.failed) as f64, max);
        let base = TOP + PLOT_H;
        if s.ok > 0 {
            let _ = writeln!(
                svg,
                r#"<rect class="ok" x="{x:.1}" y="{ok_top:.1}" width="{bar_w:.1}" height="{:.1}" fill="{OK_COLOR}"><title>{t}s: {ok} ok</title></rect>"#,
                base - ok_top,
                t = s.t,
                ok = s.ok
            );
        }
        if s.failed > 0 {
            // Failures are stacked on top and drawn at least 2 px tall: one failed
            // request among thousands must still be visible.
            let h = (ok_top - all_top).max(2.0);
            let _ = writeln!(
                svg,
                r#"<rect class="failed" x="{x:.1}" y="{:.1}" width="{bar_w:.1}" height="{h:.1}" fill="{FAIL_COLOR}"><title>{t}s: {n} failed ({kinds})</title></rect>"#,
                ok_top - h,
                t = s.t,
                n = s.failed,
                kinds = esc(&kinds_text(&s.failed_by_kind)),
            );
        }
    }
    x_axis_and_markers(&mut svg, &f, &r.events);
    svg.push_str("</svg>\n");
    svg
}

fn latency_chart(r: &Report) -> String {
    let f = Frame {
        seconds: (r.timeline.len() as f64).max(1.0),
    };
    let top_ms = r
        .timeline
        .iter()
        .filter_map(|s| s.latency_ms.map(|l| l.p999))
        .fold(1.0, f64::max);
    let lo = 0.1_f64.log10();
    let hi = 10f64.powf(top_ms.log10().ceil()).max(1.0).log10();
    let y =
        |ms: f64| TOP + PLOT_H - ((ms.max(0.1).log10() - lo) / (hi - lo)).clamp(0.0, 1.0) * PLOT_H;
    let mut svg = svg_open("chart-latency", "latency percentiles per second");
    let mut decade = lo;
    while decade <= hi + 1e-9 {
        let v = 10f64.powf(decade);
        let yy = y(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{}" y2="{yy:.1}" stroke="#eeeeee"/><text x="{}" y="{:.1}" text-anchor="end">{} ms</text>"##,
            LEFT + PLOT_W,
            LEFT - 6.0,
            yy + 4.0,
            fmt_num(v)
        );
        decade += 1.0;
    }
    let pick: [fn(&crate::report::WindowLatency) -> f64; 3] = [|l| l.p50, |l| l.p99, |l| l.p999];
    for (i, get) in pick.iter().enumerate() {
        // A second with no successful request breaks the line instead of dropping to 0.
        let mut segments: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for s in &r.timeline {
            match &s.latency_ms {
                Some(l) => segments
                    .last_mut()
                    .expect("never empty")
                    .push((f.x(s.t as f64 + 0.5), y(get(l)))),
                None => segments.push(Vec::new()),
            }
        }
        for seg in segments.iter().filter(|s| !s.is_empty()) {
            let pts: Vec<String> = seg.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                svg,
                r#"<polyline class="p{}" fill="none" stroke="{}" stroke-width="1.6" points="{}"/>"#,
                ["50", "99", "999"][i],
                LATENCY_COLORS[i],
                pts.join(" ")
            );
        }
    }
    x_axis_and_markers(&mut svg, &f, &r.events);
    svg.push_str("</svg>\n");
    svg
}

fn regions(r: &Report) -> Vec<String> {
    let set: BTreeSet<&String> = r
        .by_region
        .keys()
        .chain(r.timeline.iter().flat_map(|s| s.by_region.keys()))
        .collect();
    set.into_iter().cloned().collect()
}

fn share_chart(r: &Report, regions: &[String]) -> String {
    let f = Frame {
        seconds: (r.timeline.len() as f64).max(1.0),
    };
    let mut svg = svg_open("chart-share", "traffic share per region, stacked");
    y_axis_linear(&mut svg, &f, 100.0, "%");
    // Cumulative share per second, region by region (bottom to top).
    let mut lower = vec![0.0; r.timeline.len()];
    for (i, region) in regions.iter().enumerate() {
        let mut upper = lower.clone();
        for (k, s) in r.timeline.iter().enumerate() {
            let total: u64 = s.by_region.values().sum();
            if total > 0 {
                upper[k] +=
                    s.by_region.get(region).copied().unwrap_or(0) as f64 * 100.0 / total as f64;
            }
        }
        let mut pts: Vec<String> = Vec::with_capacity(r.timeline.len() * 4);
        for (k, s) in r.timeline.iter().enumerate() {
            for t in [s.t as f64, s.t as f64 + 1.0] {
                pts.push(format!("{:.1},{:.1}", f.x(t), f.y_linear(upper[k], 100.0)));
            }
        }
        for (k, s) in r.timeline.iter().enumerate().rev() {
            for t in [s.t as f64 + 1.0, s.t as f64] {
                pts.push(format!("{:.1},{:.1}", f.x(t), f.y_linear(lower[k], 100.0)));
            }
        }
        let _ = writeln!(
            svg,
            r#"<polygon class="region" data-region="{name}" fill="{color}" fill-opacity="0.85" stroke="none" points="{pts}"><title>{name}</title></polygon>"#,
            name = esc(region),
            color = REGION_COLORS[i % REGION_COLORS.len()],
            pts = pts.join(" ")
        );
        lower = upper;
    }
    x_axis_and_markers(&mut svg, &f, &r.events);
    svg.push_str("</svg>\n");
    svg
}

/// A round step (1, 2 or 5 times a power of ten) giving about `ticks` ticks up to `max`.
fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1e-9);
    let pow = 10f64.powf(raw.log10().floor());
    let m = raw / pow;
    let nice = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * pow
}

fn nice_ceiling(max: f64) -> f64 {
    let step = nice_step(max, 5.0);
    (max / step).ceil() * step
}

fn fmt_num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e12 {
        format!("{}", v as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_rounds() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
        assert_eq!(nice_ceiling(4321.0), 5000.0);
        assert_eq!(fmt_num(2.0), "2");
        assert_eq!(fmt_num(0.1234), "0.123");
    }
}
