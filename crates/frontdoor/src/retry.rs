//! The retry budget: retries may add at most `budget_percent` of the live requests of
//! the last 10 seconds, plus `min_retries_per_second`, so that retries cannot multiply
//! the load on origins that are already failing (Finagle's and linkerd's budget).

use std::sync::Mutex;

use tokio::time::Instant;

use crate::config::RetryConfig;

const WINDOW_SECS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    requests: u64,
    retries: u64,
}

/// Counts requests and retries over a sliding 10 s window.
#[derive(Debug)]
pub struct RetryBudget {
    start: Instant,
    percent: f64,
    min_per_second: u32,
    buckets: Mutex<[Bucket; WINDOW_SECS]>,
}

impl RetryBudget {
    /// A budget with nothing spent.
    pub fn new(cfg: &RetryConfig) -> Self {
        RetryBudget {
            start: Instant::now(),
            percent: cfg.budget_percent,
            min_per_second: cfg.min_retries_per_second,
            buckets: Mutex::new([Bucket::default(); WINDOW_SECS]),
        }
    }

    fn with_bucket<T>(&self, f: impl FnOnce(&mut [Bucket; WINDOW_SECS], usize, u64) -> T) -> T {
        let second = self.start.elapsed().as_secs();
        let slot = (second % WINDOW_SECS as u64) as usize;
        let mut b = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if b[slot].second != second {
            b[slot] = Bucket {
                second,
                requests: 0,
                retries: 0,
            };
        }
        f(&mut b, slot, second)
    }

    /// A live request arrived.
    pub fn deposit(&self) {
        self.with_bucket(|b, slot, _| b[slot].requests += 1);
    }

    /// Asks to retry once; true (and counted) if the budget allows it.
    pub fn try_withdraw(&self) -> bool {
        self.with_bucket(|b, slot, second| {
            let (mut requests, mut retries) = (0u64, 0u64);
            for bucket in b.iter() {
                if second.saturating_sub(bucket.second) < WINDOW_SECS as u64 {
                    requests += bucket.requests;
                    retries += bucket.retries;
                }
            }
            let allowed = self.percent / 100.0 * requests as f64
                + f64::from(self.min_per_second) * WINDOW_SECS as f64;
            if (retries as f64) < allowed {
                b[slot].retries += 1;
                true
            } else {
                false
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn budget(percent: f64, min: u32) -> RetryBudget {
        RetryBudget::new(&RetryConfig {
            max_attempts: 3,
            budget_percent: percent,
            min_retries_per_second: min,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_capped_at_a_share_of_requests() {
        let b = budget(20.0, 0);
        for _ in 0..100 {
            b.deposit();
        }
        let granted = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(granted, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_front_door_still_gets_the_minimum() {
        let b = budget(20.0, 1);
        let granted = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(granted, 10, "1 per second over the 10 s window");
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_slides() {
        let b = budget(50.0, 0);
        for _ in 0..10 {
            b.deposit();
        }
        assert_eq!((0..10).filter(|_| b.try_withdraw()).count(), 5);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!b.try_withdraw(), "old requests no longer fund retries");
        for _ in 0..4 {
            b.deposit();
        }
        assert_eq!((0..10).filter(|_| b.try_withdraw()).count(), 2);
    }
}
