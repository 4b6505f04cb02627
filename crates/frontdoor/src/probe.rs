//! Active health probes, as Front Door does them: every `interval`, a `HEAD` (or `GET`)
//! of `path` on a fresh connection (pooled connections can hide a dead network path);
//! only `200` counts as success; the latency of successful probes feeds the latency band.
//!
//! [`ProbeWindow`] keeps the last `sample_size` results; an origin is healthy when at
//! least `successful_samples_required` of them succeeded. Samples not taken yet count as
//! successes, so a new origin starts healthy and needs as many failures to go unhealthy
//! as a long-healthy one does (and a front door that just started sends traffic at once).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ProbeConfig;
use crate::origin::OriginRuntime;

/// One probe result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSample {
    /// Answered 200 in time.
    pub ok: bool,
    /// Time to the response headers.
    pub latency: Duration,
}

/// The last `sample_size` probe results of one origin.
#[derive(Debug, Clone)]
pub struct ProbeWindow {
    samples: VecDeque<ProbeSample>,
    sample_size: usize,
    required: usize,
}

impl ProbeWindow {
    /// An empty window.
    pub fn new(sample_size: u32, successful_samples_required: u32) -> Self {
        let sample_size = sample_size.max(1) as usize;
        ProbeWindow {
            samples: VecDeque::with_capacity(sample_size),
            sample_size,
            required: (successful_samples_required as usize).clamp(1, sample_size),
        }
    }

    /// Keeps the samples (newest ones) when the settings change on reload.
    pub fn resize(&mut self, sample_size: u32, successful_samples_required: u32) {
        let fresh = ProbeWindow::new(sample_size, successful_samples_required);
        self.sample_size = fresh.sample_size;
        self.required = fresh.required;
        while self.samples.len() > self.sample_size {
            self.samples.pop_front();
        }
    }

    /// Records a probe result.
    pub fn record(&mut self, sample: ProbeSample) {
        if self.samples.len() == self.sample_size {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// Successes among the samples taken.
    pub fn successes(&self) -> usize {
        self.samples.iter().filter(|s| s.ok).count()
    }

    /// At least `successful_samples_required` of the last `sample_size` succeeded
    /// (samples not yet taken count as successes).
    pub fn is_healthy(&self) -> bool {
        let missing = self.sample_size - self.samples.len();
        self.successes() + missing >= self.required
    }

    /// Mean latency of the successful samples in the window.
    pub fn latency(&self) -> Option<Duration> {
        let (sum, n) = self
            .samples
            .iter()
            .filter(|s| s.ok)
            .fold((Duration::ZERO, 0u32), |(sum, n), s| {
                (sum + s.latency, n + 1)
            });
        (n > 0).then(|| sum / n)
    }

    /// Results oldest first.
    pub fn results(&self) -> Vec<bool> {
        self.samples.iter().map(|s| s.ok).collect()
    }

    /// The newest result.
    pub fn last(&self) -> Option<ProbeSample> {
        self.samples.back().copied()
    }
}

/// Probes `addr` once on a fresh connection.
pub async fn probe_once(
    addr: SocketAddr,
    host: &str,
    cfg: &ProbeConfig,
) -> (ProbeSample, Option<String>) {
    let timeout = cfg.effective_timeout();
    let start = Instant::now();
    let work = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let req = http::Request::builder()
            .method(cfg.method.as_method())
            .uri(cfg.path.as_str())
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "geoha-frontdoor-probe")
            .header(http::header::CONNECTION, "close")
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        // The connection is driven here, not spawned: when the timeout drops this future,
        // the socket closes with it (a frozen origin must not pile up probe sockets).
        let answer = sender.send_request(req);
        tokio::pin!(answer, conn);
        let resp = tokio::select! {
            biased;
            r = &mut answer => r,
            // The connection may end (`Connection: close`) right after delivering the
            // answer: the answer future then still resolves.
            _ = &mut conn => answer.await,
        }
        .map_err(|e| format!("send: {e}"))?;
        Ok::<http::StatusCode, String>(resp.status())
    };
    let result = match tokio::time::timeout(timeout, work).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(r) => r,
    };
    let latency = start.elapsed();
    match result {
        Ok(status) if status == http::StatusCode::OK => (ProbeSample { ok: true, latency }, None),
        Ok(status) => (
            ProbeSample { ok: false, latency },
            Some(format!("status {}", status.as_u16())),
        ),
        Err(e) => (ProbeSample { ok: false, latency }, Some(e)),
    }
}

/// Probes one origin until `stop` is cancelled. Besides every `interval`, it probes when
/// an ejection ends (re-admission goes through a probe) and when woken by the origin.
pub(crate) async fn run_prober(
    origin: Arc<OriginRuntime>,
    host: String,
    cfg: ProbeConfig,
    stop: CancellationToken,
) {
    // Spread the probes of many origins over the interval instead of bursting.
    let jitter = {
        use rand::Rng;
        let max = cfg.interval.min(Duration::from_millis(100)).as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=max))
    };
    tokio::select! {
        () = tokio::time::sleep(jitter) => {}
        () = stop.cancelled() => return,
    }
    loop {
        let (sample, error) = tokio::select! {
            r = probe_once(origin.address, &host, &cfg) => r,
            () = stop.cancelled() => return,
        };
        if let Some(error) = &error {
            tracing::debug!(origin = %origin.name, %error, "probe failed");
        }
        origin.record_probe(sample, Instant::now());
        let mut next = Instant::now() + cfg.interval;
        if let Some(until) = origin.ejection_probe_at() {
            next = next.min(until.max(Instant::now()));
        }
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = origin.probe_wake.notified() => {}
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ok: bool, ms: u64) -> ProbeSample {
        ProbeSample {
            ok,
            latency: Duration::from_millis(ms),
        }
    }

    #[test]
    fn healthy_when_enough_of_the_last_samples_succeeded() {
        let mut w = ProbeWindow::new(4, 2);
        for ok in [true, true, true, true] {
            w.record(s(ok, 1));
        }
        assert!(w.is_healthy());
        w.record(s(false, 1));
        w.record(s(false, 1));
        assert!(
            w.is_healthy(),
            "2 of last 4 still healthy: {:?}",
            w.results()
        );
        w.record(s(false, 1));
        assert!(!w.is_healthy(), "1 of last 4: {:?}", w.results());
        w.record(s(true, 1));
        assert!(!w.is_healthy(), "1 of last 4: {:?}", w.results());
        w.record(s(true, 1));
        assert!(w.is_healthy(), "2 of last 4: {:?}", w.results());
        assert_eq!(w.results(), vec![false, false, true, true]);
    }

    #[test]
    fn a_new_origin_counts_missing_samples_as_successes() {
        let mut w = ProbeWindow::new(4, 2);
        assert!(w.is_healthy());
        w.record(s(false, 1));
        w.record(s(false, 1));
        assert!(w.is_healthy());
        w.record(s(false, 1));
        assert!(!w.is_healthy());
    }

    #[test]
    fn latency_is_the_mean_of_successful_samples() {
        let mut w = ProbeWindow::new(4, 2);
        assert_eq!(w.latency(), None);
        w.record(s(true, 10));
        w.record(s(false, 900));
        w.record(s(true, 30));
        assert_eq!(w.latency(), Some(Duration::from_millis(20)));
    }

    #[test]
    fn resize_keeps_the_newest_samples() {
        let mut w = ProbeWindow::new(4, 2);
        for ok in [false, true, true, false] {
            w.record(s(ok, 1));
        }
        w.resize(2, 1);
        assert_eq!(w.results(), vec![true, false]);
        assert!(w.is_healthy());
    }
}
