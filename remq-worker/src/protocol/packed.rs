//! The `packed` reply of `consume.lua`: a page of the log and the log's state in
//! one MessagePack string, `[head, removed, [channel, entry, …, channel, entry,
//! …]]` (and `next` as a fourth element when the call stopped early, and
//! `"index"` as a fifth when a `route` call stopped where the client follows the
//! order index), each entry `[<id>-0, [field, message, …]]` and belonging to the channel
//! named last before it. Redis builds no frame string per message for it, the
//! client parses one bulk string instead of one per message, and the bodies are
//! slices of that string, not copies. Reading a reply only finds where its
//! entries are; each becomes a [`Message`] when it is taken ([`Entries`]), so
//! a reader can ask for the next page before it builds this one's messages.

use std::ops::Range;

use bytes::Bytes;
use redis::{FromRedisValue, ParsingError, Value};
use rmp::decode;

use crate::message::preview;
use crate::{Error, Message, MessageId, Result};

/// What `consume.lua` reports about the log beside a page of messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogState {
    /// The last id issued in the namespace.
    pub(crate) head: MessageId,
    /// The highest id retention removed from a matching channel (0: none).
    pub(crate) removed: MessageId,
    /// When the call stopped early to stay short: the id up to which it
    /// looked (every matching message up to it is in the page).
    pub(crate) stopped_at: Option<MessageId>,
}

/// A `consume.lua … packed` reply.
#[derive(Debug)]
pub(crate) struct PackedPage {
    /// What the log looked like when the page was read.
    pub(crate) state: LogState,
    /// The page's entries in id order: each a message, or, for an entry that
    /// something other than Remq wrote, why it cannot be one.
    pub(crate) entries: Entries,
    /// The message id of the last entry, malformed or not (when its entry id
    /// has one).
    pub(crate) last_entry: Option<MessageId>,
    /// A `route` call stopped at `state.stopped_at` for the client to follow
    /// the order index from there.
    pub(crate) follow_index: bool,
}

impl PackedPage {
    /// Where the next page of a read of `limit` messages starts: after the id
    /// where the call stopped early, or after a full page's last entry; `None`
    /// when the page reached the end of the log (nothing more for now).
    pub(crate) fn next_after(&self, limit: usize) -> Option<MessageId> {
        match self.state.stopped_at {
            Some(stopped) => Some(stopped),
            None if self.entries.len() >= limit => self.last_entry,
            None => None,
        }
    }

    /// Reads a packed reply; the error says what is wrong with it.
    pub(crate) fn decode(reply: &Bytes) -> std::result::Result<Self, Malformed> {
        Reader { reply, rest: reply }.page()
    }
}

impl FromRedisValue for PackedPage {
    fn from_redis_value(value: Value) -> std::result::Result<Self, ParsingError> {
        let reply = Bytes::from_redis_value(value)?;
        PackedPage::decode(&reply)
            .map_err(|what| format!("consume.lua's packed reply is malformed: {what}").into())
    }
}

/// A page's entries: those of a packed reply, each made a [`Message`] only
/// when taken, then any added after them (read from the order index, say).
#[derive(Debug, Default)]
pub(crate) struct Entries {
    /// The packed reply the entries are slices of.
    reply: Bytes,
    /// Where the reply's entries are, in order.
    packed: Vec<Packed>,
    /// Entries added after the reply's.
    added: Vec<Result<Message>>,
}

/// Where one entry of a packed reply is: its channel name, entry id and body.
#[derive(Debug)]
struct Packed {
    /// The channel named last before the entry.
    channel: Range<usize>,
    /// The entry id, `<message id>-0`.
    id: Range<usize>,
    /// The message.
    body: Range<usize>,
}

impl Entries {
    /// How many entries there are.
    pub(crate) fn len(&self) -> usize {
        self.packed.len() + self.added.len()
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds an entry after the others.
    pub(crate) fn push(&mut self, entry: Result<Message>) {
        self.added.push(entry);
    }

    /// Makes room for `more` entries to be added.
    pub(crate) fn reserve(&mut self, more: usize) {
        self.added.reserve(more);
    }
}

impl FromIterator<Result<Message>> for Entries {
    fn from_iter<I: IntoIterator<Item = Result<Message>>>(entries: I) -> Self {
        Entries { added: entries.into_iter().collect(), ..Entries::default() }
    }
}

impl IntoIterator for Entries {
    type Item = Result<Message>;
    type IntoIter = EntriesIter;

    fn into_iter(self) -> EntriesIter {
        EntriesIter { reply: self.reply, packed: self.packed.into_iter(), added: self.added.into_iter() }
    }
}

/// The entries of a page in order, each made a message as it is taken.
#[derive(Debug, Default)]
pub(crate) struct EntriesIter {
    /// The packed reply the entries are slices of.
    reply: Bytes,
    /// The reply's entries not taken yet.
    packed: std::vec::IntoIter<Packed>,
    /// The added entries not taken yet.
    added: std::vec::IntoIter<Result<Message>>,
}

impl Iterator for EntriesIter {
    type Item = Result<Message>;

    fn next(&mut self) -> Option<Result<Message>> {
        match self.packed.next() {
            Some(Packed { channel, id, body }) => {
                Some(message(&self.reply[channel], &self.reply[id], self.reply.slice(body)))
            }
            None => self.added.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.packed.len() + self.added.len();
        (left, Some(left))
    }
}

/// Reads a packed reply front to back.
struct Reader<'a> {
    /// The whole reply, which the bodies are sliced from.
    reply: &'a Bytes,
    /// What is left to read.
    rest: &'a [u8],
}

/// Why a packed reply could not be read.
pub(crate) type Malformed = &'static str;

impl Reader<'_> {
    fn page(mut self) -> std::result::Result<PackedPage, Malformed> {
        let parts = self.array()?;
        if !(3..=5).contains(&parts) {
            return Err(
                "the reply is not [head, removed, items], [head, removed, items, next] or [head, removed, items, next, \"index\"]",
            );
        }
        let head = MessageId::new(self.int()?);
        let removed = MessageId::new(self.int()?);
        let items = self.array()?;
        // Every item takes at least a byte: a count the rest cannot hold is a lie,
        // not a reason to allocate gigabytes (found by the `packed` fuzz target).
        let mut packed = Vec::with_capacity(items.min(self.rest.len()));
        let mut channel = None;
        for _ in 0..items {
            if let Some(0xa0..=0xbf | 0xd9..=0xdb) = self.rest.first() {
                channel = Some(self.string()?);
                continue;
            }
            let channel = channel.clone().ok_or("an entry comes before any channel name")?;
            self.expect_array(2, "an entry is not [id, fields]")?;
            let id = self.string()?;
            let fields = self.array()?;
            if fields < 2 {
                return Err("an entry has no message");
            }
            self.string()?; // the field's name
            let body = self.string()?;
            for _ in 2..fields {
                self.string()?;
            }
            packed.push(Packed { channel, id, body });
        }
        let stopped_at = if parts >= 4 { Some(MessageId::new(self.int()?)) } else { None };
        let follow_index = parts == 5;
        if follow_index && &self.reply[self.string()?] != b"index" {
            return Err("the fifth element is not \"index\"");
        }
        if !self.rest.is_empty() {
            return Err("bytes follow the page");
        }
        let last_entry =
            packed.last().and_then(|last| MessageId::from_entry_id(&self.reply[last.id.clone()]));
        let entries = Entries { reply: self.reply.clone(), packed, added: Vec::new() };
        Ok(PackedPage { state: LogState { head, removed, stopped_at }, entries, last_entry, follow_index })
    }

    fn array(&mut self) -> std::result::Result<usize, Malformed> {
        let len = decode::read_array_len(&mut self.rest).map_err(|_| "expected an array")?;
        Ok(len as usize)
    }

    fn expect_array(&mut self, len: usize, otherwise: Malformed) -> std::result::Result<(), Malformed> {
        if self.array()? == len { Ok(()) } else { Err(otherwise) }
    }

    fn int(&mut self) -> std::result::Result<u64, Malformed> {
        decode::read_int(&mut self.rest).map_err(|_| "expected an integer")
    }

    /// A string, as the range of the reply it occupies.
    fn string(&mut self) -> std::result::Result<std::ops::Range<usize>, Malformed> {
        let len = decode::read_str_len(&mut self.rest).map_err(|_| "expected a string")? as usize;
        if len > self.rest.len() {
            return Err("a string runs past the end");
        }
        let start = self.reply.len() - self.rest.len();
        self.rest = &self.rest[len..];
        Ok(start..start + len)
    }
}

/// The message of one stream entry, checked as [`Message::from_frame`] checks a
/// frame: a non-empty UTF-8 channel, and an entry id `<message id>-<n>`.
pub(crate) fn message(channel: &[u8], entry_id: &[u8], body: Bytes) -> Result<Message> {
    let malformed =
        |reason| Error::MalformedFrame { reason, preview: preview(&[channel, b"@", entry_id].concat()) };
    let id = MessageId::from_entry_id(entry_id)
        .ok_or_else(|| malformed("the entry id does not start with a decimal message id"))?;
    let channel = std::str::from_utf8(channel).map_err(|_| malformed("the channel name is not UTF-8"))?;
    if channel.is_empty() {
        return Err(malformed("the channel name is empty"));
    }
    Ok(Message::new(id, channel, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MessagePack by hand, so the tests do not trust an encoder.
    fn str(s: &[u8]) -> Vec<u8> {
        let mut out = vec![0xd9, s.len() as u8];
        out.extend_from_slice(s);
        out
    }

    fn entry(id: &str, body: &[u8]) -> Vec<u8> {
        [vec![0x92], str(id.as_bytes()), vec![0x92], str(b"m"), str(body)].concat()
    }

    fn page(groups: &[(&[u8], Vec<Vec<u8>>)]) -> Bytes {
        let items: usize = groups.iter().map(|(_, entries)| 1 + entries.len()).sum();
        // head 256, removed 7, the items
        let mut out = vec![0x93, 0xcd, 0x01, 0x00, 0x07, 0x90 | items as u8];
        for (channel, entries) in groups {
            out.extend(str(channel));
            entries.iter().for_each(|e| out.extend(e));
        }
        out.into()
    }

    fn decode(reply: Bytes) -> std::result::Result<PackedPage, String> {
        PackedPage::from_redis_value(Value::BulkString(reply.to_vec())).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_the_page_in_order_with_the_state() {
        let reply = page(&[
            (b"a.x", vec![entry("3-0", b"one"), entry("9-0", b"two\n@\0")]),
            (b"a@y", vec![entry("12-0", b"")]),
        ]);
        let page = decode(reply).unwrap();
        let state = LogState { head: MessageId::new(256), removed: MessageId::new(7), stopped_at: None };
        assert_eq!(page.state, state);
        assert_eq!(
            page.next_after(3),
            Some(MessageId::new(12)),
            "a full page: more may follow its last entry"
        );
        assert_eq!(page.next_after(4), None, "a short page that did not stop early: the end of the log");
        let got: Vec<_> = page.entries.into_iter().map(|m| m.unwrap()).collect();
        let want = [("a.x", 3, &b"one"[..]), ("a.x", 9, b"two\n@\0"), ("a@y", 12, b"")];
        assert_eq!(got.len(), want.len());
        for (m, (channel, id, body)) in got.iter().zip(want) {
            assert_eq!((m.channel.as_str(), m.id.get(), &m.body[..]), (channel, id, body));
        }
    }

    #[test]
    fn a_foreign_entry_is_an_error_in_its_place() {
        let reply = page(&[
            (b"a", vec![entry("1-0", b"ok"), entry("x-0", b"bad id")]),
            (b"\xff", vec![entry("2-0", b"bad channel")]),
            (b"", vec![entry("3-0", b"empty channel")]),
        ]);
        let entries: Vec<_> = decode(reply).unwrap().entries.into_iter().collect();
        assert!(entries[0].is_ok());
        for (entry, reason) in entries[1..].iter().zip(["decimal message id", "not UTF-8", "empty"]) {
            let err = entry.as_ref().unwrap_err();
            assert!(matches!(err, Error::MalformedFrame { .. }) && err.to_string().contains(reason), "{err}");
        }
    }

    #[test]
    fn an_error_quotes_at_most_64_bytes() {
        let long = [b'c'; 200];
        let entries: Vec<_> =
            decode(page(&[(&long[..], vec![entry("x-0", b"body")])])).unwrap().entries.into_iter().collect();
        let Err(Error::MalformedFrame { preview, .. }) = &entries[0] else { panic!("{entries:?}") };
        assert_eq!(preview.len(), 64);
    }

    #[test]
    fn a_broken_reply_is_an_error_not_a_panic() {
        let whole = page(&[(b"a", vec![entry("1-0", b"body")])]);
        for cut in 0..whole.len() {
            assert!(decode(whole.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut longer = whole.to_vec();
        longer.push(0xc0);
        assert!(decode(longer.into()).unwrap_err().contains("bytes follow the page"));
        assert!(decode(Bytes::from_static(b"\x92\x01\x02")).unwrap_err().contains("[head, removed, items]"));
        let huge = decode(Bytes::from_static(b"\x93\x00\x00\xdd\xff\xff\xff\xff\xa1a"));
        assert!(huge.unwrap_err().contains("expected an array"), "4 billion items claimed, 1 given");
        let orphan = [&[0x93, 0x01, 0x00, 0x91][..], &entry("1-0", b"body")].concat();
        assert!(decode(orphan.into()).unwrap_err().contains("before any channel name"));
    }

    #[test]
    fn a_page_that_stopped_early_says_where_to_go_on() {
        // [head 900, removed 0, [], next 400]
        let reply = Bytes::from_static(b"\x94\xcd\x03\x84\x00\x90\xcd\x01\x90");
        let page = decode(reply).unwrap();
        assert_eq!(page.state.stopped_at, Some(MessageId::new(400)));
        assert_eq!(page.next_after(1000), Some(MessageId::new(400)), "empty, yet not the end");
    }

    #[test]
    fn a_route_call_says_where_the_client_follows_the_index() {
        // [head 900, removed 0, [], next 400, "index"]
        let reply = Bytes::from_static(b"\x95\xcd\x03\x84\x00\x90\xcd\x01\x90\xa5index");
        let page = decode(reply).unwrap();
        assert!(page.follow_index);
        assert_eq!(page.state.stopped_at, Some(MessageId::new(400)));
        let other = Bytes::from_static(b"\x95\xcd\x03\x84\x00\x90\xcd\x01\x90\xa5other");
        assert!(decode(other).unwrap_err().contains("fifth element"));
        let plain = decode(Bytes::from_static(b"\x94\xcd\x03\x84\x00\x90\xcd\x01\x90")).unwrap();
        assert!(!plain.follow_index);
    }
}
