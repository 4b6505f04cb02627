//! Prometheus counters and the `/metrics` text (exposition format 0.0.4).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::replicate::PeerStatus;

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn inc(&self) {
        self.add(1);
    }
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The registry's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) requests_2xx: Counter,
    pub(crate) requests_3xx: Counter,
    pub(crate) requests_4xx: Counter,
    pub(crate) requests_5xx: Counter,
    pub(crate) blobs_pushed: Counter,
    pub(crate) manifests_pushed: Counter,
    pub(crate) read_through_hits: Counter,
    pub(crate) read_through_misses: Counter,
    pub(crate) notifications_sent: Counter,
    pub(crate) notifications_failed: Counter,
    pub(crate) notifications_dropped: Counter,
}

impl Metrics {
    pub(crate) fn count_status(&self, status: u16) {
        match status / 100 {
            2 => self.requests_2xx.inc(),
            3 => self.requests_3xx.inc(),
            4 => self.requests_4xx.inc(),
            _ => self.requests_5xx.inc(),
        }
    }

    /// Renders every metric, including per-peer replication state.
    pub(crate) fn render(&self, replica: &str, log_head: u64, peers: &[PeerStatus]) -> String {
        let mut out = String::new();
        let r = escape(replica);
        let counter = |out: &mut String, name: &str, help: &str, series: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in series {
                let _ = writeln!(out, "{name}{{replica=\"{r}\"{labels}}} {v}");
            }
        };
        counter(
            &mut out,
            "geoha_registry_http_requests_total",
            "HTTP requests answered, by status class.",
            &[
                (",code=\"2xx\"".into(), self.requests_2xx.get()),
                (",code=\"3xx\"".into(), self.requests_3xx.get()),
                (",code=\"4xx\"".into(), self.requests_4xx.get()),
                (",code=\"5xx\"".into(), self.requests_5xx.get()),
            ],
        );
        counter(
            &mut out,
            "geoha_registry_blobs_pushed_total",
            "Blobs pushed or mounted here.",
            &[(String::new(), self.blobs_pushed.get())],
        );
        counter(
            &mut out,
            "geoha_registry_manifests_pushed_total",
            "Manifests pushed here.",
            &[(String::new(), self.manifests_pushed.get())],
        );
        counter(
            &mut out,
            "geoha_registry_read_through_total",
            "Local misses looked up at peers, by result.",
            &[
                (",result=\"hit\"".into(), self.read_through_hits.get()),
                (",result=\"miss\"".into(), self.read_through_misses.get()),
            ],
        );
        counter(
            &mut out,
            "geoha_registry_notifications_total",
            "Webhook notifications, by result.",
            &[
                (",result=\"sent\"".into(), self.notifications_sent.get()),
                (",result=\"failed\"".into(), self.notifications_failed.get()),
                (
                    ",result=\"dropped\"".into(),
                    self.notifications_dropped.get(),
                ),
            ],
        );
        let _ = writeln!(
            out,
            "# HELP geoha_registry_log_head Sequence number of the last change logged here.\n# TYPE geoha_registry_log_head gauge\ngeoha_registry_log_head{{replica=\"{r}\"}} {log_head}"
        );
        let gauge =
            |out: &mut String, name: &str, help: &str, f: &dyn Fn(&PeerStatus) -> String| {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                for p in peers {
                    let _ = writeln!(
                        out,
                        "{name}{{replica=\"{r}\",peer=\"{}\"}} {}",
                        escape(&p.id),
                        f(p)
                    );
                }
            };
        gauge(
            &mut out,
            "geoha_registry_replication_queue",
            "Changes not yet acknowledged by the peer.",
            &|p| p.queue.to_string(),
        );
        gauge(
            &mut out,
            "geoha_registry_replication_lag_seconds",
            "Age of the oldest change the peer has not acknowledged.",
            &|p| format!("{:.3}", p.lag_seconds),
        );
        gauge(
            &mut out,
            "geoha_registry_replication_acked_seq",
            "Last change sequence number the peer acknowledged.",
            &|p| p.acked.to_string(),
        );
        gauge(
            &mut out,
            "geoha_registry_replication_failures",
            "Consecutive failed sends to the peer.",
            &|p| p.consecutive_failures.to_string(),
        );
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
