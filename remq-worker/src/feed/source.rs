//! What a feed reads from: pages of the log, its head, and live pushes. The
//! feed is written against this trait so its hard cases can be tested with a
//! fake log; the real source is a [`Store`].

use std::future::Future;

use crate::connection::{Pushes, Store};
use crate::protocol::PackedPage;
use crate::{MessageId, Result, log};

/// Pages, head and pushes of one namespace.
pub(crate) trait Source: Clone + Send + Sync + 'static {
    /// Up to `limit` entries of the channels matching `pattern` after `after`,
    /// in id order, with the log's state read in the same call.
    fn page(
        &self,
        pattern: &str,
        after: MessageId,
        limit: usize,
    ) -> impl Future<Output = Result<PackedPage>> + Send;

    /// The last id issued.
    fn head(&self) -> impl Future<Output = Result<MessageId>> + Send;

    /// The live pushes of the channels matching `pattern`, from now on.
    fn subscribe(&self, pattern: &str) -> impl Future<Output = Result<Pushes>> + Send;
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

    fn head(&self) -> impl Future<Output = Result<MessageId>> + Send {
        log::head(self)
    }

    fn subscribe(&self, pattern: &str) -> impl Future<Output = Result<Pushes>> + Send {
        Store::subscribe(self, pattern)
    }
}
