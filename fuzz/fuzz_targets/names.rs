//! The name rules on arbitrary strings: `validate_channel`, `validate_pattern`
//! and `Namespace::new` (the glob and whitespace checks in `protocol.rs`).
//!
//! Beyond "never panics": what is accepted keeps the rules the scripts and
//! Redis' glob matching rely on.

#![no_main]

use libfuzzer_sys::fuzz_target;
use remq::{Error, Namespace, validate_channel, validate_pattern};

const GLOB: [char; 4] = ['*', '?', '[', ']'];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    match validate_channel(text) {
        Ok(()) => {
            assert!(
                !text.is_empty() && !text.contains('\n') && !text.contains(GLOB),
                "{text:?} accepted as a channel"
            );
            // A channel name is also a pattern that matches exactly itself.
            validate_pattern(text).expect("a valid channel is a valid pattern");
        }
        Err(Error::InvalidChannel { channel, reason }) => {
            assert_eq!(channel, text);
            assert!(!reason.is_empty());
        }
        Err(other) => panic!("validate_channel returned another error kind: {other:?}"),
    }

    match validate_pattern(text) {
        Ok(()) => assert!(!text.is_empty() && !text.contains('\n'), "{text:?} accepted as a pattern"),
        Err(Error::InvalidPattern { pattern, .. }) => assert_eq!(pattern, text),
        Err(other) => panic!("validate_pattern returned another error kind: {other:?}"),
    }

    match Namespace::new(text) {
        Ok(namespace) => {
            // The base is spliced into PSUBSCRIBE patterns: nothing in it may act as a glob.
            assert!(
                !text.is_empty()
                    && !text.contains(GLOB)
                    && !text.contains('\\')
                    && !text.contains(char::is_whitespace),
                "{text:?} accepted as a namespace"
            );
            let pattern = namespace.subscription_pattern("events.*");
            assert_eq!(pattern, format!("{text}:channel:events.*"));
            assert_eq!(namespace.base(), text);
        }
        Err(Error::InvalidNamespace { namespace, .. }) => assert_eq!(namespace, text),
        Err(other) => panic!("Namespace::new returned another error kind: {other:?}"),
    }
});
