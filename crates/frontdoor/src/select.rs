//! Origin selection, Front Door's order: healthy and enabled -> lowest priority value ->
//! latency band (fastest probe latency + `additional_latency_ms`) -> weighted random.
//!
//! If no origin is healthy the selector fails open: first to origins that passive health
//! has not ejected, then to every enabled one (a group of one always uses its origin).
//! On a retry, origins already tried are skipped, and within the same health tier the
//! origins farthest from the failed tries are preferred: another region, then another
//! zone of the same region, then the same zone (a region-wide failure is the common
//! case, and zone labels such as "1" repeat across regions).

use std::time::Duration;

use rand::Rng;

/// What the selector needs to know about one origin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Enabled and not draining.
    pub enabled: bool,
    /// Healthy by probes.
    pub healthy: bool,
    /// Ejected by passive health.
    pub ejected: bool,
    /// 1..=5, lower first.
    pub priority: u8,
    /// Effective weight (configured weight, ramped by slow start); > 0.
    pub weight: f64,
    /// Mean probe latency; `None` when unknown (counts as inside the band).
    pub latency: Option<Duration>,
    /// Already tried for this request.
    pub tried: bool,
    /// How close to an origin that failed this request: 0 = another region (or no
    /// failure yet), 1 = same region, other zone, 2 = same region and zone.
    pub near_failure: u8,
}

impl Candidate {
    /// An enabled, healthy candidate with priority 1 and the given weight.
    pub fn healthy(weight: f64) -> Self {
        Candidate {
            enabled: true,
            healthy: true,
            ejected: false,
            priority: 1,
            weight,
            latency: None,
            tried: false,
            near_failure: 0,
        }
    }
}

/// How the pick was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Among healthy, non-ejected origins.
    Healthy,
    /// Fail open: no healthy origin; among non-ejected ones.
    FailOpenNotEjected,
    /// Fail open: among every enabled origin.
    FailOpenAll,
}

/// Picks origins for one group.
#[derive(Debug, Clone, Copy)]
pub struct Selector {
    /// Front Door's `additional_latency_ms`.
    pub additional_latency: Duration,
}

impl Selector {
    /// The index of the chosen candidate, or `None` when no enabled, untried one is left.
    pub fn pick<R: Rng + ?Sized>(&self, cands: &[Candidate], rng: &mut R) -> Option<(usize, Tier)> {
        let pool: Vec<usize> = (0..cands.len())
            .filter(|&i| cands[i].enabled && !cands[i].tried)
            .collect();
        if pool.is_empty() {
            return None;
        }
        for tier in [Tier::Healthy, Tier::FailOpenNotEjected, Tier::FailOpenAll] {
            let admit = |c: &Candidate| match tier {
                Tier::Healthy => c.healthy && !c.ejected,
                Tier::FailOpenNotEjected => !c.ejected,
                Tier::FailOpenAll => true,
            };
            let mut set: Vec<usize> = pool.iter().copied().filter(|&i| admit(&cands[i])).collect();
            if set.is_empty() {
                continue;
            }
            if let Some(farthest) = set.iter().map(|&i| cands[i].near_failure).min() {
                set.retain(|&i| cands[i].near_failure == farthest);
            }
            if tier == Tier::Healthy {
                set = self.narrow(cands, set);
            }
            return weighted(cands, &set, rng).map(|i| (i, tier));
        }
        None
    }

    /// Lowest priority value, then the latency band.
    fn narrow(&self, cands: &[Candidate], mut set: Vec<usize>) -> Vec<usize> {
        let Some(best) = set.iter().map(|&i| cands[i].priority).min() else {
            return set;
        };
        set.retain(|&i| cands[i].priority == best);
        // Whole milliseconds, like Front Door's setting: origins a few microseconds
        // apart (same machine, same region) are equally fast, and traffic does not
        // flip between them with every probe's jitter.
        let ms = |d: Duration| d.as_millis();
        if let Some(fastest) = set.iter().filter_map(|&i| cands[i].latency).min() {
            let band = ms(fastest) + ms(self.additional_latency);
            set.retain(|&i| cands[i].latency.is_none_or(|l| ms(l) <= band));
        }
        set
    }
}

fn weighted<R: Rng + ?Sized>(cands: &[Candidate], set: &[usize], rng: &mut R) -> Option<usize> {
    let total: f64 = set.iter().map(|&i| cands[i].weight.max(0.0)).sum();
    if total <= 0.0 {
        return set.first().copied();
    }
    let mut point = rng.random::<f64>() * total;
    for &i in set {
        point -= cands[i].weight.max(0.0);
        if point < 0.0 {
            return Some(i);
        }
    }
    set.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn sel(ms: u64) -> Selector {
        Selector {
            additional_latency: Duration::from_millis(ms),
        }
    }

    fn counts(s: Selector, cands: &[Candidate], n: usize) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut out = vec![0; cands.len()];
        for _ in 0..n {
            out[s.pick(cands, &mut rng).unwrap().0] += 1;
        }
        out
    }

    #[test]
    fn weighted_random_follows_weights_over_10k_picks() {
        let cands = [
            Candidate::healthy(50.0),
            Candidate::healthy(50.0),
            Candidate::healthy(100.0),
            Candidate::healthy(800.0),
        ];
        let n = 10_000;
        let got = counts(sel(0), &cands, n);
        let total: f64 = cands.iter().map(|c| c.weight).sum();
        for (i, c) in cands.iter().enumerate() {
            let expected = n as f64 * c.weight / total;
            // 4 standard deviations of a binomial: fails by chance ~1 in 15 000 seeds.
            let p = c.weight / total;
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (got[i] as f64 - expected).abs() < 4.0 * sd,
                "origin {i}: {} picks, expected {expected:.0} ± {:.0}: {got:?}",
                got[i],
                4.0 * sd
            );
        }
    }

    #[test]
    fn unhealthy_and_disabled_origins_are_skipped() {
        let mut cands = [Candidate::healthy(50.0); 3];
        cands[0].healthy = false;
        cands[1].enabled = false;
        assert_eq!(counts(sel(0), &cands, 1000), vec![0, 0, 1000]);
    }

    #[test]
    fn lowest_priority_value_wins() {
        let mut cands = [Candidate::healthy(50.0); 3];
        cands[0].priority = 2;
        cands[1].priority = 1;
        cands[2].priority = 1;
        cands[2].healthy = false;
        assert_eq!(counts(sel(0), &cands, 1000), vec![0, 1000, 0]);
    }

    #[test]
    fn latency_band_keeps_origins_within_fastest_plus_additional() {
        let mut cands = [Candidate::healthy(50.0); 3];
        cands[0].latency = Some(Duration::from_millis(10));
        cands[1].latency = Some(Duration::from_millis(40));
        cands[2].latency = Some(Duration::from_millis(70));
        let got = counts(sel(0), &cands, 1000);
        assert_eq!(got, vec![1000, 0, 0]);
        let got = counts(sel(30), &cands, 1000);
        assert!(got[0] > 0 && got[1] > 0 && got[2] == 0, "{got:?}");
        let got = counts(sel(60), &cands, 1000);
        assert!(got.iter().all(|&c| c > 0), "{got:?}");
    }

    #[test]
    fn latency_is_compared_in_whole_milliseconds() {
        let mut cands = [Candidate::healthy(50.0); 2];
        cands[0].latency = Some(Duration::from_micros(200));
        cands[1].latency = Some(Duration::from_micros(900));
        let got = counts(sel(0), &cands, 1000);
        assert!(got[0] > 0 && got[1] > 0, "{got:?}");
        cands[1].latency = Some(Duration::from_micros(1100));
        assert_eq!(counts(sel(0), &cands, 1000), vec![1000, 0]);
    }

    #[test]
    fn all_unhealthy_fails_open_to_all_enabled() {
        let mut cands = [Candidate::healthy(50.0); 3];
        for c in &mut cands {
            c.healthy = false;
        }
        cands[2].enabled = false;
        let (_, tier) = sel(0).pick(&cands, &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(tier, Tier::FailOpenNotEjected);
        let got = counts(sel(0), &cands, 1000);
        assert!(got[0] > 0 && got[1] > 0 && got[2] == 0, "{got:?}");
    }

    #[test]
    fn fail_open_prefers_origins_that_are_not_ejected() {
        let mut cands = [Candidate::healthy(50.0); 2];
        cands[0].healthy = false;
        cands[1].healthy = false;
        cands[1].ejected = true;
        assert_eq!(counts(sel(0), &cands, 100), vec![100, 0]);
        cands[0].ejected = true;
        let (_, tier) = sel(0).pick(&cands, &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(tier, Tier::FailOpenAll);
    }

    #[test]
    fn a_group_of_one_always_uses_its_origin() {
        let mut c = Candidate::healthy(1.0);
        c.healthy = false;
        c.ejected = true;
        assert_eq!(counts(sel(0), &[c], 10), vec![10]);
    }

    #[test]
    fn retries_skip_tried_origins_and_prefer_other_zones() {
        let mut cands = [Candidate::healthy(50.0); 3];
        cands[0].tried = true;
        cands[1].near_failure = 2;
        assert_eq!(counts(sel(0), &cands, 100), vec![0, 0, 100]);
        cands[2].near_failure = 1;
        // Another zone of the failed region beats the failed zone itself.
        assert_eq!(counts(sel(0), &cands, 100), vec![0, 0, 100]);
        cands[2].healthy = false;
        // Health beats locality.
        assert_eq!(counts(sel(0), &cands, 100), vec![0, 100, 0]);
        cands[1].tried = true;
        cands[2].tried = true;
        assert_eq!(sel(0).pick(&cands, &mut StdRng::seed_from_u64(1)), None);
    }
}
