//! Live pushes checked against the log: a push is a hint, and what a consumer
//! hands out is what the pushed channel's stream holds at the pushed id. A
//! frame someone PUBLISHes by hand names an id its channel's stream does not
//! hold, and goes no further.

use std::collections::HashMap;

use bytes::Bytes;

use super::streams::{Span, read_spans, shape_error};
use crate::connection::Store;
use crate::{Message, MessageId, Result};

/// The messages among `pushes` (in id order, as pub/sub delivers them) that
/// their channels' streams hold, with the stored bodies, in the same order.
/// One round trip: per channel, one `XRANGE` over the span of ids pushed on
/// it, for at most as many entries as were pushed on it (every entry in that
/// span was pushed, pushes of one subscription arriving in id order, so a
/// forged push cannot make the read longer).
///
/// # Errors
/// [`Error::Redis`](crate::Error::Redis) when a command fails, or a reply is
/// not a stream's.
pub(crate) async fn stored(store: &Store, pushes: Vec<Message>) -> Result<Vec<Message>> {
    // Each channel's span: first id, last id, pushes.
    let mut spans: Vec<(&str, u64, u64, usize)> = Vec::new();
    let mut span_of: HashMap<&str, usize> = HashMap::new();
    for push in &pushes {
        let id = push.id.get();
        match span_of.get(push.channel.as_str()) {
            Some(&i) => {
                let span = &mut spans[i];
                (span.1, span.2, span.3) = (span.1.min(id), span.2.max(id), span.3 + 1);
            }
            None => {
                span_of.insert(&push.channel, spans.len());
                spans.push((&push.channel, id, id, 1));
            }
        }
    }
    let reads: Vec<Span> = spans
        .iter()
        .map(|(channel, first, last, count)| Span {
            key: store.namespace().channel_key_bytes(channel.as_bytes()),
            first: *first,
            last: *last,
            count: Some(*count),
        })
        .collect();
    // Each channel's stored entries in its span, by id.
    let mut bodies: HashMap<(&str, u64), Bytes> = HashMap::with_capacity(pushes.len());
    for ((channel, ..), entries) in spans.iter().zip(read_spans(store, "read pushed messages", &reads).await?)
    {
        for (entry, fields) in entries {
            let Some(id) = MessageId::from_entry_id(&entry) else {
                let key = store.namespace().channel_key(channel);
                return Err(shape_error(store, "read pushed messages", &key));
            };
            let body = fields.into_iter().nth(1).map(Bytes::from).unwrap_or_default();
            bodies.insert((channel, id.get()), body);
        }
    }
    let found: Vec<Option<Bytes>> =
        pushes.iter().map(|push| bodies.remove(&(push.channel.as_str(), push.id.get()))).collect();
    Ok(pushes
        .into_iter()
        .zip(found)
        .filter_map(|(push, body)| Some(Message { body: body?, ..push }))
        .collect())
}
