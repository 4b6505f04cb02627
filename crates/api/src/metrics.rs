//! Request metrics: lock-free counters and latency histograms, rendered as Prometheus
//! text. Routes and status codes come from small fixed sets so that every counter is a
//! plain atomic (no lock and no allocation on the request path).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// The routes the service knows, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLabel {
    /// `/default/` and `/default`
    Default,
    /// `/` (Swagger UI)
    Root,
    /// `/openapi.json`, `/swagger.json`
    OpenApi,
    /// Swagger UI assets under `/docs`
    Docs,
    /// `/livez`
    Livez,
    /// `/readyz`
    Readyz,
    /// `/startupz`
    Startupz,
    /// `/metrics`
    Metrics,
    /// Anything else (404s)
    Unmatched,
}

const ROUTES: [(RouteLabel, &str); 9] = [
    (RouteLabel::Default, "/default/"),
    (RouteLabel::Root, "/"),
    (RouteLabel::OpenApi, "/openapi.json"),
    (RouteLabel::Docs, "/docs"),
    (RouteLabel::Livez, "/livez"),
    (RouteLabel::Readyz, "/readyz"),
    (RouteLabel::Startupz, "/startupz"),
    (RouteLabel::Metrics, "/metrics"),
    (RouteLabel::Unmatched, "unmatched"),
];

impl RouteLabel {
    /// The label for a request path.
    pub fn for_path(path: &str) -> RouteLabel {
        match path {
            "/default/" | "/default" => RouteLabel::Default,
            "/" => RouteLabel::Root,
            "/openapi.json" | "/swagger.json" => RouteLabel::OpenApi,
            "/livez" => RouteLabel::Livez,
            "/readyz" => RouteLabel::Readyz,
            "/startupz" => RouteLabel::Startupz,
            "/metrics" => RouteLabel::Metrics,
            p if p == "/docs" || p.starts_with("/docs/") => RouteLabel::Docs,
            _ => RouteLabel::Unmatched,
        }
    }

    fn index(self) -> usize {
        ROUTES.iter().position(|(r, _)| *r == self).unwrap_or(0)
    }
}

/// Status codes counted individually; anything else is counted by class.
const CODES: [u16; 12] = [200, 204, 301, 304, 400, 404, 405, 408, 413, 429, 500, 503];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const N_STATUS: usize = CODES.len() + CLASSES.len();

fn status_index(code: u16) -> usize {
    match CODES.iter().position(|c| *c == code) {
        Some(i) => i,
        None => CODES.len() + usize::from((code / 100).clamp(1, 5) - 1),
    }
}

fn status_label(i: usize) -> String {
    if i < CODES.len() {
        CODES[i].to_string()
    } else {
        CLASSES[i - CODES.len()].to_string()
    }
}

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// All request metrics of one service instance.
#[derive(Debug)]
pub struct ApiMetrics {
    version: String,
    requests: [[AtomicU64; N_STATUS]; ROUTES.len()],
    latency: [Histogram; ROUTES.len()],
    in_flight: AtomicI64,
    ready: AtomicI64,
}

impl ApiMetrics {
    /// Fresh metrics for a service of `version`.
    pub fn new(version: &str) -> Self {
        ApiMetrics {
            version: version.to_string(),
            requests: Default::default(),
            latency: Default::default(),
            in_flight: AtomicI64::new(0),
            ready: AtomicI64::new(1),
        }
    }

    /// A request started.
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Relaxed);
    }

    /// A request finished with `status` after `elapsed`.
    pub fn end(&self, route: RouteLabel, status: u16, elapsed: Duration) {
        self.in_flight.fetch_sub(1, Relaxed);
        let r = route.index();
        self.requests[r][status_index(status)].fetch_add(1, Relaxed);
        let h = &self.latency[r];
        let secs = elapsed.as_secs_f64();
        if let Some(b) = BUCKETS.iter().position(|le| secs <= *le) {
            h.buckets[b].fetch_add(1, Relaxed);
        }
        h.count.fetch_add(1, Relaxed);
        h.sum_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }

    /// Requests being served right now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Relaxed)
    }

    /// Records readiness for the `geoha_api_ready` gauge.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(i64::from(ready), Relaxed);
    }

    /// Total requests counted for `route` with `status` (for tests and reports).
    pub fn requests(&self, route: RouteLabel, status: u16) -> u64 {
        self.requests[route.index()][status_index(status)].load(Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let _ = writeln!(
            out,
            "# HELP geoha_api_build_info Build information of the running API service.\n\
             # TYPE geoha_api_build_info gauge\n\
             geoha_api_build_info{{version=\"{}\"}} 1",
            escape(&self.version)
        );
        let _ = writeln!(
            out,
            "# HELP geoha_api_ready Whether the service reports ready (0 while draining).\n\
             # TYPE geoha_api_ready gauge\ngeoha_api_ready {}",
            self.ready.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP geoha_api_requests_in_flight Requests being served.\n\
             # TYPE geoha_api_requests_in_flight gauge\ngeoha_api_requests_in_flight {}",
            self.in_flight.load(Relaxed)
        );
        out.push_str(
            "# HELP geoha_api_requests_total Requests served, by route and status code.\n\
             # TYPE geoha_api_requests_total counter\n",
        );
        for (r, (_, route)) in ROUTES.iter().enumerate() {
            for s in 0..N_STATUS {
                let n = self.requests[r][s].load(Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "geoha_api_requests_total{{route=\"{route}\",code=\"{}\"}} {n}",
                        status_label(s)
                    );
                }
            }
        }
        out.push_str(
            "# HELP geoha_api_request_duration_seconds Time to answer a request, by route.\n\
             # TYPE geoha_api_request_duration_seconds histogram\n",
        );
        for (r, (_, route)) in ROUTES.iter().enumerate() {
            let h = &self.latency[r];
            let count = h.count.load(Relaxed);
            if count == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (b, le) in BUCKETS.iter().enumerate() {
                cumulative += h.buckets[b].load(Relaxed);
                let _ = writeln!(
                    out,
                    "geoha_api_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "geoha_api_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}\n\
                 geoha_api_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                 geoha_api_request_duration_seconds_count{{route=\"{route}\"}} {count}",
                h.sum_nanos.load(Relaxed) as f64 / 1e9
            );
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_status_and_histogram_is_cumulative() {
        let m = ApiMetrics::new("1.0");
        for _ in 0..3 {
            m.begin();
            m.end(RouteLabel::Default, 200, Duration::from_micros(50));
        }
        m.begin();
        m.end(RouteLabel::Unmatched, 418, Duration::from_millis(3));
        assert_eq!(m.requests(RouteLabel::Default, 200), 3);
        assert_eq!(m.in_flight(), 0);
        let text = m.render();
        assert!(text.contains("geoha_api_requests_total{route=\"/default/\",code=\"200\"} 3"));
        assert!(text.contains("geoha_api_requests_total{route=\"unmatched\",code=\"4xx\"} 1"));
        assert!(text.contains(
            "geoha_api_request_duration_seconds_bucket{route=\"/default/\",le=\"0.0001\"} 3"
        ));
        assert!(text.contains(
            "geoha_api_request_duration_seconds_bucket{route=\"unmatched\",le=\"0.0025\"} 0"
        ));
        assert!(text.contains(
            "geoha_api_request_duration_seconds_bucket{route=\"unmatched\",le=\"0.005\"} 1"
        ));
        assert!(text.contains("geoha_api_build_info{version=\"1.0\"} 1"));
    }
}
