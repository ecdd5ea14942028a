//! The built `remq` binary against real redis-server processes: every
//! subcommand in both output formats, binary bodies, error exits, and `tail`'s
//! switch from replay to live while messages keep coming.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use remq::{Client, Error, Message, MessageId};
use remq_testkit::{RedisServer, RunningWorker, test_worker, wait_for, wait_until};
use serde_json::{Value, json};

/// The binary under test.
const REMQ: &str = env!("CARGO_BIN_EXE_remq");

/// `remq` pointed at `server`, with nothing else taken from the environment.
fn remq(server: &RedisServer) -> Command {
    remq_at(&server.url())
}

/// `remq` pointed at `url`, with nothing else taken from the environment.
fn remq_at(url: &str) -> Command {
    let mut command = Command::new(REMQ);
    command.env("REMQ_REDIS_URL", url);
    for var in [
        "REDIS_URL",
        "REMQ_NAMESPACE",
        "REMQ_DEAD_LETTER_PREFIX",
        "REMQ_TLS_CA_CERT",
        "REMQ_TLS_CLIENT_CERT",
        "REMQ_TLS_CLIENT_KEY",
    ] {
        command.env_remove(var);
    }
    command
}

/// Runs `command` with `args` and `input` on stdin, to the end.
fn run(mut command: Command, args: &[&str], input: &[u8]) -> Output {
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the remq binary runs");
    child.stdin.take().expect("piped").write_all(input).expect("stdin takes the input");
    child.wait_with_output().expect("remq finishes")
}

/// Runs `remq args` against `server` with `input`, checks that it succeeded,
/// and returns its stdout.
fn ok_with_input(server: &RedisServer, args: &[&str], input: &[u8]) -> String {
    let output = run(remq(server), args, input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "remq {args:?} failed with {}: {stderr}", output.status);
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// [`ok_with_input`] with nothing on stdin.
fn ok(server: &RedisServer, args: &[&str]) -> String {
    ok_with_input(server, args, b"")
}

/// Runs `remq args`, checks that it failed with `code`, and returns its stderr.
fn fails(command: Command, args: &[&str], code: i32) -> String {
    let output = run(command, args, b"");
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 errors");
    assert_eq!(output.status.code(), Some(code), "remq {args:?}: {stderr}");
    assert!(output.stdout.is_empty(), "errors go to stderr only");
    stderr
}

/// Parses JSON lines.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|line| serde_json::from_str(line).expect("one JSON object per line")).collect()
}

/// Waits for `child` to exit, killing it and failing the test after `limit`.
fn exit_within(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("waitable") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("remq did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `remq --json tail args` with its stdout piped, and its first line.
fn spawn_tail(server: &RedisServer, args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = remq(server)
        .args(["--json", "tail"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the remq binary runs");
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    (child, stdout)
}

/// Reads the next line of a tail's output as JSON, calling `publish` every 50
/// ms until it comes (a tail that starts live prints only what comes after it
/// subscribed, and that moment is not visible from outside).
fn next_while(stdout: &mut BufReader<std::process::ChildStdout>, mut publish: impl FnMut()) -> Value {
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut line = String::new();
            stdout.read_line(&mut line).map(|_| line)
        });
        while !reader.is_finished() {
            publish();
            std::thread::sleep(Duration::from_millis(50));
        }
        serde_json::from_str(&reader.join().unwrap().unwrap()).expect("a JSON line")
    })
}

/// The stderr of a finished child.
fn stderr_of(child: &mut Child) -> String {
    let mut stderr = String::new();
    child.stderr.as_mut().expect("piped").read_to_string(&mut stderr).unwrap();
    stderr
}

/// The stderr of a running child as it comes, read by a thread of its own,
/// which ends when the child closes it.
fn follow_stderr(child: &mut Child) -> (Arc<Mutex<String>>, std::thread::JoinHandle<()>) {
    let mut stderr = child.stderr.take().expect("piped");
    let text = Arc::new(Mutex::new(String::new()));
    let written = text.clone();
    let reader = std::thread::spawn(move || {
        let mut chunk = [0; 1024];
        while let Ok(n @ 1..) = stderr.read(&mut chunk) {
            written.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    });
    (text, reader)
}

async fn client(server: &RedisServer) -> Client {
    Client::connect(&server.url()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subcommands_run_on_a_cluster_in_a_tagged_namespace() {
    let cluster = remq_testkit::RedisCluster::start();
    let cli = |args: &[&str], input: &[u8]| {
        let mut command = remq_at(&cluster.seed_list());
        command.env("REMQ_NAMESPACE", "remq:{cli}");
        let output = run(command, args, input);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "remq {args:?} failed: {stderr}");
        String::from_utf8(output.stdout).unwrap()
    };
    assert_eq!(cli(&["publish", "c.1", "one", "--replicas", "1"], b""), "1\n");
    assert_eq!(cli(&["publish", "c.2", "--lines"], b"two\nthree\n"), "2\n3\n");
    assert_eq!(cli(&["--json", "consume", "c.*"], b"").lines().count(), 3);
    assert!(cli(&["channels"], b"").contains("c.2"));
    assert_eq!(cli(&["--json", "tail", "c.*", "--from", "1", "--limit", "2"], b"").lines().count(), 2);
    assert!(cli(&["flush", "c.*", "--before", "2"], b"").contains('1'));
    assert_eq!(cli(&["--json", "consume", "c.*"], b"").lines().count(), 2);

    // A worker in the namespace dead-letters a message; the operator lists
    // the consumer and the letter, and redrives it.
    let worker = test_worker(cluster.seed_url()).namespace("remq:{cli}").named_handler(
        "cli-billing",
        "orders.*",
        |_: Message| async { Err::<(), _>(Error::permanent("card declined")) },
    );
    let running = RunningWorker::start(worker);
    assert_eq!(cli(&["publish", "orders.created", "order 1"], b""), "4\n");
    wait_for(Duration::from_secs(20), "the dead letter", || cli(&["dead"], b"").contains("orders.created@4"))
        .await;
    running.stop().await.unwrap();
    assert!(cli(&["consumers"], b"").contains("cli-billing"));
    let redriven = json_lines(&cli(&["--json", "redrive", "dead.orders.created"], b""));
    assert_eq!(redriven.len(), 1);
    let new_id = redriven[0]["id"].as_u64().unwrap().to_string();
    let replayed = json_lines(&cli(&["--json", "consume", "orders.created", "--after", "4"], b""));
    assert_eq!(
        (&replayed[0]["id"], &replayed[0]["body"]),
        (&json!(new_id.parse::<u64>().unwrap()), &json!("order 1"))
    );

    let bench = ["bench", "--messages", "200", "--size", "16", "--channels", "2", "--batch", "50"];
    assert_eq!(cli(&bench, b"").lines().count(), 5, "a header and four scenarios");

    let mut untagged = remq_at(&cluster.seed_url());
    untagged.env("REMQ_NAMESPACE", "remq");
    let stderr = fails(untagged, &["channels"], 1);
    assert!(stderr.contains("remq:{app}"), "{stderr}");
}

#[test]
fn publish_with_replicas_fails_with_the_id_when_no_replica_confirms() {
    let server = RedisServer::start();
    let args = ["publish", "p", "x", "--replicas", "1", "--replicas-timeout", "50ms"];
    let stderr = fails(remq(&server), &args, 1);
    assert!(
        stderr.contains("message(s) 1..=1 stored, but only 0 of 1 replica(s) confirmed within 50ms"),
        "{stderr}"
    );
    let mut replicas = remq(&server);
    replicas.env("REMQ_PUBLISH_REPLICAS", "0");
    assert_eq!(String::from_utf8(run(replicas, &["publish", "p", "y"], b"").stdout).unwrap(), "2\n");
}

#[test]
fn publish_takes_the_argument_all_of_stdin_or_each_line() {
    let server = RedisServer::start();
    assert_eq!(ok(&server, &["publish", "p", "from the argument"]), "1\n");
    assert_eq!(ok_with_input(&server, &["publish", "p"], b"all\nof stdin\n"), "2\n");
    let lines = ok_with_input(&server, &["--json", "publish", "p", "--lines"], b"a\nb\r\n\nc");
    assert_eq!(
        json_lines(&lines),
        [3, 4, 5, 6].map(|id| json!({ "id": id, "channel": "p" })),
        "one message per line; the last needs no newline"
    );
    let bodies: Vec<_> = json_lines(&ok(&server, &["--json", "consume", "p"]))
        .into_iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies, ["from the argument", "all\nof stdin\n", "a", "b", "", "c"]);
    // Many lines at once go out in batches, still one id each, in order.
    let many: String = (0..2500).map(|i| format!("line {i}\n")).collect();
    let ids = ok_with_input(&server, &["publish", "bulk", "--lines"], many.as_bytes());
    let ids: Vec<u64> = ids.lines().map(|id| id.parse().unwrap()).collect();
    assert_eq!(ids, (7..7 + 2500).collect::<Vec<_>>());
}

#[test]
fn consume_prints_an_aligned_table_or_json_lines() {
    let server = RedisServer::start();
    ok(&server, &["publish", "orders.created", r#"{"order":1}"#]);
    ok(&server, &["publish", "orders.paid", "two\nlines"]);
    ok(&server, &["publish", "users.created", "not matched"]);
    for i in 3..12 {
        ok(&server, &["publish", "orders.paid", &format!("#{i}")]);
    }
    let table = ok(&server, &["consume", "orders.*", "--limit", "3"]);
    assert_eq!(
        table,
        "ID  CHANNEL         BODY\n\
        \x201  orders.created  {\"order\":1}\n\
        \x202  orders.paid     two\\nlines\n\
        \x204  orders.paid     #3\n"
    );
    let page = ok(&server, &["--json", "consume", "orders.*", "--after", "4", "--limit", "100"]);
    assert!(page.starts_with("{\"id\":5,\"channel\":\"orders.paid\",\"body\":\"#4\"}\n"), "{page}");
    let page = json_lines(&page);
    assert_eq!(page.len(), 8);
    assert_eq!(page[7]["id"], 12);
    let ids = ok(&server, &["consume", "*", "--after", "9"]);
    assert_eq!(ids.lines().count(), 4, "a header and three rows: {ids}");
    assert_eq!(ok(&server, &["consume", "*", "--after", "12"]), "", "nothing after the last id");
}

#[test]
fn binary_bodies_are_base64_in_both_formats_and_round_trip() {
    let server = RedisServer::start();
    let body = b"\xff\x00\n@bin\xfe";
    assert_eq!(ok_with_input(&server, &["publish", "blob"], body), "1\n");
    let message = &json_lines(&ok(&server, &["--json", "consume", "blob"]))[0];
    assert_eq!(message["encoding"], "base64");
    assert_eq!(BASE64.decode(message["body"].as_str().unwrap()).unwrap(), body, "byte for byte");
    let table = ok(&server, &["consume", "blob"]);
    assert!(table.ends_with(&format!("blob     base64:{}\n", BASE64.encode(body))), "{table}");
    ok(&server, &["publish", "text", "naïve"]);
    let text = &json_lines(&ok(&server, &["--json", "consume", "text"]))[0];
    assert_eq!((text["body"].as_str(), text.get("encoding")), (Some("naïve"), None), "UTF-8 stays text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_switches_from_replay_to_live_without_gap_or_duplicate() {
    let server = RedisServer::start();
    let client = client(&server).await;
    let mut expected = Vec::new();
    // More than a replay page (1000), so the tail replays twice while the
    // publisher below fills its live buffer.
    for i in 0..1500 {
        let (channel, body) = (format!("t.{}", i % 3), format!("old {i}"));
        expected.push((client.publish(&channel, &body).await.unwrap().get(), channel, body));
    }
    client.publish("other", "not matched").await.unwrap();
    let (mut child, stdout) = spawn_tail(&server, &["t.*", "--from-start", "--limit", "4500"]);
    let publisher = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut published = Vec::new();
            for i in 0..3000 {
                let (channel, body) = (format!("t.{}", i % 3), format!("new {i}"));
                published.push((client.publish(&channel, &body).await.unwrap().get(), channel, body));
            }
            published
        })
    };
    let lines = tokio::task::spawn_blocking(move || stdout.lines().collect::<Result<Vec<_>, _>>());
    let lines =
        tokio::time::timeout(Duration::from_secs(60), lines).await.expect("in time").unwrap().unwrap();
    expected.extend(publisher.await.unwrap());
    assert!(
        exit_within(&mut child, Duration::from_secs(5)).success(),
        "--limit ends it: {}",
        stderr_of(&mut child)
    );
    let got: Vec<_> = json_lines(&lines.join("\n"))
        .into_iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["channel"].as_str().unwrap().to_owned(),
                m["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "every message once, in id order, replayed then live");
}

#[test]
fn tail_starts_live_from_an_id_or_from_the_start() {
    let server = RedisServer::start();
    for body in ["a", "b", "c"] {
        ok(&server, &["publish", "s", body]);
    }
    let from = ok(&server, &["tail", "s", "--from", "2", "--limit", "2"]);
    assert_eq!(from, "ID  CHANNEL  BODY\n 2  s        b\n 3  s        c\n", "--from includes the id");
    let start = json_lines(&ok(&server, &["--json", "tail", "s", "--from-start", "--limit", "1"]));
    assert_eq!(start, [json!({ "id": 1, "channel": "s", "body": "a" })]);
    // Without --from, only what is published after it started.
    let (mut child, mut stdout) = spawn_tail(&server, &["s", "--limit", "1"]);
    let message = next_while(&mut stdout, || {
        ok(&server, &["publish", "s", "live"]);
    });
    assert_eq!(message["body"], "live");
    assert!(message["id"].as_u64().unwrap() > 3);
    assert!(exit_within(&mut child, Duration::from_secs(5)).success());
}

/// Starts a tail, waits until it printed a message, and returns it running.
fn running_tail(server: &RedisServer) -> (Child, BufReader<std::process::ChildStdout>) {
    ok(server, &["publish", "x", "first"]);
    let (child, mut stdout) = spawn_tail(server, &["x", "--from-start"]);
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(line.contains("first"), "{line}");
    (child, stdout)
}

#[test]
fn tail_exits_cleanly_on_ctrl_c_and_sigterm() {
    let server = RedisServer::start();
    for signal in ["-INT", "-TERM"] {
        let (mut child, _stdout) = running_tail(&server);
        let kill = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
        assert!(kill.success());
        let status = exit_within(&mut child, Duration::from_secs(5));
        assert!(status.success(), "{signal}: {status}");
        assert_eq!(stderr_of(&mut child), "", "{signal}");
    }
}

#[test]
fn tail_exits_cleanly_when_its_reader_goes_away_even_when_idle() {
    let server = RedisServer::start();
    let (mut child, stdout) = running_tail(&server);
    drop(stdout); // `| head -1` exits: the pipe's read end closes
    // Nothing more is published: the tail notices without writing.
    let status = exit_within(&mut child, Duration::from_secs(5));
    assert!(status.success(), "{status}");
    assert_eq!(stderr_of(&mut child), "");
}

#[test]
fn channels_list_counts_ids_and_memory_per_namespace() {
    let server = RedisServer::start();
    ok(&server, &["publish", "orders.created", "1"]);
    ok_with_input(&server, &["publish", "orders.paid", "--lines"], b"2\n3\n4\n");
    ok(&server, &["--namespace", "remq:{other}", "publish", "elsewhere", "x"]);
    let table = ok(&server, &["channels"]);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["CHANNEL", "MESSAGES", "FIRST", "LAST", "MEMORY"]);
    assert_eq!(rows[1][..4], ["orders.created", "1", "1", "1"]);
    assert_eq!(rows[2][..4], ["orders.paid", "3", "2", "4"]);
    assert!(rows[2][5].ends_with('B'), "memory for people: {table}");
    assert_eq!(rows.len(), 3, "other namespaces stay apart: {table}");
    let paid = json_lines(&ok(&server, &["--json", "channels", "*.paid"]));
    assert_eq!(paid.len(), 1);
    let paid = &paid[0];
    assert_eq!(paid["channel"], "orders.paid");
    assert_eq!((&paid["messages"], &paid["first_id"], &paid["last_id"]), (&json!(3), &json!(2), &json!(4)));
    assert!(paid["memory_bytes"].as_u64().unwrap() > 0);
    let mut namespaced = remq(&server);
    namespaced.env("REMQ_NAMESPACE", "remq:{other}");
    let output = run(namespaced, &["--json", "channels"], b"");
    let other = json_lines(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(other.len(), 1);
    assert_eq!((&other[0]["channel"], &other[0]["first_id"]), (&json!("elsewhere"), &json!(1)));
}

#[test]
fn flush_by_id_count_or_age_and_a_dry_run_that_removes_nothing() {
    let server = RedisServer::start();
    ok_with_input(&server, &["publish", "f.a", "--lines"], "1\n2\n3\n4\n5\n6\n".as_bytes());
    ok_with_input(&server, &["publish", "f.b", "--lines"], b"7\n8\n9\n10\n");
    let stored = |pattern: &str| json_lines(&ok(&server, &["--json", "consume", pattern])).len();
    // A dry run counts and removes nothing, in both formats.
    let dry = ok(&server, &["flush", "f.*", "--before", "4", "--dry-run"]);
    let rows: Vec<Vec<&str>> = dry.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["CHANNEL", "BEFORE", "REMOVED"]);
    assert_eq!(rows[1], ["f.a", "4", "3"]);
    assert!(dry.contains("would remove 3 messages from 1 channels"), "{dry}");
    let dry = json_lines(&ok(&server, &["--json", "flush", "f.*", "--keep", "1", "--dry-run"]));
    assert_eq!(
        dry,
        [
            json!({"channel": "f.a", "before": 6, "removed": 5, "dry_run": true}),
            json!({"channel": "f.b", "before": 10, "removed": 3, "dry_run": true}),
        ]
    );
    assert_eq!(stored("f.*"), 10, "nothing removed by the dry runs");
    // For real.
    let removed = ok(&server, &["flush", "f.*", "--before", "4"]);
    assert!(removed.contains("removed 3 messages from 1 channels"), "{removed}");
    assert_eq!(stored("f.a"), 3);
    let kept = json_lines(&ok(&server, &["--json", "flush", "f.*", "--keep", "2"]));
    assert_eq!(kept.iter().map(|r| r["removed"].as_u64().unwrap()).sum::<u64>(), 3);
    assert_eq!((stored("f.a"), stored("f.b")), (2, 2));
    // By age: nothing is a day old.
    assert!(ok(&server, &["flush", "f.*", "--older-than", "1d"]).contains("removed 0 messages"));
    // Errors: one of --before, --keep or --older-than; a readable age.
    let usage = fails(remq(&server), &["flush", "f.*"], 2);
    assert!(usage.contains("--before") && usage.contains("--keep"), "{usage}");
    let usage = fails(remq(&server), &["flush", "f.*", "--older-than", "soon"], 2);
    assert!(usage.contains("--older-than"), "{usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_lists_what_workers_registered() {
    let server = RedisServer::start();
    let client = client(&server).await;
    for i in 0..5 {
        client.publish("c.orders", i.to_string()).await.unwrap();
    }
    let worker = test_worker(server.url()).named_handler("billing", "c.*", |_: MessageId| async {});
    let running = RunningWorker::start(worker);
    server.wait_for_cursor("billing", 5, Duration::from_secs(10)).await;
    client.publish("c.orders", "behind").await.unwrap();
    let listed = wait_until(Duration::from_secs(10), "the consumer's cursor to be listed at 6", async || {
        let listed = json_lines(&ok(&server, &["--json", "consumers"]));
        (listed.len() == 1 && listed[0]["cursor"] == json!(6)).then_some(listed)
    })
    .await;
    let billing = &listed[0];
    assert_eq!(
        (&billing["consumer"], &billing["pattern"], &billing["lag"]),
        (&json!("billing"), &json!("c.*"), &json!(0))
    );
    assert_eq!(billing["leased"], json!(true));
    assert!(billing["owner"].as_str().unwrap().ends_with(&format!(":{}", std::process::id())), "{billing}");
    let table = ok(&server, &["consumers"]);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["CONSUMER", "PATTERN", "CURSOR", "LAG", "LEASE", "OWNER", "LAST", "SEEN"]);
    assert_eq!(rows[1][..5], ["billing", "c.*", "6", "0", "held"]);
    running.stop().await.unwrap();
    // Stopped: the lease is released, the registration stays, and lag shows.
    client.publish("c.orders", "unread").await.unwrap();
    let listed = json_lines(&ok(&server, &["--json", "consumers"]));
    assert_eq!((&listed[0]["leased"], &listed[0]["lag"]), (&json!(false), &json!(1)));
}

#[test]
fn rediss_urls_with_a_private_ca_and_client_certificates() {
    let files = remq_testkit::TlsFiles::generate().unwrap();
    let server = RedisServer::builder().tls(&files).unwrap().arg("--tls-auth-clients").arg("yes").start();
    let tls = |command: &mut Command| {
        command.env("REMQ_REDIS_URL", server.tls_url());
        command.env("REMQ_TLS_CLIENT_CERT", files.path("client.crt"));
        command.env("REMQ_TLS_CLIENT_KEY", files.path("client.key"));
    };
    let ca = files.path("ca.crt");
    let mut publish = remq(&server);
    tls(&mut publish);
    let output =
        run(publish, &["--tls-ca-cert", ca.to_str().unwrap(), "publish", "secure.a", "over tls"], b"");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut consume = remq(&server);
    tls(&mut consume);
    consume.env("REMQ_TLS_CA_CERT", &ca);
    let output = run(consume, &["--json", "consume", "secure.*"], b"");
    let page = json_lines(&String::from_utf8(output.stdout).unwrap());
    assert_eq!((&page[0]["channel"], &page[0]["body"]), (&json!("secure.a"), &json!("over tls")));
    // Another CA: the certificate is not trusted, and the error says so.
    let other = remq_testkit::TlsFiles::generate().unwrap();
    let mut untrusted = remq(&server);
    tls(&mut untrusted);
    let stderr = fails(untrusted, &["--tls-ca-cert", other.path("ca.crt").to_str().unwrap(), "channels"], 1);
    assert!(stderr.contains("was not trusted"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_of_a_real_worker_are_listed_and_redriven() {
    let server = RedisServer::start();
    let client = client(&server).await;
    let worker = test_worker(server.url()).named_handler("billing", "orders.*", |_: Message| async {
        Err::<(), _>(Error::permanent("card declined"))
    });
    let running = RunningWorker::start(worker);
    let first = client.publish("orders.created", r#"{"order":1}"#).await.unwrap();
    let second = client.publish("orders.created", b"\xff\x00".as_slice()).await.unwrap();
    wait_until(Duration::from_secs(10), "the worker to dead-letter both", async || {
        (client.consume("dead.*", MessageId::ZERO, 10).await.unwrap().len() >= 2).then_some(())
    })
    .await;
    running.stop().await.unwrap();

    let table = ok(&server, &["dead"]);
    let lines: Vec<_> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID  DEAD CHANNEL         ORIGINAL          HANDLER  ATTEMPTS  ERROR"),
        "{table}"
    );
    assert!(lines[1].contains(&format!("dead.orders.created  orders.created@{first}  billing  ")), "{table}");
    assert!(lines[1].ends_with(r#"handler failed: card declined  {"order":1}"#), "{table}");
    assert!(lines[2].ends_with("base64:/wA="), "{table}");
    let letters = json_lines(&ok(&server, &["--json", "dead", "orders.*"]));
    assert_eq!(letters.len(), 2);
    let dead_ids: Vec<u64> = letters.iter().map(|l| l["id"].as_u64().unwrap()).collect();
    assert_eq!(
        letters[0],
        json!({
            "id": dead_ids[0],
            "channel": "dead.orders.created",
            "original_channel": "orders.created",
            "original_id": first.get(),
            "handler": "billing",
            "attempts": 1,
            "error": "handler failed: card declined",
            "body": r#"{"order":1}"#,
        })
    );
    assert_eq!(
        (&letters[1]["original_id"], &letters[1]["encoding"]),
        (&json!(second.get()), &json!("base64"))
    );
    assert_eq!(ok(&server, &["dead", "users.*"]), "", "no dead letters of other channels");

    let one = json_lines(&ok(&server, &["--json", "redrive", "dead.orders.created", "--limit", "1"]));
    assert_eq!(one.len(), 1);
    assert_eq!((&one[0]["dead_id"], &one[0]["channel"]), (&json!(dead_ids[0]), &json!("orders.created")));
    let rest = ok(&server, &["redrive", "dead.orders.created", "--after", &dead_ids[0].to_string()]);
    let rest: Vec<Vec<&str>> = rest.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rest[0], ["DEAD", "ID", "CHANNEL", "ID"]);
    assert_eq!(rest[1][..2], [dead_ids[1].to_string().as_str(), "orders.created"]);
    let replayed = client.consume("orders.created", second, 10).await.unwrap();
    let got: Vec<_> = replayed.iter().map(|m| (m.id.get(), &m.body[..])).collect();
    let new_ids = (one[0]["id"].as_u64().unwrap(), rest[1][2].parse::<u64>().unwrap());
    assert_eq!(
        got,
        [(new_ids.0, &br#"{"order":1}"#[..]), (new_ids.1, &b"\xff\x00"[..])],
        "new messages, same bodies"
    );
}

#[test]
fn errors_say_what_to_do_on_stderr_with_a_non_zero_exit() {
    let mut stopped = RedisServer::start();
    stopped.kill();
    let unreachable = fails(remq(&stopped), &["channels"], 1);
    assert!(unreachable.contains("could not connect to Redis at redis://127.0.0.1:"), "{unreachable}");
    assert!(unreachable.contains("--url"), "{unreachable}");

    let locked = RedisServer::builder().arg("--requirepass").arg("right-password").start();
    let mut wrong = remq(&locked);
    wrong.env("REMQ_REDIS_URL", format!("redis://:hunter2@127.0.0.1:{}", locked.port()));
    let refused = fails(wrong, &["publish", "x", "y"], 1);
    assert!(refused.contains("refused the credentials"), "{refused}");
    assert!(!refused.contains("hunter2"), "no password in messages: {refused}");
    let mut help = remq(&locked);
    help.env("REMQ_REDIS_URL", "redis://:hunter2@127.0.0.1:1");
    let help = run(help, &["--help"], b"");
    assert!(help.status.success());
    assert!(!String::from_utf8_lossy(&help.stdout).contains("hunter2"), "no password in --help");
    let mut right = remq(&locked);
    right.env("REMQ_REDIS_URL", format!("redis://:right-password@127.0.0.1:{}", locked.port()));
    assert_eq!(run(right, &["publish", "x", "y"], b"").stdout, b"1\n");

    let invalid = fails(remq(&stopped), &["consume", ""], 1);
    assert!(invalid.contains("invalid pattern \"\": a pattern must not be empty"), "{invalid}");
    let channel = fails(remq(&stopped), &["publish", "orders.*", "x"], 1);
    assert!(channel.contains("invalid channel \"orders.*\""), "{channel}");
    let usage = fails(remq(&stopped), &["tail", "x", "--from", "1", "--from-start"], 2);
    assert!(usage.contains("cannot be used with"), "{usage}");
    let namespace = fails(remq(&stopped), &["--namespace", "a b", "channels"], 1);
    assert!(namespace.contains("invalid namespace"), "{namespace}");
}

#[test]
fn bench_prints_a_table_or_json_and_cleans_up_after_itself() {
    let server = RedisServer::start();
    let args =
        ["bench", "--messages", "300", "--size", "16", "--channels", "3", "--pipeline", "8", "--batch", "50"];
    let table = ok(&server, &args);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["SCENARIO", "MESSAGES", "SIZE", "SECONDS", "MSG/S", "MB/S"]);
    let scenarios: Vec<_> = rows[1..].iter().map(|row| row[..row.len() - 5].join(" ")).collect();
    assert_eq!(scenarios, ["publish", "publish_batch", "consume", "publish + tail"]);
    assert_eq!(rows[3][1], "600", "consume reads back what both publishes stored");
    let runs = json_lines(&ok(&server, &[&["--json"][..], &args].concat()));
    assert_eq!(runs.len(), 4);
    assert_eq!(
        (&runs[1]["scenario"], &runs[1]["messages"], &runs[1]["body_bytes"]),
        (&json!("publish_batch"), &json!(300), &json!(16))
    );
    assert!(runs.iter().all(|run| run["messages_per_second"].as_f64().unwrap() > 0.0));
    let bench = json_lines(&ok(&server, &["--json", "--namespace", "remq:bench", "channels"]));
    assert_eq!(bench.len(), 3);
    assert!(bench.iter().all(|channel| channel["messages"] == 0), "flushed: {bench:?}");
    assert_eq!(ok(&server, &["channels"]), "", "the default namespace is untouched");
}

#[tokio::test]
async fn tail_rides_out_a_redis_restart_and_says_so() {
    let mut server =
        RedisServer::builder().arg("--appendonly").arg("yes").arg("--appendfsync").arg("always").start();
    let (mut child, mut stdout) = running_tail(&server);
    let (stderr, reader) = follow_stderr(&mut child);
    // Down until the tail has said so.
    server.kill();
    wait_for(Duration::from_secs(10), "the tail to report the outage", || {
        stderr.lock().unwrap().contains("retrying")
    })
    .await;
    server.restart();
    // Messages are stored once Redis is back, and the tail replays them after
    // reconnecting, whether or not it was subscribed yet.
    let message = next_while(&mut stdout, || {
        ok(&server, &["publish", "x", "after the restart"]);
    });
    assert_eq!(message["body"], "after the restart");
    assert_eq!(message["id"], 2, "the first message survived the restart, and none is skipped");
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(exit_within(&mut child, Duration::from_secs(5)).success());
    reader.join().unwrap();
    let stderr = stderr.lock().unwrap().clone();
    assert!(stderr.contains("WARN") && stderr.contains("retrying"), "the outage is reported: {stderr}");
    assert!(!stderr.contains('\x1b'), "no colours when stderr is not a terminal: {stderr:?}");
}

#[test]
fn the_server_comes_from_url_then_remq_redis_url_then_redis_url() {
    let server = RedisServer::start();
    let nowhere = "redis://127.0.0.1:1";
    let mut flag = remq(&server);
    flag.env("REMQ_REDIS_URL", nowhere);
    assert_eq!(run(flag, &["--url", &server.url(), "publish", "u", "1"], b"").stdout, b"1\n");
    let mut fallback = remq(&server);
    fallback.env_remove("REMQ_REDIS_URL").env("REDIS_URL", server.url());
    assert_eq!(run(fallback, &["publish", "u", "2"], b"").stdout, b"2\n");
    let mut empty = remq(&server);
    empty.env("REMQ_REDIS_URL", "").env("REDIS_URL", server.url());
    assert_eq!(run(empty, &["publish", "u", "3"], b"").stdout, b"3\n", "an empty variable counts as unset");
    let mut wrong = remq(&server);
    wrong.env("REMQ_REDIS_URL", nowhere).env("REDIS_URL", server.url());
    fails(wrong, &["publish", "u", "4"], 1);
}

#[test]
fn tail_replays_new_messages_when_redis_lost_its_data() {
    let mut server = RedisServer::start(); // no persistence: a restart loses everything
    let (mut child, mut stdout) = running_tail(&server);
    // The counter can only be seen to have gone back while it is below the
    // tail's cursor: put that well ahead of what the loop below publishes
    // before the tail has reconnected.
    let old: String = (2..=20).map(|i| format!("old {i}\n")).collect();
    ok_with_input(&server, &["publish", "x", "--lines"], old.as_bytes());
    for _ in 2..=20 {
        stdout.read_line(&mut String::new()).unwrap();
    }
    server.restart();
    let message = next_while(&mut stdout, || {
        ok(&server, &["publish", "x", "new"]);
    });
    assert_eq!((&message["id"], &message["body"]), (&json!(1), &json!("new")), "id 1 again, not skipped");
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(exit_within(&mut child, Duration::from_secs(5)).success(), "a tail rewinds, it does not fail");
    let stderr = stderr_of(&mut child);
    assert!(stderr.contains("the id counter went backwards"), "{stderr}");
}

#[tokio::test]
async fn a_partitioned_namespace_is_created_and_keys_land_where_the_client_puts_them() {
    let server = RedisServer::start();
    let created = ok(&server, &["namespace", "create", "remq:{orders}", "--partitions", "4"]);
    assert_eq!(created, "remq:{orders}: 4 partition(s), remq:{orders.0} … remq:{orders.3}\n");
    let other = remq_in(&server, "remq:{orders}");
    let again = fails(remq(&server), &["namespace", "create", "remq:{orders}", "--partitions", "8"], 1);
    assert!(again.contains("created with 4 partitions"), "{again}");
    // The CLI (one process) and this test's client (another) put a key in the same partition.
    let published = run(other, &["--json", "publish", "orders.created", "hello", "--key", "user-42"], b"");
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    let published = json_lines(&String::from_utf8(published.stdout).unwrap());
    let expected = remq::partition_for(b"user-42", 4);
    assert_eq!(published, [json!({ "id": 1, "channel": "orders.created", "partition": expected })]);
    let client = Client::builder(server.url()).namespace("remq:{orders}").connect().await.unwrap();
    let again = client.publish_keyed("orders.created", "user-42", "again").await.unwrap();
    assert_eq!((again.partition, again.id.get()), (expected, 2));
    let text = remq_in(&server, "remq:{orders}");
    let line =
        String::from_utf8(run(text, &["publish", "orders.created", "x", "--key", "user-42"], b"").stdout)
            .unwrap();
    assert_eq!(line, format!("3\tpartition {expected}\n"));

    // A worker runs the consumer as a group member: `remq consumers` lists each
    // partition with the member it is assigned to, its cursor and lag.
    let worker = test_worker(server.url()).namespace("remq:{orders}").named_handler(
        "billing",
        "orders.*",
        |_: MessageId| async {},
    );
    let running = RunningWorker::start(worker);
    let rows =
        wait_until(Duration::from_secs(15), "4 partitions of billing, handled and assigned", async || {
            let rows = json_lines(&ok_in(&server, "remq:{orders}", &["--json", "consumers"]));
            let done = rows.len() == 4
                && rows.iter().all(|r| r["lag"] == 0 && r["assigned_to"].is_string() && r["leased"] == true);
            done.then_some(rows)
        })
        .await;
    let partitions: Vec<&Value> = rows.iter().map(|r| &r["partition"]).collect();
    assert_eq!(partitions, [&json!(0), &json!(1), &json!(2), &json!(3)]);
    assert_eq!(rows[expected as usize]["cursor"], 3, "{rows:?}");
    let table = ok_in(&server, "remq:{orders}", &["consumers"]);
    assert!(table.starts_with("CONSUMER  PARTITION  ASSIGNED TO"), "{table}");
    running.stop().await.unwrap();
}

/// `remq` in namespace `ns` of `server`.
fn remq_in(server: &RedisServer, ns: &str) -> Command {
    let mut command = remq(server);
    command.env("REMQ_NAMESPACE", ns);
    command
}

/// Standard output of `remq` in namespace `ns`, which must succeed.
fn ok_in(server: &RedisServer, ns: &str, args: &[&str]) -> String {
    let out = run(remq_in(server, ns), args, b"");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn dead_letters_redrives_and_flushes_of_a_partitioned_namespace_keep_each_partition() {
    let server = RedisServer::start();
    let ns = "remq:{shop}";
    ok_in(&server, ns, &["namespace", "create", ns, "--partitions", "3"]);
    let client = Client::builder(server.url()).namespace(ns).connect().await.unwrap();
    // One message per partition, each keyed to land there.
    let keys: Vec<String> = (0..3)
        .map(|p| (0..).map(|i| format!("k{i}")).find(|k| remq::partition_for(k.as_bytes(), 3) == p).unwrap())
        .collect();
    for key in &keys {
        client.publish_keyed("orders.created", key, key).await.unwrap();
    }
    let worker =
        test_worker(server.url()).namespace(ns).named_handler("billing", "orders.*", |_: Message| async {
            Err::<(), _>(Error::permanent("card declined"))
        });
    let running = RunningWorker::start(worker);
    wait_until(Duration::from_secs(15), "a dead letter in each partition", async || {
        let letters = json_lines(&ok_in(&server, ns, &["--json", "dead"]));
        (letters.len() == 3).then_some(())
    })
    .await;
    running.stop().await.unwrap();

    // Each dead letter stays in its message's partition, and says so.
    let letters = json_lines(&ok_in(&server, ns, &["--json", "dead"]));
    let got: Vec<(u64, String)> = letters
        .iter()
        .map(|l| (l["partition"].as_u64().unwrap(), l["body"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(got, [(0, keys[0].clone()), (1, keys[1].clone()), (2, keys[2].clone())]);
    let table = ok_in(&server, ns, &["dead"]);
    assert!(table.starts_with("PARTITION  ID  DEAD CHANNEL"), "{table}");
    let one = json_lines(&ok_in(&server, ns, &["--json", "--partition", "1", "dead"]));
    assert_eq!((one.len(), &one[0]["partition"]), (1, &json!(1)));

    // Redrive publishes each back into its own partition.
    let redriven = json_lines(&ok_in(&server, ns, &["--json", "redrive", "dead.orders.*"]));
    let partitions: Vec<&Value> = redriven.iter().map(|r| &r["partition"]).collect();
    assert_eq!(partitions, [&json!(0), &json!(1), &json!(2)]);
    for (p, key) in keys.iter().enumerate() {
        let view = client.partition(p as u32).await.unwrap();
        let page = view.consume("orders.*", MessageId::ZERO, 10).await.unwrap();
        let bodies: Vec<&[u8]> = page.iter().map(|m| &m.body[..]).collect();
        assert_eq!(
            bodies,
            [key.as_bytes(), key.as_bytes()],
            "partition {p}: the original, then the redriven one"
        );
    }

    // A read of one partition needs --partition; a flush covers them all.
    let usage = fails(remq_in(&server, ns), &["consume", "orders.*"], 2);
    assert!(usage.contains("has 3 partitions") && usage.contains("--partition"), "{usage}");
    let page = json_lines(&ok_in(&server, ns, &["--json", "--partition", "2", "consume", "orders.*"]));
    assert_eq!(page.len(), 2);
    let out_of_range = fails(remq_in(&server, ns), &["--partition", "3", "consume", "orders.*"], 1);
    assert!(out_of_range.contains("partition 3 does not exist"), "{out_of_range}");
    let flushed = ok_in(&server, ns, &["flush", "orders.*", "--keep", "1"]);
    let rows: Vec<Vec<&str>> = flushed.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0], ["PARTITION", "CHANNEL", "BEFORE", "REMOVED"]);
    // Ids are per partition: each holds 1 (the message), 2 (its dead letter) and 3 (redriven).
    let expected: Vec<[String; 4]> =
        (0..3).map(|p| [p.to_string(), "orders.created".into(), "3".into(), "1".into()]).collect();
    assert_eq!(rows[1..4], expected[..], "{flushed}");
    assert!(flushed.ends_with("removed 3 messages from 3 channels\n"), "{flushed}");
}

#[tokio::test]
async fn consume_and_tail_since_a_time_or_a_time_ago() {
    let server = RedisServer::start();
    let client = client(&server).await;
    client.publish_batch("s.a", ["1", "2", "3"]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let at =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(1)).to_string();
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let batch = client.publish_batch("s.b", ["4", "5"]).await.unwrap();
    let since: Vec<u64> = (batch.start().get()..=batch.end().get()).collect();

    let ids = |out: &str| -> Vec<u64> { json_lines(out).iter().map(|m| m["id"].as_u64().unwrap()).collect() };
    assert_eq!(ids(&ok(&server, &["--json", "consume", "s.*", "--since", &at])), since);
    assert_eq!(ids(&ok(&server, &["--json", "consume", "s.*", "--since", "1h"])), [1, 2, 3, 4, 5]);
    assert_eq!(ids(&ok(&server, &["--json", "tail", "s.*", "--since", &at, "--limit", "2"])), since);
    let usage = fails(remq(&server), &["consume", "s.*", "--since", "soon"], 2);
    assert!(usage.contains("a UTC time such as 2026-12-01T09:00:00Z"), "{usage}");
    let both = fails(remq(&server), &["consume", "s.*", "--since", "1h", "--after", "2"], 2);
    assert!(both.contains("cannot be used with"), "{both}");
}

#[tokio::test]
async fn consumers_seek_moves_a_stopped_consumers_cursor_and_refuses_while_one_runs() {
    let server = RedisServer::start();
    let client = client(&server).await;
    client.publish_batch("k.a", ["1", "2", "3", "4"]).await.unwrap();
    let running = RunningWorker::start(test_worker(server.url()).named_handler(
        "keeper",
        "k.*",
        |_: MessageId| async {},
    ));
    server.wait_for_cursor("keeper", 4, Duration::from_secs(10)).await;
    let refused = fails(remq(&server), &["consumers", "seek", "keeper", "--to", "1"], 1);
    assert!(refused.contains("owned by a running worker"), "{refused}");
    running.stop().await.unwrap();

    assert_eq!(
        ok(&server, &["consumers", "seek", "keeper", "--to", "1"]),
        "keeper: cursor at 1; its next owner goes on after it\n"
    );
    assert_eq!(server.stored_cursor("keeper").await, Some(1));
    // A time long ago: before the first message.
    let moved = json_lines(&ok(&server, &["--json", "consumers", "seek", "keeper", "--to", "1000d"]));
    assert_eq!(moved, [json!({ "consumer": "keeper", "cursor": 0 })]);
    let usage = fails(remq(&server), &["consumers", "seek", "keeper", "--to", "soon"], 2);
    assert!(usage.contains("a UTC time such as"), "{usage}");
}

#[test]
fn publish_with_an_idempotency_key_stores_a_retry_once() {
    let server = RedisServer::start();
    let args = ["publish", "orders.paid", r#"{"order":1}"#, "--idempotency-key", "order-1-paid"];
    assert_eq!(ok(&server, &args), "1\n");
    assert_eq!(ok(&server, &args), "1\n", "the retry prints the first id");
    assert_eq!(ok(&server, &["publish", "orders.paid", "other", "--idempotency-key", "order-2-paid"]), "2\n");
    let stored = json_lines(&ok(&server, &["--json", "consume", "orders.*"]));
    assert_eq!(stored.len(), 2);
    let lines = fails(remq(&server), &["publish", "orders.paid", "--lines", "--idempotency-key", "k"], 2);
    assert!(lines.contains("cannot be used with"), "{lines}");
}
