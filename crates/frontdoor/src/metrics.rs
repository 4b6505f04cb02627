//! Counters, gauges and histograms (lock-free atomics) and their Prometheus text form.
//!
//! Per-origin statistics live in the origin's runtime, so they survive reloads with it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Why a try to an origin failed (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// TCP connect refused or reset (nothing was sent).
    Connect,
    /// No TCP connection within the connect timeout (a black hole; nothing was sent).
    ConnectTimeout,
    /// The connection closed or broke before response headers.
    Closed,
    /// No response headers within the origin response timeout.
    Timeout,
    /// No response headers within the per-try timeout (the request went elsewhere).
    TryTimeout,
    /// The origin answered 5xx.
    Status5xx,
    /// A hedge to another origin answered first (a latency outlier signal).
    HedgeLost,
}

impl FailureKind {
    /// Every kind, in label order.
    pub const ALL: [FailureKind; 7] = [
        FailureKind::Connect,
        FailureKind::ConnectTimeout,
        FailureKind::Closed,
        FailureKind::Timeout,
        FailureKind::TryTimeout,
        FailureKind::Status5xx,
        FailureKind::HedgeLost,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect",
            FailureKind::ConnectTimeout => "connect_timeout",
            FailureKind::Closed => "closed",
            FailureKind::Timeout => "timeout",
            FailureKind::TryTimeout => "try_timeout",
            FailureKind::Status5xx => "status_5xx",
            FailureKind::HedgeLost => "hedge_lost",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// A timeout of any kind (the origin or the path to it went silent).
    pub fn is_timeout(self) -> bool {
        matches!(
            self,
            FailureKind::ConnectTimeout | FailureKind::Timeout | FailureKind::TryTimeout
        )
    }
}

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Times to response headers of an origin's answered tries so far, as the metric's
/// buckets: `(upper bound in seconds, answers at or below it)`, cumulative.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencySnapshot {
    /// Answers observed.
    pub count: u64,
    /// Their total time, seconds.
    pub sum_seconds: f64,
    /// `(le, cumulative count)`; answers above the last bound count only in `count`.
    pub buckets: Vec<(f64, u64)>,
}

impl LatencySnapshot {
    /// The upper bound of the bucket holding the `q` quantile of the answers between
    /// `earlier` and `self` (`None` without answers; infinity past the last bucket).
    pub fn quantile_since(&self, earlier: &LatencySnapshot, q: f64) -> Option<f64> {
        let n = self.count.saturating_sub(earlier.count);
        if n == 0 {
            return None;
        }
        let want = (q * n as f64).ceil().max(1.0) as u64;
        for (i, (le, c)) in self.buckets.iter().enumerate() {
            let before = earlier.buckets.get(i).map_or(0, |b| b.1);
            if c.saturating_sub(before) >= want {
                return Some(*le);
            }
        }
        Some(f64::INFINITY)
    }
}

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The histogram now, for the admin API (a client diffs two to judge a window).
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut cumulative = 0;
        let buckets = BUCKETS
            .iter()
            .enumerate()
            .map(|(i, le)| {
                cumulative += self.buckets[i].load(Ordering::Relaxed);
                (*le, cumulative)
            })
            .collect();
        LatencySnapshot {
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            buckets,
        }
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

const RECENT_SECS: u64 = 10;

/// Events per second over the last 10 seconds (for traffic shares).
#[derive(Debug)]
pub struct RecentCounter {
    start: Instant,
    slots: [(AtomicU64, AtomicU64); RECENT_SECS as usize],
}

impl RecentCounter {
    /// Empty.
    pub fn new(start: Instant) -> Self {
        RecentCounter {
            start,
            slots: Default::default(),
        }
    }

    fn second(&self, now: Instant) -> u64 {
        // +1 so that second 0 differs from an unused slot.
        now.saturating_duration_since(self.start).as_secs() + 1
    }

    /// Counts one event.
    pub fn add(&self, now: Instant) {
        let sec = self.second(now);
        let (tag, count) = &self.slots[(sec % RECENT_SECS) as usize];
        let old = tag.swap(sec, Ordering::Relaxed);
        if old != sec {
            // A new second in this slot; a racing increment may be lost, which a share
            // estimate tolerates.
            count.store(0, Ordering::Relaxed);
        }
        count.fetch_add(1, Ordering::Relaxed);
    }

    /// Events in the last 10 seconds.
    pub fn sum(&self, now: Instant) -> u64 {
        let sec = self.second(now);
        self.slots
            .iter()
            .filter(|(tag, _)| {
                let t = tag.load(Ordering::Relaxed);
                t != 0 && sec.saturating_sub(t) < RECENT_SECS
            })
            .map(|(_, c)| c.load(Ordering::Relaxed))
            .sum()
    }
}

const LATENCY_RING: usize = 256;
const LATENCY_MIN_SAMPLES: usize = 20;

#[derive(Debug)]
struct LatencyRing {
    micros: Vec<u32>,
    next: usize,
    since_recompute: u32,
}

/// The last 256 times to response headers of one origin and their p99 (recomputed every
/// 16 answers, by a linear-time selection over the 256 numbers).
#[derive(Debug)]
pub struct RecentLatency {
    ring: std::sync::Mutex<LatencyRing>,
    /// 0 while fewer than 20 answers were seen.
    p99_micros: AtomicU64,
}

impl Default for RecentLatency {
    fn default() -> Self {
        RecentLatency {
            ring: std::sync::Mutex::new(LatencyRing {
                micros: Vec::with_capacity(LATENCY_RING),
                next: 0,
                since_recompute: 0,
            }),
            p99_micros: AtomicU64::new(0),
        }
    }
}

impl RecentLatency {
    /// Records one answer's time to headers.
    pub fn observe(&self, d: Duration) {
        let v = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        if ring.micros.len() < LATENCY_RING {
            ring.micros.push(v);
        } else {
            let i = ring.next;
            ring.micros[i] = v;
        }
        ring.next = (ring.next + 1) % LATENCY_RING;
        ring.since_recompute += 1;
        let n = ring.micros.len();
        if n >= LATENCY_MIN_SAMPLES && (ring.since_recompute >= 16 || n < 64) {
            ring.since_recompute = 0;
            let mut copy = [0u32; LATENCY_RING];
            let samples = &mut copy[..n];
            samples.copy_from_slice(&ring.micros);
            drop(ring);
            // The value a full sort would put at the p99 index, in linear time.
            let idx = ((n * 99).div_ceil(100)).saturating_sub(1);
            let (_, p99, _) = samples.select_nth_unstable(idx);
            self.p99_micros
                .store(u64::from(*p99).max(1), Ordering::Relaxed);
        }
    }

    /// The p99, once 20 answers were seen.
    pub fn p99(&self) -> Option<Duration> {
        match self.p99_micros.load(Ordering::Relaxed) {
            0 => None,
            v => Some(Duration::from_micros(v)),
        }
    }
}

/// Statistics of one origin.
#[derive(Debug)]
pub struct OriginStats {
    /// Tries sent.
    pub requests: AtomicU64,
    failures: [AtomicU64; FailureKind::ALL.len()],
    /// Tries in flight (sent, response body not finished).
    pub in_flight: AtomicI64,
    /// Times ejected by passive health.
    pub ejections: AtomicU64,
    /// Probe results.
    pub probes_ok: AtomicU64,
    /// Probe failures.
    pub probes_failed: AtomicU64,
    /// Time to response headers.
    pub latency: LatencyHistogram,
    /// Recent tries, for the traffic share.
    pub recent: RecentCounter,
    /// Recent times to response headers, for the adaptive per-try timeout.
    pub recent_latency: RecentLatency,
}

impl OriginStats {
    /// Zeroed.
    pub fn new() -> Self {
        OriginStats {
            requests: AtomicU64::new(0),
            failures: Default::default(),
            in_flight: AtomicI64::new(0),
            ejections: AtomicU64::new(0),
            probes_ok: AtomicU64::new(0),
            probes_failed: AtomicU64::new(0),
            latency: LatencyHistogram::default(),
            recent: RecentCounter::new(Instant::now()),
            recent_latency: RecentLatency::default(),
        }
    }

    /// Counts a failure.
    pub fn fail(&self, kind: FailureKind) {
        self.failures[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Failures of one kind.
    pub fn failures(&self, kind: FailureKind) -> u64 {
        self.failures[kind.index()].load(Ordering::Relaxed)
    }

    /// Failures of every kind.
    pub fn failures_total(&self) -> u64 {
        FailureKind::ALL.iter().map(|&k| self.failures(k)).sum()
    }
}

impl Default for OriginStats {
    fn default() -> Self {
        Self::new()
    }
}

/// Front-door-wide statistics.
#[derive(Debug, Default)]
pub struct FrontdoorStats {
    /// Client responses by status class (index 1..=5 for 1xx..5xx).
    pub responses: [AtomicU64; 6],
    /// Retries sent to another origin.
    pub retries: AtomicU64,
    /// Retries the budget refused.
    pub retries_denied: AtomicU64,
    /// Hedged copies sent to a second origin.
    pub hedges: AtomicU64,
    /// Hedged copies that answered first.
    pub hedges_won: AtomicU64,
    /// Client connections open.
    pub connections_open: AtomicI64,
    /// Reloads applied.
    pub reloads: AtomicU64,
    /// Reloads refused (bad config).
    pub reloads_failed: AtomicU64,
}

impl FrontdoorStats {
    /// Counts a client response.
    pub fn response(&self, status: http::StatusCode) {
        let class = (status.as_u16() / 100) as usize;
        if let Some(c) = self.responses.get(class) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One origin's numbers for rendering.
#[derive(Debug)]
pub(crate) struct OriginMetricsView<'a> {
    pub(crate) group: &'a str,
    pub(crate) origin: &'a str,
    pub(crate) healthy: bool,
    pub(crate) ejected: bool,
    pub(crate) probe_latency: Option<Duration>,
    pub(crate) try_timeout: Option<Duration>,
    pub(crate) stats: &'a OriginStats,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders everything in Prometheus text format 0.0.4.
pub(crate) fn render(
    fd: &FrontdoorStats,
    workers_open: &[usize],
    origins: &[OriginMetricsView<'_>],
) -> String {
    let mut out = String::with_capacity(4096 + origins.len() * 2048);
    let n = "geoha_frontdoor_responses_total";
    header(
        &mut out,
        n,
        "counter",
        "Responses sent to clients, by status class.",
    );
    for class in 1..=5 {
        let v = fd.responses[class].load(Ordering::Relaxed);
        let _ = writeln!(out, "{n}{{class=\"{class}xx\"}} {v}");
    }
    let n = "geoha_frontdoor_retries_total";
    header(
        &mut out,
        n,
        "counter",
        "Requests retried on another origin.",
    );
    let _ = writeln!(out, "{n} {}", fd.retries.load(Ordering::Relaxed));
    let n = "geoha_frontdoor_retries_denied_total";
    header(
        &mut out,
        n,
        "counter",
        "Retries refused by the retry budget.",
    );
    let _ = writeln!(out, "{n} {}", fd.retries_denied.load(Ordering::Relaxed));
    let n = "geoha_frontdoor_hedges_total";
    header(
        &mut out,
        n,
        "counter",
        "Hedged copies of slow idempotent requests sent to a second origin.",
    );
    let _ = writeln!(out, "{n} {}", fd.hedges.load(Ordering::Relaxed));
    let n = "geoha_frontdoor_hedges_won_total";
    header(
        &mut out,
        n,
        "counter",
        "Hedged copies that answered before the first try.",
    );
    let _ = writeln!(out, "{n} {}", fd.hedges_won.load(Ordering::Relaxed));
    let n = "geoha_frontdoor_connections_open";
    header(&mut out, n, "gauge", "Client connections open.");
    let _ = writeln!(out, "{n} {}", fd.connections_open.load(Ordering::Relaxed));
    let n = "geoha_frontdoor_worker_connections_open";
    header(
        &mut out,
        n,
        "gauge",
        "Client connections open, by data-plane worker.",
    );
    for (worker, open) in workers_open.iter().enumerate() {
        let _ = writeln!(out, "{n}{{worker=\"{worker}\"}} {open}");
    }
    let n = "geoha_frontdoor_reloads_total";
    header(&mut out, n, "counter", "Configuration reloads applied.");
    let _ = writeln!(out, "{n} {}", fd.reloads.load(Ordering::Relaxed));
    let n = "geoha_frontdoor_reloads_failed_total";
    header(
        &mut out,
        n,
        "counter",
        "Configuration reloads refused (the old config stays).",
    );
    let _ = writeln!(out, "{n} {}", fd.reloads_failed.load(Ordering::Relaxed));

    let labels = |o: &OriginMetricsView<'_>| {
        format!(
            "group=\"{}\",origin=\"{}\"",
            escape(o.group),
            escape(o.origin)
        )
    };
    type Gauge = fn(&OriginMetricsView<'_>) -> String;
    let simple: [(&str, &str, &str, Gauge); 6] = [
        (
            "geoha_frontdoor_origin_requests_total",
            "counter",
            "Tries sent to the origin.",
            |o| o.stats.requests.load(Ordering::Relaxed).to_string(),
        ),
        (
            "geoha_frontdoor_origin_in_flight",
            "gauge",
            "Tries in flight to the origin.",
            |o| o.stats.in_flight.load(Ordering::Relaxed).to_string(),
        ),
        (
            "geoha_frontdoor_origin_healthy",
            "gauge",
            "1 when the origin is healthy by probes.",
            |o| u8::from(o.healthy).to_string(),
        ),
        (
            "geoha_frontdoor_origin_ejected",
            "gauge",
            "1 while passive health ejects the origin.",
            |o| u8::from(o.ejected).to_string(),
        ),
        (
            "geoha_frontdoor_origin_ejections_total",
            "counter",
            "Ejections by passive health.",
            |o| o.stats.ejections.load(Ordering::Relaxed).to_string(),
        ),
        (
            "geoha_frontdoor_origin_probe_latency_seconds",
            "gauge",
            "Mean latency of the successful probes in the window (NaN when none).",
            |o| match o.probe_latency {
                Some(d) => d.as_secs_f64().to_string(),
                None => "NaN".into(),
            },
        ),
    ];
    for (name, kind, help, value) in &simple {
        header(&mut out, name, kind, help);
        for o in origins {
            let _ = writeln!(out, "{name}{{{}}} {}", labels(o), value(o));
        }
    }
    let n = "geoha_frontdoor_origin_try_timeout_seconds";
    header(
        &mut out,
        n,
        "gauge",
        "Current per-try timeout (NaN when off).",
    );
    for o in origins {
        let v = o
            .try_timeout
            .map(|d| d.as_secs_f64().to_string())
            .unwrap_or_else(|| "NaN".into());
        let _ = writeln!(out, "{n}{{{}}} {v}", labels(o));
    }
    let n = "geoha_frontdoor_origin_failures_total";
    header(&mut out, n, "counter", "Failed tries, by kind.");
    for o in origins {
        for kind in FailureKind::ALL {
            let _ = writeln!(
                out,
                "{n}{{{},kind=\"{}\"}} {}",
                labels(o),
                kind.label(),
                o.stats.failures(kind)
            );
        }
    }
    let n = "geoha_frontdoor_origin_probes_total";
    header(&mut out, n, "counter", "Health probes, by result.");
    for o in origins {
        let l = labels(o);
        let _ = writeln!(
            out,
            "{n}{{{l},result=\"success\"}} {}",
            o.stats.probes_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "{n}{{{l},result=\"failure\"}} {}",
            o.stats.probes_failed.load(Ordering::Relaxed)
        );
    }
    let n = "geoha_frontdoor_origin_response_seconds";
    header(
        &mut out,
        n,
        "histogram",
        "Time from sending a try to the origin's response headers.",
    );
    for o in origins {
        o.stats.latency.render(&mut out, n, &labels(o));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn recent_counter_forgets_after_ten_seconds() {
        let c = RecentCounter::new(Instant::now());
        c.add(Instant::now());
        c.add(Instant::now());
        tokio::time::advance(Duration::from_secs(5)).await;
        c.add(Instant::now());
        assert_eq!(c.sum(Instant::now()), 3);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(c.sum(Instant::now()), 1);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(c.sum(Instant::now()), 0);
    }

    #[test]
    fn a_window_quantile_comes_from_two_snapshots() {
        let h = LatencyHistogram::default();
        for _ in 0..100 {
            h.observe(Duration::from_millis(1));
        }
        let before = h.snapshot();
        assert_eq!(
            before.quantile_since(&before, 0.99),
            None,
            "no answers in the window"
        );
        for _ in 0..98 {
            h.observe(Duration::from_millis(2));
        }
        h.observe(Duration::from_millis(400));
        h.observe(Duration::from_millis(400));
        let after = h.snapshot();
        // The window's 100 answers: 98 at 2 ms, 2 at 400 ms; the early 1 ms ones do not count.
        let p99 = after.quantile_since(&before, 0.99).unwrap();
        assert!((0.25..=0.5).contains(&p99), "{p99}");
        let p50 = after.quantile_since(&before, 0.5).unwrap();
        assert!(p50 <= 0.0025, "{p50}");
        h.observe(Duration::from_secs(100));
        let past = h.snapshot();
        assert_eq!(past.quantile_since(&after, 0.99), Some(f64::INFINITY));
    }

    #[test]
    fn recent_latency_p99_needs_twenty_answers_and_follows_the_tail() {
        let r = RecentLatency::default();
        for _ in 0..19 {
            r.observe(Duration::from_millis(1));
        }
        assert_eq!(r.p99(), None);
        r.observe(Duration::from_millis(1));
        assert_eq!(r.p99(), Some(Duration::from_millis(1)));
        // 98 fast, then slow answers: the p99 moves to the tail.
        for i in 0..236 {
            r.observe(Duration::from_millis(if i % 50 == 0 { 80 } else { 1 }));
        }
        assert_eq!(r.p99(), Some(Duration::from_millis(80)));
        // Old samples leave the ring.
        for _ in 0..256 {
            r.observe(Duration::from_millis(2));
        }
        assert_eq!(r.p99(), Some(Duration::from_millis(2)));
    }

    #[test]
    fn histogram_is_cumulative() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.025\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"30\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
    }
}
