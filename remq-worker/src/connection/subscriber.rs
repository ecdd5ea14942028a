//! Live pushes as one stream of frames, whatever the deployment: `PSUBSCRIBE`
//! on one server; on a Redis Cluster, `SSUBSCRIBE` to the namespace's shard
//! channel with the glob matched here (or `PSUBSCRIBE`, when the namespace
//! pushes the classic way).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{self, BoxStream};
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionAddr, ConnectionInfo, PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::open::{ConnectOptions, cluster_client};
use crate::protocol::Glob;

/// The payloads of live pushes, in the order the server sent them; the stream
/// ends when the subscription does (a dropped connection, or on a cluster a
/// `sunsubscribe` the server sent because the slot moved or its master failed
/// over).
pub(crate) type Pushes = BoxStream<'static, Bytes>;

/// Opens pub/sub connections.
#[derive(Clone)]
pub(crate) enum Subscriber {
    /// One server: a dedicated connection per subscription.
    Standalone(Arc<redis::Client>),
    /// A cluster: a dedicated cluster connection per subscription.
    Cluster(Arc<ClusterSubscriber>),
}

/// Opens pub/sub connections to a cluster: each a cluster connection of its
/// own, speaking RESP3 (pushes arrive through a push sender), seeded with the
/// nodes the cluster has now (the seeds of the URL may have failed since).
pub(crate) struct ClusterSubscriber {
    /// The shared request connection, which follows the cluster's changes.
    requests: ClusterConnection,
    /// The seed nodes of the URL, as a template for the nodes found later
    /// (credentials, TLS) and as a fallback.
    seeds: Vec<ConnectionInfo>,
    /// The certificates.
    options: ConnectOptions,
}

impl ClusterSubscriber {
    /// A subscriber that learns the nodes through `requests`.
    pub(super) fn new(
        requests: ClusterConnection,
        seeds: Vec<ConnectionInfo>,
        options: ConnectOptions,
    ) -> Self {
        ClusterSubscriber { requests, seeds, options }
    }

    /// A new cluster connection and the receiver of its pushes.
    async fn connect(&self) -> redis::RedisResult<(ClusterConnection, mpsc::UnboundedReceiver<PushInfo>)> {
        let mut nodes = self.current_nodes().await;
        nodes.extend(self.seeds.iter().cloned());
        let client = cluster_client(&self.options, nodes, redis::ProtocolVersion::RESP3)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let config = redis::cluster::ClusterConfig::new().set_push_sender(tx);
        Ok((client.get_async_connection_with_config(config).await?, rx))
    }

    /// The nodes `CLUSTER SLOTS` names now, each once, with the first seed's
    /// settings; none when the request fails.
    async fn current_nodes(&self) -> Vec<ConnectionInfo> {
        let slots: Vec<Value> =
            match redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut self.requests.clone()).await {
                Ok(slots) => slots,
                Err(_) => return Vec::new(),
            };
        let template = &self.seeds[0];
        let mut nodes = Vec::new();
        for range in slots {
            let Value::Array(range) = range else { continue };
            for node in range.into_iter().skip(2) {
                let Value::Array(node) = node else { continue };
                let (Some(Value::BulkString(host)), Some(Value::Int(port))) = (node.first(), node.get(1))
                else {
                    continue;
                };
                let (Ok(host), Ok(port)) = (String::from_utf8(host.clone()), u16::try_from(*port)) else {
                    continue;
                };
                let addr = match template.addr() {
                    ConnectionAddr::TcpTls { insecure, tls_params, .. } => ConnectionAddr::TcpTls {
                        host,
                        port,
                        insecure: *insecure,
                        tls_params: tls_params.clone(),
                    },
                    _ => ConnectionAddr::Tcp(host, port),
                };
                // A node serving several ranges is listed once.
                if !nodes.iter().any(|node: &ConnectionInfo| *node.addr() == addr) {
                    nodes.push(template.clone().set_addr(addr));
                }
            }
        }
        nodes
    }
}

impl Subscriber {
    /// Follows `channel_pattern` (a full Redis channel pattern, namespace
    /// included) with classic pub/sub, on a dedicated connection.
    ///
    /// # Errors
    /// When the connection cannot be opened or the server refuses the subscription.
    pub(crate) async fn psubscribe(&self, channel_pattern: &str) -> redis::RedisResult<Pushes> {
        match self {
            Subscriber::Standalone(client) => {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.psubscribe(channel_pattern).await?;
                Ok(pubsub
                    .into_on_message()
                    .map(|push| Bytes::copy_from_slice(push.get_payload_bytes()))
                    .boxed())
            }
            Subscriber::Cluster(cluster) => {
                let (mut connection, pushes) = cluster.connect().await?;
                connection.psubscribe(channel_pattern).await?;
                Ok(follow(connection, pushes, PushKind::PMessage, None))
            }
        }
    }

    /// Follows the shard channel `shard_channel` of a cluster (on the master of
    /// its slot), keeping the frames whose channel matches `glob`. Only a
    /// cluster has shard channels here; on one server this is `None`.
    ///
    /// # Errors
    /// When the connection cannot be opened or the server refuses the subscription.
    pub(crate) async fn ssubscribe(
        &self,
        shard_channel: &str,
        glob: &str,
    ) -> Option<redis::RedisResult<Pushes>> {
        let Subscriber::Cluster(cluster) = self else { return None };
        let subscribed = async {
            let (mut connection, pushes) = cluster.connect().await?;
            connection.ssubscribe(shard_channel).await?;
            Ok(follow(connection, pushes, PushKind::SMessage, Some(glob.to_owned())))
        };
        Some(subscribed.await)
    }
}

/// The payloads of the `kind` pushes of `connection` (kept open as long as the
/// stream is), whose channel matches `glob` when there is one. The stream ends
/// at the first sign that the subscription may have lapsed: a disconnection of
/// any node's connection, or an unsubscription the server sent by itself.
fn follow(
    connection: ClusterConnection,
    pushes: mpsc::UnboundedReceiver<PushInfo>,
    kind: PushKind,
    glob: Option<String>,
) -> Pushes {
    // The kind and the glob travel in the state, so a push costs no copy of them.
    stream::unfold((connection, pushes, kind, glob), |(connection, mut pushes, kind, glob)| async move {
        loop {
            let push = pushes.recv().await?;
            if push.kind == kind {
                let Some(payload) = payload(push.data) else { continue };
                if glob.as_deref().is_none_or(|glob| matches(glob, &payload)) {
                    return Some((payload, (connection, pushes, kind, glob)));
                }
            } else if matches!(
                push.kind,
                PushKind::Disconnection | PushKind::SUnsubscribe | PushKind::PUnsubscribe
            ) {
                return None;
            }
        }
    })
    .boxed()
}

/// The payload of a message push: its last element.
fn payload(data: Vec<Value>) -> Option<Bytes> {
    match data.into_iter().last()? {
        Value::BulkString(bytes) => Some(Bytes::from(bytes)),
        _ => None,
    }
}

/// Whether the frame's channel (its header up to the header's last `@`)
/// matches `glob`. A frame without a header is kept, so the reader reports it
/// as malformed rather than losing it silently.
fn matches(glob: &str, frame: &[u8]) -> bool {
    let header = frame.split(|&b| b == b'\n').next().unwrap_or(frame);
    match header.iter().rposition(|&b| b == b'@') {
        Some(at) if header.len() < frame.len() => Glob::new(glob).matches(&header[..at]),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn frames_are_kept_by_their_channel() {
        assert!(matches("orders.*", b"orders.eu@12\nbody"));
        assert!(matches("orders.*", b"orders.eu@12\nbody\nwith user.x@3 inside"));
        assert!(!matches("orders.*", b"users.eu@12\norders.x@1"));
        assert!(matches("a@b", b"a@b@7\nbody"), "the id follows the header's last @");
        assert!(matches("orders.*", b"no header at all"), "a malformed frame is kept, to be reported");
    }
}
