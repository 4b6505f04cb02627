//! Turns what a run recorded (the per-second [`Timeline`] and the steps' records) into
//! a [`Report`], including the per-event analysis: failures, recovery, traffic shift.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::load::PacerSummary;
use crate::outcome::FailedByKind;
use crate::report::{Event, Latency, Report, Second, WindowLatency, SCHEMA_VERSION};
use crate::steps::EventRecord;
use crate::timeline::{new_histogram, SecondBucket, Timeline};

/// Threshold used when there is no baseline to derive one from.
const FALLBACK_THRESHOLD: Duration = Duration::from_millis(250);
/// The derived threshold is never tighter than this (loopback p99s are tiny and noisy).
const MIN_THRESHOLD: Duration = Duration::from_millis(25);
/// Achieved within this share of the target counts as keeping up.
const KEPT_UP_SHARE: f64 = 0.98;

/// The run's settings as the report repeats them.
#[derive(Debug, Clone)]
pub(crate) struct RunFacts {
    pub(crate) scenario: Option<(String, String)>,
    pub(crate) target: String,
    pub(crate) started_at: String,
    pub(crate) duration: Duration,
    pub(crate) rate: f64,
    pub(crate) connections: usize,
    pub(crate) timeout: Duration,
    pub(crate) recovery_p99: Option<Duration>,
}

pub(crate) fn build(
    facts: &RunFacts,
    pacer: &PacerSummary,
    timeline: &Timeline,
    events: &[EventRecord],
) -> Report {
    let seconds = &timeline.seconds;
    let mut failed_by_kind = FailedByKind::default();
    let mut ok = 0;
    let mut by_region = BTreeMap::new();
    let mut by_replica = BTreeMap::new();
    for b in seconds {
        failed_by_kind.merge(&b.failed);
        ok += b.ok;
        for (who, stat) in &b.answers {
            if !who.region.is_empty() {
                *by_region.entry(who.region.clone()).or_insert(0) += stat.count;
            }
            if !who.replica.is_empty() {
                *by_replica.entry(who.replica.clone()).or_insert(0) += stat.count;
            }
        }
    }
    let failed = failed_by_kind.total();
    let finished = ok + failed;
    let threshold = facts
        .recovery_p99
        .unwrap_or_else(|| derived_threshold(seconds, events));
    let threshold_us = threshold.as_micros() as u64;
    let achieved_rate = if pacer.send_window.is_zero() {
        0.0
    } else {
        pacer.dispatched as f64 / pacer.send_window.as_secs_f64()
    };
    let h = &timeline.overall_us;
    let ms = |us: u64| us as f64 / 1000.0;
    let latency_ms = if h.is_empty() {
        Latency::default()
    } else {
        Latency {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: round3(h.mean() / 1000.0),
        }
    };
    let timeline_report = seconds
        .iter()
        .enumerate()
        .map(|(t, b)| Second {
            t: t as u64,
            sent: b.sent,
            ok: b.ok,
            failed: b.failed.total(),
            failed_by_kind: b.failed,
            latency_ms: window_latency(&b.latency_us),
            by_region: b.answers.iter().filter(|(w, _)| !w.region.is_empty()).fold(
                BTreeMap::new(),
                |mut m, (w, s)| {
                    *m.entry(w.region.clone()).or_insert(0) += s.count;
                    m
                },
            ),
        })
        .collect();
    let events = events
        .iter()
        .enumerate()
        .map(|(i, e)| analyze(e, events.get(i + 1).map(|n| n.at), seconds, threshold_us))
        .collect();
    Report {
        schema_version: SCHEMA_VERSION,
        scenario: facts.scenario.as_ref().map(|s| s.0.clone()),
        description: facts.scenario.as_ref().map(|s| s.1.clone()),
        target: facts.target.clone(),
        started_at: facts.started_at.clone(),
        duration_s: facts.duration.as_secs_f64(),
        elapsed_s: round3(pacer.elapsed.as_secs_f64()),
        target_rate: facts.rate,
        achieved_rate: round3(achieved_rate),
        kept_up: pacer.unsent == 0
            && pacer.expired == 0
            && achieved_rate >= facts.rate * KEPT_UP_SHARE,
        connections: facts.connections as u64,
        timeout_ms: facts.timeout.as_millis() as u64,
        sent: pacer.dispatched + pacer.expired,
        ok,
        failed,
        unsent: pacer.unsent,
        expired_before_send: pacer.expired,
        behind_schedule: pacer.behind,
        max_schedule_lag_ms: round3(pacer.max_lag.as_secs_f64() * 1000.0),
        availability_pct: if finished == 0 {
            0.0
        } else {
            round3(ok as f64 * 100.0 / finished as f64)
        },
        failed_by_kind,
        latency_ms,
        recovery_p99_threshold_ms: threshold.as_secs_f64() * 1000.0,
        by_region,
        by_replica,
        timeline: timeline_report,
        events,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn window_latency(h: &Histogram<u64>) -> Option<WindowLatency> {
    (!h.is_empty()).then(|| WindowLatency {
        p50: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99: h.value_at_quantile(0.99) as f64 / 1000.0,
        p999: h.value_at_quantile(0.999) as f64 / 1000.0,
        max: h.max() as f64 / 1000.0,
    })
}

/// Three times the p99 of the seconds before the first event (at least
/// [`MIN_THRESHOLD`]): "back to normal" judged against this run's own normal.
fn derived_threshold(seconds: &[SecondBucket], events: &[EventRecord]) -> Duration {
    let baseline_end = events
        .first()
        .map_or(seconds.len(), |e| e.at.as_secs() as usize)
        .min(seconds.len());
    let mut h = new_histogram(2);
    for b in &seconds[..baseline_end] {
        let _ = h.add(&b.latency_us);
    }
    if h.is_empty() {
        return FALLBACK_THRESHOLD;
    }
    Duration::from_micros(h.value_at_quantile(0.99) * 3).max(MIN_THRESHOLD)
}

fn is_clean(b: &SecondBucket, threshold_us: u64) -> bool {
    b.sent > 0 && b.failed.total() == 0 && b.latency_us.value_at_quantile(0.99) <= threshold_us
}

fn analyze(
    e: &EventRecord,
    next_at: Option<Duration>,
    seconds: &[SecondBucket],
    threshold_us: u64,
) -> Event {
    let at_us = e.at.as_micros() as u64;
    let at_s = e.at.as_secs_f64();
    let first = (e.at.as_secs() as usize).min(seconds.len());
    // Requests are attributed to the event by second: a request due in the fault's own
    // second may have been in flight when it struck.
    let window_end = next_at
        .map_or(seconds.len(), |n| n.as_secs() as usize)
        .clamp(first, seconds.len());
    let window = &seconds[first..window_end];
    let mut failed_by_kind = FailedByKind::default();
    for b in window {
        failed_by_kind.merge(&b.failed);
    }

    // Recovery: the first clean second from the fault on; before it, the latest bad
    // request (a failure's intended time, or the end of a second whose p99 was over).
    let clean = (first..seconds.len()).find(|&s| is_clean(&seconds[s], threshold_us));
    let recovery_s = clean.map(|clean| {
        let last_bad_us = (first..clean)
            .filter(|&s| seconds[s].sent > 0)
            .map(|s| {
                let b = &seconds[s];
                let slow = b.latency_us.value_at_quantile(0.99) > threshold_us;
                let by_latency = if slow { (s as u64 + 1) * 1_000_000 } else { 0 };
                b.last_failed_at_us.unwrap_or(0).max(by_latency)
            })
            .max()
            .unwrap_or(0);
        round3(last_bad_us.saturating_sub(at_us) as f64 / 1e6)
    });
    let outage_end = clean
        .unwrap_or(seconds.len())
        .max(first + 1)
        .min(seconds.len());
    let mut outage = new_histogram(2);
    for b in &seconds[first..outage_end] {
        let _ = outage.add(&b.latency_us);
    }

    let (mut shift_s, mut return_s) = (None, None);
    if let Some(target) = &e.watch {
        if e.restores {
            return_s = seconds[first..]
                .iter()
                .flat_map(|b| b.answers.iter())
                .filter(|(who, stat)| {
                    crate::scenario::target_matches(target, who) && stat.last_at_us >= at_us
                })
                .map(|(_, stat)| stat.first_at_us.max(at_us))
                .min()
                .map(|t| round3((t - at_us) as f64 / 1e6));
        } else {
            // The first second (from the fault's own) in which requests were due but
            // the target answered none of them after the fault: answers had stopped.
            // Looking for a gap, not for the last answer in the window, keeps a target
            // that restarts and comes back (flapping) from reading as "never shifted".
            let after = |s: usize| -> Option<u64> {
                seconds[s]
                    .answers
                    .iter()
                    .filter(|(who, stat)| {
                        crate::scenario::target_matches(target, who) && stat.last_at_us >= at_us
                    })
                    .map(|(_, stat)| stat.last_at_us)
                    .max()
            };
            let gap = (first..window_end).find(|&s| seconds[s].sent > 0 && after(s).is_none());
            shift_s = gap.map(|gap| {
                let last = (first..gap).filter_map(after).max();
                last.map_or(0.0, |t| round3((t - at_us) as f64 / 1e6))
            });
        }
    }

    Event {
        at_s: round3(at_s),
        planned_at_s: e.planned_at.as_secs_f64(),
        action: e.label.clone(),
        kind: e.kind.to_string(),
        target: e.watch.as_ref().map(|t| t.to_string()),
        applied: e.error.is_none(),
        error: e.error.clone(),
        took_s: round3(e.took.as_secs_f64()),
        sent: window.iter().map(|b| b.sent).sum(),
        failed: failed_by_kind.total(),
        failed_by_kind,
        recovery_s,
        shift_s,
        return_s,
        outage_latency_ms: window_latency(&outage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Answerer, FailureKind, Outcome};

    fn who(replica: &str) -> Option<Answerer> {
        let region = replica.split("-z").next().unwrap().to_string();
        Some(Answerer {
            region,
            zone: String::new(),
            replica: replica.into(),
        })
    }

    fn record(at: f64, watch: &str, restores: bool) -> EventRecord {
        EventRecord {
            planned_at: Duration::from_secs_f64(at),
            at: Duration::from_secs_f64(at),
            label: format!("x {watch}"),
            kind: "fault",
            watch: Some(watch.parse().unwrap()),
            restores,
            error: None,
            took: Duration::ZERO,
        }
    }

    /// 10 s at 10 req/s alternating between two regions; region a dies at 3.0 s,
    /// the requests due 3.0-3.45 fail, then everything goes to b; a returns at 7.0 s
    /// and answers again from 7.5 s.
    fn scripted() -> Timeline {
        let mut t = Timeline::new(10);
        for i in 0..100u64 {
            let at = Duration::from_millis(i * 100);
            let ms = Duration::from_millis(2);
            let secs = at.as_secs_f64();
            let outcome = if (3.0..3.45).contains(&secs) {
                Outcome::Failed(FailureKind::ConnectRefused)
            } else if i % 2 == 0 && !(3.0..7.5).contains(&secs) {
                Outcome::Ok(who("a-z1-r0"))
            } else {
                Outcome::Ok(who("b-z1-r0"))
            };
            t.record(at, ms, outcome);
        }
        t
    }

    #[test]
    fn events_get_failures_recovery_shift_and_return() {
        let t = scripted();
        let events = [
            record(3.0, "region:a", false),
            record(7.0, "region:a", true),
        ];
        let thr = Duration::from_millis(50).as_micros() as u64;
        let kill = analyze(&events[0], Some(events[1].at), &t.seconds, thr);
        assert_eq!(kill.failed, 5);
        assert_eq!(kill.failed_by_kind.connect_refused, 5);
        assert_eq!(kill.sent, 40);
        assert_eq!(kill.recovery_s, Some(0.4)); // last failure due at 3.4
        assert_eq!(kill.shift_s, Some(0.0)); // a never answered after 3.0
        assert_eq!(kill.return_s, None);
        let heal = analyze(&events[1], None, &t.seconds, thr);
        assert_eq!(heal.failed, 0);
        assert_eq!(heal.recovery_s, Some(0.0));
        assert_eq!(heal.return_s, Some(0.6)); // 7.6: first even request from 7.5 on
        assert_eq!(heal.shift_s, None);
    }

    #[test]
    fn a_target_that_keeps_answering_never_shifted_and_an_outage_never_recovers() {
        let mut t = Timeline::new(6);
        for i in 0..60u64 {
            let at = Duration::from_millis(i * 100);
            let outcome = if at.as_secs() >= 2 {
                Outcome::Failed(FailureKind::Timeout)
            } else {
                Outcome::Ok(who("a-z1-r0"))
            };
            t.record(at, Duration::from_millis(1), outcome);
        }
        // "slow b": a keeps answering all along.
        let e = analyze(&record(2.0, "region:b", false), None, &t.seconds, 50_000);
        assert_eq!(e.shift_s, Some(0.0));
        assert_eq!(e.recovery_s, None);
        assert_eq!(e.failed, 40);
        let mut t2 = Timeline::new(6);
        for i in 0..60u64 {
            t2.record(
                Duration::from_millis(i * 100),
                Duration::from_millis(1),
                Outcome::Ok(who("a-z1-r0")),
            );
        }
        let e = analyze(&record(2.0, "region:a", false), None, &t2.seconds, 50_000);
        assert_eq!(e.shift_s, None, "a answered until the end");
        assert_eq!(e.recovery_s, Some(0.0));
    }

    #[test]
    fn a_restarting_target_shifted_when_its_answers_stopped() {
        // a answers until 2.3 s, is gone for seconds 3-4, answers again from 5 s on.
        let mut t = Timeline::new(8);
        for i in 0..80u64 {
            let at = Duration::from_millis(i * 100);
            let secs = at.as_secs_f64();
            let replica = if (2.35..5.0).contains(&secs) || i % 2 == 1 {
                "b-z1-r0"
            } else {
                "a-z1-r0"
            };
            t.record(at, Duration::from_millis(1), Outcome::Ok(who(replica)));
        }
        let e = analyze(
            &record(2.0, "replica:a-z1-r0", false),
            None,
            &t.seconds,
            50_000,
        );
        assert_eq!(e.shift_s, Some(0.2)); // last answer from a due at 2.2
                                          // Nothing due after the fault reached it: shift 0.
        let e = analyze(
            &record(2.35, "replica:a-z1-r0", false),
            None,
            &t.seconds,
            50_000,
        );
        assert_eq!(e.shift_s, Some(0.0));
    }

    #[test]
    fn slow_seconds_delay_recovery_to_their_end() {
        let mut t = Timeline::new(5);
        for i in 0..50u64 {
            let at = Duration::from_millis(i * 100);
            let lat = if (2..4).contains(&at.as_secs()) {
                300
            } else {
                2
            };
            t.record(at, Duration::from_millis(lat), Outcome::Ok(who("a-z1-r0")));
        }
        let e = analyze(&record(2.5, "region:a", false), None, &t.seconds, 50_000);
        assert_eq!(e.recovery_s, Some(1.5)); // to the end of second 3
        let lat = e.outage_latency_ms.unwrap();
        assert!(lat.p50 >= 290.0, "{lat:?}");
        // Derived threshold: 3 x baseline p99 (2 ms) is under the floor.
        let thr = derived_threshold(&t.seconds, &[record(2.5, "region:a", false)]);
        assert_eq!(thr, MIN_THRESHOLD);
        assert_eq!(derived_threshold(&[], &[]), FALLBACK_THRESHOLD);
    }
}
