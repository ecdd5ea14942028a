//! Reading stream entries with plain commands, for the order index and for
//! checking live pushes: replies taken apart, a pipeline of `XRANGE`s over
//! spans of ids, and the error for a reply that is not a stream's.

use redis::Value;

use crate::connection::Store;
use crate::{Error, Result};

/// One stream entry as bytes: its entry id and its fields.
pub(super) type Entry = (Vec<u8>, Vec<Vec<u8>>);

/// A span of one stream to read: the ids `first..=last`, at most `count`
/// entries of them when set.
pub(super) struct Span {
    /// The stream's key.
    pub(super) key: Vec<u8>,
    /// The first id of the span.
    pub(super) first: u64,
    /// The last id of the span.
    pub(super) last: u64,
    /// At most this many entries; `None` for all of the span.
    pub(super) count: Option<usize>,
}

/// Reads every span with one `XRANGE`, all in one pipeline (one round trip):
/// each span's entries, in the order of `spans`.
///
/// # Errors
/// [`Error::Redis`] when a command fails, or a reply is not a stream's
/// (naming the key), under `op`.
pub(super) async fn read_spans(store: &Store, op: &'static str, spans: &[Span]) -> Result<Vec<Vec<Entry>>> {
    if spans.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for span in spans {
        let read = pipe
            .cmd("XRANGE")
            .arg(&span.key)
            .arg(format!("{}-0", span.first))
            .arg(format!("{}-0", span.last));
        if let Some(count) = span.count {
            read.arg("COUNT").arg(count);
        }
    }
    let replies: Vec<Value> = store.query_pipe(op, &pipe).await?;
    spans
        .iter()
        .zip(replies)
        .map(|(span, reply)| {
            let malformed = || shape_error(store, op, &String::from_utf8_lossy(&span.key));
            array(reply)
                .ok_or_else(malformed)?
                .into_iter()
                .map(|item| stream_entry(item).ok_or_else(malformed))
                .collect()
        })
        .collect()
}

/// An array reply's items.
pub(super) fn array(value: Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) => Some(items),
        _ => None,
    }
}

/// A stream entry `[id, [field, value, …]]`, as bytes.
pub(super) fn stream_entry(value: Value) -> Option<Entry> {
    let mut parts = array(value)?.into_iter();
    let (Some(Value::BulkString(id)), Some(fields), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let fields = array(fields)?
        .into_iter()
        .map(|field| match field {
            Value::BulkString(bytes) => Some(bytes),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some((id, fields))
}

/// A reply that is not a stream's: something other than Remq wrote `key`.
pub(super) fn shape_error(store: &Store, op: &'static str, key: &str) -> Error {
    let error = redis::RedisError::from((
        redis::ErrorKind::Parse,
        "the reply is not a stream's entries",
        key.to_owned(),
    ));
    Error::redis_in(op, store.namespace().base(), error)
}
