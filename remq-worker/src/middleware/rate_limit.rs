//! A per-handler rate limit: attempts are spaced evenly, at most `n` a second.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service};

use crate::{Delivery, Error};

/// Wraps services in [`RateLimit`]. Clones share one schedule, so the limit
/// holds across concurrent deliveries of the handler.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    /// The time between two attempts.
    interval: Duration,
    /// When the next attempt may start.
    next: Arc<Mutex<Instant>>,
}

impl RateLimitLayer {
    /// At most `per_second` attempts a second (at least 1).
    pub fn per_second(per_second: u32) -> Self {
        RateLimitLayer {
            interval: Duration::from_secs(1) / per_second.max(1),
            next: Arc::new(Mutex::new(Instant::now())),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit { inner, schedule: self.clone() }
    }
}

/// Delays each call until its slot in an even schedule of the configured rate.
/// Unlike tower's `RateLimit` it is `Clone`, so it fits a cloned handler stack.
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    /// The wrapped service.
    inner: S,
    /// The shared schedule.
    schedule: RateLimitLayer,
}

impl<S> Service<Delivery> for RateLimit<S>
where
    S: Service<Delivery, Response = (), Error = Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    delegate_service_basics!();

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        let slot = {
            let mut next = self.schedule.next.lock().expect("no panics while held");
            let slot = (*next).max(Instant::now());
            *next = slot + self.schedule.interval;
            slot
        };
        // The inner service was made ready by `poll_ready`; keep that one for
        // this call and leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            tokio::time::sleep_until(slot).await;
            inner.call(delivery).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use tower::ServiceExt;

    use super::*;
    use crate::{Message, MessageId};

    #[tokio::test(start_paused = true)]
    async fn attempts_are_spaced_to_the_rate() {
        let service = tower::service_fn(|_: Delivery| async { Ok::<(), Error>(()) });
        let limited = RateLimitLayer::per_second(5).layer(service);
        let began = Instant::now();
        let calls =
            (0..10u64).map(|id| {
                let mut limited = limited.clone();
                let message = Message::new(MessageId::new(id), "c", Bytes::new());
                async move {
                    limited.ready().await?.call(Delivery::new(message, "c".into(), Arc::default())).await
                }
            });
        for result in futures_util::future::join_all(calls).await {
            result.unwrap();
        }
        // Ten calls at 5 a second: the last starts 9 intervals of 200 ms after the first.
        assert_eq!(began.elapsed(), Duration::from_millis(1800));
    }
}
