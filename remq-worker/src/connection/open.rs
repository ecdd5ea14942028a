//! Opening a connection: URLs, credentials, TLS, timeouts and keepalive, and
//! errors that tell an unreachable server from refused credentials.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::{TcpSettings, socket2};
use redis::{ErrorKind, IntoConnectionInfo};

use super::Connection;
use super::subscriber::ClusterSubscriber;
use crate::error::{RedisAddr, redact_url};
use crate::{Error, Result};

/// How long one connection attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a reply may take before the call fails. Generous (the `redis`
/// crate's default of 500 ms would fail a publish that a busy server still
/// carries out, inviting a duplicate on retry); it only guards against a
/// connection that hangs without closing.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the cluster client tries a request again (after a redirect, a
/// refused connection or a `CLUSTERDOWN`) before it reports the error.
const CLUSTER_RETRIES: u32 = 12;
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

/// Connects and checks that Redis accepts commands. The URL may be a
/// comma-separated list of seed nodes of a Redis Cluster; a single URL may
/// name any node of one. Either way the server is asked (`INFO cluster`), and
/// a cluster gets the `redis` crate's cluster client.
///
/// # Errors
/// [`Error::InvalidUrl`], [`Error::Auth`], [`Error::Tls`], [`Error::NotRedis`]
/// or [`Error::Connect`], each saying what to check.
pub(crate) async fn open(options: &ConnectOptions) -> Result<(Connection, RedisAddr)> {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(3);
    // No Nagle delay: requests are small and latency matters.
    let tcp = TcpSettings::default().set_nodelay(true).set_keepalive(keepalive);
    let mut seeds = Vec::new();
    for url in options.url.split(',').map(str::trim).filter(|url| !url.is_empty()) {
        seeds.push(url.into_connection_info().map_err(invalid_url(url))?.set_tcp_settings(tcp.clone()));
    }
    if seeds.is_empty() {
        return Err(Error::InvalidUrl { url: redact_url(&options.url), reason: "no URL given".into() });
    }
    // The first seed that answers tells what kind of deployment this is.
    let mut failure = None;
    for info in &seeds {
        let addr = RedisAddr::from_info(info);
        let (requests, client) = match open_server(options, info.clone(), &addr).await {
            Ok(server) => server,
            Err(e) => {
                failure.get_or_insert(e);
                continue;
            }
        };
        match deployment(requests.clone(), &addr).await? {
            Deployment::Cluster => return open_cluster(options, seeds, addr).await,
            Deployment::Unknown(source) if seeds.len() > 1 => {
                let needed = "the command info (ACL SETUSER <user> +info), with which Remq tells a cluster from one server".into();
                return Err(Error::Permission { op: "connect", needed, source });
            }
            Deployment::Single | Deployment::Unknown(_) => {}
        }
        if seeds.len() > 1 {
            let reason = format!(
                "a list of URLs is for a Redis Cluster, but {addr} is a single server: give only its URL"
            );
            return Err(Error::InvalidUrl { url: redact_url(&options.url), reason });
        }
        return Ok((Connection::Standalone { requests, client: Arc::new(client) }, addr));
    }
    Err(failure.expect("at least one seed was tried"))
}

/// Maps the `redis` crate's refusal of `url` (printed without its password).
fn invalid_url(url: &str) -> impl Fn(redis::RedisError) -> Error + '_ {
    move |e| Error::InvalidUrl { url: redact_url(url), reason: e.to_string() }
}

/// One server's self-healing connection (checked with a `PING`) and its client.
async fn open_server(
    options: &ConnectOptions,
    info: redis::ConnectionInfo,
    addr: &RedisAddr,
) -> Result<(ConnectionManager, redis::Client)> {
    let redis = client(options, info).map_err(invalid_url(&options.url))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2));
    let connect_error = |source| connect_error(addr, source);
    let mut conn = ConnectionManager::new_with_config(redis.clone(), config).await.map_err(connect_error)?;
    // A server that needs a password accepts the connection and refuses the
    // first command; find out now rather than at the first publish.
    redis::cmd("PING").query_async::<()>(&mut conn).await.map_err(connect_error)?;
    Ok((conn, redis))
}

/// What `INFO cluster` says the server is.
enum Deployment {
    /// One server.
    Single,
    /// A node of a Redis Cluster.
    Cluster,
    /// The user may not run `INFO` (the refusal).
    Unknown(redis::RedisError),
}

/// Whether the server runs in cluster mode (`INFO cluster`). A user whom an
/// ACL denies `INFO` is taken to be on one server when given one URL (the
/// ACL of `docs/protocol.md` for one server leaves `INFO` out; `docs/cluster.md`
/// adds it for a cluster).
async fn deployment(mut conn: ConnectionManager, addr: &RedisAddr) -> Result<Deployment> {
    match redis::cmd("INFO").arg("cluster").query_async::<String>(&mut conn).await {
        Ok(info) if info.lines().any(|line| line.trim() == "cluster_enabled:1") => Ok(Deployment::Cluster),
        Ok(_) => Ok(Deployment::Single),
        Err(e) if e.code() == Some("NOPERM") => Ok(Deployment::Unknown(e)),
        Err(e) => Err(connect_error(addr, e)),
    }
}

/// The cluster client over every seed, checked with a `PING`.
async fn open_cluster(
    options: &ConnectOptions,
    seeds: Vec<redis::ConnectionInfo>,
    addr: RedisAddr,
) -> Result<(Connection, RedisAddr)> {
    let cluster = cluster_client(options, seeds.clone(), redis::ProtocolVersion::RESP2)
        .map_err(invalid_url(&options.url))?;
    let connect_error = |source| connect_error(&addr, source);
    let mut requests = cluster.get_async_connection().await.map_err(connect_error)?;
    redis::cmd("PING").query_async::<()>(&mut requests).await.map_err(connect_error)?;
    let subscriptions = ClusterSubscriber::new(requests.clone(), seeds, options.clone());
    Ok((Connection::Cluster { requests, subscriptions: Arc::new(subscriptions) }, addr))
}

/// A cluster client over `nodes`, with the timeouts and certificates of
/// `options`, speaking `protocol` (RESP3 for pushes through a push sender).
pub(super) fn cluster_client(
    options: &ConnectOptions,
    nodes: Vec<redis::ConnectionInfo>,
    protocol: redis::ProtocolVersion,
) -> redis::RedisResult<redis::cluster::ClusterClient> {
    let builder = redis::cluster::ClusterClientBuilder::new(nodes)
        .connection_timeout(CONNECT_TIMEOUT)
        .response_timeout(RESPONSE_TIMEOUT)
        // Waits of 0.1 s growing to 3 s, about 10–18 s in all: enough to
        // ride out a failover with a short node timeout, and short of the
        // response timeout, so a slot left without a master ends in the
        // server's CLUSTERDOWN rather than in a timeout that names nothing.
        .retries(CLUSTER_RETRIES)
        .min_retry_wait(100)
        .max_retry_wait(3_000)
        .use_protocol(protocol);
    cluster_certificates(builder, options).build()
}

/// The cluster client builder with the certificates of `options`.
#[cfg(feature = "tls")]
fn cluster_certificates(
    builder: redis::cluster::ClusterClientBuilder,
    options: &ConnectOptions,
) -> redis::cluster::ClusterClientBuilder {
    if options.root_cert.is_none() && options.client_cert.is_none() {
        return builder;
    }
    builder.certs(certificates(options))
}

/// Without TLS support there are no certificates to add (`client` refuses them).
#[cfg(not(feature = "tls"))]
fn cluster_certificates(
    builder: redis::cluster::ClusterClientBuilder,
    _options: &ConnectOptions,
) -> redis::cluster::ClusterClientBuilder {
    builder
}

/// The certificates of `options`, as the `redis` crate takes them.
#[cfg(feature = "tls")]
fn certificates(options: &ConnectOptions) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: options
            .client_cert
            .clone()
            .map(|(client_cert, client_key)| redis::ClientTlsConfig { client_cert, client_key }),
        root_cert: options.root_cert.clone(),
    }
}

/// The `redis` client for `info`, with the certificates of `options`.
#[cfg(feature = "tls")]
fn client(options: &ConnectOptions, info: redis::ConnectionInfo) -> redis::RedisResult<redis::Client> {
    if options.root_cert.is_none() && options.client_cert.is_none() {
        return redis::Client::open(info);
    }
    redis::Client::build_with_tls(info, certificates(options))
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
