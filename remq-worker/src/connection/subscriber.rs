//! Live pushes as one stream of frames, whatever the deployment: `PSUBSCRIBE`
//! on one server, and on a cluster on the first node that answers (the cluster
//! bus carries classic pushes to every node; `SSUBSCRIBE` per namespace, with
//! the glob matched here, is the next step).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

/// The payloads of live pushes, in the order the server sent them; the stream
/// ends when the pub/sub connection does.
pub(crate) type Pushes = BoxStream<'static, Bytes>;

/// Opens pub/sub connections.
#[derive(Clone)]
pub(crate) enum Subscriber {
    /// One server: a dedicated connection per subscription.
    Standalone(Arc<redis::Client>),
    /// A cluster: the seed nodes, tried in turn.
    Cluster(Arc<[redis::Client]>),
}

impl Subscriber {
    /// Subscribes to the Redis glob `channel_pattern` (namespace included, as
    /// [`Namespace::subscription_pattern`](crate::Namespace::subscription_pattern)
    /// builds it) and returns the pushes that match.
    ///
    /// # Errors
    /// When the connection cannot be opened or the server refuses the subscription.
    pub(crate) async fn psubscribe(&self, channel_pattern: &str) -> redis::RedisResult<Pushes> {
        match self {
            Subscriber::Standalone(client) => psubscribe(client, channel_pattern).await,
            Subscriber::Cluster(nodes) => {
                let mut failure = None;
                for node in nodes.iter() {
                    match psubscribe(node, channel_pattern).await {
                        Ok(pushes) => return Ok(pushes),
                        Err(e) => failure = Some(e),
                    }
                }
                Err(failure
                    .unwrap_or_else(|| (redis::ErrorKind::Io, "no cluster node to subscribe on").into()))
            }
        }
    }
}

/// `PSUBSCRIBE` on a dedicated connection to the server of `client`.
async fn psubscribe(client: &redis::Client, channel_pattern: &str) -> redis::RedisResult<Pushes> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.psubscribe(channel_pattern).await?;
    Ok(pubsub.into_on_message().map(|push| Bytes::copy_from_slice(push.get_payload_bytes())).boxed())
}
