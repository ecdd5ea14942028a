//! Opening a connection: URLs, credentials, TLS, timeouts and keepalive, and
//! errors that tell an unreachable server from refused credentials.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::{TcpSettings, socket2};
use redis::{ErrorKind, IntoConnectionInfo};

use super::Connection;
use crate::error::{RedisAddr, redact_url};
use crate::{Error, Result};

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

/// Where to connect and with which certificates.
#[derive(Clone)]
pub(crate) struct ConnectOptions {
    /// The Redis URL (may hold a password: never printed as is).
    pub(crate) url: String,
    /// PEM root certificate(s) to trust instead of the system's.
    pub(crate) root_cert: Option<Vec<u8>>,
    /// PEM client certificate and key, for servers that verify clients.
    pub(crate) client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &redact_url(&self.url))
            .field("root_cert", &self.root_cert.is_some())
            .field("client_cert", &self.client_cert.is_some())
            .finish()
    }
}

/// Connects and checks that Redis accepts commands.
///
/// # Errors
/// [`Error::InvalidUrl`], [`Error::Auth`], [`Error::Tls`], [`Error::NotRedis`]
/// or [`Error::Connect`], each saying what to check.
pub(crate) async fn open(options: &ConnectOptions) -> Result<(Connection, RedisAddr)> {
    let invalid_url =
        |e: redis::RedisError| Error::InvalidUrl { url: redact_url(&options.url), reason: e.to_string() };
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(3);
    // No Nagle delay: requests are small and latency matters.
    let tcp = TcpSettings::default().set_nodelay(true).set_keepalive(keepalive);
    let info = options.url.as_str().into_connection_info().map_err(invalid_url)?.set_tcp_settings(tcp);
    let addr = RedisAddr::from_info(&info);
    let redis = client(options, info).map_err(invalid_url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    let connect_error = |source| connect_error(&addr, source);
    let mut conn = ConnectionManager::new_with_config(redis.clone(), config).await.map_err(connect_error)?;
    // A server that needs a password accepts the connection and refuses the
    // first command; find out now rather than at the first publish.
    redis::cmd("PING").query_async::<()>(&mut conn).await.map_err(connect_error)?;
    Ok((Connection::Standalone { requests: conn, client: Arc::new(redis) }, addr))
}

/// The `redis` client for `info`, with the certificates of `options`.
#[cfg(feature = "tls")]
fn client(options: &ConnectOptions, info: redis::ConnectionInfo) -> redis::RedisResult<redis::Client> {
    if options.root_cert.is_none() && options.client_cert.is_none() {
        return redis::Client::open(info);
    }
    let certificates = redis::TlsCertificates {
        client_tls: options
            .client_cert
            .clone()
            .map(|(client_cert, client_key)| redis::ClientTlsConfig { client_cert, client_key }),
        root_cert: options.root_cert.clone(),
    };
    redis::Client::build_with_tls(info, certificates)
}

/// The `redis` client for `info`; certificates need the `tls` feature.
#[cfg(not(feature = "tls"))]
fn client(options: &ConnectOptions, info: redis::ConnectionInfo) -> redis::RedisResult<redis::Client> {
    if options.root_cert.is_some() || options.client_cert.is_some() {
        return Err((ErrorKind::InvalidClientConfig, "TLS options need the `tls` feature of remq").into());
    }
    redis::Client::open(info)
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
