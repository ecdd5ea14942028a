//! `Message::from_frame` on arbitrary bytes, as a foreign client can push them
//! on a `remq:channel:*` pub/sub channel or store them in a channel's stream.
//!
//! Beyond "never panics": an accepted frame must follow the wire format, and
//! encoding it again must parse back to the same message.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use remq::{Error, Message};

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    match Message::from_frame(frame) {
        Ok(message) => {
            let newline = data.iter().position(|&b| b == b'\n').expect("an accepted frame has a newline");
            assert_eq!(
                &message.body[..],
                &data[newline + 1..],
                "the body is everything after the first newline"
            );
            assert!(!message.channel.is_empty(), "an empty channel was accepted");
            assert!(!message.channel.contains('\n'), "the channel runs past the header");
            let header = &data[..newline];
            let at = header.iter().rposition(|&b| b == b'@').expect("an accepted header has an `@`");
            assert_eq!(
                message.channel.as_bytes(),
                &header[..at],
                "the channel is the header up to its last `@`"
            );
            assert_eq!(Message::from_frame(message.to_frame()).expect("to_frame output parses"), message);
        }
        Err(error @ Error::MalformedFrame { .. }) => {
            // The message quotes at most the first 64 bytes of the frame (escaped
            // by `{:?}`: a control byte takes up to 6 characters), so a huge
            // body never ends up in a log line.
            let Error::MalformedFrame { preview, .. } = &error else { unreachable!() };
            assert_eq!(*preview, String::from_utf8_lossy(&data[..data.len().min(64)]));
            let text = error.to_string();
            assert!(text.len() <= 64 * 6 + 256, "an error message quotes too much: {} bytes", text.len());
        }
        Err(other) => panic!("from_frame returned a different error kind: {other:?}"),
    }
});
