//! What a feed reads from: pages of the log, its head, live pushes (and
//! which of them the log holds), and the time index. The
//! feed is written against this trait so its hard cases can be tested with a
//! fake log; the real source is a [`Store`].

use std::future::Future;
use std::time::SystemTime;

use crate::connection::{Pushes, Store};
use crate::protocol::PackedPage;
use crate::{Message, MessageId, Result, log};

/// Pages, head, pushes and the time index of one namespace.
pub(crate) trait Source: Clone + Send + Sync + 'static {
    /// Up to `limit` entries of the channels matching `pattern` after `after`,
    /// in id order, with the log's state read in the same call.
    fn page(
        &self,
        pattern: &str,
        after: MessageId,
        limit: usize,
    ) -> impl Future<Output = Result<PackedPage>> + Send;

    /// The messages among `pushes` (live pushes in id order) that the log
    /// holds, with the log's bodies, in the same order.
    fn stored(&self, pushes: Vec<Message>) -> impl Future<Output = Result<Vec<Message>>> + Send;

    /// The last id issued.
    fn head(&self) -> impl Future<Output = Result<MessageId>> + Send;

    /// The live pushes of the channels matching `pattern`, from now on.
    fn subscribe(&self, pattern: &str) -> impl Future<Output = Result<Pushes>> + Send;

    /// The first id that may have been published at or after `time`.
    fn id_at(&self, time: SystemTime) -> impl Future<Output = Result<MessageId>> + Send;
}

impl Source for Store {
    fn page(
        &self,
        pattern: &str,
        after: MessageId,
        limit: usize,
    ) -> impl Future<Output = Result<PackedPage>> + Send {
        log::read_page(self, pattern, after, limit)
    }

    fn stored(&self, pushes: Vec<Message>) -> impl Future<Output = Result<Vec<Message>>> + Send {
        log::stored(self, pushes)
    }

    fn head(&self) -> impl Future<Output = Result<MessageId>> + Send {
        log::head(self)
    }

    fn id_at(&self, time: SystemTime) -> impl Future<Output = Result<MessageId>> + Send {
        log::time_index::first_id_at(self, time)
    }

    fn subscribe(&self, pattern: &str) -> impl Future<Output = Result<Pushes>> + Send {
        Store::subscribe(self, pattern)
    }
}
