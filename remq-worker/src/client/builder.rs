//! [`ClientBuilder`]: a client with more options than a URL.

use std::fmt;

use crate::connection::{self, ConnectOptions, Store};
use crate::{Client, Namespace, Result};

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
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("connect", &self.connect)
            .field("namespace", &self.namespace)
            .field("max_message_size", &self.max_message_size)
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
        }
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
        Ok(Client::from_parts(Store::new(connection, namespace, addr), self.max_message_size))
    }
}
