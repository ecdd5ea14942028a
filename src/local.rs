//! Finding a Redis for the examples: the configured one, the local one, or a throwaway one.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use crate::RedisServer;
use crate::redis_server::answers_ping;

/// The Redis an example talks to, and the throwaway server behind it when one was
/// started (it stops when this value is dropped, so keep it alive).
#[derive(Debug)]
pub struct RedisTarget {
    /// The URL to connect to.
    pub url: String,
    /// The server started for this run, if nothing else was available.
    pub server: Option<RedisServer>,
}

/// Chooses the Redis for an example: `REMQ_REDIS_URL` or `REDIS_URL` when set;
/// otherwise the Redis answering on 127.0.0.1:6379; otherwise a throwaway
/// `redis-server` on a free port, announced on stderr.
///
/// # Errors
/// When no URL is set, nothing answers on 127.0.0.1:6379 and `redis-server`
/// cannot be started either.
pub fn redis_url_or_local() -> io::Result<RedisTarget> {
    let configured = ["REMQ_REDIS_URL", "REDIS_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
    if let Some(url) = configured {
        return Ok(RedisTarget { url, server: None });
    }
    if answers_ping(SocketAddr::from((Ipv4Addr::LOCALHOST, 6379))) {
        return Ok(RedisTarget { url: "redis://127.0.0.1:6379".into(), server: None });
    }
    let server = RedisServer::builder().try_start().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("REDIS_URL is unset, nothing answers on 127.0.0.1:6379, and {e}; install redis-server (`apt install redis-server`) or set REDIS_URL"),
        )
    })?;
    eprintln!(
        "remq: REDIS_URL is unset and nothing answers on 127.0.0.1:6379, so a throwaway redis-server was started at {} (it stops when this program exits)",
        server.url()
    );
    Ok(RedisTarget { url: server.url(), server: Some(server) })
}
