//! The tower stack every delivery goes through, outermost first:
//!
//! 1. [`DeadLetter`]: a message that failed for good is published to its
//!    dead-letter channel (and only then counts as done);
//! 2. [`tower::retry::Retry`] with [`RetryPolicy`]: retryable failures are tried
//!    again with exponential back-off and jitter, in place, so order holds;
//! 3. [`Trace`]: a `tracing` span per attempt (handler, channel, id, attempt, outcome);
//! 4. the application's own layers ([`Worker::layer`](crate::Worker::layer), then
//!    [`Worker::handler_layer`](crate::Worker::handler_layer));
//! 5. [`RateLimit`]: at most so many attempts a second, if configured;
//! 6. [`tower::timeout::Timeout`]: a per-handler deadline for each attempt;
//! 7. [`CatchPanic`]: a panicking handler is a failed attempt, not a dead worker;
//! 8. the handler itself.

/// What every remq middleware service has in common: it answers `()` or a
/// [`remq::Error`](crate::Error) through a boxed future, and is ready when the
/// service it wraps (its `inner` field) is.
macro_rules! delegate_service_basics {
    () => {
        type Response = ();
        type Error = crate::Error;
        type Future = futures_util::future::BoxFuture<'static, crate::Result<()>>;

        fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<crate::Result<()>> {
            self.inner.poll_ready(cx)
        }
    };
}

mod catch_panic;
mod dead_letter;
mod rate_limit;
mod retry;
mod trace;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

pub use catch_panic::{CatchPanic, CatchPanicLayer};
pub(crate) use dead_letter::DeadLetterLayer;
pub use dead_letter::{DeadLetterEnvelope, Redriven, redrive, redrive_page};
pub use rate_limit::{RateLimit, RateLimitLayer};
pub use retry::RetryPolicy;
use retry::Retrying;
pub use trace::{Trace, TraceLayer};

use crate::{BoxedHandler, Delivery, Error, Message, Result};

/// The type-erased service an attempt is sent to: the handler and the layers
/// around each attempt, the application's included.
pub type HandlerService = BoxCloneService<Delivery, (), Error>;

/// The whole stack of one handler, retries and dead letters included.
pub(crate) type StackService = BoxCloneService<Delivery, (), Undone>;

/// How a delivery that did not succeed ended, as the stack reports it to the
/// runtime: outcomes, not public errors.
#[derive(Debug)]
pub(crate) enum Undone {
    /// An attempt failed; the retry layer turns this into [`GaveUp`](Self::GaveUp)
    /// or [`Interrupted`](Self::Interrupted), so only layers inside it see it.
    Failed(Error),
    /// The owner must stop (shutdown, or the lease was lost): the message was
    /// interrupted, not given up on; it is not checkpointed, and the next owner
    /// sees it again.
    Interrupted,
    /// Failed for good: permanently, or on its last attempt. The dead-letter
    /// layer publishes it; without dead letters it reaches the runtime.
    GaveUp {
        /// Attempts made, the first included.
        attempts: u32,
        /// The message that failed.
        message: Box<Message>,
        /// The last attempt's error.
        error: Error,
    },
    /// Its dead letter could not be stored (a permanent failure, such as a
    /// missing permission): the consumer must stop without moving past it.
    DeadLetterFailed(Error),
}

/// A `tower::Layer` that can wrap a handler's stack: what
/// [`Worker::layer`](crate::Worker::layer) and
/// [`Worker::handler_layer`](crate::Worker::handler_layer) take. Implemented for
/// every layer whose service takes a [`Delivery`] and returns `()` or a
/// [`remq::Error`](Error); there is nothing to implement by hand.
pub trait HandlerLayer: Send + Sync + 'static {
    /// Wraps `inner`, erasing the resulting service's type.
    fn wrap(&self, inner: HandlerService) -> HandlerService;
}

impl<L> HandlerLayer for L
where
    L: Layer<HandlerService> + Send + Sync + 'static,
    L::Service: Service<Delivery, Response = (), Error = Error> + Clone + Send + 'static,
    <L::Service as Service<Delivery>>::Future: Send + 'static,
{
    fn wrap(&self, inner: HandlerService) -> HandlerService {
        BoxCloneService::new(self.layer(inner))
    }
}

/// An application layer, type-erased so layers of any type can be stacked.
#[derive(Clone)]
pub(crate) struct BoxedLayer(pub(crate) Arc<dyn HandlerLayer>);

impl std::fmt::Debug for BoxedLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxedLayer")
    }
}

/// Everything that shapes one handler's stack.
pub(crate) struct StackConfig<'a> {
    /// The durable consumer name, for spans and dead letters.
    pub(crate) consumer: Arc<str>,
    /// Retry schedule and attempt limit.
    pub(crate) retry: RetryPolicy,
    /// Deadline of one attempt, if any.
    pub(crate) timeout: Option<Duration>,
    /// Whether a timeout is a permanent failure (no retries).
    pub(crate) timeout_permanent: bool,
    /// At most this many attempts a second, if set.
    pub(crate) rate_limit: Option<u32>,
    /// Where failed messages go; `None` to only log them.
    pub(crate) dead_letter: Option<DeadLetterLayer>,
    /// The application's layers, outermost first.
    pub(crate) layers: &'a [BoxedLayer],
    /// Cancelled when this owner must stop (shutdown or a lost lease): no retry
    /// starts after that.
    pub(crate) shutdown: CancellationToken,
}

/// Builds the stack around `handler`.
pub(crate) fn stack(handler: BoxedHandler, config: StackConfig<'_>) -> StackService {
    let base = CatchPanicLayer.layer(HandlerCall(handler));
    let mut service = match config.timeout {
        Some(timeout) => BoxCloneService::new(
            ServiceBuilder::new()
                .map_err(move |e| into_remq_error(e, config.timeout_permanent))
                .layer(tower::timeout::TimeoutLayer::new(timeout))
                .service(base),
        ),
        None => BoxCloneService::new(base),
    };
    if let Some(per_second) = config.rate_limit {
        service = BoxCloneService::new(RateLimitLayer::per_second(per_second).layer(service));
    }
    for layer in config.layers.iter().rev() {
        service = layer.0.wrap(service);
    }
    let halt = Arc::new(config.shutdown);
    let retried = ServiceBuilder::new()
        .layer(tower::retry::RetryLayer::new(Retrying::new(config.retry, Arc::clone(&halt))))
        .layer_fn(|inner| HaltGuard { inner, halt: Arc::clone(&halt) })
        .layer(TraceLayer::new(config.consumer))
        .service(service);
    match config.dead_letter {
        Some(dead_letter) => BoxCloneService::new(dead_letter.layer(retried)),
        None => BoxCloneService::new(retried),
    }
}

/// The handler as the innermost service.
#[derive(Clone)]
struct HandlerCall(BoxedHandler);

impl Service<Delivery> for HandlerCall {
    type Response = ();
    type Error = Error;
    type Future = BoxFuture<'static, Result<()>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        self.0.call(delivery)
    }
}

/// Right under the retry layer: once the owner must stop, a retry ends here,
/// before any other layer runs (tower's retry loop calls its service again after
/// the back-off wait without asking the policy first). It also turns the
/// attempt's error into an [`Undone`] for the layers above.
#[derive(Clone)]
struct HaltGuard<S> {
    /// The wrapped service.
    inner: S,
    /// Cancelled at shutdown or when the lease is lost.
    halt: Arc<CancellationToken>,
}

impl<S> Service<Delivery> for HaltGuard<S>
where
    S: Service<Delivery, Response = (), Error = Error>,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = Undone;
    type Future = BoxFuture<'static, Result<(), Undone>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Undone>> {
        self.inner.poll_ready(cx).map_err(Undone::Failed)
    }

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        if delivery.attempt > 1 && self.halt.is_cancelled() {
            return Box::pin(std::future::ready(Err(Undone::Interrupted)));
        }
        let attempt = self.inner.call(delivery);
        Box::pin(async move { attempt.await.map_err(Undone::Failed) })
    }
}

/// Turns what tower layers return (boxed errors) back into a [`remq::Error`](Error):
/// a timeout becomes [`Error::HandlerTimeout`], permanent if so configured.
fn into_remq_error(error: tower::BoxError, timeout_permanent: bool) -> Error {
    match error.downcast::<Error>() {
        Ok(error) => *error,
        Err(error) if error.is::<tower::timeout::error::Elapsed>() => {
            Error::HandlerTimeout { permanent: timeout_permanent }
        }
        Err(error) => Error::Handler { source: error, permanent: false },
    }
}

/// Sends one delivery through `service` once it is ready.
pub(crate) async fn dispatch(service: &mut StackService, delivery: Delivery) -> Result<(), Undone> {
    service.ready().await?.call(delivery).await
}
