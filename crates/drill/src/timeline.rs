//! The per-second record of a run. Every request lands in the second of its
//! *intended* send time, so a fault's effect shows in the second the fault happened,
//! even when the requests it hurt only finished (or timed out) later.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::outcome::{Answerer, FailedByKind, Outcome};

/// Latencies are recorded in microseconds, up to an hour (longer ones saturate).
const HIST_MAX_US: u64 = 3_600_000_000;

/// Answers from one replica within one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AnswerStat {
    /// How many successful answers.
    pub(crate) count: u64,
    /// Intended send offset of the latest one, in microseconds since the start.
    pub(crate) last_at_us: u64,
    /// Intended send offset of the earliest one.
    pub(crate) first_at_us: u64,
}

/// One second of the run.
#[derive(Debug, Clone)]
pub(crate) struct SecondBucket {
    /// Requests whose intended send time fell in this second (and that finished).
    pub(crate) sent: u64,
    /// Successful ones.
    pub(crate) ok: u64,
    /// Failed ones by kind.
    pub(crate) failed: FailedByKind,
    /// Latency of the successful ones, from the intended send time, in µs.
    pub(crate) latency_us: Histogram<u64>,
    /// Intended offset (µs) of the latest failed request of this second.
    pub(crate) last_failed_at_us: Option<u64>,
    /// Successful answers by who gave them.
    pub(crate) answers: BTreeMap<Answerer, AnswerStat>,
}

impl SecondBucket {
    fn new() -> SecondBucket {
        SecondBucket {
            sent: 0,
            ok: 0,
            failed: FailedByKind::default(),
            // Two significant digits per second keeps a long run's memory modest;
            // the whole-run histogram keeps three.
            latency_us: new_histogram(2),
            last_failed_at_us: None,
            answers: BTreeMap::new(),
        }
    }
}

/// Everything recorded during a run.
#[derive(Debug)]
pub(crate) struct Timeline {
    pub(crate) seconds: Vec<SecondBucket>,
    /// Latency of every successful request, in µs.
    pub(crate) overall_us: Histogram<u64>,
}

pub(crate) fn new_histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, sigfig).expect("static histogram bounds are valid")
}

impl Timeline {
    pub(crate) fn new(expected_seconds: usize) -> Timeline {
        Timeline {
            seconds: Vec::with_capacity(expected_seconds + 1),
            overall_us: new_histogram(3),
        }
    }

    /// Records one finished request: `intended` is its intended send time and
    /// `latency` runs from then to the end of its response (or its failure).
    pub(crate) fn record(&mut self, intended: Duration, latency: Duration, outcome: Outcome) {
        let at_us = intended.as_micros() as u64;
        let second = (at_us / 1_000_000) as usize;
        while self.seconds.len() <= second {
            self.seconds.push(SecondBucket::new());
        }
        let bucket = &mut self.seconds[second];
        bucket.sent += 1;
        match outcome {
            Outcome::Ok(who) => {
                bucket.ok += 1;
                let us = (latency.as_micros() as u64).max(1);
                bucket.latency_us.saturating_record(us);
                self.overall_us.saturating_record(us);
                if let Some(who) = who {
                    let stat = bucket.answers.entry(who).or_insert(AnswerStat {
                        count: 0,
                        last_at_us: at_us,
                        first_at_us: at_us,
                    });
                    stat.count += 1;
                    stat.last_at_us = stat.last_at_us.max(at_us);
                    stat.first_at_us = stat.first_at_us.min(at_us);
                }
            }
            Outcome::Failed(kind) => {
                bucket.failed.add(kind);
                bucket.last_failed_at_us =
                    Some(bucket.last_failed_at_us.map_or(at_us, |t| t.max(at_us)));
            }
        }
    }

    /// Makes sure there is a bucket for every second of a run of `seconds` seconds,
    /// so a second in which nothing finished still shows (as zero) in the report.
    pub(crate) fn pad_to(&mut self, seconds: usize) {
        while self.seconds.len() < seconds {
            self.seconds.push(SecondBucket::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FailureKind;

    fn who(region: &str, replica: &str) -> Option<Answerer> {
        Some(Answerer {
            region: region.into(),
            zone: "1".into(),
            replica: replica.into(),
        })
    }

    #[test]
    fn buckets_by_intended_time() {
        let mut t = Timeline::new(3);
        let ms = Duration::from_millis;
        t.record(ms(100), ms(2), Outcome::Ok(who("a", "a-z1-r0")));
        t.record(ms(900), ms(3000), Outcome::Failed(FailureKind::Timeout));
        t.record(ms(1500), ms(1), Outcome::Ok(who("b", "b-z1-r0")));
        t.record(ms(1700), ms(1), Outcome::Ok(who("b", "b-z1-r0")));
        t.pad_to(4);
        assert_eq!(t.seconds.len(), 4);
        // The timeout finished in second 3 but belongs to second 0.
        assert_eq!(t.seconds[0].sent, 2);
        assert_eq!(t.seconds[0].failed.timeout, 1);
        assert_eq!(t.seconds[0].last_failed_at_us, Some(900_000));
        assert_eq!(t.seconds[1].ok, 2);
        let stat = t.seconds[1].answers.values().next().unwrap();
        assert_eq!(
            (stat.count, stat.first_at_us, stat.last_at_us),
            (2, 1_500_000, 1_700_000)
        );
        assert_eq!(t.seconds[3].sent, 0);
        assert_eq!(t.overall_us.len(), 3);
    }
}
