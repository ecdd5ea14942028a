//! Hostile and broken input, one case per test: each asserts the exact
//! `remq::Error` variant, and where messages flow, that none around the bad one
//! was lost, repeated or reordered.
//!
//! Cases covered elsewhere, not repeated here:
//! - empty pattern: `client.rs` `invalid_channels_and_patterns_are_typed_errors_before_any_call`
//!   (`InvalidPattern` from consume and flush) and `worker.rs` `start_up_errors_are_clear`
//!   (a worker handler with an empty pattern);
//! - invalid channel names: the same client test, and `protocol.rs`
//!   `invalid_channel_names_are_rejected_with_the_rule` / `channel_names_must_be_utf8` (the scripts);
//! - a port with nothing listening: `client.rs` `unreachable_server_and_bad_urls_are_clear_errors`
//!   (`Connect`, retryable) and `worker.rs` `start_up_errors_are_clear` (the worker's `run`);
//! - a URL with a foreign scheme: the same client test (`InvalidUrl`);
//! - a wrong password: `client.rs` `password_protected_server` (`Auth`, permanent);
//! - an untrusted TLS certificate: `tls.rs` `an_untrusted_certificate_is_a_clear_tls_error`;
//! - a body that is not JSON at all: `worker.rs` `extractors_state_and_handler_failures`;
//! - a stored entry on a channel whose name is not UTF-8: `worker.rs`
//!   `a_foreign_entry_with_a_non_utf8_channel_is_skipped_not_fatal`;
//! - malformed frames, byte by byte: the unit tests in `remq-worker/src/message.rs`
//!   and the `frame` fuzz target (`fuzz/`).

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use remq::{Client, Error, MessageId, Worker};
use remq_testkit::{RedisServer, RunningWorker, local_listener, test_worker, wait_for};
use tokio::time::{Instant, timeout};
use tower::util::MapErrLayer;

/// What a handler saw, in order: `(id, body)`.
type Seen = Arc<Mutex<Vec<(MessageId, Vec<u8>)>>>;

/// The kit's worker for the Redis at `server_url` (only the handlers a test
/// adds, from the earliest message). Retries keep the default number of
/// attempts with a short back-off, so a failure wrongly classed as retryable
/// shows up as several attempts.
fn worker(server_url: String) -> Worker {
    test_worker(server_url).retry(remq::RetryPolicy::new().initial_backoff(Duration::from_millis(1)))
}

/// A user `name` with password `pass`, confined to Remq's keys and channels
/// (as the ACL section of docs/protocol.md says), plus `extra` rules.
async fn acl_user(server: &RedisServer, name: &str, pass: &str, extra: &[&str]) -> String {
    server.acl_user(name, pass, &[&RedisServer::REMQ_ONLY[..], extra].concat()).await
}

/// Publishes a marker on `channel` and waits until the handler recorded it:
/// the worker has then gone past everything published before, so a duplicate
/// or a stray among those would be in `seen`. Returns the marker's id.
async fn handled_marker(client: &Client, channel: &str, seen: &Seen) -> MessageId {
    let marker = client.publish(channel, "marker").await.unwrap();
    wait_for(Duration::from_secs(10), "the marker", || {
        seen.lock().unwrap().iter().any(|(id, _)| *id == marker)
    })
    .await;
    marker
}

/// Row: a foreign client PUBLISHes garbage on a Remq pub/sub channel while a
/// worker follows it live. The garbage is logged and skipped; the messages
/// before and after it arrive once each, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_published_on_a_remq_channel_is_skipped_and_its_neighbours_arrive() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    let running = RunningWorker::start(worker(server.url()).named_handler(
        "garbage",
        "g.*",
        move |m: remq::Message| {
            let record = record.clone();
            async move { record.lock().unwrap().push((m.id, m.body.to_vec())) }
        },
    ));
    let mut expected = vec![client.publish("g.a", "first").await.unwrap()];
    wait_for(Duration::from_secs(10), "the first message", || seen.lock().unwrap().len() == 1).await;
    // Now the worker follows pub/sub live.
    let mut raw = server.connection().await;
    for garbage in [
        &b""[..],
        b"no header at all",
        b"g.a@\nno id",
        b"g.a@12x\nbad id",
        b"@7\nno channel",
        b"\xff\xfe@9\nchannel not UTF-8",
        b"g.a@99999999999999999999999\nid too large",
    ] {
        let receivers: u64 =
            redis::cmd("PUBLISH").arg("remq:channel:g.a").arg(garbage).query_async(&mut raw).await.unwrap();
        assert_eq!(receivers, 1, "the worker's subscription received the garbage");
        expected.push(client.publish("g.a", "after").await.unwrap());
    }
    wait_for(Duration::from_secs(10), "every real message", || seen.lock().unwrap().len() >= expected.len())
        .await;
    expected.push(handled_marker(&client, "g.a", &seen).await);
    let ids: Vec<MessageId> = seen.lock().unwrap().iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, expected, "each real message once, in order, none replaced by garbage");
    assert!(!running.is_finished(), "garbage must not stop the worker");
    running.stop().await.unwrap();
}

/// Row: well-formed frames PUBLISHed by hand on a channel's pub/sub channel,
/// which the log never held: one with an id the counter has not reached, one
/// with the next id the counter will give (to a real message), one below the
/// cursor. Pushes are hints: the worker takes what it hands out from the log,
/// so each real message arrives once, in order, with its real body, and the
/// checkpoint ends on the last real id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_push_never_reaches_the_handler() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    let running =
        RunningWorker::start(worker(server.url()).named_handler("forged", "f.*", move |m: remq::Message| {
            let record = record.clone();
            async move { record.lock().unwrap().push((m.id, m.body.to_vec())) }
        }));
    let mut real = vec![client.publish("f.a", "real").await.unwrap()];
    wait_for(Duration::from_secs(10), "the first message", || seen.lock().unwrap().len() == 1).await;
    let mut raw = server.connection().await;
    for id in [1_000_000, real[0].get() + 1, real[0].get()] {
        let _: u64 = redis::cmd("PUBLISH")
            .arg("remq:channel:f.a")
            .arg(format!("f.a@{id}\nforged"))
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    for _ in 0..3 {
        real.push(client.publish("f.a", "real").await.unwrap());
    }
    let last = *real.last().unwrap();
    wait_for(Duration::from_secs(10), "the last real message", || {
        seen.lock().unwrap().iter().any(|(id, _)| *id == last)
    })
    .await;
    real.push(handled_marker(&client, "f.a", &seen).await);
    running.stop().await.unwrap();
    let seen: Vec<(MessageId, Vec<u8>)> = seen.lock().unwrap().clone();
    let ids: Vec<MessageId> = seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, real, "a forged push reached the handler");
    assert!(seen.iter().all(|(_, body)| body != b"forged"), "a forged body was handed out: {seen:?}");
    assert_eq!(server.stored_cursor("forged").await, real.last().map(|id| id.get()), "the checkpoint");
}

/// Row: a stream entry written by hand without the `m` field. The scripts read
/// an entry's first value whatever its field is called, so the entry is
/// delivered (with that value as its body) rather than breaking the page; the
/// messages around it arrive in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_entry_without_the_message_field_does_not_break_the_log() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let before = client.publish("s.a", "before").await.unwrap();
    let mut raw = server.connection().await;
    let foreign: u64 = redis::cmd("INCR").arg("remq:id").query_async(&mut raw).await.unwrap();
    let _: String = redis::cmd("XADD")
        .arg("remq:channel:s.a")
        .arg(format!("{foreign}-0"))
        .arg("not-m")
        .arg("foreign value")
        .query_async(&mut raw)
        .await
        .unwrap();
    let after = client.publish("s.a", "after").await.unwrap();

    let page = client.consume("s.*", MessageId::ZERO, 10).await.unwrap();
    let got: Vec<_> = page.iter().map(|m| (m.id.get(), &m.body[..])).collect();
    assert_eq!(
        got,
        [(before.get(), &b"before"[..]), (foreign, b"foreign value"), (after.get(), b"after")],
        "consume keeps every entry, in id order"
    );

    let seen = Seen::default();
    let record = seen.clone();
    let running =
        RunningWorker::start(worker(server.url()).named_handler("fields", "s.*", move |m: remq::Message| {
            let record = record.clone();
            async move { record.lock().unwrap().push((m.id, m.body.to_vec())) }
        }));
    wait_for(Duration::from_secs(10), "three messages", || seen.lock().unwrap().len() >= 3).await;
    let ids: Vec<u64> = seen.lock().unwrap().iter().map(|(id, _)| id.get()).collect();
    assert_eq!(ids, [before.get(), foreign, after.get()]);
    running.stop().await.unwrap();
}

/// A worker whose one handler takes a `$ty` argument on `x.*`; it records the
/// ids handled and, through an application layer, the `remq::Error` variant of
/// every failed attempt (`Extract(<extractor>)`, `Deserialize(<type>)`, or
/// `other: …`) with whether it is permanent.
macro_rules! extractor_case {
    ($server:expr, $name:literal, |$arg:ident: $ty:ty| $use:expr) => {{
        let errors = Arc::new(Mutex::new(Vec::<(String, bool)>::new()));
        let handled = Arc::new(Mutex::new(Vec::<MessageId>::new()));
        let (record_error, record_id) = (errors.clone(), handled.clone());
        let worker = worker($server.url())
            .layer(MapErrLayer::new(move |error: Error| {
                let kind = match &error {
                    Error::Extract { extractor, .. } => format!("Extract({extractor})"),
                    Error::Deserialize { type_name, .. } => format!("Deserialize({type_name})"),
                    other => format!("other: {other:?}"),
                };
                record_error.lock().unwrap().push((kind, error.is_permanent()));
                error
            }))
            .named_handler($name, "x.*", move |id: MessageId, $arg: $ty| {
                let record_id = record_id.clone();
                async move {
                    let _ = $use;
                    record_id.lock().unwrap().push(id);
                }
            });
        (RunningWorker::start(worker), errors, handled)
    }};
}

/// Row: a body that is not UTF-8, for a handler taking `String`. The
/// delivery fails with `Error::Extract` (permanent: dead-lettered, not
/// retried); the neighbours are handled in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_utf8_body_for_a_string_argument_is_an_extract_error() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let ok1 = client.publish("x.s", "valid").await.unwrap();
    let bad = client.publish("x.s", b"\xff\xfe not UTF-8".as_slice()).await.unwrap();
    let ok2 = client.publish("x.s", "valid again").await.unwrap();
    let (running, errors, handled) = extractor_case!(server, "strings", |body: String| body.len());
    wait_for(Duration::from_secs(10), "both valid messages", || handled.lock().unwrap().len() >= 2).await;
    assert_eq!(*handled.lock().unwrap(), [ok1, ok2]);
    assert_eq!(
        *errors.lock().unwrap(),
        [("Extract(String)".to_owned(), true)],
        "one failed attempt, permanent, not retried"
    );
    let dead = client.consume("dead.x.s", MessageId::ZERO, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "the bad message was dead-lettered");
    let envelope = remq::middleware::DeadLetterEnvelope::parse(&dead[0].body).unwrap();
    assert_eq!(envelope.message.id, bad);
    running.stop().await.unwrap();
}

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Order {
    id: u64,
    total_cents: u64,
}

/// Row: valid JSON that does not match the handler's type. The delivery fails
/// with `Error::Deserialize` naming the type (permanent); the neighbours are
/// handled in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_of_the_wrong_shape_is_a_deserialize_error() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let ok1 = client.publish("x.o", r#"{"id":1,"total_cents":100}"#).await.unwrap();
    for wrong in
        [r#"{"id":"one","total_cents":100}"#, r#"{"id":2}"#, r#""order""#, r#"{"id":-3,"total_cents":1}"#]
    {
        client.publish("x.o", wrong).await.unwrap();
    }
    let ok2 = client.publish("x.o", r#"{"id":5,"total_cents":0}"#).await.unwrap();
    let (running, errors, handled) =
        extractor_case!(server, "orders", |order: remq::Json<Order>| order.0.total_cents);
    wait_for(Duration::from_secs(10), "both valid orders", || handled.lock().unwrap().len() >= 2).await;
    // Past a valid order published after them, the worker has dealt with every
    // wrong body: a retry or a late one would show.
    let marker = client.publish("x.o", r#"{"id":6,"total_cents":0}"#).await.unwrap();
    wait_for(Duration::from_secs(10), "the last valid order", || handled.lock().unwrap().contains(&marker))
        .await;
    assert_eq!(*handled.lock().unwrap(), [ok1, ok2, marker]);
    let expected = (format!("Deserialize({})", std::any::type_name::<Order>()), true);
    assert_eq!(
        *errors.lock().unwrap(),
        vec![expected; 4],
        "one permanent failure per wrong body, not retried"
    );
    running.stop().await.unwrap();
}

/// Row: patterns that cannot match any channel, through every entry point
/// that takes one (the empty pattern is covered in client.rs and worker.rs).
#[tokio::test]
async fn a_pattern_with_a_newline_is_an_invalid_pattern_error() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    for pattern in ["a\n*", "\n"] {
        let err = client.consume(pattern, MessageId::ZERO, 10).await.unwrap_err();
        assert!(matches!(err, Error::InvalidPattern { .. }), "{err:?}");
        assert!(matches!(client.flush(pattern, MessageId::new(10)).await, Err(Error::InvalidPattern { .. })));
        let err = worker(server.url()).handler(pattern, |_: MessageId| async {}).run().await.unwrap_err();
        assert!(matches!(err, Error::InvalidPattern { .. }), "{err:?}");
    }
}

/// Row: URLs that do not parse. `InvalidUrl`, at once, without the password.
#[tokio::test]
async fn invalid_urls_are_invalid_url_errors_without_the_password() {
    for url in [
        "",
        "not a url",
        "redis://:pw-in-url@127.0.0.1:notaport",
        "redis://:pw-in-url@127.0.0.1:6379/notadb",
        "redis://:pw-in-url@:6379",
        "unix:///tmp/nowhere.sock?db=x&pass=pw-in-url",
        "redis+unix:///tmp/nowhere.sock?pass=pw-in-url&db=",
    ] {
        let err = timeout(Duration::from_secs(5), Client::connect(url))
            .await
            .expect("a bad URL fails at once")
            .unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{url:?}: {err:?}");
        assert!(err.is_permanent());
        let text = format!("{err} {err:?}");
        assert!(!text.contains("pw-in-url"), "the password leaked: {text}");
    }
}

/// A TCP server on a free port that answers every connection with `reply`
/// (then closes it, or keeps it open and silent) — something that is not Redis.
fn impostor(reply: &'static [u8], close: bool) -> u16 {
    let (listener, addr) = local_listener();
    let port = addr.port();
    std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 256];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = stream.read(&mut request);
            let _ = stream.write_all(reply);
            if !close {
                open.push(stream);
            }
        }
    });
    port
}

/// Row: a server that is not Redis. The client fails in bounded time instead
/// of hanging: `NotRedis` (permanent, "check the host and port") when it
/// answers something else, `Connect` after the connect timeout when it says
/// nothing.
#[tokio::test]
async fn a_server_that_is_not_redis_fails_fast_with_a_clear_error() {
    for (what, reply, close, not_redis) in [
        ("an HTTP server", &b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"[..], true, true),
        ("a server answering binary garbage", b"\x00\x01\x02\xff\xfe\r\n", false, true),
        // Nothing to tell it from a Redis that hangs: the connect timeout ends it.
        ("a server that accepts and says nothing", b"", false, false),
    ] {
        let port = impostor(reply, close);
        let started = Instant::now();
        let err =
            timeout(Duration::from_secs(20), Client::connect(&format!("redis://:pw-x@127.0.0.1:{port}")))
                .await
                .unwrap_or_else(|_| panic!("{what}: connect hung for 20 s"))
                .unwrap_err();
        let elapsed = started.elapsed();
        let text = err.to_string();
        println!("{what}: {elapsed:?}: {text}");
        if not_redis {
            assert!(matches!(err, Error::NotRedis { .. }), "{what}: {err:?}");
            assert!(
                err.is_permanent() && text.contains("does not speak the Redis protocol"),
                "{what}: {text}"
            );
        } else {
            assert!(matches!(err, Error::Connect { .. }), "{what}: {err:?}");
        }
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{what}: {text}");
        assert!(!text.contains("pw-x"), "{what}: {text}");
        assert!(elapsed < Duration::from_secs(12), "{what}: took {elapsed:?}");
    }
}

/// Row: a Redis user that may not run Lua scripts. Publishing fails with a
/// permanent `Error::Permission` naming the refused command and the rule to
/// add; a worker stops with it instead of retrying forever.
#[tokio::test]
async fn a_user_without_scripting_rights_gets_a_permission_error_naming_the_command() {
    let server = RedisServer::start();
    let url = acl_user(&server, "noscripts", "pw-noscripts", &["-eval", "-evalsha"]).await;
    let client = Client::connect(&url).await.expect("connecting needs no scripting");
    let err = client.publish("a", "m").await.unwrap_err();
    let text = err.to_string();
    println!("{text}");
    assert!(matches!(err, Error::Permission { op: "publish", .. }), "{err:?}");
    assert!(err.is_permanent(), "a missing permission does not heal by retrying: {err:?}");
    assert!(text.contains("'evalsha'") && text.contains("+evalsha"), "{text}");
    assert!(!text.contains("pw-noscripts"), "{text}");
    let err = client.consume("*", MessageId::ZERO, 10).await.unwrap_err();
    assert!(matches!(err, Error::Permission { op: "consume", .. }), "{err:?}");
    let err = timeout(
        Duration::from_secs(20),
        worker(url).named_handler("noscripts", "a.*", |_: MessageId| async {}).run(),
    )
    .await
    .expect("the worker gave up")
    .unwrap_err();
    assert!(matches!(err, Error::Permission { .. }), "{err:?}");
}

/// Row: a Redis user that may not subscribe to Remq's channels. Its worker
/// stops with a permanent `Error::Permission` naming the channel pattern to
/// grant.
#[tokio::test]
async fn a_user_without_pubsub_rights_gets_a_permission_error_naming_the_pattern() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    client.publish("p.a", "m").await.unwrap();
    // Keys and scripts, but the channels are reset to none after the helper's `&remq:*`.
    let url = acl_user(&server, "nopubsub", "pw-nopubsub", &["resetchannels"]).await;
    let err = timeout(
        Duration::from_secs(20),
        worker(url.clone()).named_handler("nopubsub", "p.*", |_: MessageId| async {}).run(),
    )
    .await
    .expect("the worker gave up")
    .unwrap_err();
    let text = err.to_string();
    println!("{text}");
    assert!(matches!(err, Error::Permission { op: "subscribe", .. }), "{err:?}");
    assert!(err.is_permanent());
    assert!(text.contains("&remq:channel:p.*"), "the error names the channel rule to add: {text}");
    assert!(!text.contains("pw-nopubsub"), "{text}");
    // Publishing pushes to a channel too, inside the script.
    let err = Client::connect(&url).await.unwrap().publish("p.a", "m").await.unwrap_err();
    assert!(matches!(err, Error::Permission { op: "publish", .. }), "{err:?}");
    assert!(err.to_string().contains("&remq:*"), "{err}");
}

/// Row: `consume` after an id beyond the namespace's counter (a cursor from
/// another namespace, or from before Redis lost its data). It is a read, not
/// an error: nothing comes back, and the log is unharmed.
#[tokio::test]
async fn consume_after_an_id_beyond_the_counter_returns_nothing() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let ids = client.publish_batch("c.a", ["1", "2", "3"]).await.unwrap();
    client.publish("c.b", "4").await.unwrap();
    let head = client.head().await.unwrap();
    for beyond in [head.get() + 1, 1 << 40, u64::MAX] {
        for pattern in ["c.a", "c.*"] {
            let page = client.consume(pattern, MessageId::new(beyond), 10).await.unwrap();
            assert!(page.is_empty(), "{pattern} after {beyond}: {page:?}");
        }
    }
    let all = client.consume("c.*", MessageId::ZERO, 10).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].id, *ids.start());
}
