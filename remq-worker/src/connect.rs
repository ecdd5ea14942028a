//! Connecting to Redis: URLs, credentials, TLS and timeouts.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::{TcpSettings, socket2};
use redis::{ErrorKind, IntoConnectionInfo};

use crate::error::{RedisAddr, redact_url};
use crate::{Client, Error, Namespace, Result};

/// How long one connection attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reply may take before the call fails. Generous (the `redis`
/// crate's default of 500 ms would fail a publish that a busy server still
/// carries out, inviting a duplicate on retry); it only guards against a
/// connection that hangs without closing.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP keepalive: a connection whose peer vanished without a reset (a NAT or load
/// balancer dropping idle flows, a host lost in a failover) is detected within
/// about `KEEPALIVE_IDLE + 3 × KEEPALIVE_INTERVAL`, which matters most for
/// pub/sub connections that otherwise only ever wait.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// Time between keepalive probes once the connection is idle.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

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
    /// The Redis URL (may hold a password: never printed as is).
    url: String,
    /// The namespace base; `remq` when unset.
    namespace: Option<String>,
    /// PEM root certificate(s) to trust instead of the system's.
    root_cert: Option<Vec<u8>>,
    /// PEM client certificate and key, for servers that verify clients.
    client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// The largest message `publish` sends, in bytes.
    max_message_size: usize,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &redact_url(&self.url))
            .field("namespace", &self.namespace)
            .field("root_cert", &self.root_cert.is_some())
            .field("client_cert", &self.client_cert.is_some())
            .field("max_message_size", &self.max_message_size)
            .finish()
    }
}

impl ClientBuilder {
    /// A builder for the Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            url: url.into(),
            namespace: None,
            root_cert: None,
            client_cert: None,
            max_message_size: crate::protocol::DEFAULT_MAX_MESSAGE_SIZE,
        }
    }

    /// Refuse to publish messages larger than `bytes` (default 4 MiB), with
    /// [`Error::MessageTooLarge`] before anything is sent. The publish scripts
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
        self.root_cert = Some(pem.into());
        self
    }

    /// Present this PEM certificate and private key to servers that verify
    /// clients (`tls-auth-clients yes`).
    pub fn tls_client_cert(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.client_cert = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Connects and checks that Redis accepts commands.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`], [`Error::InvalidNamespace`], [`Error::Auth`],
    /// [`Error::Tls`], [`Error::NotRedis`] or [`Error::Connect`], each saying
    /// what to check.
    pub async fn connect(self) -> Result<Client> {
        let invalid_url =
            |e: redis::RedisError| Error::InvalidUrl { url: redact_url(&self.url), reason: e.to_string() };
        let namespace = match &self.namespace {
            Some(base) => Namespace::new(base.clone())?,
            None => Namespace::default(),
        };
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(3);
        // No Nagle delay: requests are small and latency matters.
        let tcp = TcpSettings::default().set_nodelay(true).set_keepalive(keepalive);
        let info = self.url.as_str().into_connection_info().map_err(invalid_url)?.set_tcp_settings(tcp);
        let addr = RedisAddr::from_info(&info);
        let redis = self.open(info).map_err(invalid_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let connect_error = |source| connect_error(&addr, source);
        let mut conn =
            ConnectionManager::new_with_config(redis.clone(), config).await.map_err(connect_error)?;
        // A server that needs a password accepts the connection and refuses the
        // first command; find out now rather than at the first publish.
        redis::cmd("PING").query_async::<()>(&mut conn).await.map_err(connect_error)?;
        Ok(Client::from_parts(conn, redis, namespace, addr, self.max_message_size))
    }

    #[cfg(feature = "tls")]
    fn open(&self, info: redis::ConnectionInfo) -> redis::RedisResult<redis::Client> {
        if self.root_cert.is_none() && self.client_cert.is_none() {
            return redis::Client::open(info);
        }
        let certificates = redis::TlsCertificates {
            client_tls: self
                .client_cert
                .clone()
                .map(|(client_cert, client_key)| redis::ClientTlsConfig { client_cert, client_key }),
            root_cert: self.root_cert.clone(),
        };
        redis::Client::build_with_tls(info, certificates)
    }

    #[cfg(not(feature = "tls"))]
    fn open(&self, info: redis::ConnectionInfo) -> redis::RedisResult<redis::Client> {
        if self.root_cert.is_some() || self.client_cert.is_some() {
            return Err((ErrorKind::InvalidClientConfig, "TLS options need the `tls` feature of remq").into());
        }
        redis::Client::open(info)
    }
}

/// Tells refused credentials, failed TLS handshakes and servers that are not
/// Redis apart from an unreachable server, so the message says what to check.
fn connect_error(addr: &RedisAddr, source: redis::RedisError) -> Error {
    let text = source.to_string();
    if source.kind() == ErrorKind::Parse {
        Error::NotRedis { addr: addr.clone(), source }
    } else if source.kind() == ErrorKind::AuthenticationFailed
        || matches!(source.code(), Some("NOAUTH" | "WRONGPASS"))
    {
        Error::Auth { addr: addr.clone(), source }
    } else if text.contains("certificate") || text.contains("TLS") || text.contains("tls") {
        Error::Tls { addr: addr.clone(), source }
    } else {
        Error::Connect { addr: addr.clone(), source }
    }
}
