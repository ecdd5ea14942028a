//! Procedural macros for Remq. Use them through the `remq` crate (`remq-worker`):
//! `#[remq::handler("events.*")]`. This crate is an implementation detail.

use proc_macro::TokenStream;

mod handler;

/// Registers an `async fn` as the handler of every channel matching a glob pattern.
///
/// # Example
/// ```
/// use remq::{Json, Message, State};
///
/// #[derive(serde::Deserialize)]
/// struct AccountCreated {
///     account_id: u64,
/// }
///
/// #[derive(Clone)]
/// struct Mailer;
///
/// /// Consumes `events.accounts.created`, `events.orders.paid`, ...
/// #[remq::handler("events.*")]
/// async fn on_event(message: Message) {
///     println!("{} #{}", message.channel, message.id);
/// }
///
/// /// The same pattern under its own durable name: it keeps its own position
/// /// in the log, independent of `on_event`.
/// #[remq::handler("events.accounts.created", name = "welcome-mail")]
/// async fn welcome(
///     Json(event): Json<AccountCreated>,
///     State(mailer): State<Mailer>,
/// ) -> Result<(), remq::Error> {
///     let _ = (event.account_id, mailer);
///     Ok(())
/// }
/// ```
///
/// # Arguments
/// - The first argument, required: the glob pattern of the channels to consume, a
///   non-empty string literal without a newline (`*`, `?` and `[...]` as in Redis
///   `PSUBSCRIBE`).
/// - Then options, as `key = value`, each at most once:
///   - `name = "..."`: the durable consumer name, under which the position in the
///     log is kept; not empty. Defaults to the function's path,
///     `concat!(module_path!(), "::", "<fn name>")`, so renaming or moving the
///     function starts a new consumer: set a `name` for handlers in production.
///   - `retries = 5`: retries after the first attempt (0: none), instead of the
///     worker's retry policy's count.
///   - `timeout = "30s"`: the deadline of one attempt (`ms`, `s`, `m`, `h`); one that
///     runs longer is cancelled and counts as a failed attempt.
///   - `dead_letter = "dead.billing"`: the channel this handler's failed messages
///     go to, instead of `dead.<channel>`.
///   - `concurrency = 8`: messages handled at once; one at a time per channel, so
///     each channel's stay in id order.
///   - `timeout_permanent = true`: running past `timeout` is a permanent failure
///     (dead-lettered at once) instead of a retryable one.
///   - `rate_limit = 100`: at most this many attempts a second.
///   - `namespace = "remq:{billing}"`: the namespace this handler consumes (its
///     cursor, lease and dead letters live there too), instead of the worker's;
///     one worker can follow several namespaces over one connection.
///
/// # The function
/// A free `async fn` (not in an `impl` block, not generic) whose arguments all implement
/// `remq::FromMessage` (`Json<T>`, `Message`, `MessageId`, `Channel`, `Body`,
/// `Bytes`, `String`, `State<T>`), at most eight of them, returning `()` or
/// `Result<(), E>`. Every mistake is a compile error on the offending tokens: an
/// argument that is not an extractor is reported on its type.
///
/// # Expansion
/// The function itself, unchanged (call it directly in tests), and next to it an
/// anonymous `const _: () = { ... };` block that
/// - asserts, in a function never called, that each argument type is an extractor
///   (`remq::__private::assert_from_message::<Type>()`), and
/// - submits a `remq::__private::Registration { pattern, name, make }` to the
///   `inventory` registry, where `make` erases the function into a
///   `remq::BoxedHandler`. The worker picks up every registered handler.
///
/// The expansion names the crate `::remq`, so depend on `remq-worker` without
/// renaming it.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let original = proc_macro2::TokenStream::from(item.clone());
    match handler::expand(attr.into(), item.into()) {
        Ok(expanded) => expanded.into(),
        Err(error) => {
            // Keep the function, so its callers don't fail with "not found" too.
            let mut tokens = error.to_compile_error();
            tokens.extend(original);
            tokens.into()
        }
    }
}
