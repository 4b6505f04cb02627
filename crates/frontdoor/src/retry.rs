//! The retry budget: retries may add at most `budget_percent` of the live requests of
//! the last 10 seconds, plus `min_retries_per_second`, so that retries cannot multiply
//! the load on origins that are already failing (Finagle's and linkerd's budget).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::time::Instant;

use crate::config::RetryConfig;

const WINDOW_SECS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    retries: u64,
}

/// Counts requests and retries over a sliding 10 s window.
///
/// Requests are counted on every request by every worker, so without a lock: each slot is
/// one atomic word holding the second it counts (high 32 bits) and the count (low 32
/// bits), swapped whole. Retries are rare and take the lock, which also makes a
/// withdrawal's check-and-count atomic.
#[derive(Debug)]
pub struct RetryBudget {
    start: Instant,
    percent: f64,
    min_per_second: u32,
    requests: [AtomicU64; WINDOW_SECS],
    retries: Mutex<[Bucket; WINDOW_SECS]>,
}

/// A slot word: the second in the high half, the count in the low half.
fn pack(second: u64, count: u64) -> u64 {
    (second << 32) | (count & 0xffff_ffff)
}

fn unpack(word: u64) -> (u64, u64) {
    (word >> 32, word & 0xffff_ffff)
}

impl RetryBudget {
    /// A budget with nothing spent.
    pub fn new(cfg: &RetryConfig) -> Self {
        RetryBudget {
            start: Instant::now(),
            percent: cfg.budget_percent,
            min_per_second: cfg.min_retries_per_second,
            requests: Default::default(),
            retries: Mutex::new([Bucket::default(); WINDOW_SECS]),
        }
    }

    /// Seconds since the start (fits the slot word's 32 bits for 136 years).
    fn second(&self) -> u64 {
        self.start.elapsed().as_secs() & 0xffff_ffff
    }

    /// A live request arrived.
    pub fn deposit(&self) {
        let second = self.second();
        let slot = &self.requests[(second % WINDOW_SECS as u64) as usize];
        let mut word = slot.load(Ordering::Relaxed);
        loop {
            let next = match unpack(word) {
                (s, count) if s == second => pack(second, count.saturating_add(1)),
                // The slot still counts an older second: start this one.
                _ => pack(second, 1),
            };
            match slot.compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }

    /// Asks to retry once; true (and counted) if the budget allows it.
    pub fn try_withdraw(&self) -> bool {
        let second = self.second();
        let slot = (second % WINDOW_SECS as u64) as usize;
        let in_window = |s: u64| second.saturating_sub(s) < WINDOW_SECS as u64;
        let mut b = self
            .retries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if b[slot].second != second {
            b[slot] = Bucket { second, retries: 0 };
        }
        let requests: u64 = self
            .requests
            .iter()
            .map(|w| unpack(w.load(Ordering::Relaxed)))
            .filter(|&(s, count)| count > 0 && in_window(s))
            .map(|(_, count)| count)
            .sum();
        let retries: u64 = b
            .iter()
            .filter(|bucket| in_window(bucket.second))
            .map(|bucket| bucket.retries)
            .sum();
        let allowed = self.percent / 100.0 * requests as f64
            + f64::from(self.min_per_second) * WINDOW_SECS as f64;
        if (retries as f64) < allowed {
            b[slot].retries += 1;
            true
        } else {
            false
        }
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
            ..RetryConfig::default()
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

    #[test]
    fn deposits_from_many_threads_are_all_counted() {
        let b = std::sync::Arc::new(budget(100.0, 0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = std::sync::Arc::clone(&b);
                std::thread::spawn(move || (0..5000).for_each(|_| b.deposit()))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // All within one 10 s window unless this machine stalls for seconds.
        let granted = (0..20_001).filter(|_| b.try_withdraw()).count();
        assert_eq!(granted, 20_000);
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
