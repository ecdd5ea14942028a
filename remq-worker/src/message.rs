//! Messages and their ids, and parsing of the wire frame `<channel>@<id>\n<body>`.

use std::fmt;
use std::str::FromStr;

use bytes::{Buf, Bytes};

use crate::{Error, Result};

/// A message id: unique and increasing within a namespace, across all channels.
///
/// Ids order messages; a gap between two ids a consumer sees is normal (the
/// missing ids belong to channels it does not follow). [`MessageId::ZERO`] is
/// the cursor before every message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(u64);

impl MessageId {
    /// The position before the first message: `consume(pattern, MessageId::ZERO, …)`
    /// reads from the start of the log.
    pub const ZERO: MessageId = MessageId(0);

    /// Wraps a raw id.
    pub const fn new(id: u64) -> Self {
        MessageId(id)
    }

    /// The raw id.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The message id of a Redis Stream entry id `<message id>-<sequence>` (the
    /// streams hold message `n` as entry `n-0`): the one place that parses them.
    pub(crate) fn from_entry_id(entry_id: &[u8]) -> Option<MessageId> {
        decimal(entry_id.split(|&b| b == b'-').next()?).map(MessageId)
    }
}

/// A non-empty run of ASCII digits that fits a `u64` (no sign, no spaces).
fn decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl From<u64> for MessageId {
    fn from(id: u64) -> Self {
        MessageId(id)
    }
}

impl From<MessageId> for u64 {
    fn from(id: MessageId) -> Self {
        id.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for MessageId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        s.parse().map(MessageId)
    }
}

/// One message: where it was published, its id, and its body.
///
/// Non-exhaustive: more fields may come; build one with [`Message::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// The id the publish call returned.
    pub id: MessageId,
    /// The channel it was published to (never a pattern).
    pub channel: String,
    /// The body, byte for byte as published.
    pub body: Bytes,
    /// The partition of a partitioned namespace the message is in (its id is
    /// one of that partition); 0 in a namespace that is not partitioned.
    pub partition: u32,
}

/// How much of a malformed frame an error quotes, so a huge body never ends up
/// in a log line.
const FRAME_PREVIEW: usize = 64;

/// The start of something malformed, lossily decoded, for an error to quote.
pub(crate) fn preview(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(FRAME_PREVIEW)]).into_owned()
}

impl Message {
    /// A message with this id, channel and body (say, for a handler's unit test).
    pub fn new(id: MessageId, channel: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Message { id, channel: channel.into(), body: body.into(), partition: 0 }
    }

    /// Parses a wire frame `<channel>@<id>\n<body>`, as pushed on pub/sub and
    /// returned by `consume.lua`. The header ends at the first `\n`; the id is the
    /// part of the header after its last `@` (channel names may contain `@`).
    /// The body is shared with `frame`, not copied.
    ///
    /// # Errors
    /// [`Error::MalformedFrame`] when there is no `\n`, no `@` in the header, the
    /// id is not a decimal `u64`, or the channel is empty or not UTF-8.
    pub fn from_frame(frame: Bytes) -> Result<Message> {
        let malformed = |reason| Error::MalformedFrame { reason, preview: preview(&frame) };
        let newline = memchr(b'\n', &frame).ok_or_else(|| malformed("no newline after the header"))?;
        let header = &frame[..newline];
        let at = header
            .iter()
            .rposition(|&b| b == b'@')
            .ok_or_else(|| malformed("no `@` between channel and id in the header"))?;
        let id = decimal(&header[at + 1..])
            .ok_or_else(|| malformed("the id after the last `@` is not a decimal integer"))?;
        let channel =
            std::str::from_utf8(&header[..at]).map_err(|_| malformed("the channel name is not UTF-8"))?;
        if channel.is_empty() {
            return Err(malformed("the channel name is empty"));
        }
        let channel = channel.to_owned();
        // Advancing keeps the frame's buffer as it is; a slice would first move
        // it behind a shared header, one more allocation per message.
        let mut body = frame;
        body.advance(newline + 1);
        Ok(Message { id: MessageId(id), channel, body, partition: 0 })
    }

    /// Encodes the message as a wire frame (the inverse of [`from_frame`](Self::from_frame)).
    pub fn to_frame(&self) -> Bytes {
        let mut frame = Vec::with_capacity(self.channel.len() + 22 + self.body.len());
        frame.extend_from_slice(self.channel.as_bytes());
        frame.push(b'@');
        frame.extend_from_slice(self.id.to_string().as_bytes());
        frame.push(b'\n');
        frame.extend_from_slice(&self.body);
        frame.into()
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(frame: &[u8]) -> Result<Message> {
        Message::from_frame(Bytes::copy_from_slice(frame))
    }

    #[test]
    fn parses_a_frame() {
        let m = parse(b"events.a@42\nhello").unwrap();
        assert_eq!((m.id, m.channel.as_str(), &m.body[..]), (MessageId::new(42), "events.a", &b"hello"[..]));
    }

    #[test]
    fn id_is_after_the_last_at_and_body_after_the_first_newline() {
        let m = parse(b"mail@example.com@7\nline1\nuser@host\0\n").unwrap();
        assert_eq!(m.channel, "mail@example.com");
        assert_eq!(m.id.get(), 7);
        assert_eq!(&m.body[..], b"line1\nuser@host\0\n");
    }

    #[test]
    fn empty_body_round_trips() {
        let m = parse(b"c@1\n").unwrap();
        assert!(m.body.is_empty());
        assert_eq!(&m.to_frame()[..], b"c@1\n");
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"no newline",
            b"nochannelid\nbody",
            b"c@\nbody",
            b"c@12x\nbody",
            b"c@-1\nbody",
            b"c@99999999999999999999999\nbody",
            b"@5\nbody",
            b"\xff\xfe@5\nbody",
        ] {
            assert!(matches!(parse(bad), Err(Error::MalformedFrame { .. })), "{bad:?}");
        }
    }

    #[test]
    fn to_frame_is_the_inverse_of_from_frame() {
        let m = Message::new(MessageId::new(9), "a@b", Bytes::from_static(b"x\ny@1"));
        assert_eq!(Message::from_frame(m.to_frame()).unwrap(), m);
    }
}
