//! Worker settings: defaults, the builder's values, and `REMQ_*` environment variables.

use std::fmt;
use std::time::Duration;

use crate::error::redact_url;
use crate::{ClientBuilder, Error, Result, RetryPolicy, StartFrom};

/// Everything a worker is configured with. Built by [`Worker::new`](crate::Worker::new)
/// or [`Worker::from_env`](crate::Worker::from_env) and changed with the builder methods.
#[derive(Clone)]
pub(crate) struct Settings {
    /// The Redis URL (may hold a password: never printed as is).
    pub(crate) redis_url: String,
    /// The namespace base, `remq` by default.
    pub(crate) namespace: String,
    /// The partition count the namespace must have been created with, if the
    /// deployment states one: a different stored count stops the worker.
    pub(crate) partitions: Option<u32>,
    /// Where new consumers start.
    pub(crate) start_from: StartFrom,
    /// Write a checkpoint after this many processed messages…
    pub(crate) checkpoint_every: u64,
    /// …or after this much time, whichever comes first.
    pub(crate) checkpoint_interval: Duration,
    /// How long a consumer's lease lasts without renewal; a standby takes over
    /// within this time after the owner dies.
    pub(crate) lease_ttl: Duration,
    /// How long in-flight handlers may run after a shutdown signal.
    pub(crate) shutdown_deadline: Duration,
    /// Live messages buffered per consumer; when full, the consumer falls back to
    /// replaying from the log.
    pub(crate) buffer_size: usize,
    /// Messages per `consume` call while replaying.
    pub(crate) replay_batch: usize,
    /// When and how often failed deliveries are retried.
    pub(crate) retry: RetryPolicy,
    /// Messages a handler works on at once (one at a time per channel).
    pub(crate) concurrency: usize,
    /// At most this many handler attempts a second, per handler, if set.
    pub(crate) rate_limit: Option<u32>,
    /// Deadline of one handler attempt, if any.
    pub(crate) handler_timeout: Option<Duration>,
    /// Whether a timeout is a permanent failure instead of a retryable one.
    pub(crate) timeout_permanent: bool,
    /// Dead letters of channel `c` go to `<prefix><c>`; `None` turns them off
    /// (failed messages are then only logged).
    pub(crate) dead_letter_prefix: Option<String>,
    /// PEM root certificate(s) for `rediss://`, instead of the system's.
    pub(crate) tls_root_cert: Option<Vec<u8>>,
    /// PEM client certificate and key for servers that verify clients.
    pub(crate) tls_client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`, if anywhere.
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
    /// The largest message the worker's client publishes (dead letters).
    pub(crate) max_message_size: usize,
    /// Replicas every publish (dead letters) waits for; 0 for none.
    pub(crate) publish_replicas: u32,
    /// How long a publish waits for them; the client's default when unset.
    pub(crate) publish_replicas_timeout: Option<Duration>,
}

impl Settings {
    /// Defaults for a worker talking to `redis_url`.
    pub(crate) fn new(redis_url: String) -> Self {
        Settings {
            redis_url,
            namespace: crate::Namespace::DEFAULT.to_owned(),
            partitions: None,
            start_from: StartFrom::Latest,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(10),
            shutdown_deadline: Duration::from_secs(25),
            buffer_size: 10_000,
            replay_batch: 1000,
            retry: RetryPolicy::default(),
            concurrency: 1,
            rate_limit: None,
            handler_timeout: None,
            timeout_permanent: false,
            dead_letter_prefix: Some("dead.".to_owned()),
            tls_root_cert: None,
            tls_client_cert: None,
            metrics_addr: None,
            max_message_size: crate::DEFAULT_MAX_MESSAGE_SIZE,
            publish_replicas: 0,
            publish_replicas_timeout: None,
        }
    }

    /// A client builder for these settings.
    pub(crate) fn client_builder(&self) -> ClientBuilder {
        let mut builder = ClientBuilder::new(&self.redis_url)
            .namespace(&self.namespace)
            .max_message_size(self.max_message_size)
            .replicas(self.publish_replicas);
        if let Some(timeout) = self.publish_replicas_timeout {
            builder = builder.replicas_timeout(timeout);
        }
        if let Some(pem) = &self.tls_root_cert {
            builder = builder.tls_root_cert(pem.clone());
        }
        if let Some((cert, key)) = &self.tls_client_cert {
            builder = builder.tls_client_cert(cert.clone(), key.clone());
        }
        builder
    }

    /// Reads the settings from the environment (see the table in `docs/configuration.md`).
    pub(crate) fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads the settings through `lookup`, so tests need not touch the process environment.
    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let url = lookup("REMQ_REDIS_URL").or_else(|| lookup("REDIS_URL"));
        let mut s = Settings::new(url.unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned()));
        let var = |name: &'static str| lookup(name).map(|value| (name, value));
        if let Some((_, ns)) = var("REMQ_NAMESPACE") {
            s.namespace = ns;
        }
        if let Some((name, v)) = var("REMQ_PARTITIONS") {
            s.partitions = Some(
                v.parse()
                    .ok()
                    .filter(|p| (1..=crate::MAX_PARTITIONS).contains(p))
                    .ok_or_else(|| invalid(name, &v, "expected a partition count from 1 to 1024"))?,
            );
        }
        if let Some((name, v)) = var("REMQ_START_FROM") {
            s.start_from = v.parse().map_err(|reason| invalid(name, &v, reason))?;
        }
        if let Some((name, v)) = var("REMQ_CHECKPOINT_EVERY") {
            s.checkpoint_every = positive(name, &v)? as u64;
        }
        if let Some((name, v)) = var("REMQ_CHECKPOINT_INTERVAL") {
            s.checkpoint_interval = duration(name, &v)?;
        }
        if let Some((name, v)) = var("REMQ_LEASE_TTL") {
            s.lease_ttl = duration(name, &v)?;
        }
        if let Some((name, v)) = var("REMQ_SHUTDOWN_DEADLINE") {
            s.shutdown_deadline = duration(name, &v)?;
        }
        if let Some((name, v)) = var("REMQ_BUFFER_SIZE") {
            s.buffer_size = positive(name, &v)?;
        }
        if let Some((name, v)) = var("REMQ_REPLAY_BATCH") {
            s.replay_batch = positive(name, &v)?.min(crate::MAX_CONSUME_LIMIT);
        }
        if let Some((name, v)) = var("REMQ_RETRY_ATTEMPTS") {
            s.retry = s.retry.max_attempts(u32::try_from(positive(name, &v)?).unwrap_or(u32::MAX));
        }
        if let Some((name, v)) = var("REMQ_RETRY_BACKOFF") {
            s.retry = s.retry.initial_backoff(duration(name, &v)?);
        }
        if let Some((name, v)) = var("REMQ_RETRY_MAX_BACKOFF") {
            s.retry = s.retry.max_backoff(duration(name, &v)?);
        }
        if let Some((name, v)) = var("REMQ_CONCURRENCY") {
            s.concurrency = positive(name, &v)?;
        }
        if let Some((name, v)) = var("REMQ_RATE_LIMIT") {
            s.rate_limit = Some(u32::try_from(positive(name, &v)?).unwrap_or(u32::MAX));
        }
        if let Some((name, v)) = var("REMQ_HANDLER_TIMEOUT") {
            s.handler_timeout = Some(duration(name, &v)?);
        }
        if let Some((name, v)) = var("REMQ_HANDLER_TIMEOUT_PERMANENT") {
            s.timeout_permanent = v.parse().map_err(|_| invalid(name, &v, "expected `true` or `false`"))?;
        }
        if let Some((_, prefix)) = var("REMQ_DEAD_LETTER_PREFIX") {
            s.dead_letter_prefix = Some(prefix);
        }
        if let Some((name, v)) = var("REMQ_DEAD_LETTERS") {
            match v.as_str() {
                "on" => {}
                "off" => s.dead_letter_prefix = None,
                _ => return Err(invalid(name, &v, "expected `on` or `off`")),
            }
        }
        if let Some((name, v)) = var("REMQ_MAX_MESSAGE_SIZE") {
            s.max_message_size = positive(name, &v)?.min(crate::MAX_MESSAGE_SIZE);
        }
        if let Some((name, v)) = var("REMQ_PUBLISH_REPLICAS") {
            s.publish_replicas =
                v.parse().map_err(|_| invalid(name, &v, "expected a number of replicas such as `1`"))?;
        }
        if let Some((name, v)) = var("REMQ_PUBLISH_REPLICAS_TIMEOUT") {
            s.publish_replicas_timeout = Some(duration(name, &v)?);
        }
        if let Some((name, v)) = var("REMQ_METRICS_ADDR") {
            s.metrics_addr =
                Some(v.parse().map_err(|_| invalid(name, &v, "expected host:port such as `0.0.0.0:9090`"))?);
        }
        if let Some((name, path)) = var("REMQ_TLS_CA_CERT") {
            s.tls_root_cert = Some(read_pem(name, &path)?);
        }
        match (var("REMQ_TLS_CLIENT_CERT"), var("REMQ_TLS_CLIENT_KEY")) {
            (Some((cert_var, cert)), Some((key_var, key))) => {
                s.tls_client_cert = Some((read_pem(cert_var, &cert)?, read_pem(key_var, &key)?));
            }
            (None, None) => {}
            (Some((name, value)), None) | (None, Some((name, value))) => {
                return Err(invalid(name, &value, "set both REMQ_TLS_CLIENT_CERT and REMQ_TLS_CLIENT_KEY"));
            }
        }
        Ok(s)
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("redis_url", &redact_url(&self.redis_url))
            .field("namespace", &self.namespace)
            .field("start_from", &self.start_from)
            .field("checkpoint_every", &self.checkpoint_every)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("lease_ttl", &self.lease_ttl)
            .field("partitions", &self.partitions)
            .field("shutdown_deadline", &self.shutdown_deadline)
            .field("buffer_size", &self.buffer_size)
            .field("replay_batch", &self.replay_batch)
            .field("retry", &self.retry)
            .field("concurrency", &self.concurrency)
            .field("rate_limit", &self.rate_limit)
            .field("handler_timeout", &self.handler_timeout)
            .field("timeout_permanent", &self.timeout_permanent)
            .field("dead_letter_prefix", &self.dead_letter_prefix)
            .field("tls_root_cert", &self.tls_root_cert.is_some())
            .field("tls_client_cert", &self.tls_client_cert.is_some())
            .field("metrics_addr", &self.metrics_addr)
            .field("max_message_size", &self.max_message_size)
            .field("publish_replicas", &self.publish_replicas)
            .field("publish_replicas_timeout", &self.publish_replicas_timeout)
            .finish()
    }
}

fn invalid(name: &'static str, value: &str, reason: impl Into<String>) -> Error {
    Error::Config { name, value: value.to_owned(), reason: reason.into() }
}

fn read_pem(name: &'static str, path: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| invalid(name, path, format!("cannot read the PEM file: {e}")))
}

fn positive(name: &'static str, value: &str) -> Result<usize> {
    value.parse().ok().filter(|&n| n > 0).ok_or_else(|| invalid(name, value, "expected a positive integer"))
}

fn duration(name: &'static str, value: &str) -> Result<Duration> {
    humantime::parse_duration(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| invalid(name, value, "expected a positive duration such as `500ms`, `10s` or `1m`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Settings> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_and_url_fallbacks() {
        let s = from(&[]).unwrap();
        assert_eq!(s.redis_url, "redis://127.0.0.1:6379");
        assert_eq!((s.checkpoint_every, s.lease_ttl), (1000, Duration::from_secs(10)));
        assert_eq!(from(&[("REDIS_URL", "redis://b")]).unwrap().redis_url, "redis://b");
        let both = from(&[("REDIS_URL", "redis://b"), ("REMQ_REDIS_URL", "redis://a")]).unwrap();
        assert_eq!(both.redis_url, "redis://a");
    }

    #[test]
    fn parses_every_setting() {
        let s = from(&[
            ("REMQ_NAMESPACE", "remq:{x}"),
            ("REMQ_PARTITIONS", "12"),
            ("REMQ_START_FROM", "42"),
            ("REMQ_CHECKPOINT_EVERY", "10"),
            ("REMQ_CHECKPOINT_INTERVAL", "250ms"),
            ("REMQ_LEASE_TTL", "3s"),
            ("REMQ_SHUTDOWN_DEADLINE", "1m"),
            ("REMQ_BUFFER_SIZE", "64"),
            ("REMQ_REPLAY_BATCH", "50000"),
            ("REMQ_RETRY_ATTEMPTS", "3"),
            ("REMQ_HANDLER_TIMEOUT", "2s"),
            ("REMQ_CONCURRENCY", "8"),
            ("REMQ_RATE_LIMIT", "250"),
            ("REMQ_HANDLER_TIMEOUT_PERMANENT", "true"),
            ("REMQ_DEAD_LETTER_PREFIX", "dlq."),
            ("REMQ_METRICS_ADDR", "0.0.0.0:9090"),
            ("REMQ_MAX_MESSAGE_SIZE", "1024"),
            ("REMQ_PUBLISH_REPLICAS", "1"),
            ("REMQ_PUBLISH_REPLICAS_TIMEOUT", "250ms"),
        ])
        .unwrap();
        assert_eq!(s.namespace, "remq:{x}");
        assert_eq!(s.start_from, StartFrom::After(crate::MessageId::new(42)));
        assert_eq!(s.checkpoint_every, 10);
        assert_eq!(s.checkpoint_interval, Duration::from_millis(250));
        assert_eq!(s.lease_ttl, Duration::from_secs(3));
        assert_eq!(s.partitions, Some(12));
        assert_eq!(s.shutdown_deadline, Duration::from_secs(60));
        assert_eq!(s.buffer_size, 64);
        assert_eq!(s.replay_batch, 10_000, "capped at the protocol's limit");
        assert_eq!(s.retry.attempts(), 3);
        assert_eq!(s.handler_timeout, Some(Duration::from_secs(2)));
        assert_eq!(s.concurrency, 8);
        assert_eq!(s.rate_limit, Some(250));
        assert!(s.timeout_permanent);
        assert_eq!(s.dead_letter_prefix.as_deref(), Some("dlq."));
        assert_eq!(s.metrics_addr, Some("0.0.0.0:9090".parse().unwrap()));
        assert_eq!(s.max_message_size, 1024);
        assert_eq!((s.publish_replicas, s.publish_replicas_timeout), (1, Some(Duration::from_millis(250))));
        assert_eq!(from(&[("REMQ_DEAD_LETTERS", "off")]).unwrap().dead_letter_prefix, None);
        assert_eq!(from(&[("REMQ_START_FROM", "earliest")]).unwrap().start_from, StartFrom::Earliest);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (name, value) in [
            ("REMQ_START_FROM", "yesterday"),
            ("REMQ_METRICS_ADDR", "localhost"),
            ("REMQ_CHECKPOINT_EVERY", "0"),
            ("REMQ_PARTITIONS", "0"),
            ("REMQ_PARTITIONS", "1025"),
            ("REMQ_LEASE_TTL", "soon"),
            ("REMQ_SHUTDOWN_DEADLINE", "0s"),
            ("REMQ_BUFFER_SIZE", "-1"),
            ("REMQ_TLS_CA_CERT", "/nonexistent/ca.crt"),
            ("REMQ_DEAD_LETTERS", "maybe"),
            ("REMQ_RETRY_ATTEMPTS", "0"),
            ("REMQ_TLS_CLIENT_CERT", "/nonexistent/client.crt"),
            ("REMQ_PUBLISH_REPLICAS", "all"),
        ] {
            let err = from(&[(name, value)]).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let s = from(&[("REMQ_REDIS_URL", "redis://:hunter2@h:1")]).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
