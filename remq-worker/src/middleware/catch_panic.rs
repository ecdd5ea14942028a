//! Catches a panicking handler and turns the panic into a retryable error.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use tower::{Layer, Service};

use crate::{Delivery, Error};

/// Wraps services in [`CatchPanic`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// A service whose panics (while building or polling its future) become
/// [`Error::Handler`] errors with the panic message, counted as failed attempts.
#[derive(Clone, Debug)]
pub struct CatchPanic<S> {
    /// The wrapped service.
    inner: S,
}

impl<S> Service<Delivery> for CatchPanic<S>
where
    S: Service<Delivery, Response = (), Error = Error>,
    S::Future: Send + 'static,
{
    delegate_service_basics!();

    fn call(&mut self, delivery: Delivery) -> Self::Future {
        // The call itself runs extractors, which may panic too: catch both it and
        // the future it returns.
        let inner = &mut self.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(move || inner.call(delivery))) {
            Ok(future) => Box::pin(
                AssertUnwindSafe(future)
                    .catch_unwind()
                    .map(|outcome| outcome.unwrap_or_else(|panic| Err(panicked(panic.as_ref())))),
            ),
            Err(panic) => Box::pin(std::future::ready(Err(panicked(panic.as_ref())))),
        }
    }
}

/// The retryable error for a panic, with its message.
fn panicked(panic: &(dyn std::any::Any + Send)) -> Error {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned());
    Error::retryable(format!("handler panicked: {text}"))
}
