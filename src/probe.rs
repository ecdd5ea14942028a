//! Small helpers for tests that watch a running worker: poll until something
//! holds, and read its HTTP endpoints.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep};

/// Sends a test's logs to its captured output when `RUST_LOG` is set (e.g.
/// `RUST_LOG=remq=debug`); calling it again is harmless.
pub fn init_test_logs() {
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
