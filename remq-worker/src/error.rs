//! The one error type of the crate.

use std::fmt;

/// A `Result` whose error is [`remq::Error`](Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Remq, named by what failed.
///
/// Only failures: why the runtime stops a consumer without a failure
/// (shutdown, a lost lease, a counter that went backwards, a message given up
/// on) is an internal outcome, never an `Error`.
///
/// Messages say what to do about the failure. None of them, nor the `Debug`
/// output, ever contains a password from a Redis URL: addresses are shown as
/// [`RedisAddr`], which keeps only the host, port and database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Redis URL could not be parsed.
    #[error("invalid Redis URL {url}: {reason}; expected redis://[user:password@]host[:port][/db]")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What the parser said.
        reason: String,
    },

    /// No connection could be made to Redis.
    #[error(
        "could not connect to Redis at {addr}: {source}; check that redis-server is running there and that the URL (REMQ_REDIS_URL or REDIS_URL) is right"
    )]
    Connect {
        /// Where we tried to connect.
        addr: RedisAddr,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },

    /// Redis refused the credentials.
    #[error("Redis at {addr} refused the credentials: {source}; check the user name and password in the URL")]
    Auth {
        /// Where we tried to connect.
        addr: RedisAddr,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },

    /// The TLS handshake failed (e.g. the server's certificate is not trusted).
    #[error(
        "TLS handshake with Redis at {addr} failed: {source}; the server's certificate was not trusted or does not match the host name: check the CA certificate (REMQ_TLS_CA_CERT / ClientBuilder::tls_root_cert) and the host in the URL"
    )]
    Tls {
        /// Where we tried to connect.
        addr: RedisAddr,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },

    /// Something answered at the address, but not in the Redis protocol (a web
    /// server, a database on the wrong port …). Permanent: the URL is wrong.
    #[error(
        "the server at {addr} does not speak the Redis protocol (its first reply did not parse); something other than Redis listens there: check the host and port in the URL"
    )]
    NotRedis {
        /// Where we connected.
        addr: RedisAddr,
        /// The parse error of its first reply (left out of the message: it
        /// quotes the reply, line breaks and all).
        #[source]
        source: redis::RedisError,
    },

    /// A Redis command failed (the connection dropped, a timeout, or an error
    /// reply from a script; a missing ACL permission is [`Error::Permission`]).
    #[error("{op} failed: {source}")]
    Redis {
        /// The operation that failed, e.g. `publish`.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: redis::RedisError,
    },

    /// A consumer's cursor cannot be moved while a worker owns it
    /// ([`Client::seek`](crate::Client::seek)). Permanent for this call; it
    /// works once the consumer's workers stop (or its lease lapses).
    #[error(
        "consumer {consumer} is owned by a running worker: its cursor moves only while no worker owns it, \
         so that no owner overwrites the move; stop its workers (or wait for the lease to lapse) and try again"
    )]
    ConsumerOwned {
        /// The consumer's durable name.
        consumer: String,
    },

    /// A partitioned namespace was misused: a partition that does not exist,
    /// a count other than the stored one, or a namespace that cannot be
    /// partitioned. Permanent; the reason says what to do.
    #[error("partitions of namespace {namespace}: {reason}")]
    Partitions {
        /// The namespace's base.
        namespace: String,
        /// What is wrong.
        reason: String,
    },

    /// A Redis Cluster could not serve the request: a hash slot has no master
    /// that answers (the nodes replied `CLUSTERDOWN`, after the cluster
    /// client's retries). Retryable: the cluster may come back.
    #[error(
        "{op} failed: the Redis Cluster is down ({source}); a master and its replicas are unreachable, or the nodes cannot reach each other: check it with `redis-cli --cluster check <host:port>`, and retry once every slot is served again"
    )]
    ClusterDown {
        /// The operation that failed, e.g. `publish`.
        op: &'static str,
        /// The server's `CLUSTERDOWN` reply.
        #[source]
        source: redis::RedisError,
    },

    /// Redis refused a command because the user's ACL lacks a permission; the
    /// message says which one to grant. Permanent: waiting does not add it.
    #[error("{op} failed: the Redis user lacks a permission ({source}); grant it {needed}")]
    Permission {
        /// The operation that failed, e.g. `publish` or `subscribe`.
        op: &'static str,
        /// What to grant, with the `ACL SETUSER` rule that does it.
        needed: String,
        /// The underlying error (`NOPERM`, or a script's ACL failure).
        #[source]
        source: redis::RedisError,
    },

    /// A channel name breaks the protocol's rules.
    #[error("invalid channel {channel:?}: {reason}")]
    InvalidChannel {
        /// The rejected name.
        channel: String,
        /// The rule it broke.
        reason: &'static str,
    },

    /// A subscription pattern is not usable.
    #[error("invalid pattern {pattern:?}: {reason}")]
    InvalidPattern {
        /// The rejected pattern.
        pattern: String,
        /// The rule it broke.
        reason: &'static str,
    },

    /// A namespace base is not usable.
    #[error("invalid namespace {namespace:?}: {reason}")]
    InvalidNamespace {
        /// The rejected base.
        namespace: String,
        /// The rule it broke.
        reason: &'static str,
    },

    /// A message is larger than the client's limit
    /// ([`ClientBuilder::max_message_size`](crate::ClientBuilder::max_message_size)).
    #[error(
        "message too large: {size} bytes, the limit is {max} (ClientBuilder::max_message_size, REMQ_MAX_MESSAGE_SIZE; the scripts allow at most 8 MiB); store big payloads elsewhere and publish a reference"
    )]
    MessageTooLarge {
        /// The message's size in bytes.
        size: usize,
        /// The limit in bytes.
        max: usize,
    },

    /// A publish was stored on the master, but fewer replicas than
    /// [`ClientBuilder::replicas`](crate::ClientBuilder::replicas) asked for
    /// confirmed it in time. Retryable: the message may be lost if the master
    /// fails now, and publishing it again may store it twice.
    #[error(
        "message(s) {}..={} stored, but only {acked} of {wanted} replica(s) confirmed within {timeout:?} (ClientBuilder::replicas, REMQ_PUBLISH_REPLICAS): a failover of the master now could lose them; publishing again may store them twice",
        ids.start(), ids.end()
    )]
    NotReplicated {
        /// The ids the publish got.
        ids: std::ops::RangeInclusive<crate::MessageId>,
        /// How many replicas confirmed.
        acked: u32,
        /// How many were asked for.
        wanted: u32,
        /// How long the master waited.
        timeout: std::time::Duration,
    },

    /// A batch publish was given no messages.
    #[error("publish_batch needs at least one message")]
    EmptyBatch,

    /// A frame from Redis is not `<channel>@<id>\n<body>`; something other than
    /// Remq wrote to a Remq key or channel.
    #[error(
        "malformed frame ({reason}): {preview:?}; something other than Remq wrote to a Remq key or channel"
    )]
    MalformedFrame {
        /// What is wrong with it.
        reason: &'static str,
        /// The start of the frame, lossily decoded.
        preview: String,
    },

    /// A handler failed. `permanent` errors are not worth retrying.
    #[error("handler failed: {source}")]
    Handler {
        /// The handler's error.
        source: BoxError,
        /// Whether retrying the same message cannot help.
        permanent: bool,
    },

    /// A handler argument could not be built from the message (a permanent failure).
    #[error("cannot extract {extractor} from the message: {reason}")]
    Extract {
        /// The extractor, e.g. `String`.
        extractor: &'static str,
        /// Why.
        reason: String,
    },

    /// The body did not deserialize into the handler's `Json<T>` type (a permanent failure).
    #[error("the body is not valid JSON for {type_name}: {source}")]
    Deserialize {
        /// The target type.
        type_name: &'static str,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },

    /// A handler takes `State<T>` but no `T` was registered.
    #[error("no state of type {type_name} was registered: call Worker::state(value) with it before run()")]
    MissingState {
        /// The missing type.
        type_name: &'static str,
    },

    /// A configuration value is not valid.
    #[error("invalid configuration {name}={value:?}: {reason}")]
    Config {
        /// The environment variable or setting.
        name: &'static str,
        /// The rejected value.
        value: String,
        /// What a valid value looks like.
        reason: String,
    },

    /// Two handlers share one durable consumer name.
    #[error(
        "two handlers use the consumer name {name:?} (patterns {first:?} and {second:?}); give one of them another `name = \"...\"`"
    )]
    DuplicateConsumer {
        /// The shared name.
        name: String,
        /// The first handler's pattern.
        first: String,
        /// The second handler's pattern.
        second: String,
    },

    /// The worker has no handlers to run.
    #[error(
        "the worker has no handlers: mark functions with #[remq::handler(\"pattern\")] or add them with Worker::handler"
    )]
    NoHandlers,

    /// A handler attempt ran past its deadline (the attempt was cancelled).
    #[error("the handler did not finish within its timeout")]
    HandlerTimeout {
        /// Whether the handler is configured to treat a timeout as permanent
        /// (dead-letter at once) rather than retry it.
        permanent: bool,
    },

    /// An operation did not finish in time.
    #[error("{op} timed out after {after:?}")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// How long it was given.
        after: std::time::Duration,
    },
}

/// A boxed error from application code.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Error {
    /// A handler error that retrying cannot fix (e.g. a message the business
    /// logic rejects): the worker does not retry it, logs it and moves on.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Error::Handler { source: error.into(), permanent: true }
    }

    /// A handler error that may go away when the message is tried again.
    pub fn retryable(error: impl Into<BoxError>) -> Self {
        Error::Handler { source: error.into(), permanent: false }
    }

    /// True when trying again later may succeed: the connection failed or dropped,
    /// Redis timed out, a cluster was down, or a handler failed with a retryable error. Invalid input,
    /// refused credentials, missing ACL permissions, a server that is not Redis,
    /// malformed data and bodies that do not deserialize are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. }
            | Error::Timeout { .. }
            | Error::NotReplicated { .. }
            | Error::ClusterDown { .. } => true,
            Error::HandlerTimeout { permanent } => !permanent,
            Error::Handler { permanent, .. } => !permanent,
            Error::Redis { source, .. } => !is_permanent_redis_error(source),
            _ => false,
        }
    }

    /// The opposite of [`is_retryable`](Self::is_retryable).
    pub fn is_permanent(&self) -> bool {
        !self.is_retryable()
    }

    /// Wraps the error of the Redis command behind operation `op`.
    /// A cluster that is down becomes [`Error::ClusterDown`].
    pub(crate) fn redis(op: &'static str, source: redis::RedisError) -> Self {
        if source.code() == Some("CLUSTERDOWN") {
            return Error::ClusterDown { op, source };
        }
        Error::Redis { op, source }
    }

    /// Wraps the error of a command of operation `op` on the keys and channels
    /// of the namespace `base`: a missing ACL permission (a `NOPERM` reply, or
    /// a script's ACL failure) becomes [`Error::Permission`] naming the
    /// command, keys or channels to grant.
    pub(crate) fn redis_in(op: &'static str, base: &str, source: redis::RedisError) -> Self {
        let detail = source.to_string();
        // Inside a script, Redis 7 reports a missing permission without the
        // NOPERM code: "The user executing the script can't publish to the channel …".
        if source.code() != Some("NOPERM") && !detail.contains("user executing the script can't") {
            return Error::redis(op, source);
        }
        // Redis 7 names a refused command in quotes: "no permissions to run the 'evalsha' command".
        let command =
            detail.split_once("run the '").and_then(|(_, rest)| rest.split_once('\'')).map(|(c, _)| c);
        let needed = if let Some(command) = command {
            format!(
                "the command {command} (ACL SETUSER <user> +{command}; the ACL section of docs/protocol.md lists every command Remq sends)"
            )
        } else if detail.contains("channel") {
            format!("the channels {base}:* (ACL SETUSER <user> &{base}:*)")
        } else if detail.contains("key") {
            format!("the keys {base}:* (ACL SETUSER <user> ~{base}:*)")
        } else {
            format!(
                "the rules of the ACL section of docs/protocol.md (~{base}:* &{base}:* and the commands it lists)"
            )
        };
        Error::Permission { op, needed, source }
    }

    /// Wraps the error of `PSUBSCRIBE pattern` (the pattern as sent, namespace
    /// included): a `NOPERM` reply becomes [`Error::Permission`] naming the
    /// pattern, which the user's channel rules must match literally.
    pub(crate) fn subscribe(pattern: &str, source: redis::RedisError) -> Self {
        if source.code() != Some("NOPERM") {
            return Error::redis("subscribe", source);
        }
        let needed = format!(
            "the channel pattern {pattern} (ACL SETUSER <user> &{pattern}; Redis matches a PSUBSCRIBE pattern literally against the user's channel rules)"
        );
        Error::Permission { op: "subscribe", needed, source }
    }
}

/// Redis errors that the same call cannot get past by waiting: missing
/// permissions or credentials, wrong key types, fencing, and the scripts' own
/// validation errors (`ERR remq: …`). Everything else (I/O, timeouts, `LOADING`,
/// `BUSY`, `READONLY` during a failover …) may pass.
fn is_permanent_redis_error(error: &redis::RedisError) -> bool {
    matches!(
        error.kind(),
        redis::ErrorKind::AuthenticationFailed
            | redis::ErrorKind::Parse
            | redis::ErrorKind::UnexpectedReturnType
            | redis::ErrorKind::InvalidClientConfig
    ) || matches!(error.code(), Some("NOPERM" | "NOAUTH" | "WRONGPASS" | "WRONGTYPE" | "FENCED"))
        || error.detail().is_some_and(|d| d.starts_with("remq:"))
}

/// Where a Redis server is: host, port and database, never the credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisAddr {
    /// `host:port`, or a socket path.
    addr: String,
    /// The database number.
    db: i64,
    /// Whether the connection uses TLS (`rediss://`).
    tls: bool,
}

impl RedisAddr {
    pub(crate) fn from_info(info: &redis::ConnectionInfo) -> Self {
        let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
        RedisAddr { addr: info.addr().to_string(), db: info.redis_settings().db(), tls }
    }
}

impl fmt::Display for RedisAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        write!(f, "{scheme}://{}/{}", self.addr, self.db)
    }
}

impl fmt::Debug for RedisAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Replaces the password (and user) in a URL with `***`, for error messages:
/// the user info of `redis://user:password@host`, and the `user` and `pass`
/// query parameters of `unix:///path?pass=…`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains(['@', '?']) { "***".to_owned() } else { url.to_owned() };
    };
    // Everything up to the last `@` is credentials, even when a password holds
    // `/` or `@` characters that a URL should have escaped.
    let rest = match rest.rfind('@') {
        Some(at) => format!("***@{}", &rest[at + 1..]),
        None => rest.to_owned(),
    };
    let Some((location, query)) = rest.split_once('?') else {
        return format!("{scheme}://{rest}");
    };
    let query: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if ["pass", "user", "password", "username"].contains(&name) => {
                format!("{name}=***")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!("{scheme}://{location}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact_url("redis://user:s3cret@host:6379/0"), "redis://***@host:6379/0");
        assert_eq!(redact_url("redis://:s3cret@host"), "redis://***@host");
        assert_eq!(redact_url("redis://:pa/ss@host:6379"), "redis://***@host:6379");
        assert_eq!(redact_url("redis://user:p@ss/w0rd@host/1"), "redis://***@host/1");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_url("user:s3cret@host"), "***");
        assert_eq!(redact_url("host:6379"), "host:6379");
        assert_eq!(redact_url("host?pass=s3cret"), "***");
        assert_eq!(
            redact_url("unix:///run/redis.sock?db=1&pass=s3cret&user=me"),
            "unix:///run/redis.sock?db=1&pass=***&user=***"
        );
        assert_eq!(redact_url("redis+unix:///r.sock?pass=s3cret"), "redis+unix:///r.sock?pass=***");
        assert_eq!(
            redact_url("redis://:s3cret@host:6379/0?protocol=resp3"),
            "redis://***@host:6379/0?protocol=resp3"
        );
        assert_eq!(redact_url("redis://host:6379/0?pass=s3cret"), "redis://host:6379/0?pass=***");
    }
}
