//! [`ClientBuilder`]: a client with more options than a URL.

use std::fmt;
use std::time::Duration;

use crate::connection::{self, ConnectOptions, ReplicaAcks, Store};
use crate::{Client, Namespace, Result};

/// How long a publish waits for replica acknowledgements unless told otherwise.
const DEFAULT_REPLICAS_TIMEOUT: Duration = Duration::from_secs(1);

/// Options for a [`Client`] beyond its URL: the namespace and, for `rediss://`
/// URLs, the certificates.
///
/// ```no_run
/// # async fn demo() -> remq::Result<()> {
/// let ca = std::fs::read("ca.crt").unwrap();
/// let client = remq::Client::builder("rediss://redis.internal:6380")
///     .namespace("remq:{orders}")
///     .tls_root_cert(ca)
///     .connect()
///     .await?;
/// # let _ = client; Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    /// The URL and certificates.
    connect: ConnectOptions,
    /// The namespace base; `remq` when unset.
    namespace: Option<String>,
    /// The largest message `publish` sends, in bytes.
    max_message_size: usize,
    /// Replicas every publish waits for (`WAIT`); 0 for none.
    replicas: u32,
    /// How long a publish waits for them.
    replicas_timeout: Duration,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("connect", &self.connect)
            .field("namespace", &self.namespace)
            .field("max_message_size", &self.max_message_size)
            .field("replicas", &self.replicas)
            .field("replicas_timeout", &self.replicas_timeout)
            .finish()
    }
}

impl ClientBuilder {
    /// A builder for the Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            connect: ConnectOptions { url: url.into(), root_cert: None, client_cert: None },
            namespace: None,
            max_message_size: crate::protocol::DEFAULT_MAX_MESSAGE_SIZE,
            replicas: 0,
            replicas_timeout: DEFAULT_REPLICAS_TIMEOUT,
        }
    }

    /// Acknowledge a publish only once `n` replicas of the master have it:
    /// after the publish script, the client sends `WAIT n <timeout>` on the
    /// same connection, and reports
    /// [`Error::NotReplicated`](crate::Error::NotReplicated) (retryable, with
    /// the ids) when fewer confirmed within the timeout (1 s unless
    /// [`replicas_timeout`](Self::replicas_timeout) says otherwise). An
    /// acknowledged message then survives the death of its master as long as
    /// one of those replicas takes over. `0` (the default) waits for nothing.
    /// It costs a round trip to a replica on every publish (see
    /// BENCHMARKS.md).
    pub fn replicas(mut self, n: u32) -> Self {
        self.replicas = n;
        self
    }

    /// How long a publish waits for the replicas [`replicas`](Self::replicas)
    /// asks for (default 1 s; at least 1 ms).
    pub fn replicas_timeout(mut self, timeout: Duration) -> Self {
        self.replicas_timeout = timeout;
        self
    }

    /// Refuse to publish messages larger than `bytes` (default 4 MiB), with
    /// [`Error::MessageTooLarge`](crate::Error::MessageTooLarge) before anything is sent. The publish scripts
    /// refuse more than [`MAX_MESSAGE_SIZE`](crate::MAX_MESSAGE_SIZE) (8 MiB)
    /// whatever a client allows, so a larger value here changes nothing.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes.min(crate::protocol::MAX_MESSAGE_SIZE);
        self
    }

    /// Work in the namespace with this base, e.g. `remq:{orders}` (see [`Namespace`]).
    pub fn namespace(mut self, base: impl Into<String>) -> Self {
        self.namespace = Some(base.into());
        self
    }

    /// Trust these PEM root certificates for `rediss://` instead of the system's
    /// (e.g. a private CA).
    pub fn tls_root_cert(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.connect.root_cert = Some(pem.into());
        self
    }

    /// Present this PEM certificate and private key to servers that verify
    /// clients (`tls-auth-clients yes`).
    pub fn tls_client_cert(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.connect.client_cert = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Connects and checks that Redis accepts commands.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`](crate::Error::InvalidUrl),
    /// [`Error::InvalidNamespace`](crate::Error::InvalidNamespace),
    /// [`Error::Auth`](crate::Error::Auth), [`Error::Tls`](crate::Error::Tls),
    /// [`Error::NotRedis`](crate::Error::NotRedis) or
    /// [`Error::Connect`](crate::Error::Connect), each saying what to check.
    pub async fn connect(self) -> Result<Client> {
        let namespace = match &self.namespace {
            Some(base) => Namespace::new(base.clone())?,
            None => Namespace::default(),
        };
        let (connection, addr) = connection::open(&self.connect).await?;
        if connection.is_cluster() {
            namespace.check_for_cluster()?;
        }
        let acks = (self.replicas > 0)
            .then_some(ReplicaAcks { replicas: self.replicas, timeout: self.replicas_timeout });
        Ok(Client::from_parts(Store::new(connection, namespace, addr), self.max_message_size, acks))
    }
}
