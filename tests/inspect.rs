//! The client APIs that tools are built on (the `remq` command line among them):
//! `Client::tail`, `Client::channels` and `redrive_page`, against real
//! redis-server processes.

use std::time::Duration;

use remq::{Client, Error, MessageId, StartFrom};
use remq_testkit::{RedisServer, publish_when_back};

async fn client(server: &RedisServer) -> Client {
    Client::connect(&server.url()).await.unwrap()
}

/// The next message of `tail`, or a panic after a generous timeout.
async fn next(tail: &mut remq::Tail) -> remq::Message {
    tokio::time::timeout(Duration::from_secs(10), tail.next()).await.expect("a message in time").unwrap()
}

#[tokio::test]
async fn tail_replays_then_follows_live_without_gap_or_duplicate() {
    let server = RedisServer::start();
    let client = client(&server).await;
    let mut published = Vec::new();
    for i in 0..300 {
        published.push(client.publish(&format!("t.{}", i % 3), format!("old {i}")).await.unwrap());
    }
    client.publish("other", "not matched").await.unwrap();
    // A replay page is 1000 messages: the publisher keeps going while the tail
    // replays, so the tail switches to live with pushes already buffered.
    let mut tail = client.tail("t.*", StartFrom::Earliest).await.unwrap();
    let publisher = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..3000 {
                ids.push(client.publish(&format!("t.{}", i % 3), format!("new {i}")).await.unwrap());
            }
            ids
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 3300 {
        let message = next(&mut tail).await;
        assert!(message.channel.starts_with("t."), "{message:?}");
        seen.push(message.id);
    }
    published.extend(publisher.await.unwrap());
    assert_eq!(seen, published, "every message once, in id order");
    let last = client.publish("t.0", "after").await.unwrap();
    assert_eq!(next(&mut tail).await.id, last);
}

#[tokio::test]
async fn tail_starts_latest_or_after_an_id() {
    let server = RedisServer::start();
    let client = client(&server).await;
    let a = client.publish("s", "a").await.unwrap();
    let b = client.publish("s", "b").await.unwrap();
    let mut latest = client.tail("s", StartFrom::Latest).await.unwrap();
    let mut after_a = client.tail("s", StartFrom::After(a)).await.unwrap();
    let c = client.publish("s", "c").await.unwrap();
    assert_eq!(next(&mut latest).await.id, c, "latest skips what was published before");
    assert_eq!(next(&mut after_a).await.id, b);
    assert_eq!(next(&mut after_a).await.body, "c");
    assert!(format!("{latest:?}").contains(&b.to_string()));
    assert!(matches!(client.tail("", StartFrom::Earliest).await, Err(Error::InvalidPattern { .. })));
}

#[tokio::test]
async fn channels_report_counts_id_ranges_and_memory() {
    let server = RedisServer::start();
    let client = client(&server).await;
    assert_eq!(client.channels("*").await.unwrap(), []);
    let first = client.publish("orders.created", "1").await.unwrap();
    client.publish("users.created", "2").await.unwrap();
    let last = client.publish_batch("orders.created", ["3", "4"]).await.unwrap();
    let orders = client.channels("orders.*").await.unwrap();
    assert_eq!(orders.len(), 1);
    let info = &orders[0];
    assert_eq!((info.name.as_str(), info.messages), ("orders.created", 3));
    assert_eq!((info.first, info.last), (Some(first), Some(*last.end())));
    assert!(info.memory_bytes.unwrap() > 0);
    let names: Vec<_> = client.channels("*").await.unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["orders.created", "users.created"]);
    client.flush("*", MessageId::new(100)).await.unwrap();
    let flushed = &client.channels("orders.created").await.unwrap()[0];
    assert_eq!((flushed.messages, flushed.first, flushed.last), (0, None, None), "flushed, still listed");
    let other = client.with_namespace("remq:{other}").unwrap();
    assert_eq!(other.channels("*").await.unwrap(), [], "namespaces are apart");
}

#[tokio::test]
async fn redrive_page_reports_each_message_and_refuses_a_page_with_a_stranger() {
    let server = RedisServer::start();
    let client = client(&server).await;
    let envelope = |channel: &str, id: u64, body: &str| {
        format!(
            "remq-dead-letter: 1\nchannel: {channel}\nid: {id}\nhandler: h\nattempts: 1\nerror: e\n\n{body}"
        )
    };
    let d1 = client.publish("dead.a", envelope("a", 1, "one")).await.unwrap();
    let d2 = client.publish("dead.b", envelope("b", 2, "two")).await.unwrap();
    let page = remq::redrive_page(&client, "dead.*", MessageId::ZERO, 10).await.unwrap();
    let got: Vec<_> = page.iter().map(|r| (r.dead_id, r.channel.as_str())).collect();
    assert_eq!(got, [(d1, "a"), (d2, "b")]);
    let a = client.consume("a", MessageId::ZERO, 10).await.unwrap();
    assert_eq!((a[0].id, &a[0].body[..]), (page[0].id, &b"one"[..]));
    assert_eq!(remq::redrive_page(&client, "dead.*", d2, 10).await.unwrap(), []);
    client.publish("dead.a", "not an envelope").await.unwrap();
    client.publish("dead.a", envelope("a", 3, "three")).await.unwrap();
    let stranger = remq::redrive_page(&client, "dead.a", d1, 10).await;
    assert!(matches!(stranger, Err(Error::MalformedFrame { .. })), "{stranger:?}");
    assert_eq!(
        client.consume("a", MessageId::ZERO, 10).await.unwrap().len(),
        1,
        "nothing of that page replayed"
    );
}

#[tokio::test]
async fn tail_replays_new_messages_when_the_id_counter_went_backwards() {
    let mut server = RedisServer::start(); // no persistence: a restart loses everything
    let client = client(&server).await;
    let mut tail = client.tail("r", StartFrom::Earliest).await.unwrap();
    // The counter can only be seen to have gone back while it is below the
    // tail's cursor: put that above what is published after the restart.
    client.publish_batch("r", ["old"; 10]).await.unwrap();
    for _ in 0..10 {
        assert_eq!(next(&mut tail).await.body, "old");
    }
    server.restart();
    // The first calls after the restart may fail while the connection comes back.
    let publisher = async {
        let mut ids = Vec::new();
        for body in ["c", "d"] {
            ids.push(publish_when_back(&client, "r", body, Duration::from_secs(10)).await);
        }
        ids
    };
    let (published, (c, d)) =
        tokio::join!(publisher, async { (next(&mut tail).await, next(&mut tail).await) });
    assert_eq!(published, [MessageId::new(1), MessageId::new(2)], "the counter started over");
    assert_eq!(
        (c.id.get(), &c.body[..], d.id.get(), &d.body[..]),
        (1, &b"c"[..], 2, &b"d"[..]),
        "not skipped"
    );
}
