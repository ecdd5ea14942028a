//! Live pushes as one stream of frames, whatever the deployment: `PSUBSCRIBE`
//! on one server (later: `SSUBSCRIBE` per namespace on a cluster, with the glob
//! matched here).

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
            Subscriber::Standalone(client) => {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.psubscribe(channel_pattern).await?;
                Ok(pubsub
                    .into_on_message()
                    .map(|push| Bytes::copy_from_slice(push.get_payload_bytes()))
                    .boxed())
            }
        }
    }
}
