//! Extractors: what a handler's arguments can be, in the style of axum.
//!
//! A handler is an async function whose arguments each implement [`FromMessage`]:
//! [`Message`], [`MessageId`], [`Channel`], [`Body`], [`Bytes`], [`String`],
//! [`Json<T>`], [`State<T>`] and the whole [`Delivery`] (with its attempt number). Extraction failures are permanent errors (the same
//! message would fail the same way again), never panics.

use std::any::{Any, TypeId, type_name};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::{Error, Message, MessageId, Result};

/// One message on its way to a handler, with what extractors may need besides
/// the message itself.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The message being handled.
    pub message: Message,
    /// The durable name of the consumer handling it.
    pub consumer: Arc<str>,
    /// Which attempt this is: 1 for the first, more when retried.
    pub attempt: u32,
    /// Shared application state registered with `Worker::state`.
    pub(crate) states: Arc<States>,
}

impl Delivery {
    /// A delivery of `message` to `consumer` with the given shared state.
    pub(crate) fn new(message: Message, consumer: Arc<str>, states: Arc<States>) -> Self {
        Delivery { message, consumer, attempt: 1, states }
    }

    /// The partition the message is in (0 in a namespace that is not
    /// partitioned); with its id, what identifies the message.
    pub fn partition(&self) -> u32 {
        self.message.partition
    }
}

/// Application state values, one per type, shared by every handler.
#[derive(Default)]
pub(crate) struct States {
    /// Values keyed by their type.
    values: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl States {
    /// Stores `value`, replacing an earlier value of the same type.
    pub(crate) fn insert<T: Clone + Send + Sync + 'static>(&mut self, value: T) {
        self.values.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// The value of type `T`, if one was stored.
    pub(crate) fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<&T> {
        self.values.get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref())
    }

    /// Whether a value of the given type was stored.
    pub(crate) fn contains(&self, type_id: TypeId) -> bool {
        self.values.contains_key(&type_id)
    }
}

impl fmt::Debug for States {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("States").field("count", &self.values.len()).finish()
    }
}

/// A type a handler can take as an argument, built from the delivery.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a remq handler argument",
    label = "not an extractor",
    note = "handler arguments must implement `remq::FromMessage`: use `Json<T>`, `Message`, `MessageId`, `Channel`, `Body`, `Bytes`, `String`, `State<T>` or `Delivery`"
)]
pub trait FromMessage: Sized + Send + 'static {
    /// Builds the value for one delivery.
    ///
    /// # Errors
    /// A permanent error when the message cannot be turned into `Self`.
    fn from_message(delivery: &Delivery) -> Result<Self>;

    /// The state type this extractor needs, checked when the worker starts so a
    /// missing `Worker::state` call fails at start-up instead of on every message.
    #[doc(hidden)]
    fn required_state() -> Option<(TypeId, &'static str)> {
        None
    }
}

impl FromMessage for Delivery {
    fn from_message(delivery: &Delivery) -> Result<Self> {
        Ok(delivery.clone())
    }
}

impl FromMessage for Message {
    fn from_message(delivery: &Delivery) -> Result<Self> {
        Ok(delivery.message.clone())
    }
}

impl FromMessage for MessageId {
    fn from_message(delivery: &Delivery) -> Result<Self> {
        Ok(delivery.message.id)
    }
}

impl FromMessage for Bytes {
    fn from_message(delivery: &Delivery) -> Result<Self> {
        Ok(delivery.message.body.clone())
    }
}

impl FromMessage for String {
    fn from_message(delivery: &Delivery) -> Result<Self> {
        String::from_utf8(delivery.message.body.to_vec()).map_err(|e| Error::Extract {
            extractor: "String",
            reason: format!("the body is not UTF-8 ({e}); take `Bytes` or `Body` for binary bodies"),
        })
    }
}

/// The channel the message was published on (never the pattern).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel(pub String);

impl FromMessage for Channel {
    fn from_message(delivery: &Delivery) -> Result<Self> {
        Ok(Channel(delivery.message.channel.clone()))
    }
}

/// The raw body, byte for byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body(pub Bytes);

impl FromMessage for Body {
    fn from_message(delivery: &Delivery) -> Result<Self> {
        Ok(Body(delivery.message.body.clone()))
    }
}

/// The body deserialized from JSON. A body that does not deserialize into `T`
/// is a permanent failure ([`Error::Deserialize`]): retrying cannot fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + Send + 'static> FromMessage for Json<T> {
    fn from_message(delivery: &Delivery) -> Result<Self> {
        serde_json::from_slice(&delivery.message.body)
            .map(Json)
            .map_err(|source| Error::Deserialize { type_name: type_name::<T>(), source })
    }
}

/// Shared application state registered with `Worker::state(value)`; each
/// delivery gets a clone (wrap large state in an `Arc`).
#[derive(Clone, Debug)]
pub struct State<T>(pub T);

impl<T: Clone + Send + Sync + 'static> FromMessage for State<T> {
    fn from_message(delivery: &Delivery) -> Result<Self> {
        delivery
            .states
            .get::<T>()
            .cloned()
            .map(State)
            .ok_or(Error::MissingState { type_name: type_name::<T>() })
    }

    fn required_state() -> Option<(TypeId, &'static str)> {
        Some((TypeId::of::<T>(), type_name::<T>()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(body: &'static [u8]) -> Delivery {
        let message = Message::new(MessageId::new(7), "c", Bytes::from_static(body));
        Delivery::new(message, "consumer".into(), Arc::default())
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Signup {
        account_id: u64,
    }

    #[test]
    fn json_extracts_and_reports_bad_bodies_as_permanent() {
        let Json(s) = Json::<Signup>::from_message(&delivery(br#"{"account_id":5}"#)).unwrap();
        assert_eq!(s, Signup { account_id: 5 });
        let err = Json::<Signup>::from_message(&delivery(b"{}")).unwrap_err();
        assert!(matches!(err, Error::Deserialize { .. }) && err.is_permanent(), "{err}");
        assert!(err.to_string().contains("Signup") && err.to_string().contains("account_id"), "{err}");
    }

    #[test]
    fn string_needs_utf8() {
        assert_eq!(String::from_message(&delivery(b"hi")).unwrap(), "hi");
        let err = String::from_message(&delivery(b"\xff")).unwrap_err();
        assert!(matches!(err, Error::Extract { .. }) && err.is_permanent(), "{err}");
    }

    #[test]
    fn state_is_found_by_type() {
        let mut states = States::default();
        states.insert(42u32);
        let mut d = delivery(b"");
        d.states = Arc::new(states);
        assert_eq!(State::<u32>::from_message(&d).unwrap().0, 42);
        assert!(matches!(State::<u64>::from_message(&d), Err(Error::MissingState { .. })));
    }

    #[test]
    fn simple_extractors() {
        let d = delivery(b"body");
        assert_eq!(MessageId::from_message(&d).unwrap(), MessageId::new(7));
        assert_eq!(Channel::from_message(&d).unwrap(), Channel("c".into()));
        assert_eq!(Body::from_message(&d).unwrap().0, "body");
        assert_eq!(Bytes::from_message(&d).unwrap(), "body");
        assert_eq!(Message::from_message(&d).unwrap().id, MessageId::new(7));
    }
}
