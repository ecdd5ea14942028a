//! Following the order index from the client: where a `consume.lua … route`
//! call stops for a broad pattern, the rest of the page is read with plain
//! commands (the index in chunks, the channel numbers' names, one `XRANGE` per
//! channel span), matched here as Redis matches. Each command is short, and
//! their replies cost Redis about a third of what a script's Lua tables do,
//! which is what lets a broad pattern replay near one channel's speed.
//!
//! The index `<base>:order` holds an entry for every id, `<id>-0 c <channel
//! number>`, or for a batch `<last id>-0 c <number> n <count>` (the ids
//! `last - count + 1 ..= last`), so reading on from any id finds the entry
//! that holds the next one. Every message it names up to the head was stored
//! in the same script call, so an id the channel's stream no longer holds was
//! removed by retention.

use std::collections::HashMap;

use bytes::Bytes;
use redis::Value;

use super::streams::{Span, array, read_spans, shape_error, stream_entry};
use crate::connection::Store;
use crate::protocol::{Glob, PackedPage, message};
use crate::{MessageId, Result};

/// Index entries read per command (each about a third of a microsecond of Redis time).
const CHUNK: usize = 1000;

/// Index entries looked at per page at most; a sparse pattern stops there
/// early (`stopped_at`) and the caller goes on from it.
const BUDGET: usize = 20_000;

/// One index entry: the ids `first..=last` went to channel `number`.
struct Entry {
    first: u64,
    last: u64,
    number: Vec<u8>,
}

/// A channel number's name, and whether the pattern matches it.
struct Named {
    name: Vec<u8>,
    matched: bool,
}

/// Fills `page` (a `route` reply that stopped at the index) up to `limit`
/// messages from the order index, after `page.state.stopped_at` and up to the
/// head it reported. Leaves `stopped_at` where the read looked up to, or
/// `None` when it reached the head.
///
/// # Errors
/// [`Error::Redis`](crate::Error::Redis) when a command fails; a reply that
/// is not the index's shape is one too, naming the key.
pub(crate) async fn follow(store: &Store, pattern: &str, page: &mut PackedPage, limit: usize) -> Result<()> {
    let Some(after) = page.state.stopped_at else { return Ok(()) };
    let head = page.state.head.get();
    let glob = Glob::new(pattern);
    let room = limit.saturating_sub(page.entries.len());
    let mut names: HashMap<Vec<u8>, Named> = HashMap::new();
    // The ids to read: runs of consecutive ids of one channel, in id order.
    let mut runs: Vec<(u64, u64, Vec<u8>)> = Vec::new();
    let (mut examined, mut found, mut looked, mut ended) = (after.get(), 0usize, 0usize, false);
    'chunks: while found < room && looked < BUDGET {
        let want = CHUNK.min((room - found).max(looked.saturating_sub(found))).max(1);
        let entries = index_chunk(store, examined, head, want).await?;
        // Fewer than asked for: the index holds nothing more up to the head.
        ended = entries.len() < want;
        let len = entries.len();
        resolve(store, &glob, &entries, &mut names).await?;
        for (taken, entry) in entries.into_iter().enumerate() {
            let first = entry.first.max(examined + 1);
            let mut last = entry.last;
            if first <= last {
                if names.get(&entry.number).is_some_and(|n| n.matched) {
                    last = last.min(first + (room - found) as u64 - 1);
                    found += (last - first + 1) as usize;
                    runs.push((first, last, entry.number));
                }
                examined = last;
            }
            looked += 1;
            if found >= room || looked >= BUDGET {
                // The rest of the chunk, and of a batch cut short, is read
                // again by the next page.
                ended &= taken + 1 == len && examined == entry.last;
                break 'chunks;
            }
        }
        if ended {
            break;
        }
    }
    let removed = read_bodies(store, &runs, &names, page).await?;
    page.state.removed = page.state.removed.max(MessageId::new(removed));
    page.state.stopped_at = if ended { None } else { Some(MessageId::new(examined)) };
    page.follow_index = false;
    Ok(())
}

/// Up to `want` index entries after `after` and not past `head`.
async fn index_chunk(store: &Store, after: u64, head: u64, want: usize) -> Result<Vec<Entry>> {
    let key = store.namespace().order_key();
    let reply: Value = store
        .query(
            "read the order index",
            redis::cmd("XRANGE")
                .arg(&key)
                .arg(format!("({after}-0"))
                .arg(format!("{head}-0"))
                .arg("COUNT")
                .arg(want),
        )
        .await?;
    let malformed = || shape_error(store, "read the order index", &key);
    let mut entries = Vec::new();
    for item in array(reply).ok_or_else(malformed)? {
        let (id, fields) = stream_entry(item).ok_or_else(malformed)?;
        let last = MessageId::from_entry_id(&id).ok_or_else(malformed)?.get();
        let mut fields = fields.into_iter();
        let (number, count) = match (fields.next(), fields.next(), fields.next(), fields.next()) {
            (Some(_), Some(number), None, None) => (number, 1),
            (Some(_), Some(number), Some(_), Some(count)) => {
                let count = std::str::from_utf8(&count).ok().and_then(|c| c.parse::<u64>().ok());
                (number, count.filter(|&c| c >= 1 && c <= last).ok_or_else(malformed)?)
            }
            _ => return Err(malformed()),
        };
        entries.push(Entry { first: last - count + 1, last, number });
    }
    Ok(entries)
}

/// Looks up the names of the channel numbers in `entries` not known yet, and
/// whether the pattern matches them.
async fn resolve(
    store: &Store,
    glob: &Glob<'_>,
    entries: &[Entry],
    names: &mut HashMap<Vec<u8>, Named>,
) -> Result<()> {
    let mut unknown: Vec<&[u8]> =
        entries.iter().map(|e| e.number.as_slice()).filter(|n| !names.contains_key(*n)).collect();
    unknown.sort_unstable();
    unknown.dedup();
    if unknown.is_empty() {
        return Ok(());
    }
    let found: Vec<Option<Vec<u8>>> = store
        .query(
            "read channel names",
            redis::cmd("HMGET").arg(store.namespace().channel_names_key()).arg(&unknown),
        )
        .await?;
    for (number, name) in unknown.into_iter().zip(found) {
        // A number without a name (never, unless something else wrote the
        // index) matches nothing.
        let name = name.unwrap_or_default();
        let matched = !name.is_empty() && glob.matches(&name);
        names.insert(number.to_vec(), Named { name, matched });
    }
    Ok(())
}

/// Reads the bodies of `runs` (one `XRANGE` per channel, over the span of ids
/// the page takes from it, all in one pipeline) into `page`, in id order.
/// Returns the highest id whose message is gone from its stream (0: none).
async fn read_bodies(
    store: &Store,
    runs: &[(u64, u64, Vec<u8>)],
    names: &HashMap<Vec<u8>, Named>,
    page: &mut PackedPage,
) -> Result<u64> {
    if runs.is_empty() {
        return Ok(0);
    }
    // Each channel's span, in the order the channels first appear.
    let mut spans: Vec<(&[u8], u64, u64)> = Vec::new();
    let mut span_of: HashMap<&[u8], usize> = HashMap::new();
    for (first, last, number) in runs {
        match span_of.get(number.as_slice()) {
            Some(&i) => spans[i].2 = *last,
            None => {
                span_of.insert(number, spans.len());
                spans.push((number, *first, *last));
            }
        }
    }
    let reads: Vec<Span> = spans
        .iter()
        .map(|(number, first, last)| Span {
            key: store.namespace().channel_key_bytes(&names[*number].name),
            first: *first,
            last: *last,
            count: None,
        })
        .collect();
    // Each span's entries, consumed front to back as the runs ask for them.
    let mut stored: Vec<_> = read_spans(store, "read messages", &reads)
        .await?
        .into_iter()
        .map(|entries| entries.into_iter().peekable())
        .collect();
    let mut removed = 0;
    page.entries.reserve(runs.iter().map(|(first, last, _)| (last - first + 1) as usize).sum());
    for (first, last, number) in runs {
        let name = &names[number].name;
        let entries = &mut stored[span_of[number.as_slice()]];
        for id in *first..=*last {
            // Entries the index does not name (none, unless something else
            // wrote them) are passed over.
            while entries
                .next_if(|(entry, _)| MessageId::from_entry_id(entry).is_some_and(|e| e.get() < id))
                .is_some()
            {}
            match entries.next_if(|(entry, _)| MessageId::from_entry_id(entry).is_some_and(|e| e.get() == id))
            {
                Some((entry, fields)) => {
                    let body = fields.into_iter().nth(1).map(Bytes::from).unwrap_or_default();
                    page.entries.push(message(name, &entry, body));
                    page.last_entry = Some(MessageId::new(id));
                }
                None => removed = id,
            }
        }
    }
    Ok(removed)
}
