//! `remq::Client` against real redis-server processes.

use std::collections::HashSet;
use std::time::Duration;

use remq::{Client, Error, MessageId};
use remq_testkit::{RedisServer, closed_port, publish_when_back};

async fn client(server: &RedisServer) -> Client {
    Client::connect(&server.url()).await.unwrap()
}

#[tokio::test]
async fn publish_consume_and_head_round_trip() {
    let server = RedisServer::start();
    let client = client(&server).await;
    assert_eq!(client.head().await.unwrap(), MessageId::ZERO);
    let a = client.publish("orders.created", "one").await.unwrap();
    let b = client.publish("orders.paid", b"two\n\0".as_slice()).await.unwrap();
    let c = client.publish("users.created", "three").await.unwrap();
    assert!(a < b && b < c);
    assert_eq!(client.head().await.unwrap(), c);
    let messages = client.consume("orders.*", MessageId::ZERO, 100).await.unwrap();
    let got: Vec<_> = messages.iter().map(|m| (m.id, m.channel.as_str(), &m.body[..])).collect();
    assert_eq!(got, [(a, "orders.created", &b"one"[..]), (b, "orders.paid", &b"two\n\0"[..])]);
    assert_eq!(client.consume("orders.*", b, 100).await.unwrap(), []);
    assert_eq!(client.consume("*", a, 1).await.unwrap()[0].id, b, "the cursor is exclusive and limit holds");
}

#[tokio::test]
async fn publish_batch_returns_the_id_range() {
    let server = RedisServer::start();
    let client = client(&server).await;
    client.publish("b", "first").await.unwrap();
    let ids = client.publish_batch("b", ["x", "y", "z"]).await.unwrap();
    assert_eq!(ids, MessageId::new(2)..=MessageId::new(4));
    let bodies: Vec<_> =
        client.consume("b", MessageId::new(1), 10).await.unwrap().into_iter().map(|m| m.body).collect();
    assert_eq!(bodies, ["x", "y", "z"]);
    assert!(matches!(client.publish_batch("b", Vec::<&str>::new()).await, Err(Error::EmptyBatch)));
}

#[tokio::test]
async fn concurrent_publishes_from_many_tasks_get_unique_ids_and_all_arrive() {
    let server = RedisServer::start();
    let client = client(&server).await;
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..100 {
                    ids.push(client.publish(&format!("load.{}", t % 4), format!("{t}/{i}")).await.unwrap());
                }
                ids
            })
        })
        .collect();
    let mut published = HashSet::new();
    for task in tasks {
        for id in task.await.unwrap() {
            assert!(published.insert(id), "id {id} issued twice");
        }
    }
    let (mut seen, mut cursor) = (Vec::new(), MessageId::ZERO);
    loop {
        let page = client.consume("load.*", cursor, 1000).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.id;
        seen.extend(page.iter().map(|m| m.id));
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "consume returns ascending ids");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), published);
}

#[tokio::test]
async fn flush_removes_messages_below_the_bound() {
    let server = RedisServer::start();
    let client = client(&server).await;
    let ids = client.publish_batch("f", ["1", "2", "3", "4"]).await.unwrap();
    assert_eq!(client.flush("*", MessageId::new(ids.start().get() + 2)).await.unwrap(), 2);
    let left: Vec<_> =
        client.consume("f", MessageId::ZERO, 10).await.unwrap().into_iter().map(|m| m.body).collect();
    assert_eq!(left, ["3", "4"]);
}

#[tokio::test]
async fn namespaces_share_the_connection_but_nothing_else() {
    let server = RedisServer::start();
    let default = client(&server).await;
    let orders = default.with_namespace("remq:{orders}").unwrap();
    assert_eq!(orders.namespace().base(), "remq:{orders}");
    assert_eq!(default.publish("c", "d").await.unwrap(), MessageId::new(1));
    assert_eq!(orders.publish("c", "o").await.unwrap(), MessageId::new(1));
    assert_eq!(orders.publish("c", "o2").await.unwrap(), MessageId::new(2));
    assert_eq!(default.head().await.unwrap(), MessageId::new(1));
    assert_eq!(orders.consume("*", MessageId::ZERO, 10).await.unwrap().len(), 2);
    assert!(matches!(default.with_namespace("remq:*"), Err(Error::InvalidNamespace { .. })));
}

#[tokio::test]
async fn invalid_channels_and_patterns_are_typed_errors_before_any_call() {
    let server = RedisServer::start();
    let client = client(&server).await;
    for channel in ["", "a\nb", "a*", "a?", "[a]"] {
        let err = client.publish(channel, "m").await.unwrap_err();
        assert!(matches!(err, Error::InvalidChannel { .. }), "{channel:?}: {err}");
        assert!(!err.is_retryable());
    }
    assert!(matches!(client.consume("", MessageId::ZERO, 1).await, Err(Error::InvalidPattern { .. })));
    assert!(matches!(client.flush("", MessageId::ZERO).await, Err(Error::InvalidPattern { .. })));
    assert_eq!(client.head().await.unwrap(), MessageId::ZERO, "nothing was published");
}

#[tokio::test]
async fn messages_above_the_size_limit_are_refused_by_the_client_and_the_scripts() {
    let server = RedisServer::start();
    let small = remq::Client::builder(server.url()).max_message_size(1000).connect().await.unwrap();
    small.publish("big", vec![b'x'; 1000]).await.unwrap();
    let error = small.publish("big", vec![b'x'; 1001]).await.unwrap_err();
    assert!(matches!(error, Error::MessageTooLarge { size: 1001, max: 1000 }), "{error}");
    assert!(error.to_string().contains("store big payloads elsewhere"), "{error}");
    let error = small.publish_batch("big", [vec![b'x'; 10], vec![b'x'; 1001]]).await.unwrap_err();
    assert!(matches!(error, Error::MessageTooLarge { .. }), "{error}");
    assert_eq!(small.head().await.unwrap().get(), 1, "nothing was sent");
    // Another language's client cannot get past the scripts' own limit.
    let mut raw = server.connection().await;
    let over = vec![b'x'; remq::MAX_MESSAGE_SIZE + 1];
    let publish = redis::Script::new(include_str!("../scripts/publish.lua"));
    let error = publish.arg("big").arg(&over).invoke_async::<u64>(&mut raw).await.unwrap_err();
    assert!(error.to_string().contains("message too large"), "{error}");
    let batch = redis::Script::new(include_str!("../scripts/publish_batch.lua"));
    let error = batch.arg("big").arg("ok").arg(&over).invoke_async::<(u64, u64)>(&mut raw).await.unwrap_err();
    assert!(error.to_string().contains("message 2 has"), "{error}");
    let at_limit =
        publish.arg("big").arg(vec![b'x'; remq::MAX_MESSAGE_SIZE]).invoke_async::<u64>(&mut raw).await;
    assert_eq!(at_limit.unwrap(), 2, "exactly the limit is fine");
}

#[tokio::test]
async fn scripts_are_reloaded_after_script_flush() {
    let server = RedisServer::start();
    let client = client(&server).await;
    client.publish("s", "before").await.unwrap();
    let mut raw = server.connection().await;
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut raw).await.unwrap();
    client.publish("s", "after").await.unwrap();
    assert_eq!(client.consume("s", MessageId::ZERO, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_client_reconnects_after_redis_restarts() {
    let mut server =
        RedisServer::builder().arg("--appendonly").arg("yes").arg("--appendfsync").arg("always").start();
    let client = client(&server).await;
    let before = client.publish("r", "before").await.unwrap();
    server.restart();
    // The first call after the restart may see the dropped connection; the
    // connection manager reconnects in the background.
    let after = publish_when_back(&client, "r", "after", Duration::from_secs(5)).await;
    assert!(after > before, "ids keep increasing across an AOF restart");
    assert_eq!(client.consume("r", MessageId::ZERO, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn password_protected_server() {
    let server = RedisServer::builder().arg("--requirepass").arg("hunter2-secret").start();
    let url = format!("redis://:hunter2-secret@127.0.0.1:{}", server.port());
    let client = Client::connect(&url).await.unwrap();
    client.publish("p", "ok").await.unwrap();
    assert!(!format!("{client:?}").contains("hunter2"), "Debug shows the password: {client:?}");

    let wrong = format!("redis://:wrong-secret@127.0.0.1:{}", server.port());
    let err = Client::connect(&wrong).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert!(!err.is_retryable());
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("wrong-secret"), "the password leaked: {text}");
        assert!(text.contains(&format!("127.0.0.1:{}", server.port())), "the address is missing: {text}");
    }
    let err = Client::connect(&server.url()).await.map(|_| ()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("NOAUTH") || text.to_lowercase().contains("auth"), "{text}");
}

#[tokio::test]
async fn unreachable_server_and_bad_urls_are_clear_errors() {
    let port = closed_port();
    let err = Client::connect(&format!("redis://:topsecret@127.0.0.1:{port}")).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_retryable());
    let text = format!("{err} {err:?}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) && text.contains("redis-server is running"),
        "{text}"
    );
    assert!(!text.contains("topsecret"), "{text}");

    let err = Client::connect("http://user:topsecret@host").await.unwrap_err();
    assert!(matches!(err, Error::InvalidUrl { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("topsecret"), "{err:?}");
}

#[tokio::test]
async fn storage_costs_at_most_40_bytes_per_small_message() {
    let server = RedisServer::start();
    let client = client(&server).await;
    client.publish("mem", "warm!").await.unwrap();
    let before = used_memory(&server).await;
    for _ in 0..100 {
        client.publish_batch("mem", std::iter::repeat_n("12345", 1000)).await.unwrap();
    }
    let per_message = (used_memory(&server).await - before) as f64 / 100_000.0;
    println!("{per_message:.1} bytes of used_memory per five-byte message");
    assert!(per_message <= 40.0, "{per_message:.1} bytes per message");
}

async fn used_memory(server: &RedisServer) -> i64 {
    let mut raw = server.connection().await;
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut raw).await.unwrap();
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).unwrap().trim().parse().unwrap()
}
