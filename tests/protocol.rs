//! The wire protocol driven the way another language's client would: raw `EVAL`
//! of the scripts in `scripts/` and raw `PSUBSCRIBE`, against a real redis-server.

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Value};
use remq_testkit::{RedisServer, wait_until};

const PUBLISH: &str = include_str!("../scripts/publish.lua");
const PUBLISH_BATCH: &str = include_str!("../scripts/publish_batch.lua");
const CONSUME: &str = include_str!("../scripts/consume.lua");
const FLUSH: &str = include_str!("../scripts/flush.lua");

/// `EVAL <script> <keys.len()> <keys…> <args…>`, exactly as any client would send it.
async fn eval<T: redis::FromRedisValue>(
    conn: &mut MultiplexedConnection,
    script: &str,
    keys: &[&str],
    args: &[&[u8]],
) -> RedisResult<T> {
    redis::cmd("EVAL").arg(script).arg(keys.len()).arg(keys).arg(args).query_async(conn).await
}

async fn publish(conn: &mut MultiplexedConnection, channel: &str, message: &[u8]) -> u64 {
    eval(conn, PUBLISH, &[], &[channel.as_bytes(), message]).await.unwrap()
}

async fn consume(
    conn: &mut MultiplexedConnection,
    pattern: &str,
    cursor: u64,
    limit: Option<u64>,
) -> Vec<Vec<u8>> {
    let cursor = cursor.to_string();
    let limit = limit.map(|l| l.to_string());
    let mut args: Vec<&[u8]> = vec![pattern.as_bytes(), cursor.as_bytes()];
    args.extend(limit.as_ref().map(|l| l.as_bytes()));
    eval(conn, CONSUME, &[], &args).await.unwrap()
}

fn frame(channel: &str, id: u64, body: &[u8]) -> Vec<u8> {
    let mut f = format!("{channel}@{id}\n").into_bytes();
    f.extend_from_slice(body);
    f
}

#[tokio::test]
async fn ids_increase_across_channels() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let ids = [
        publish(&mut conn, "a", b"1").await,
        publish(&mut conn, "b", b"2").await,
        publish(&mut conn, "a", b"3").await,
    ];
    assert_eq!(ids, [1, 2, 3]);
    let counter: u64 = redis::cmd("GET").arg("remq:id").query_async(&mut conn).await.unwrap();
    assert_eq!(counter, 3);
    let len: u64 = redis::cmd("XLEN").arg("remq:channel:a").query_async(&mut conn).await.unwrap();
    assert_eq!(len, 2, "a channel's messages live in the stream remq:channel:<channel>");
}

#[tokio::test]
async fn pubsub_pushes_the_exact_frame_on_the_channel() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let mut pubsub = server.pubsub().await;
    pubsub.psubscribe("remq:channel:events.*").await.unwrap();
    let id = publish(&mut conn, "events.a", b"hello\nworld").await;
    let mut stream = pubsub.on_message();
    let msg = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await.unwrap().unwrap();
    assert_eq!(msg.get_channel_name(), "remq:channel:events.a");
    assert_eq!(msg.get_pattern::<String>().unwrap(), "remq:channel:events.*");
    assert_eq!(msg.get_payload_bytes(), frame("events.a", id, b"hello\nworld"));
}

#[tokio::test]
async fn consume_merges_channels_in_id_order_after_an_exclusive_cursor() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let mut expected = Vec::new();
    for i in 0..30u64 {
        let channel = ["events.a", "events.b", "events.c", "other"][(i * 7 % 4) as usize];
        let body = format!("m{i}");
        let id = publish(&mut conn, channel, body.as_bytes()).await;
        if channel.starts_with("events.") {
            expected.push(frame(channel, id, body.as_bytes()));
        }
    }
    assert_eq!(consume(&mut conn, "events.*", 0, None).await, expected);
    // The cursor is exclusive: everything strictly after the id of expected[4].
    let cursor = String::from_utf8_lossy(&expected[4]).split(['@', '\n']).nth(1).unwrap().parse().unwrap();
    assert_eq!(consume(&mut conn, "events.*", cursor, None).await, expected[5..]);
    // Small limits page through the same sequence without skipping or repeating.
    let (mut paged, mut cursor) = (Vec::new(), 0);
    loop {
        let page = consume(&mut conn, "events.*", cursor, Some(3)).await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        cursor =
            String::from_utf8_lossy(page.last().unwrap()).split(['@', '\n']).nth(1).unwrap().parse().unwrap();
        paged.extend(page);
    }
    assert_eq!(paged, expected);
}

#[tokio::test]
async fn consume_limit_defaults_to_1000_and_is_capped_at_10000() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let body = b"x".as_slice();
    for _ in 0..11 {
        let mut args = vec![b"bulk".as_slice()];
        args.extend(std::iter::repeat_n(body, 1000));
        let _: (u64, u64) = eval(&mut conn, PUBLISH_BATCH, &[], &args).await.unwrap();
    }
    assert_eq!(consume(&mut conn, "bulk", 0, None).await.len(), 1000);
    assert_eq!(consume(&mut conn, "bulk", 0, Some(20_000)).await.len(), 10_000);
    assert_eq!(consume(&mut conn, "b*", 10_500, Some(20_000)).await.len(), 500);
    let err = eval::<Value>(&mut conn, CONSUME, &[], &[b"bulk", b"0", b"0"]).await.unwrap_err();
    assert!(err.to_string().contains("invalid limit"), "{err}");
    for cursor in ["-", "1.5", "-1.5", "abc", "--1", "1e3", ""] {
        let err = eval::<Value>(&mut conn, CONSUME, &[], &[b"bulk", cursor.as_bytes()]).await.unwrap_err();
        assert!(err.to_string().contains("invalid cursor"), "{cursor:?}: {err}");
    }
}

/// `EVALSHA <sha> 0 <args…>` of a script loaded with `SCRIPT LOAD`, as the
/// 2013 clients call it.
async fn evalsha<T: redis::FromRedisValue>(
    conn: &mut MultiplexedConnection,
    script: &str,
    args: &[&str],
) -> T {
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(script).query_async(conn).await.unwrap();
    redis::cmd("EVALSHA").arg(sha).arg(0).arg(args).query_async(conn).await.unwrap()
}

/// The calls remq-node (2013) makes for `subscribe('events.*', { fromId: 0 })`:
/// it sends the cursor `-1` to mean "from the start" (`parseInt(0)` is falsy
/// there), pages until a short page, `PSUBSCRIBE`s while it buffers pushes,
/// reads once more after its last id, then drains the buffer, dropping ids it
/// already has.
#[tokio::test]
async fn the_2013_node_clients_subscribe_from_the_start_replays_then_follows_pushes() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let mut expected = Vec::new();
    for (channel, body) in [("events.a", "1"), ("events.b", "2"), ("other", "x"), ("events.a", "3")] {
        let id: u64 = evalsha(&mut conn, PUBLISH, &[channel, body]).await;
        if channel != "other" {
            expected.push(frame(channel, id, body.as_bytes()));
        }
    }
    let first: Vec<Vec<u8>> = evalsha(&mut conn, CONSUME, &["events.*", "-1", "1000"]).await;
    assert_eq!(first, expected, "-1 replays from the start");
    let mut pubsub = server.pubsub().await;
    pubsub.psubscribe("remq:channel:events.*").await.unwrap();
    let live: u64 = evalsha(&mut conn, PUBLISH, &["events.b", "4"]).await;
    let last = String::from_utf8_lossy(first.last().unwrap()).split(['@', '\n']).nth(1).unwrap().to_owned();
    // parseFloat("4") sends "4": an integer, as before.
    let second: Vec<Vec<u8>> = evalsha(&mut conn, CONSUME, &["events.*", &last, "1000"]).await;
    assert_eq!(second, [frame("events.b", live, b"4")]);
    let mut pushes = pubsub.on_message();
    let push = tokio::time::timeout(std::time::Duration::from_secs(5), pushes.next()).await.unwrap().unwrap();
    assert_eq!(push.get_payload_bytes(), frame("events.b", live, b"4"), "the buffered push: already read");
}

/// `consume.lua … packed`, decoded as any MessagePack library would, flattened
/// back into frames: `(head, removed, frames, the channel names in order)`.
async fn consume_packed(
    conn: &mut MultiplexedConnection,
    pattern: &str,
    cursor: u64,
    limit: u64,
) -> (u64, u64, Vec<Vec<u8>>, Vec<String>) {
    let (cursor, limit) = (cursor.to_string(), limit.to_string());
    let args: [&[u8]; 4] = [pattern.as_bytes(), cursor.as_bytes(), limit.as_bytes(), b"packed"];
    let reply: Vec<u8> = eval(conn, CONSUME, &[], &args).await.unwrap();
    let value = rmpv::decode::read_value(&mut &reply[..]).unwrap();
    let [head, removed, items] = value.as_array().unwrap().as_slice() else { panic!("{value}") };
    let (mut frames, mut channels) = (Vec::new(), Vec::new());
    for item in items.as_array().unwrap() {
        if let Some(channel) = item.as_str() {
            channels.push(channel.to_owned());
            continue;
        }
        let [id, fields] = item.as_array().unwrap().as_slice() else { panic!("{item}") };
        let id = id.as_str().unwrap().strip_suffix("-0").unwrap().parse().unwrap();
        let body = match &fields.as_array().unwrap()[1] {
            rmpv::Value::String(s) => s.as_bytes().to_vec(),
            other => panic!("{other}"),
        };
        frames.push(frame(channels.last().expect("a channel name comes first"), id, &body));
    }
    (head.as_u64().unwrap(), removed.as_u64().unwrap(), frames, channels)
}

#[tokio::test]
async fn the_packed_reply_holds_the_same_page_as_the_frames() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let bodies: [&[u8]; 6] = [b"one", b"two\n@\0", b"", &[0xff, 0xfe], b"five", &[b'x'; 300]];
    for (i, body) in bodies.iter().enumerate() {
        publish(&mut conn, ["p.a", "p@b", "p.a", "p.c", "p.c", "p@b"][i], body).await;
    }
    let _: u64 = eval(&mut conn, FLUSH, &[], &[b"p.a", b"2"]).await.unwrap();
    let pages: [(&str, u64, u64); 7] = [
        ("p*", 0, 100),
        ("p*", 2, 3),
        ("p*", 3, 1),
        ("p.a", 0, 100),
        ("p.c", 4, 100),
        ("none", 0, 10),
        ("p*", 6, 10),
    ];
    for (pattern, cursor, limit) in pages {
        let (head, removed, frames, channels) = consume_packed(&mut conn, pattern, cursor, limit).await;
        assert_eq!(
            frames,
            consume(&mut conn, pattern, cursor, Some(limit)).await,
            "{pattern} after {cursor}"
        );
        let state: Vec<Value> =
            eval(&mut conn, CONSUME, &[], &[pattern.as_bytes(), b"0", b"1", b"state"]).await.unwrap();
        assert_eq!(vec![head, removed], redis::from_redis_value::<Vec<u64>>(state[0].clone()).unwrap());
        assert!(
            channels.windows(2).all(|w| w[0] != w[1]),
            "a name only where the channel changes: {channels:?}"
        );
    }
    let (head, removed, frames, channels) = consume_packed(&mut conn, "p*", 0, 100).await;
    assert_eq!((head, removed, frames.len()), (6, 1, 5));
    assert_eq!(channels, ["p@b", "p.a", "p.c", "p@b"]);
}

#[tokio::test]
async fn a_route_call_leaves_a_broad_pattern_to_the_order_index() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    // 40 channels: more than a merge takes, so `w.*` goes through the index.
    for i in 0..40 {
        publish(&mut conn, &format!("w.{i}"), b"m").await;
    }
    let route = |pattern: &'static str, cursor: &'static str| {
        let args: [&[u8]; 4] = [pattern.as_bytes(), cursor.as_bytes(), b"1000", b"route"];
        let mut conn = conn.clone();
        async move {
            let reply: Vec<u8> = eval(&mut conn, CONSUME, &[], &args).await.unwrap();
            rmpv::decode::read_value(&mut &reply[..]).unwrap().as_array().unwrap().clone()
        }
    };
    let broad = route("w.*", "3").await;
    assert_eq!(broad.len(), 5, "{broad:?}");
    assert_eq!((broad[0].as_u64(), broad[3].as_u64(), broad[4].as_str()), (Some(40), Some(3), Some("index")));
    assert!(broad[2].as_array().unwrap().is_empty(), "the index is left to the caller");
    assert_eq!(route("w.*", "40").await.len(), 3, "at the head: a complete, empty page");
    let literal = route("w.7", "0").await;
    assert_eq!(literal.len(), 3, "a literal channel is read in the call");
    assert_eq!(literal[2].as_array().unwrap().len(), 2, "[name, entry]");
    // The index names each id's channel by number; the names are in channel-names.
    let entry: Vec<(String, Vec<String>)> =
        redis::cmd("XRANGE").arg("remq:order").arg("4-0").arg("4-0").query_async(&mut conn).await.unwrap();
    let name: String = redis::cmd("HGET")
        .arg("remq:channel-names")
        .arg(&entry[0].1[1])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!((entry[0].1[0].as_str(), name.as_str()), ("c", "w.3"));
}

#[tokio::test]
async fn identical_bodies_are_all_kept() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let ids = [publish(&mut conn, "c", b"same").await, publish(&mut conn, "c", b"same").await];
    assert_eq!(
        consume(&mut conn, "c", 0, None).await,
        vec![frame("c", ids[0], b"same"), frame("c", ids[1], b"same")]
    );
}

#[tokio::test]
async fn bodies_are_binary_safe() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let bodies: [&[u8]; 5] = [b"", b"a\nb\n", b"x@1\n@2", b"\0\0nul\0", &big];
    let mut expected = Vec::new();
    for body in bodies {
        let id = publish(&mut conn, "bin", body).await;
        expected.push(frame("bin", id, body));
    }
    assert_eq!(consume(&mut conn, "bin", 0, None).await, expected);
}

#[tokio::test]
async fn channel_names_may_contain_at_and_colon() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let id = publish(&mut conn, "user@example.com:inbox", b"hi").await;
    assert_eq!(consume(&mut conn, "user@*", 0, None).await, vec![frame("user@example.com:inbox", id, b"hi")]);
}

#[tokio::test]
async fn invalid_channel_names_are_rejected_with_the_rule() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    for (channel, rule) in [
        ("", "must not be empty"),
        ("a\nb", "\\n"),
        ("a*", "glob"),
        ("a?", "glob"),
        ("a[b", "glob"),
        ("a]", "glob"),
    ] {
        for script in [PUBLISH, PUBLISH_BATCH] {
            let err = eval::<Value>(&mut conn, script, &[], &[channel.as_bytes(), b"m"]).await.unwrap_err();
            let text = err.to_string();
            assert!(text.contains("invalid channel") && text.contains(rule), "{channel:?}: {text}");
        }
    }
    let head: Option<u64> = redis::cmd("GET").arg("remq:id").query_async(&mut conn).await.unwrap();
    assert_eq!(head, None, "a rejected publish must not use up an id");
}

#[tokio::test]
async fn patterns_use_redis_glob_syntax() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    for channel in ["a", "b", "c", "ab", "cc"] {
        publish(&mut conn, channel, channel.as_bytes()).await;
    }
    let channels = |frames: Vec<Vec<u8>>| -> Vec<String> {
        frames.iter().map(|f| String::from_utf8_lossy(f).split('@').next().unwrap().to_owned()).collect()
    };
    assert_eq!(channels(consume(&mut conn, "[ac]", 0, None).await), ["a", "c"]);
    assert_eq!(channels(consume(&mut conn, "?", 0, None).await), ["a", "b", "c"]);
    assert_eq!(channels(consume(&mut conn, "?b", 0, None).await), ["ab"]);
    assert_eq!(channels(consume(&mut conn, "*", 0, None).await), ["a", "b", "c", "ab", "cc"]);
    assert_eq!(channels(consume(&mut conn, "cc", 0, None).await), ["cc"]);
    assert!(consume(&mut conn, "nothing", 0, None).await.is_empty());
}

#[tokio::test]
async fn flush_removes_ids_below_the_bound_from_matching_channels() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    for i in 0..10 {
        publish(&mut conn, if i % 2 == 0 { "f.a" } else { "g.a" }, b"m").await;
    }
    // f.a holds 1,3,5,7,9; g.a holds 2,4,6,8,10.
    let removed: u64 = eval(&mut conn, FLUSH, &[], &[b"f.*", b"6"]).await.unwrap();
    assert_eq!(removed, 3);
    let ids: Vec<String> = consume(&mut conn, "*", 0, None)
        .await
        .iter()
        .map(|f| String::from_utf8_lossy(f).split(['@', '\n']).nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["2", "4", "6", "7", "8", "9", "10"]);
    let removed: u64 = eval(&mut conn, FLUSH, &[], &[b"f.*", b"6"]).await.unwrap();
    assert_eq!(removed, 0, "flush is idempotent");
    // Publishing after a flush that emptied a channel keeps counting up.
    let removed: u64 = eval(&mut conn, FLUSH, &[], &[b"*", b"100"]).await.unwrap();
    assert_eq!(removed, 7);
    assert_eq!(publish(&mut conn, "f.a", b"m").await, 11);
}

#[tokio::test]
async fn flush_in_steps_and_consume_reports_what_was_removed() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    for i in 0..10 {
        publish(&mut conn, if i % 2 == 0 { "f.a" } else { "g.a" }, b"m").await;
    }
    // With a max, a call removes at most that many; 0 means done.
    let mut steps = Vec::new();
    for _ in 0..4 {
        steps.push(eval::<u64>(&mut conn, FLUSH, &[], &[b"*", b"6", b"2"]).await.unwrap());
    }
    assert_eq!(steps, [2, 2, 1, 0]);
    let err = eval::<u64>(&mut conn, FLUSH, &[], &[b"*", b"6", b"0"]).await.unwrap_err();
    assert!(err.to_string().contains("invalid max"), "{err}");
    // "state" puts {head, highest id removed from a matching channel} first.
    let reply: (Vec<u64>, Vec<Vec<u8>>) = {
        let mut all: Vec<redis::Value> =
            eval(&mut conn, CONSUME, &[], &[b"f.*", b"0", b"2", b"state"]).await.unwrap();
        let frames = all.split_off(1);
        (
            redis::from_redis_value(all.remove(0)).unwrap(),
            frames.into_iter().map(|f| redis::from_redis_value(f).unwrap()).collect(),
        )
    };
    assert_eq!(reply, (vec![10, 5], vec![frame("f.a", 7, b"m"), frame("f.a", 9, b"m")]));
    let empty: Vec<redis::Value> =
        eval(&mut conn, CONSUME, &[], &[b"none.*", b"0", b"10", b"state"]).await.unwrap();
    assert_eq!(empty.len(), 1, "the state comes even without messages");
    let err = eval::<Value>(&mut conn, CONSUME, &[], &[b"*", b"0", b"10", b"nonsense"]).await.unwrap_err();
    assert!(err.to_string().contains("invalid option"), "{err}");
}

#[tokio::test]
async fn publishing_samples_ids_into_a_time_index() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let index = |conn: &mut MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let entries: Vec<(u64, u64)> = redis::cmd("ZRANGE")
                .arg("remq:time")
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .unwrap();
            entries
        }
    };
    for _ in 0..63 {
        publish(&mut conn, "t", b"m").await;
    }
    assert!(index(&mut conn).await.is_empty(), "ids 1-63 are not samples");
    publish(&mut conn, "t", b"m").await;
    let (now, _): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let sampled = index(&mut conn).await;
    assert_eq!(sampled.len(), 1);
    assert_eq!(sampled[0].0, 64, "a multiple of 64");
    assert!(sampled[0].1 + 2 >= now && sampled[0].1 <= now, "the second it was published in");
    // In a later second, a batch is a sample too: its last id.
    wait_until(std::time::Duration::from_secs(5), "the next second of the server clock", async || {
        (server.time().await.as_secs() > sampled[0].1).then_some(())
    })
    .await;
    let (first, last): (u64, u64) = eval(&mut conn, PUBLISH_BATCH, &[], &[b"t", b"x", b"y"]).await.unwrap();
    assert_eq!((first, last), (65, 66));
    let sampled = index(&mut conn).await;
    assert_eq!(sampled.iter().map(|e| e.0).collect::<Vec<_>>(), [64, 66]);
    // At most one sample a second: a second batch in the same second adds none.
    let _: (u64, u64) = eval(&mut conn, PUBLISH_BATCH, &[], &[b"t", b"z"]).await.unwrap();
    let in_the_same_second = index(&mut conn).await;
    assert!(in_the_same_second.len() == 2 || in_the_same_second[2].1 > in_the_same_second[1].1);
}

#[tokio::test]
async fn batch_publish_assigns_consecutive_ids_and_pushes_each_message() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let mut pubsub = server.pubsub().await;
    pubsub.psubscribe("remq:channel:*").await.unwrap();
    publish(&mut conn, "x", b"0").await;
    let (first, last): (u64, u64) =
        eval(&mut conn, PUBLISH_BATCH, &[], &[b"x", b"a", b"a", b"b\n"]).await.unwrap();
    assert_eq!((first, last), (2, 4));
    let expected = vec![frame("x", 1, b"0"), frame("x", 2, b"a"), frame("x", 3, b"a"), frame("x", 4, b"b\n")];
    assert_eq!(consume(&mut conn, "x", 0, None).await, expected);
    let pushed: Vec<Vec<u8>> =
        pubsub.on_message().take(4).map(|m| m.get_payload_bytes().to_vec()).collect().await;
    assert_eq!(pushed, expected);
    let err = eval::<Value>(&mut conn, PUBLISH_BATCH, &[], &[b"x"]).await.unwrap_err();
    assert!(err.to_string().contains("at least one message"), "{err}");
}

#[tokio::test]
async fn namespaces_are_independent_and_keep_keys_under_their_base() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let base = "remq:{orders}";
    let mut pubsub = server.pubsub().await;
    pubsub.psubscribe("remq:{orders}:channel:*").await.unwrap();
    assert_eq!(publish(&mut conn, "o", b"default").await, 1);
    let id: u64 = eval(&mut conn, PUBLISH, &[base], &[b"o", b"orders"]).await.unwrap();
    assert_eq!(id, 1, "each namespace has its own counter");
    let frames: Vec<Vec<u8>> = eval(&mut conn, CONSUME, &[base], &[b"*", b"0"]).await.unwrap();
    assert_eq!(frames, vec![frame("o", 1, b"orders")]);
    assert_eq!(consume(&mut conn, "*", 0, None).await, vec![frame("o", 1, b"default")]);
    let msg = pubsub.on_message().next().await.unwrap();
    assert_eq!(msg.get_channel_name(), "remq:{orders}:channel:o");
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            "remq:channel-index",
            "remq:channel-names",
            "remq:channel-numbers",
            "remq:channel:o",
            "remq:channels",
            "remq:id",
            "remq:order",
            "remq:order-from",
            "remq:{orders}:channel-index",
            "remq:{orders}:channel-names",
            "remq:{orders}:channel-numbers",
            "remq:{orders}:channel:o",
            "remq:{orders}:channels",
            "remq:{orders}:id",
            "remq:{orders}:order",
            "remq:{orders}:order-from"
        ]
    );
    let removed: u64 = eval(&mut conn, FLUSH, &[base], &[b"*", b"2"]).await.unwrap();
    assert_eq!(removed, 1);
    assert_eq!(
        consume(&mut conn, "*", 0, None).await.len(),
        1,
        "flushing one namespace leaves the other alone"
    );
}

/// Every script in `scripts/`, read from the directory so that a new one is
/// checked without being listed here.
#[test]
fn scripts_never_use_keys_and_document_their_calling_convention() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|ext| ext != "lua") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let script = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
        assert!(!script.contains("'KEYS'") && !script.contains("\"KEYS\""), "{name} calls KEYS");
        let header: String =
            script.lines().take_while(|l| l.starts_with("--")).collect::<Vec<_>>().join("\n");
        for part in ["KEYS[1]", "ARGV[1]", "Reply"] {
            assert!(header.contains(part), "the header of {name} lacks {part}:\n{header}");
        }
        checked.push(name);
    }
    checked.sort();
    // The scripts the protocol tests drive by name are among them, so the
    // directory read is the one they come from.
    for name in
        ["checkpoint.lua", "consume.lua", "flush.lua", "lease.lua", "publish.lua", "publish_batch.lua"]
    {
        assert!(checked.iter().any(|c| c == name), "{name} was not found in {}: {checked:?}", dir.display());
    }
}

#[tokio::test]
async fn an_acl_user_confined_to_remq_keys_and_channels_runs_every_script() {
    let server = RedisServer::start();
    let url = server.acl_user("app", "app-pass", &RedisServer::REMQ_ONLY).await;
    let mut conn = remq_testkit::connect(&url).await;
    let id = publish(&mut conn, "acl", b"ok").await;
    let _: (u64, u64) = eval(&mut conn, PUBLISH_BATCH, &[], &[b"acl", b"ok2"]).await.unwrap();
    let _: u64 = eval(&mut conn, PUBLISH, &["remq:{tenant}"], &[b"acl", b"ok"]).await.unwrap();
    assert_eq!(consume(&mut conn, "a*", 0, Some(1)).await, vec![frame("acl", id, b"ok")]);
    let _: u64 = eval(&mut conn, FLUSH, &[], &[b"acl", b"2"]).await.unwrap();
    // The confinement is real: the same user cannot touch keys outside remq:*.
    let err = redis::cmd("SET").arg("other").arg("x").query_async::<()>(&mut conn).await.unwrap_err();
    assert!(is_noperm(&err), "{err}");
    let err = eval::<Value>(&mut conn, PUBLISH, &["other"], &[b"c", b"m"]).await.unwrap_err();
    assert!(is_noperm(&err), "{err}");

    // Redis checks a PSUBSCRIBE pattern *literally* against the ACL's channel
    // patterns, so `&remq:*` alone does not allow PSUBSCRIBE remq:channel:events.*:
    // each subscription pattern (or a broader one used verbatim) must be listed.
    let subscriber = redis::Client::open(url.as_str()).unwrap();
    let err = subscriber.get_async_pubsub().await.unwrap().psubscribe("remq:channel:*").await.unwrap_err();
    assert!(is_noperm(&err), "{err}");
    server.acl_user("app", "app-pass", &[&RedisServer::REMQ_ONLY[..], &["&remq:channel:*"]].concat()).await;
    let mut pubsub = subscriber.get_async_pubsub().await.unwrap();
    pubsub.psubscribe("remq:channel:*").await.unwrap();
    let id = publish(&mut conn, "acl", b"live").await;
    assert_eq!(pubsub.on_message().next().await.unwrap().get_payload_bytes(), frame("acl", id, b"live"));
}

fn is_noperm(err: &redis::RedisError) -> bool {
    err.to_string().to_uppercase().contains("NOPERM")
}

#[tokio::test]
async fn channel_names_must_be_utf8() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    for bad in [&b"ev.\xff"[..], b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80"] {
        for script in [PUBLISH, PUBLISH_BATCH] {
            let err = eval::<Value>(&mut conn, script, &[], &[bad, b"m"]).await.unwrap_err();
            assert!(err.to_string().contains("UTF-8"), "{bad:?}: {err}");
        }
    }
    for good in ["ev.ünï", "日本.注文", "emoji.🦀"] {
        assert!(publish(&mut conn, good, b"ok").await > 0);
    }
    assert_eq!(consume(&mut conn, "*", 0, None).await.len(), 3);
}

/// A raw `SSUBSCRIBE` on a blocking connection, as a client in another language
/// would make it; returns the connection, reading with a timeout.
fn ssubscribe(server: &RedisServer, channel: &str) -> redis::Connection {
    let mut subscriber = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
    subscriber.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    subscriber.send_packed_command(&redis::cmd("SSUBSCRIBE").arg(channel).get_packed_command()).unwrap();
    let confirmation = subscriber.recv_response().unwrap();
    assert!(format!("{confirmation:?}").contains("ssubscribe"), "{confirmation:?}");
    subscriber
}

#[tokio::test]
async fn a_namespace_set_to_sharded_pushes_with_spublish_and_the_seed_calls_never_do() {
    let server = RedisServer::start();
    let mut conn = server.connection().await;
    let base = "remq:{orders}";
    let mut shard = ssubscribe(&server, "remq:{orders}:pushes");
    let mut pubsub = server.pubsub().await;
    pubsub.psubscribe("remq:*").await.unwrap();
    for mode_key in ["remq:{orders}:push-mode", "remq:push-mode"] {
        let _: () = redis::cmd("SET").arg(mode_key).arg("sharded").query_async(&mut conn).await.unwrap();
    }
    let id: u64 = eval(&mut conn, PUBLISH, &[base], &[b"o.1", b"single"]).await.unwrap();
    let batch: Vec<u64> = eval(&mut conn, PUBLISH_BATCH, &[base], &[b"o.2", b"x", b"y"]).await.unwrap();
    for expected in [frame("o.1", id, b"single"), frame("o.2", batch[0], b"x"), frame("o.2", batch[1], b"y")]
    {
        let push = shard.recv_response().unwrap();
        let Value::Array(parts) = push else { panic!("{push:?}") };
        assert_eq!(parts[0], Value::BulkString(b"smessage".to_vec()));
        assert_eq!(parts[1], Value::BulkString(b"remq:{orders}:pushes".to_vec()));
        assert_eq!(parts[2], Value::BulkString(expected), "the seed's frame, on the shard channel");
    }
    // numkeys 0 is the seed's protocol: classic PUBLISH, whatever is set.
    publish(&mut conn, "seed", b"2013").await;
    let msg = pubsub.on_message().next().await.unwrap();
    assert_eq!(msg.get_channel_name(), "remq:channel:seed", "nothing of {base} reached classic pub/sub");
    assert_eq!(msg.get_payload_bytes(), frame("seed", 1, b"2013"));
}
