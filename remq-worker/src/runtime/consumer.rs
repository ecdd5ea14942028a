//! One durable consumer: a handler bound to a pattern under a durable name. It
//! stands by until it owns the lease, runs one period of ownership, and stands
//! by again whenever the lease is lost.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Runtime;
use super::period::{Period, SHUTDOWN_IO};
use crate::connection::backoff::Backoff;
use crate::middleware::{self, BoxedLayer, DeadLetters, Stack, StackConfig};
use crate::observe::health::ConsumerState;
use crate::outcome::Stop;
use crate::ownership::lease::LeaseGuard;
use crate::protocol::LeaseKey;
use crate::{BoxedHandler, HandlerOptions, Result};

/// A handler with its pattern and durable name, ready to run.
#[derive(Clone, Debug)]
pub(crate) struct Consumer {
    /// The durable name: keys its cursor and lease.
    pub(crate) name: Arc<str>,
    /// The channel pattern.
    pub(crate) pattern: String,
    /// The handler.
    pub(crate) handler: BoxedHandler,
    /// Its overrides of the worker's retry, timeout and dead-letter settings.
    pub(crate) options: HandlerOptions,
    /// The application's middleware for it, outermost first: the worker's
    /// layers, then its own.
    pub(crate) layers: Vec<BoxedLayer>,
}

impl Consumer {
    /// Runs until shutdown: stand by for the lease, own it, and stand by again
    /// whenever it is lost.
    ///
    /// # Errors
    /// Permanent failures (missing permissions, invalid settings).
    pub(crate) async fn run(self, rt: Runtime) -> Result<()> {
        let mut backoff = Backoff::default();
        let health = rt.health.consumer(&self.name, rt.partition);
        let key = LeaseKey::Consumer(self.name.clone());
        loop {
            let lease =
                LeaseGuard::acquire(rt.client.store(), &key, rt.settings.lease_ttl, &health, &rt.shutdown)
                    .await;
            let outcome = match lease {
                Ok(None) => return Ok(()),
                Ok(Some(lease)) => {
                    backoff.succeeded(&self.name);
                    health.set(ConsumerState::CatchingUp);
                    let outcome = Period::run(&self, &rt, &lease, &health).await;
                    health.set(ConsumerState::Starting);
                    if tokio::time::timeout(SHUTDOWN_IO, lease.release()).await.is_err() {
                        tracing::warn!(
                            consumer = &*self.name,
                            "releasing the lease timed out; it expires on its own"
                        );
                    }
                    outcome
                }
                Err(error) => Err(error),
            };
            match outcome {
                Ok(Stop::Shutdown) => return Ok(()),
                // The rewind is stored; start over from it like after an error.
                Ok(Stop::CounterReset(reset)) => tokio::select! {
                    _ = rt.shutdown.cancelled() => return Ok(()),
                    _ = backoff.failed(&self.name, "consumer restart", &reset) => {}
                },
                Ok(Stop::LeaseLost) => {
                    tracing::warn!(consumer = &*self.name, "lost ownership; standing by again");
                }
                Err(error) if error.is_retryable() => tokio::select! {
                    _ = rt.shutdown.cancelled() => return Ok(()),
                    _ = backoff.failed(&self.name, "consumer start", &error) => {}
                },
                Err(error) => return Err(error),
            }
        }
    }

    /// The handler wrapped in its middleware, for one period of ownership:
    /// `halt` stops retries and dead-letter attempts.
    pub(super) fn service(&self, rt: &Runtime, halt: &CancellationToken) -> Stack {
        let s = &rt.settings;
        let retry = match self.options.retries {
            Some(retries) => s.retry.clone().max_attempts(retries.saturating_add(1)),
            None => s.retry.clone(),
        };
        let dead_letter = s.dead_letter_prefix.as_deref().map(|prefix| {
            DeadLetters::new(
                rt.client.clone(),
                self.name.clone(),
                prefix,
                self.options.dead_letter,
                halt.clone(),
            )
        });
        middleware::stack(
            self.handler.clone(),
            StackConfig {
                consumer: self.name.clone(),
                retry,
                timeout: self.options.timeout.or(s.handler_timeout),
                timeout_permanent: self.options.timeout_permanent.unwrap_or(s.timeout_permanent),
                rate_limit: self.options.rate_limit.or(s.rate_limit),
                dead_letter,
                layers: &self.layers,
                shutdown: halt.clone(),
            },
        )
    }
}
