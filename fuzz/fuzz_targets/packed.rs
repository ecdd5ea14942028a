//! The reader of `consume.lua … packed` replies on arbitrary bytes, as a
//! foreign script or a damaged reply could present them.
//!
//! Beyond "never panics": an accepted message has a non-empty channel and a
//! body that is a slice of the reply (not a copy), and an error about an entry
//! quotes at most 64 bytes of it.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use remq::Error;

fuzz_target!(|data: &[u8]| {
    let reply = Bytes::copy_from_slice(data);
    let Ok((_, _, entries)) = remq::fuzzing::packed_page(&reply) else { return };
    let (start, end) = (reply.as_ptr() as usize, reply.as_ptr() as usize + reply.len());
    for entry in entries {
        match entry {
            Ok(message) => {
                assert!(!message.channel.is_empty(), "an empty channel was accepted");
                let body = message.body.as_ptr() as usize;
                // An empty slice is `Bytes::new()`, which points elsewhere.
                assert!(
                    message.body.is_empty() || (start <= body && body + message.body.len() <= end),
                    "the body is not a slice of the reply"
                );
            }
            // At most 64 bytes, each at worst a 3-byte replacement character.
            Err(Error::MalformedFrame { preview, .. }) => assert!(preview.len() <= 64 * 3, "{preview:?}"),
            Err(other) => panic!("an entry failed with a different error kind: {other:?}"),
        }
    }
});
