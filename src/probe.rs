//! Small helpers for tests that watch a running worker: poll until something
//! holds, and read its HTTP endpoints.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep};

/// Sends a test's logs to its captured output when `RUST_LOG` is set (e.g.
/// `RUST_LOG=remq=debug`); calling it again is harmless. Without `RUST_LOG` it
/// installs nothing, so a test binary can still [`capture_logs`](crate::capture_logs).
pub fn init_test_logs() {
    if std::env::var_os("RUST_LOG").is_none() {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

/// Polls `done` every 20 ms until it holds, panicking with `what` after `limit`.
pub async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `probe` every 20 ms until it returns `Some`, and returns that value;
/// panics with `what` after `limit`. The async counterpart of [`wait_for`], for
/// conditions that ask Redis, an endpoint or a log: `async || (…).then_some(())`.
pub async fn wait_until<T>(limit: Duration, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes `body` on `channel` once the client gets through again (after a
/// Redis restart, say), trying every 20 ms for at most `limit`; returns the id.
///
/// # Panics
/// On a permanent error, or when no publish succeeded within `limit`.
pub async fn publish_when_back(
    client: &remq::Client,
    channel: &str,
    body: &str,
    limit: Duration,
) -> remq::MessageId {
    wait_until(limit, &format!("a publish on {channel} to get through"), async || {
        match client.publish(channel, body).await {
            Ok(id) => Some(id),
            Err(error) => {
                assert!(error.is_retryable(), "{error}");
                None
            }
        }
    })
    .await
}

/// Scrapes `/metrics` at `addr` until the sample `series` (see [`metric`]) is
/// there and `done` holds for its value, and returns that body.
///
/// # Panics
/// When that does not happen within 20 s (the last body is in the message), or
/// the endpoint does not answer 200.
pub async fn scrape_until(addr: SocketAddr, series: &str, done: impl Fn(f64) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        if metric(&body, series).is_some_and(&done) {
            return body;
        }
        assert!(Instant::now() < deadline, "{series} never reached the expected value:\n{body}");
        sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `/readyz` at `addr` until its line for `consumer` says `state`
/// (`starting`, `standby`, `catching up` or `live`), and returns the body.
///
/// # Panics
/// When that does not happen within 20 s (the last body is in the message).
pub async fn wait_for_readiness(addr: SocketAddr, consumer: &str, state: &str) -> String {
    let line = format!("{consumer}: {state}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = http_get(addr, "/readyz").await;
        if body.lines().any(|l| l == line) {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz never said {line:?}; it says:\n{body}");
        sleep(Duration::from_millis(20)).await;
    }
}

/// A loopback port nothing listens on (bound and released at once), for
/// checking what a client does when no server answers.
///
/// # Panics
/// When no loopback port can be bound.
pub fn closed_port() -> u16 {
    local_listener().1.port()
}

/// A listener bound to a free loopback port, and its address: for a worker's
/// endpoints (`Worker::metrics_listener`), with no race for the port.
///
/// # Panics
/// When no loopback port can be bound.
pub fn local_listener() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free loopback port");
    let addr = listener.local_addr().expect("a bound address");
    (listener, addr)
}

/// `GET http://<addr><path>` with HTTP/1.1 on a fresh connection: the status
/// code and the body, within 5 s. A refused connection is tried again until
/// then, so a listener that is still starting up is waited for.
///
/// # Panics
/// When there is no answer within 5 s, or the reply is not HTTP.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = loop {
            match TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    sleep(Duration::from_millis(20)).await
                }
                connected => break connected?,
            }
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await?;
        std::io::Result::Ok(reply)
    };
    let reply = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("the endpoint answers within 5 s")
        .expect("an HTTP exchange");
    let (head, body) = reply.split_once("\r\n\r\n").expect("an HTTP reply");
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status code");
    (status, body.to_owned())
}

/// The value of the Prometheus sample `series` (name with its labels exactly
/// as rendered, e.g. `remq_checkpoint_id{handler="a"}`) in a `/metrics` body.
pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Every stored message of the channels matching `pattern`, in id order, read
/// page by page with `Client::consume`.
///
/// # Panics
/// When a read fails.
pub async fn read_all(client: &remq::Client, pattern: &str) -> Vec<remq::Message> {
    let mut all: Vec<remq::Message> = Vec::new();
    loop {
        let after = all.last().map_or(remq::MessageId::ZERO, |m| m.id);
        let page = client.consume(pattern, after, 10_000).await.expect("a page of the log");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}
