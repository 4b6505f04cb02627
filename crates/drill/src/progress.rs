//! The live progress bar: time through the run, and counts of sent, ok, failed and
//! late requests, redrawn a few times a second.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

use crate::load::LiveCounts;

const REDRAW_EVERY: Duration = Duration::from_millis(250);

/// Where progress goes.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// No progress output (tests, `--quiet`, JSON to stdout).
    pub fn hidden() -> Progress {
        Progress { bar: None }
    }

    /// A bar on stderr; indicatif draws nothing when stderr is not a terminal.
    pub fn stderr() -> Progress {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Progress { bar: Some(bar) }
    }

    /// Drives a bar the caller made (its own draw target or style).
    pub fn with_bar(bar: ProgressBar) -> Progress {
        Progress { bar: Some(bar) }
    }

    /// Redraws until dropped or aborted.
    pub(crate) async fn drive(self, live: Arc<LiveCounts>, duration: Duration, start: Instant) {
        let Some(bar) = self.bar else {
            return;
        };
        bar.set_length(duration.as_millis() as u64);
        let mut tick = tokio::time::interval(REDRAW_EVERY);
        loop {
            tick.tick().await;
            let elapsed = start.elapsed().min(duration);
            bar.set_position(elapsed.as_millis() as u64);
            let late = live.behind.load(Ordering::Relaxed);
            bar.set_message(format!(
                "sent {}  ok {}  failed {}{}",
                live.sent.load(Ordering::Relaxed),
                live.ok.load(Ordering::Relaxed),
                live.failed.load(Ordering::Relaxed),
                if late > 0 {
                    format!("  late {late}")
                } else {
                    String::new()
                }
            ));
        }
    }

    /// Clears the bar once the run is over.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
