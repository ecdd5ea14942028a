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
    // Each channel pushed on, and the span of ids pushed on it, in the order
    // the channels first came.
    let mut channels: Vec<&str> = Vec::new();
    let mut reads: Vec<Span> = Vec::new();
    let mut span_of: HashMap<&str, usize> = HashMap::new();
    for push in &pushes {
        let id = push.id.get();
        match span_of.get(push.channel.as_str()) {
            Some(&i) => {
                let span = &mut reads[i];
                (span.first, span.last) = (span.first.min(id), span.last.max(id));
                span.count = span.count.map(|count| count + 1);
            }
            None => {
                span_of.insert(&push.channel, reads.len());
                channels.push(&push.channel);
                let key = store.namespace().channel_key_bytes(push.channel.as_bytes());
                reads.push(Span { key, first: id, last: id, count: Some(1) });
            }
        }
    }
    // Each channel's stored entries in its span, by id.
    let mut bodies: HashMap<(&str, u64), Bytes> = HashMap::with_capacity(pushes.len());
    for (&channel, entries) in channels.iter().zip(read_spans(store, "read pushed messages", &reads).await?) {
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
