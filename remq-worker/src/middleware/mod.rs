//! The stack every delivery goes through, outermost first:
//!
//! 1. dead letters ([`DeadLetters`]): a message that failed for good is
//!    published to its dead-letter channel (and only then counts as done);
//! 2. retries decided by [`RetryPolicy`]: retryable failures are tried again
//!    with exponential back-off and jitter, in place, so order holds; once the
//!    owner must stop, no retry starts;
//! 3. [`Trace`]: a `tracing` span per attempt (handler, channel, id, attempt, outcome);
//! 4. the application's own layers ([`Worker::layer`](crate::Worker::layer), then
//!    [`Worker::handler_layer`](crate::Worker::handler_layer));
//! 5. [`RateLimit`]: at most so many attempts a second, if configured;
//! 6. [`tower::timeout::Timeout`]: a per-handler deadline for each attempt;
//! 7. [`CatchPanic`]: a panicking handler is a failed attempt, not a dead worker;
//! 8. the handler itself.
//!
//! Layers 3 to 8 are tower services, one call per attempt. The first two are
//! [`Stack::deliver`], one `async fn` around them: it keeps the delivery for a
//! retry and borrows the attempt's service, where tower's retry layer would
//! clone the service and box a future per layer for every delivery.

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
pub(crate) use dead_letter::DeadLetters;
pub use dead_letter::{DeadLetterEnvelope, Redriven, redrive, redrive_page};
pub use rate_limit::{RateLimit, RateLimitLayer};
pub use retry::RetryPolicy;
use retry::Retrying;
pub use trace::{Trace, TraceLayer};

use crate::{BoxedHandler, Delivery, Error, Message, Result};

/// The type-erased service an attempt is sent to: the handler and the layers
/// around each attempt, the application's included.
pub type HandlerService = BoxCloneService<Delivery, (), Error>;

/// The whole stack of one handler, type-erased: what the lanes of a consumer
/// with concurrency run many deliveries through at once.
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
    pub(crate) dead_letter: Option<DeadLetters>,
    /// The application's layers, outermost first.
    pub(crate) layers: &'a [BoxedLayer],
    /// Cancelled when this owner must stop (shutdown or a lost lease): no retry
    /// starts after that.
    pub(crate) shutdown: CancellationToken,
}

/// Builds the stack around `handler`.
pub(crate) fn stack(handler: BoxedHandler, config: StackConfig<'_>) -> Stack {
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
    Stack {
        attempt: TraceLayer::new(config.consumer).layer(service),
        retry: Retrying::new(config.retry, Arc::clone(&halt)),
        halt,
        dead_letters: config.dead_letter.map(Arc::new),
    }
}

/// The whole stack of one handler: the service that makes one attempt, with
/// retries and dead letters around it.
#[derive(Clone, Debug)]
pub(crate) struct Stack {
    /// One attempt: [`Trace`] and every layer inside it, down to the handler.
    attempt: Trace<HandlerService>,
    /// When to try again.
    retry: Retrying,
    /// Cancelled at shutdown or when the lease is lost: no retry starts after that.
    halt: Arc<CancellationToken>,
    /// Where messages given up on go; `None` to hand them to the runtime.
    dead_letters: Option<Arc<DeadLetters>>,
}

impl Stack {
    /// Sends one delivery through the stack: attempts until one succeeds, the
    /// policy gives up (then the dead letter is published), or the owner must
    /// stop. The future borrows the stack, so nothing is cloned or boxed for it.
    ///
    /// # Errors
    /// How the delivery ended if not handled or dead-lettered: [`Undone`].
    ///
    /// # Cancel safety
    /// Not cancel-safe: a delivery dropped midway may have run its handler.
    pub(crate) async fn deliver(&mut self, delivery: Delivery) -> Result<(), Undone> {
        match (self.attempts(delivery).await, &self.dead_letters) {
            (Err(Undone::GaveUp { attempts, message, error }), Some(dead_letters)) => {
                dead_letters.publish(attempts, &message, error).await
            }
            (result, _) => result,
        }
    }

    /// Attempts `delivery` until one succeeds or the policy says stop, as
    /// tower's retry layer would: the policy keeps a copy of the delivery for
    /// the next attempt, and decides after each failure.
    async fn attempts(&mut self, mut delivery: Delivery) -> Result<(), Undone> {
        use tower::retry::Policy;
        loop {
            // Once the owner must stop, a retry ends here, after its back-off
            // wait and before any layer runs.
            if delivery.attempt > 1 && self.halt.is_cancelled() {
                return Err(Undone::Interrupted);
            }
            let kept = self.retry.clone_request(&delivery);
            let attempt = self.attempt.ready().await.map_err(Undone::Failed)?;
            let mut result = attempt.call(delivery).await.map_err(Undone::Failed);
            let Some(mut kept) = kept else { return result };
            match self.retry.retry(&mut kept, &mut result) {
                Some(wait) => wait.await,
                None => return result,
            }
            delivery = kept;
        }
    }
}

impl Service<Delivery> for Stack {
    type Response = ();
    type Error = Undone;
    type Future = BoxFuture<'static, Result<(), Undone>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Undone>> {
        // `deliver` waits for the attempt's service itself, before each attempt.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        let mut stack = self.clone();
        Box::pin(async move { stack.deliver(delivery).await })
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
