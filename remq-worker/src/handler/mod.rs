//! Handlers: async functions of extractors, type-erased so the runtime can hold
//! many of them, and the registry the `#[remq::handler]` macro submits to.

use std::any::TypeId;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

mod extract;

use crate::{Error, Result};
pub(crate) use extract::States;
pub use extract::{Body, Channel, Delivery, FromMessage, Json, State};

/// What a handler may return: `()`, or a `Result<(), E>` whose error converts into
/// a boxed error (a `remq::Error` keeps its kind; anything else becomes
/// [`Error::Handler`], which counts as retryable).
pub trait HandlerOutput: Send + 'static {
    /// Converts into the runtime's result.
    ///
    /// # Errors
    /// The handler's error, as a [`remq::Error`](Error).
    fn into_result(self) -> Result<()>;
}

impl HandlerOutput for () {
    fn into_result(self) -> Result<()> {
        Ok(())
    }
}

impl<E> HandlerOutput for std::result::Result<(), E>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    fn into_result(self) -> Result<()> {
        self.map_err(|e| {
            let boxed = e.into();
            match boxed.downcast::<Error>() {
                Ok(remq_error) => *remq_error,
                Err(other) => Error::Handler { source: other, permanent: false },
            }
        })
    }
}

/// An async function usable as a handler: every argument is an extractor
/// ([`FromMessage`]) and the output is a [`HandlerOutput`]. Implemented for
/// functions of up to eight arguments; `T` is the tuple of argument types.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a remq handler",
    label = "not a handler",
    note = "a handler is an `async fn` whose arguments implement `remq::FromMessage` and that returns `()` or `Result<(), E>`"
)]
pub trait Handler<T>: Clone + Send + Sync + 'static {
    /// Extracts the arguments from the delivery and runs the function.
    fn call(&self, delivery: Delivery) -> BoxFuture<'static, Result<()>>;

    /// The state types the arguments need, with their names.
    fn required_states() -> Vec<(TypeId, &'static str)>;
}

macro_rules! impl_handler {
    ($($arg:ident),*) => {
        impl<F, Fut, $($arg,)*> Handler<($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future + Send + 'static,
            Fut::Output: HandlerOutput,
            $($arg: FromMessage,)*
        {
            // The immediately-called closure lets `?` stop at the first failing extractor.
            #[allow(non_snake_case, unused_variables, clippy::redundant_closure_call)]
            fn call(&self, delivery: Delivery) -> BoxFuture<'static, Result<()>> {
                let extracted = (|| -> Result<_> { Ok(($($arg::from_message(&delivery)?,)*)) })();
                let f = self.clone();
                Box::pin(async move {
                    let ($($arg,)*) = extracted?;
                    f($($arg),*).await.into_result()
                })
            }

            fn required_states() -> Vec<(TypeId, &'static str)> {
                let states: [Option<(TypeId, &'static str)>; 0 $(+ { let _ = stringify!($arg); 1 })*] =
                    [$($arg::required_state(),)*];
                states.into_iter().flatten().collect()
            }
        }
    };
}

impl_handler!();
impl_handler!(T1);
impl_handler!(T1, T2);
impl_handler!(T1, T2, T3);
impl_handler!(T1, T2, T3, T4);
impl_handler!(T1, T2, T3, T4, T5);
impl_handler!(T1, T2, T3, T4, T5, T6);
impl_handler!(T1, T2, T3, T4, T5, T6, T7);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8);

/// A handler with its argument types erased, cheap to clone.
#[derive(Clone)]
pub struct BoxedHandler {
    /// Runs the handler on one delivery.
    call: Arc<dyn Fn(Delivery) -> BoxFuture<'static, Result<()>> + Send + Sync>,
    /// State types the handler's arguments need.
    required_states: Vec<(TypeId, &'static str)>,
}

impl BoxedHandler {
    /// Erases the argument types of `handler`.
    pub fn new<H: Handler<T>, T>(handler: H) -> Self {
        BoxedHandler { call: Arc::new(move |d| handler.call(d)), required_states: H::required_states() }
    }

    /// Runs the handler on one delivery.
    pub fn call(&self, delivery: Delivery) -> BoxFuture<'static, Result<()>> {
        (self.call)(delivery)
    }

    /// State types the handler's arguments need.
    pub(crate) fn required_states(&self) -> &[(TypeId, &'static str)] {
        &self.required_states
    }
}

impl fmt::Debug for BoxedHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxedHandler").finish_non_exhaustive()
    }
}

/// Per-handler settings that override the worker's: from the options of
/// `#[remq::handler("…", retries = 5, timeout = "30s", dead_letter = "…", concurrency = 8)]`, or
/// passed to [`Worker::configured_handler`](crate::Worker::configured_handler).
///
/// Non-exhaustive (more options will come): start from
/// [`HandlerOptions::DEFAULT`] and set what you need with the `const` methods,
/// e.g. `HandlerOptions::DEFAULT.retries(2).dead_letter("dlq.orders")`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerOptions {
    /// Retries after the first attempt (0: none); the worker's policy otherwise.
    pub retries: Option<u32>,
    /// Deadline of one attempt; the worker's handler timeout otherwise.
    pub timeout: Option<Duration>,
    /// Whether running past the timeout is a permanent failure (dead-lettered at
    /// once) instead of a retryable one; the worker's setting otherwise.
    pub timeout_permanent: Option<bool>,
    /// The channel this handler's dead letters go to; `<prefix><channel>` otherwise.
    pub dead_letter: Option<&'static str>,
    /// Messages handled at once, one at a time per channel; the worker's otherwise.
    pub concurrency: Option<usize>,
    /// At most this many attempts a second; the worker's limit (none by default) otherwise.
    pub rate_limit: Option<u32>,
    /// The namespace this handler consumes (its cursor, lease and dead letters
    /// live there too); the worker's otherwise.
    pub namespace: Option<&'static str>,
}

impl HandlerOptions {
    /// No overrides (usable in `const` context, unlike `Default`).
    pub const DEFAULT: HandlerOptions = HandlerOptions {
        retries: None,
        timeout: None,
        timeout_permanent: None,
        dead_letter: None,
        concurrency: None,
        rate_limit: None,
        namespace: None,
    };

    /// Retries after the first attempt (0: none).
    #[must_use]
    pub const fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// The deadline of one attempt.
    #[must_use]
    pub const fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether running past the timeout is a permanent failure.
    #[must_use]
    pub const fn timeout_permanent(mut self, permanent: bool) -> Self {
        self.timeout_permanent = Some(permanent);
        self
    }

    /// The channel this handler's dead letters go to.
    #[must_use]
    pub const fn dead_letter(mut self, channel: &'static str) -> Self {
        self.dead_letter = Some(channel);
        self
    }

    /// Messages handled at once, one at a time per channel.
    #[must_use]
    pub const fn concurrency(mut self, messages: usize) -> Self {
        self.concurrency = Some(messages);
        self
    }

    /// At most this many attempts a second.
    #[must_use]
    pub const fn rate_limit(mut self, per_second: u32) -> Self {
        self.rate_limit = Some(per_second);
        self
    }

    /// The namespace this handler consumes, e.g. `remq:{billing}`.
    #[must_use]
    pub const fn namespace(mut self, base: &'static str) -> Self {
        self.namespace = Some(base);
        self
    }
}

/// A handler registered by `#[remq::handler]`, collected with `inventory`.
#[doc(hidden)]
#[derive(Debug)]
pub struct Registration {
    /// The glob pattern of channels it consumes.
    pub pattern: &'static str,
    /// Its durable consumer name.
    pub name: &'static str,
    /// Builds the erased handler.
    pub make: fn() -> BoxedHandler,
    /// Its options.
    pub options: HandlerOptions,
}

inventory::collect!(Registration);

/// Every handler registered with `#[remq::handler]` in the binary.
pub(crate) fn registered() -> impl Iterator<Item = &'static Registration> {
    inventory::iter::<Registration>.into_iter()
}

/// What the `#[remq::handler]` macro expands to. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use super::{HandlerOptions, Registration};
    pub use inventory;

    use super::{BoxedHandler, Handler};
    use crate::FromMessage;

    /// Erases a handler for the registry.
    pub fn erase<H: Handler<T>, T>(handler: H) -> BoxedHandler {
        BoxedHandler::new(handler)
    }

    /// Compiles only when `T` is an extractor; the macro calls it once per
    /// argument, spanned on the argument's type, so errors point there.
    pub const fn assert_from_message<T: FromMessage>() {}

    /// Every handler registered with `#[remq::handler]` in the binary, for tests.
    #[doc(hidden)]
    pub fn registrations() -> impl Iterator<Item = &'static Registration> {
        super::registered()
    }
}
