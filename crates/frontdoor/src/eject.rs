//! Passive health: failures seen on live traffic eject an origin at once, instead of
//! waiting for probes (Front Door needs ~1-2 minutes with its default probe settings).
//!
//! `consecutive_failures` failures in a row eject the origin for `base_ejection_time`,
//! doubled on every repeat up to `max_ejection_time`; the repeat count is forgotten after
//! the origin stays in for a whole `max_ejection_time`. When the time is up the origin
//! stays out until a probe succeeds (re-admission through probes), then slow start ramps
//! its traffic back. The group decides whether an ejection is allowed at all
//! (`max_ejected_percent`).

use std::time::Duration;

use tokio::time::Instant;

use crate::config::PassiveHealthConfig;

/// What passive health knows about one origin.
#[derive(Debug, Clone, Default)]
pub struct Ejector {
    consecutive_failures: u32,
    /// `Some` while ejected: when the ejection time ends (then a probe must succeed).
    ejected_until: Option<Instant>,
    /// Ejections in a row (each one doubles the next ejection time).
    repeats: u32,
    /// When the last ejection ended (re-admission).
    readmitted_at: Option<Instant>,
}

/// The result of recording a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureVerdict {
    /// Still in.
    Counted,
    /// Ejected now, for this long.
    Ejected(Duration),
    /// Would be ejected but the group's max ejected share is reached.
    EjectionRefused,
}

impl Ejector {
    /// True while ejected (time not up, or no successful probe since).
    pub fn is_ejected(&self) -> bool {
        self.ejected_until.is_some()
    }

    /// When the ejection time ends, while ejected.
    pub fn ejected_until(&self) -> Option<Instant> {
        self.ejected_until
    }

    /// Failures in a row so far.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// A live request succeeded.
    pub fn on_success(&mut self) {
        self.consecutive_failures = 0;
    }

    /// A live request failed; `immediate` failures (timeouts, with `eject_on_timeout`)
    /// eject without waiting for `consecutive_failures`. `may_eject` is the group's
    /// answer to "may one more origin be ejected?".
    pub fn on_failure(
        &mut self,
        now: Instant,
        cfg: &PassiveHealthConfig,
        immediate: bool,
        may_eject: impl FnOnce() -> bool,
    ) -> FailureVerdict {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let threshold_reached = immediate || self.consecutive_failures >= cfg.consecutive_failures;
        if !cfg.enabled || self.is_ejected() || !threshold_reached {
            return FailureVerdict::Counted;
        }
        if !may_eject() {
            return FailureVerdict::EjectionRefused;
        }
        // A long stay since the last re-admission forgets earlier ejections.
        if self
            .readmitted_at
            .is_some_and(|at| now.saturating_duration_since(at) >= cfg.max_ejection_time)
        {
            self.repeats = 0;
        }
        let factor = 1u32.checked_shl(self.repeats.min(16)).unwrap_or(u32::MAX);
        let time = cfg
            .base_ejection_time
            .saturating_mul(factor)
            .min(cfg.max_ejection_time);
        self.repeats = self.repeats.saturating_add(1);
        self.ejected_until = Some(now + time);
        self.consecutive_failures = 0;
        FailureVerdict::Ejected(time)
    }

    /// A probe finished. Returns true when this re-admits the origin.
    pub fn on_probe(&mut self, ok: bool, now: Instant) -> bool {
        match self.ejected_until {
            Some(until) if ok && now >= until => {
                self.ejected_until = None;
                self.readmitted_at = Some(now);
                self.consecutive_failures = 0;
                true
            }
            _ => false,
        }
    }

    /// Ends an ejection at once (admin enable).
    pub fn clear(&mut self, now: Instant) {
        if self.ejected_until.take().is_some() {
            self.readmitted_at = Some(now);
        }
        self.consecutive_failures = 0;
    }
}

/// How many origins of a group of `total` may be ejected at once: `percent` of them,
/// rounded down, but at least one in a group of two or more (a group of one always
/// keeps its origin).
pub fn max_ejected(total: usize, percent: u32) -> usize {
    if total < 2 || percent == 0 {
        return 0;
    }
    (total * percent as usize / 100).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PassiveHealthConfig {
        PassiveHealthConfig {
            consecutive_failures: 3,
            base_ejection_time: Duration::from_secs(1),
            max_ejection_time: Duration::from_secs(5),
            ..PassiveHealthConfig::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_and_success_resets_the_count() {
        let c = cfg();
        let mut e = Ejector::default();
        let now = Instant::now();
        assert_eq!(
            e.on_failure(now, &c, false, || true),
            FailureVerdict::Counted
        );
        assert_eq!(
            e.on_failure(now, &c, false, || true),
            FailureVerdict::Counted
        );
        e.on_success();
        assert_eq!(
            e.on_failure(now, &c, false, || true),
            FailureVerdict::Counted
        );
        assert_eq!(
            e.on_failure(now, &c, false, || true),
            FailureVerdict::Counted
        );
        assert_eq!(
            e.on_failure(now, &c, false, || true),
            FailureVerdict::Ejected(Duration::from_secs(1))
        );
        assert!(e.is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn readmission_needs_time_up_and_a_successful_probe() {
        let c = cfg();
        let mut e = Ejector::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            e.on_failure(t0, &c, false, || true);
        }
        assert!(
            !e.on_probe(true, t0 + Duration::from_millis(500)),
            "time not up"
        );
        assert!(
            !e.on_probe(false, t0 + Duration::from_secs(2)),
            "probe failed"
        );
        assert!(e.is_ejected());
        assert!(e.on_probe(true, t0 + Duration::from_secs(2)));
        assert!(!e.is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_time_grows_on_repeat_up_to_the_max_and_is_forgotten() {
        let c = cfg();
        let mut e = Ejector::default();
        let mut now = Instant::now();
        let mut times = Vec::new();
        for _ in 0..5 {
            let mut verdict = FailureVerdict::Counted;
            for _ in 0..3 {
                verdict = e.on_failure(now, &c, false, || true);
            }
            let FailureVerdict::Ejected(t) = verdict else {
                panic!("{verdict:?}")
            };
            times.push(t.as_secs());
            now += t;
            assert!(e.on_probe(true, now));
        }
        assert_eq!(times, vec![1, 2, 4, 5, 5]);
        // A long healthy stay resets the growth.
        now += Duration::from_secs(5);
        for _ in 0..2 {
            e.on_failure(now, &c, false, || true);
        }
        assert_eq!(
            e.on_failure(now, &c, false, || true),
            FailureVerdict::Ejected(Duration::from_secs(1))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_ejects_at_once() {
        let c = cfg();
        let mut e = Ejector::default();
        let now = Instant::now();
        assert_eq!(
            e.on_failure(now, &c, true, || true),
            FailureVerdict::Ejected(Duration::from_secs(1))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_group_can_refuse_an_ejection() {
        let c = cfg();
        let mut e = Ejector::default();
        let now = Instant::now();
        e.on_failure(now, &c, false, || false);
        e.on_failure(now, &c, false, || false);
        assert_eq!(
            e.on_failure(now, &c, false, || false),
            FailureVerdict::EjectionRefused
        );
        assert!(!e.is_ejected());
    }

    #[test]
    fn max_ejected_share() {
        assert_eq!(max_ejected(1, 100), 0);
        assert_eq!(max_ejected(2, 50), 1);
        assert_eq!(max_ejected(2, 10), 1);
        assert_eq!(max_ejected(10, 50), 5);
        assert_eq!(max_ejected(4, 0), 0);
    }
}
