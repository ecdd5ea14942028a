//! The worker: collects handlers, connects, runs one consumer per handler, and
//! shuts down gracefully on SIGTERM, SIGINT or a cancellation token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::consumer::Consumer;
use super::group;
use super::{Runtime, Settings, signals};
use crate::handler::{self, States};
use crate::middleware::{BoxedLayer, HandlerLayer};
use crate::observe::health::Health;
use crate::observe::{endpoints, metrics};
use crate::{
    BoxedHandler, Error, FlushPolicy, Handler, HandlerOptions, Result, RetryPolicy, StartFrom, protocol,
    retention,
};

/// A worker process: every handler registered with `#[remq::handler]` (and any
/// added with [`handler`](Self::handler)) consumes its pattern in id order, with
/// its cursor checkpointed in Redis and its ownership held by a lease.
///
/// ```no_run
/// # async fn demo() -> remq::Result<()> {
/// #[derive(Clone)]
/// struct Db;
///
/// remq::Worker::from_env()?
///     .state(Db)
///     .handler("audit.*", |msg: remq::Message| async move { println!("{}", msg.id) })
///     .run()
///     .await
/// # }
/// ```
#[derive(Debug)]
pub struct Worker {
    /// Connection and delivery settings.
    settings: Settings,
    /// Handlers added in code: (name, pattern, handler, options).
    handlers: Vec<(String, String, BoxedHandler, HandlerOptions)>,
    /// Application middleware for every handler, outermost first.
    layers: Vec<BoxedLayer>,
    /// Application middleware of single handlers, by durable name; inside the
    /// global layers.
    handler_layers: HashMap<String, Vec<BoxedLayer>>,
    /// Whether `#[remq::handler]` registrations are included.
    registered: bool,
    /// Application state for `State<T>` extractors.
    states: States,
    /// Cancelled to shut down; also cancelled by SIGTERM and SIGINT.
    shutdown: CancellationToken,
    /// Whether to install the signal handlers.
    signals: bool,
    /// Retention policies the worker runs periodically.
    flush: Vec<FlushPolicy>,
    /// A bound listener for the endpoints, instead of an address to bind.
    metrics_listener: Option<std::net::TcpListener>,
}

impl Worker {
    /// A worker for the Redis at `redis_url` with default settings.
    pub fn new(redis_url: impl Into<String>) -> Self {
        Self::with_settings(Settings::new(redis_url.into()))
    }

    /// A worker configured from the environment: `REMQ_REDIS_URL` (else
    /// `REDIS_URL`, else `redis://127.0.0.1:6379`), `REMQ_NAMESPACE`,
    /// `REMQ_START_FROM`, `REMQ_CHECKPOINT_EVERY`, `REMQ_CHECKPOINT_INTERVAL`,
    /// `REMQ_LEASE_TTL`, `REMQ_SHUTDOWN_DEADLINE`, `REMQ_BUFFER_SIZE`,
    /// `REMQ_REPLAY_BATCH` and every other variable of the table in
    /// `docs/configuration.md` (defaults there).
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable whose value is invalid.
    pub fn from_env() -> Result<Self> {
        Settings::from_env().map(Self::with_settings)
    }

    fn with_settings(settings: Settings) -> Self {
        Worker {
            settings,
            handlers: Vec::new(),
            layers: Vec::new(),
            handler_layers: HashMap::new(),
            registered: true,
            states: States::default(),
            shutdown: CancellationToken::new(),
            signals: true,
            flush: Vec::new(),
            metrics_listener: None,
        }
    }

    /// Adds a handler for `pattern`, with the pattern as its durable name.
    pub fn handler<H: Handler<T>, T>(self, pattern: impl Into<String>, handler: H) -> Self {
        let pattern = pattern.into();
        self.named_handler(pattern.clone(), pattern, handler)
    }

    /// Adds a handler for `pattern` under the durable consumer name `name`.
    pub fn named_handler<H: Handler<T>, T>(
        self,
        name: impl Into<String>,
        pattern: impl Into<String>,
        handler: H,
    ) -> Self {
        self.configured_handler(name, pattern, HandlerOptions::DEFAULT, handler)
    }

    /// Adds a handler with its own retry, timeout and dead-letter settings (what
    /// the macro's options set).
    pub fn configured_handler<H: Handler<T>, T>(
        mut self,
        name: impl Into<String>,
        pattern: impl Into<String>,
        options: HandlerOptions,
        handler: H,
    ) -> Self {
        self.handlers.push((name.into(), pattern.into(), BoxedHandler::new(handler), options));
        self
    }

    /// Wraps every handler in `layer`, any `tower::Layer` over
    /// [`HandlerService`](crate::middleware::HandlerService) (see
    /// [`HandlerLayer`](crate::middleware::HandlerLayer)). Layers run inside the
    /// retry loop (once per attempt) and the tracing span, outside the timeout;
    /// the first one added is the outermost.
    pub fn layer(mut self, layer: impl HandlerLayer) -> Self {
        self.layers.push(BoxedLayer(Arc::new(layer)));
        self
    }

    /// Wraps one handler, the one with durable name `consumer` (for a
    /// `#[remq::handler]` without `name`, its path such as `my_app::on_signup`),
    /// in `layer`, inside the layers added with [`layer`](Self::layer). Naming a
    /// consumer that does not exist fails `run()`.
    pub fn handler_layer(mut self, consumer: impl Into<String>, layer: impl HandlerLayer) -> Self {
        self.handler_layers.entry(consumer.into()).or_default().push(BoxedLayer(Arc::new(layer)));
        self
    }

    /// The retry schedule of every handler (default: 5 attempts, back-off from
    /// 100 ms doubling to 10 s); a handler's `retries` option overrides the count.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.settings.retry = policy;
        self
    }

    /// How many messages each handler works on at once (default 1). Above 1,
    /// messages of different channels run in parallel while each channel's stay
    /// in id order, and the checkpoint only advances to the highest id below
    /// which everything has finished. At most this many run, and at most
    /// [`buffer_size`](Self::buffer_size) more wait behind busy channels; then
    /// intake pauses. A handler's `concurrency` option overrides it.
    pub fn concurrency(mut self, messages: usize) -> Self {
        self.settings.concurrency = messages.max(1);
        self
    }

    /// At most `per_second` attempts a second for each handler (retries count),
    /// spaced evenly, shared by its concurrent deliveries. Default: no limit; a
    /// handler's `rate_limit` option overrides it.
    pub fn rate_limit(mut self, per_second: u32) -> Self {
        self.settings.rate_limit = Some(per_second.max(1));
        self
    }

    /// A deadline for each handler attempt; one that runs longer is cancelled and
    /// counts as a failed (retryable) attempt. Default: none.
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.settings.handler_timeout = Some(timeout);
        self
    }

    /// Treat a handler that runs past its timeout as failed for good
    /// (dead-lettered at once) rather than retry it (also
    /// `REMQ_HANDLER_TIMEOUT_PERMANENT=true`, or a handler's `timeout_permanent` option).
    pub fn timeouts_are_permanent(mut self, permanent: bool) -> Self {
        self.settings.timeout_permanent = permanent;
        self
    }

    /// Dead letters of channel `c` go to `<prefix><c>` (default prefix `dead.`).
    pub fn dead_letter_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.dead_letter_prefix = Some(prefix.into());
        self
    }

    /// No dead letters: a message that failed for good is logged and passed over.
    pub fn without_dead_letters(mut self) -> Self {
        self.settings.dead_letter_prefix = None;
        self
    }

    /// Runs only the handlers added with [`handler`](Self::handler), not those
    /// registered with `#[remq::handler]` (useful in tests).
    pub fn without_registered_handlers(mut self) -> Self {
        self.registered = false;
        self
    }

    /// Registers shared state for `State<T>` arguments (one value per type).
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.states.insert(value);
        self
    }

    /// The Redis URL, replacing the one given to [`new`](Self::new) or read from the environment.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.settings.redis_url = url.into();
        self
    }

    /// Trust these PEM root certificates for `rediss://` (also `REMQ_TLS_CA_CERT`,
    /// a file path).
    pub fn tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.settings.tls_root_cert = Some(pem.into());
        self
    }

    /// Present this PEM client certificate and key (also `REMQ_TLS_CLIENT_CERT`
    /// and `REMQ_TLS_CLIENT_KEY`, file paths).
    pub fn tls_client_cert(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.settings.tls_client_cert = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// The namespace base (default `remq`).
    pub fn namespace(mut self, base: impl Into<String>) -> Self {
        self.settings.namespace = base.into();
        self
    }

    /// The partition count the namespace was created with (also
    /// `REMQ_PARTITIONS`): when set, a namespace with another count stops
    /// `run()` with [`Error::Partitions`] instead of being consumed with a
    /// count the deployment did not expect. Unset, the stored count is used:
    /// a partitioned namespace is consumed as a consumer group (each replica
    /// of the worker runs its share of the partitions), an unpartitioned one
    /// by one owner with hot standbys.
    pub fn partitions(mut self, count: u32) -> Self {
        self.settings.partitions = Some(count);
        self
    }

    /// Where consumers without a checkpoint start (default [`StartFrom::Latest`]).
    pub fn start_from(mut self, start: StartFrom) -> Self {
        self.settings.start_from = start;
        self
    }

    /// Store the checkpoint after this many messages (default 1000)…
    pub fn checkpoint_every(mut self, messages: u64) -> Self {
        self.settings.checkpoint_every = messages.max(1);
        self
    }

    /// …or after this long (default 1 s), whichever comes first; at least 1 ms.
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.settings.checkpoint_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long a lease lasts without renewal (default 10 s); a standby takes
    /// over within about this time after the owner dies.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.settings.lease_ttl = ttl;
        self
    }

    /// How long in-flight handlers may run after shutdown begins (default 25 s;
    /// keep it below your orchestrator's termination grace period).
    pub fn shutdown_deadline(mut self, deadline: Duration) -> Self {
        self.settings.shutdown_deadline = deadline;
        self
    }

    /// Live messages buffered per consumer before it falls back to replay (default 10,000).
    pub fn buffer_size(mut self, messages: usize) -> Self {
        self.settings.buffer_size = messages.max(1);
        self
    }

    /// Messages per `consume` call while replaying (default 1000, at most 10,000).
    pub fn replay_batch(mut self, messages: usize) -> Self {
        self.settings.replay_batch = messages.clamp(1, protocol::MAX_CONSUME_LIMIT);
        self
    }

    /// Runs `policy` periodically (its [`every`](FlushPolicy::every) interval):
    /// removes old messages as it allows. Workers of one deployment take turns
    /// through a lock in Redis, so each pattern is flushed by one at a time. A
    /// worker may run flush jobs only, without handlers.
    pub fn flush(mut self, policy: FlushPolicy) -> Self {
        self.flush.push(policy);
        self
    }

    /// Serves Prometheus metrics on `http://<addr>/metrics`, and `/healthz` and
    /// `/readyz` for orchestrators, on the same listener (also
    /// `REMQ_METRICS_ADDR`). The metric names are listed in `docs/operations.md`.
    pub fn metrics(mut self, addr: std::net::SocketAddr) -> Self {
        self.settings.metrics_addr = Some(addr);
        self
    }

    /// As [`metrics`](Self::metrics), on a listener bound already (say to port 0,
    /// so tests never race for a free port).
    pub fn metrics_listener(mut self, listener: std::net::TcpListener) -> Self {
        self.metrics_listener = Some(listener);
        self
    }

    /// A token that shuts the worker down gracefully when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Do not listen for SIGTERM and SIGINT (the shutdown token still works).
    pub fn without_signal_handlers(mut self) -> Self {
        self.signals = false;
        self
    }

    /// Connects and runs every handler until shutdown: a SIGTERM or SIGINT, or the
    /// [`shutdown_token`](Self::shutdown_token) being cancelled. Then each consumer
    /// stops taking messages, lets its in-flight handler finish within the
    /// deadline, stores its final checkpoint and releases its lease.
    ///
    /// # Errors
    /// At start-up: invalid handlers (bad pattern, duplicate name, missing state),
    /// [`Error::Connect`] / [`Error::Auth`] when Redis is unreachable or refuses
    /// the credentials. While running: a consumer's permanent failure (e.g. an
    /// ACL permission missing), which stops the others gracefully.
    pub async fn run(mut self) -> Result<()> {
        if let Some(prefix) = &self.settings.dead_letter_prefix {
            // Dead letters must land on channels of their own.
            protocol::validate_channel(prefix).map_err(|_| Error::Config {
                name: "REMQ_DEAD_LETTER_PREFIX",
                value: prefix.clone(),
                reason: "expected a non-empty channel prefix such as `dead.`, without newlines or * ? [ ]"
                    .to_owned(),
            })?;
        }
        for policy in &self.flush {
            protocol::validate_pattern(policy.pattern())?;
        }
        let consumers = self.consumers()?;
        let listener = match (self.metrics_listener.take(), self.settings.metrics_addr) {
            (Some(listener), _) => Some(endpoints::adopt(listener)?),
            (None, Some(addr)) => Some(endpoints::bind(addr).await?),
            (None, None) => None,
        };
        // Before any consumer starts: series looked up earlier would not be recorded.
        let serving = listener.map(|listener| metrics::install().map(|m| (listener, m))).transpose()?;
        for consumer in &consumers {
            for &(type_id, type_name) in consumer.handler.required_states() {
                if !self.states.contains(type_id) {
                    return Err(Error::MissingState { type_name });
                }
            }
        }
        let client = self.settings.client_builder().connect().await?;
        tracing::info!(addr = %client.addr(), namespace = %client.namespace(), consumers = consumers.len(), "worker starting");
        let rt = Runtime {
            client,
            settings: Arc::new(self.settings),
            states: Arc::new(self.states),
            shutdown: self.shutdown.clone(),
            health: Health::default(),
            partition: None,
        };
        // A handler in a namespace of its own gets a view of the same
        // connection there (checked before anything starts).
        let consumers = consumers
            .into_iter()
            .map(|consumer| {
                let mut rt = rt.clone();
                if let Some(base) = consumer.options.namespace {
                    rt.client = rt.client.with_namespace(base)?;
                }
                Ok((consumer, rt))
            })
            .collect::<Result<Vec<_>>>()?;
        // A consumer of a partitioned namespace runs as a member of its group.
        let mut grouped = Vec::with_capacity(consumers.len());
        for (consumer, rt) in consumers {
            let count = rt.client.partitions().await?;
            let expected = rt.settings.partitions.filter(|_| consumer.options.namespace.is_none());
            if let Some(expected) = expected.filter(|&expected| expected != count) {
                return Err(Error::Partitions {
                    namespace: rt.client.namespace().to_string(),
                    reason: format!(
                        "the worker expects {expected} partitions (REMQ_PARTITIONS / Worker::partitions), but the \
                         namespace has {count}: the count is fixed when the namespace is created \
                         (`remq namespace create <base> --partitions <P>`); set the one it has"
                    ),
                });
            }
            grouped.push((consumer, rt, count > 1));
        }
        if self.signals {
            tokio::spawn(signals::cancel_on_signal(self.shutdown.clone()));
        }
        let tracker = TaskTracker::new();
        if let Some((listener, handle)) = serving {
            endpoints::serve(listener, handle.clone(), rt.health.clone(), self.shutdown.clone(), &tracker);
        }
        for policy in self.flush {
            tracker.spawn(retention::run_periodically(rt.client.clone(), policy, self.shutdown.clone()));
        }
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        for (consumer, rt, partitioned) in grouped {
            let failures = failures.clone();
            tracker.spawn(async move {
                let name = consumer.name.clone();
                let ran = if partitioned {
                    group::run(consumer, rt.clone()).await
                } else {
                    consumer.run(rt.clone()).await
                };
                if let Err(error) = ran {
                    tracing::error!(consumer = &*name, %error, "consumer failed; shutting the worker down");
                    failures.lock().expect("no panics while held").push(error);
                    rt.shutdown.cancel();
                }
            });
        }
        tracker.close();
        tracker.wait().await;
        tracing::info!("worker stopped");
        match failures.lock().expect("no panics while held").drain(..).next() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// The handlers to run, checked: valid patterns, unique durable names.
    fn consumers(&self) -> Result<Vec<Consumer>> {
        let registered = handler::registered()
            .filter(|_| self.registered)
            .map(|r| (r.name.to_owned(), r.pattern.to_owned(), (r.make)(), r.options));
        let mut by_name: HashMap<String, String> = HashMap::new();
        let mut consumers = Vec::new();
        for (name, pattern, handler, options) in registered.chain(self.handlers.iter().cloned()) {
            protocol::validate_pattern(&pattern)?;
            if let Some(first) = by_name.insert(name.clone(), pattern.clone()) {
                return Err(Error::DuplicateConsumer { name, first, second: pattern });
            }
            let own_layers = self.handler_layers.get(&name).into_iter().flatten();
            let layers = self.layers.iter().chain(own_layers).cloned().collect();
            consumers.push(Consumer { name: name.into(), pattern, handler, options, layers });
        }
        if consumers.is_empty() && self.flush.is_empty() {
            return Err(Error::NoHandlers);
        }
        if let Some(unknown) = self.handler_layers.keys().find(|name| !by_name.contains_key(*name)) {
            return Err(Error::Config {
                name: "Worker::handler_layer",
                value: unknown.clone(),
                reason: "no handler has this durable name".to_owned(),
            });
        }
        Ok(consumers)
    }
}
