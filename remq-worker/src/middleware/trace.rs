//! A `tracing` span around every attempt at a delivery.

use std::sync::Arc;

use tower::{Layer, Service};
use tracing::Instrument;

use crate::{Delivery, Error};

/// Wraps services in [`Trace`] for one consumer.
#[derive(Clone, Debug)]
pub struct TraceLayer {
    /// The consumer's durable name, a field of every span.
    consumer: Arc<str>,
}

impl TraceLayer {
    /// Spans for deliveries to `consumer`.
    pub fn new(consumer: Arc<str>) -> Self {
        TraceLayer { consumer }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner, consumer: self.consumer.clone() }
    }
}

/// Runs each attempt inside an INFO span `delivery` with the fields `handler`,
/// `channel`, `id`, `attempt` and, once it is known, `outcome` (`ok`, `retryable`
/// or `permanent`); a failure is logged as a WARN event inside the span.
#[derive(Clone, Debug)]
pub struct Trace<S> {
    /// The wrapped service.
    inner: S,
    /// The consumer's durable name.
    consumer: Arc<str>,
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
        let future = span.in_scope(|| self.inner.call(delivery));
        Box::pin(
            async move {
                let result = future.await;
                let span = tracing::Span::current();
                match &result {
                    Ok(()) => {
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
