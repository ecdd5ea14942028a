//! When and how often a failed delivery is tried again.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Undone;
use crate::Delivery;

/// The retry schedule of a handler: up to `max_attempts` tries in all, waiting
/// `initial_backoff × multiplier^(n-1)` (capped at `max_backoff`, with "equal
/// jitter": between half and all of it) before try `n + 1`.
///
/// Only retryable errors are retried: not [`Error::permanent`] ones, nor bodies
/// that fail to deserialize. Retries are *blocking*, as in Kafka consumers: the
/// next message of the same handler waits, so order holds. When the worker
/// shuts down, a retry loop ends at once; the message is not checkpointed, and
/// the next owner sees it again.
///
/// [`Error::permanent`]: crate::Error::permanent
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries in all, the first included (1 = no retries).
    max_attempts: u32,
    /// The wait before the second try.
    initial_backoff: Duration,
    /// The longest wait between tries.
    max_backoff: Duration,
    /// How much the wait grows per try.
    multiplier: f64,
}

impl Default for RetryPolicy {
    /// 5 attempts, waits from 100 ms doubling to at most 10 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// The default policy (see [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Tries in all, the first included; 1 disables retries.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The wait before the second try.
    pub fn initial_backoff(mut self, wait: Duration) -> Self {
        self.initial_backoff = wait;
        self
    }

    /// The longest wait between tries.
    pub fn max_backoff(mut self, wait: Duration) -> Self {
        self.max_backoff = wait;
        self
    }

    /// How much the wait grows per try (at least 1).
    pub fn multiplier(mut self, factor: f64) -> Self {
        self.multiplier = factor.max(1.0);
        self
    }

    /// The configured number of attempts.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The wait after failed attempt `attempt` (1-based), before jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.powi(attempt.saturating_sub(1).min(64) as i32);
        self.initial_backoff.mul_f64(factor.min(1e9)).min(self.max_backoff)
    }
}

/// A [`RetryPolicy`] until the owner must stop, as a tower retry policy: what
/// [`Stack::deliver`](super::Stack::deliver) asks after each failed attempt
/// (the unit tests drive it with tower's own retry layer).
#[derive(Clone, Debug)]
pub(crate) struct Retrying {
    /// The schedule.
    policy: RetryPolicy,
    /// Cancelled when the owner must stop (shutdown, a lost lease): no retry
    /// starts after that. In an `Arc` because the stack is cloned for every
    /// delivery that runs in a lane, and cloning a token takes a lock.
    halt: Arc<CancellationToken>,
}

impl Retrying {
    /// `policy`, stopping retries when `halt` is cancelled.
    pub(crate) fn new(policy: RetryPolicy, halt: Arc<CancellationToken>) -> Self {
        Retrying { policy, halt }
    }
}

impl tower::retry::Policy<Delivery, (), Undone> for Retrying {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(&mut self, delivery: &mut Delivery, result: &mut Result<(), Undone>) -> Option<Self::Future> {
        let Err(Undone::Failed(error)) = result else { return None };
        if self.halt.is_cancelled() {
            // Interrupted, not given up on: no retry, no dead letter, no checkpoint.
            *result = Err(Undone::Interrupted);
            return None;
        }
        if error.is_permanent() || delivery.attempt >= self.policy.max_attempts {
            // Given up: say after how many attempts, for the dead letter.
            if let Err(Undone::Failed(error)) = std::mem::replace(result, Ok(())) {
                let message = Box::new(delivery.message.clone());
                *result = Err(Undone::GaveUp { attempts: delivery.attempt, message, error });
            }
            return None;
        }
        let wait = self.policy.backoff(delivery.attempt);
        let wait = wait / 2 + wait.mul_f64(fastrand::f64() / 2.0);
        delivery.attempt += 1;
        let halt = Arc::clone(&self.halt);
        Some(Box::pin(async move {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                // Ends the wait; the next `retry` call then reports the interruption.
                _ = halt.cancelled() => {}
            }
        }))
    }

    fn clone_request(&mut self, delivery: &Delivery) -> Option<Delivery> {
        Some(delivery.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use tokio::time::Instant;
    use tower::{Service, ServiceExt};

    use super::*;
    use crate::{Error, Message, MessageId};

    fn delivery() -> Delivery {
        let message = Message::new(MessageId::new(1), "c", Bytes::new());
        Delivery::new(message, "consumer".into(), Arc::default())
    }

    /// `policy` with a halt token that is never cancelled.
    fn retrying(policy: RetryPolicy) -> Retrying {
        Retrying::new(policy, Arc::default())
    }

    /// When each call came, and with which attempt number.
    type Calls = Arc<Mutex<Vec<(Instant, u32)>>>;

    /// A service that fails with `error` on its first `failures` calls, recording
    /// its calls.
    fn flaky(
        failures: u32,
        error: fn() -> Error,
    ) -> (impl Service<Delivery, Response = (), Error = Undone, Future: Send> + Clone, Calls) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let seen = calls.clone();
        let service = tower::service_fn(move |d: Delivery| {
            let calls = calls.clone();
            async move {
                let mut calls = calls.lock().unwrap();
                calls.push((Instant::now(), d.attempt));
                if calls.len() as u32 <= failures { Err(Undone::Failed(error())) } else { Ok(()) }
            }
        });
        (service, seen)
    }

    #[tokio::test(start_paused = true)]
    async fn retries_follow_the_backoff_schedule_with_jitter() {
        let (service, calls) = flaky(3, || Error::retryable("flaky"));
        let policy = RetryPolicy::new()
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_millis(300));
        let mut retry = tower::retry::Retry::new(retrying(policy), service);
        retry.ready().await.unwrap().call(delivery()).await.unwrap();
        let calls = calls.lock().unwrap();
        let attempts: Vec<u32> = calls.iter().map(|(_, a)| *a).collect();
        assert_eq!(attempts, [1, 2, 3, 4]);
        let waits: Vec<Duration> = calls.windows(2).map(|w| w[1].0 - w[0].0).collect();
        // 100, 200, then 300 (capped) ms, each with "equal jitter": between half and all of it.
        for (wait, full) in waits.iter().zip([100, 200, 300]) {
            let full = Duration::from_millis(full);
            assert!(*wait >= full / 2 && *wait <= full, "{waits:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts_saying_how_many() {
        let (service, calls) = flaky(u32::MAX, || Error::retryable("down"));
        let mut retry = tower::retry::Retry::new(retrying(RetryPolicy::new().max_attempts(3)), service);
        let undone = retry.ready().await.unwrap().call(delivery()).await.unwrap_err();
        assert!(matches!(undone, Undone::GaveUp { attempts: 3, .. }), "{undone:?}");
        assert_eq!(calls.lock().unwrap().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let (service, calls) = flaky(u32::MAX, || Error::permanent("rejected"));
        let mut retry = tower::retry::Retry::new(retrying(RetryPolicy::new()), service);
        let undone = retry.ready().await.unwrap().call(delivery()).await.unwrap_err();
        assert!(matches!(undone, Undone::GaveUp { attempts: 1, .. }), "{undone:?}");
        assert_eq!(calls.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_ends_the_retry_loop() {
        let (service, calls) = flaky(u32::MAX, || Error::retryable("down"));
        let shutdown = CancellationToken::new();
        let policy = RetryPolicy::new().initial_backoff(Duration::from_secs(5));
        let mut retry = tower::retry::Retry::new(Retrying::new(policy, Arc::new(shutdown.clone())), service);
        let call = retry.ready().await.unwrap().call(delivery());
        let stop = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            shutdown.cancel();
        };
        let (result, ()) = tokio::join!(call, stop);
        assert!(matches!(result, Err(Undone::Interrupted)), "{result:?}");
        assert!(calls.lock().unwrap().len() <= 2, "no retry starts after shutdown");
    }
}
