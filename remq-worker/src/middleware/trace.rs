//! A `tracing` span and the per-attempt metrics around every attempt at a delivery.

use std::sync::Arc;
use std::time::Instant;

use tower::{Layer, Service};
use tracing::Instrument;

use crate::observe::metrics::AttemptMetrics;
use crate::{Delivery, Error};

/// Wraps services in [`Trace`] for one consumer.
#[derive(Clone, Debug)]
pub struct TraceLayer {
    /// The consumer's durable name, a field of every span.
    consumer: Arc<str>,
    /// Its attempt metrics, looked up once and shared: one clone per attempt.
    metrics: Arc<AttemptMetrics>,
}

impl TraceLayer {
    /// Spans and metrics for deliveries to `consumer`.
    pub fn new(consumer: Arc<str>) -> Self {
        TraceLayer { metrics: Arc::new(AttemptMetrics::new(&consumer)), consumer }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner, consumer: self.consumer.clone(), metrics: self.metrics.clone() }
    }
}

/// Runs each attempt inside an INFO span `delivery` with the fields `handler`,
/// `channel`, `id`, `attempt` and, once it is known, `outcome` (`ok`, `retryable`
/// or `permanent`); a failure is logged as a WARN event inside the span. Records
/// `remq_handler_duration_seconds`, `remq_handlers_in_flight`, and
/// `remq_messages_handled_total` with outcome `ok` (a successful attempt) or
/// `retried` (an attempt after the first).
#[derive(Clone, Debug)]
pub struct Trace<S> {
    /// The wrapped service.
    inner: S,
    /// The consumer's durable name.
    consumer: Arc<str>,
    /// Its attempt metrics.
    metrics: Arc<AttemptMetrics>,
}

/// Counts an attempt in flight until it finishes or is dropped, and gives the
/// attempt's future its metrics.
struct InFlight(Arc<AttemptMetrics>);

impl InFlight {
    fn start(metrics: &Arc<AttemptMetrics>) -> Self {
        metrics.in_flight.increment(1.0);
        InFlight(Arc::clone(metrics))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.decrement(1.0);
    }
}

impl<S> Service<Delivery> for Trace<S>
where
    S: Service<Delivery, Response = (), Error = Error>,
    S::Future: Send + 'static,
{
    delegate_service_basics!();

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        let span = tracing::info_span!(
            "delivery",
            handler = &*self.consumer,
            channel = %delivery.message.channel,
            id = %delivery.message.id,
            attempt = delivery.attempt,
            outcome = tracing::field::Empty,
        );
        if delivery.attempt > 1 {
            self.metrics.retried.increment(1);
        }
        let in_flight = InFlight::start(&self.metrics);
        let started = Instant::now();
        let future = span.in_scope(|| self.inner.call(delivery));
        Box::pin(
            async move {
                let result = future.await;
                let metrics = &in_flight.0;
                metrics.duration.record(started.elapsed().as_secs_f64());
                let span = tracing::Span::current();
                match &result {
                    Ok(()) => {
                        metrics.ok.increment(1);
                        span.record("outcome", "ok");
                    }
                    Err(error) => {
                        let outcome = if error.is_permanent() { "permanent" } else { "retryable" };
                        span.record("outcome", outcome);
                        tracing::warn!(%error, "handler failed");
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}
