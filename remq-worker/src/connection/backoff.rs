//! Reconnect back-off with jitter, logged once per outage rather than per attempt.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// The first delay after a failure.
const INITIAL: Duration = Duration::from_millis(50);
/// The longest delay between attempts.
const MAX: Duration = Duration::from_secs(5);

/// Tracks one outage: how many attempts failed and since when.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    /// Failed attempts since the last success.
    attempts: u32,
    /// When the current outage began.
    since: Option<Instant>,
}

impl Backoff {
    /// Records a failure of `what` for `consumer` and sleeps before the next
    /// attempt. Only the first failure of an outage is logged as a warning.
    pub(crate) async fn failed(&mut self, consumer: &str, what: &str, error: &(dyn fmt::Display + Sync)) {
        tokio::time::sleep(self.failure(consumer, what, error)).await;
    }

    /// Records a failure as [`failed`](Self::failed) does, returning how long to
    /// wait instead of sleeping (for callers that must stay cancel-safe).
    pub(crate) fn failure(
        &mut self,
        consumer: &str,
        what: &str,
        error: &(dyn fmt::Display + Sync),
    ) -> Duration {
        if self.attempts == 0 {
            self.since = Some(Instant::now());
            tracing::warn!(consumer, %error, "{what} failed; retrying with back-off until Redis is back (logged once per outage)");
        } else {
            tracing::debug!(consumer, %error, attempt = self.attempts, "{what} failed again");
        }
        let delay = self.next_delay();
        self.attempts = self.attempts.saturating_add(1);
        delay
    }

    /// Records a success; ends (and logs the end of) an outage, if one was on.
    pub(crate) fn succeeded(&mut self, consumer: &str) {
        if let Some(since) = self.since.take() {
            tracing::info!(consumer, attempts = self.attempts, down_for = ?since.elapsed(), "Redis is reachable again");
        }
        self.attempts = 0;
    }

    /// Exponential delay capped at [`MAX`], with "equal jitter": between half and
    /// all of it, so many consumers do not reconnect in lockstep.
    fn next_delay(&self) -> Duration {
        let exp = INITIAL.saturating_mul(1 << self.attempts.min(16)).min(MAX);
        exp / 2 + exp.mul_f64(fastrand::f64() / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn delays_grow_with_jitter_and_are_capped() {
        let mut b = Backoff::default();
        let err = crate::Error::EmptyBatch;
        let mut delays = Vec::new();
        for _ in 0..10 {
            let start = Instant::now();
            b.failed("c", "test", &err).await;
            delays.push(start.elapsed());
        }
        assert!(delays[0] >= INITIAL / 2 && delays[0] <= INITIAL, "{delays:?}");
        assert!(delays[3] >= INITIAL * 4, "{delays:?}");
        assert!(delays.iter().all(|d| *d <= MAX), "{delays:?}");
        assert!(delays[9] >= MAX / 2, "{delays:?}");
        b.succeeded("c");
        let start = Instant::now();
        b.failed("c", "test", &err).await;
        assert!(start.elapsed() <= INITIAL, "a success resets the back-off");
    }
}
