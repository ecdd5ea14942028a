//! A throwaway `redis-server` process for tests and examples.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a freshly started server may take to answer `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` child process on a free port of 127.0.0.1, in a temporary
/// directory of its own. Dropping it kills the process and removes the directory.
#[derive(Debug)]
pub struct RedisServer {
    /// The running process; `None` between [`kill`](Self::kill) and [`restart`](Self::restart).
    child: Option<Child>,
    /// The loopback port, kept across restarts so clients can reconnect.
    port: u16,
    /// Working directory for the RDB/AOF files and the log; kept across restarts
    /// so a server started with persistence comes back with its data.
    dir: TempDir,
    /// Extra command-line arguments, replayed on every restart.
    args: Vec<String>,
    /// The TLS port, when the server was started with [`RedisServerBuilder::tls`].
    tls_port: Option<u16>,
}

/// Configures a [`RedisServer`] before it starts: extra `redis-server` arguments
/// such as `--requirepass`, `--appendonly yes` or `--user`.
#[derive(Debug, Default)]
pub struct RedisServerBuilder {
    /// Arguments appended after the defaults, so they override them.
    args: Vec<String>,
    /// The TLS port, when TLS is on.
    tls_port: Option<u16>,
}

impl RedisServerBuilder {
    /// Appends one `redis-server` command-line argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Also serves TLS, on a second free port, with the server certificate of
    /// `files`; clients may present a certificate signed by its CA but need not
    /// (add `--tls-auth-clients yes` with [`arg`](Self::arg) to require one).
    ///
    /// # Errors
    /// When no free port can be found.
    pub fn tls(mut self, files: &crate::TlsFiles) -> io::Result<Self> {
        let port = free_port()?;
        self.tls_port = Some(port);
        let path = |name: &str| files.path(name).display().to_string();
        for arg in [
            "--tls-port".to_owned(),
            port.to_string(),
            "--tls-cert-file".to_owned(),
            path("server.crt"),
            "--tls-key-file".to_owned(),
            path("server.key"),
            "--tls-ca-cert-file".to_owned(),
            path("ca.crt"),
            "--tls-auth-clients".to_owned(),
            "optional".to_owned(),
        ] {
            self = self.arg(arg);
        }
        Ok(self)
    }

    /// Starts the server and waits until it answers.
    ///
    /// # Errors
    /// When `redis-server` is not installed, or does not start within 10 seconds
    /// on any of a few free ports; the error includes the server's log.
    pub fn try_start(self) -> io::Result<RedisServer> {
        let mut last_error = None;
        for _ in 0..5 {
            let mut server = RedisServer {
                child: None,
                port: free_port()?,
                dir: tempfile::Builder::new().prefix("remq-redis-").tempdir()?,
                args: self.args.clone(),
                tls_port: self.tls_port,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                // Another process may have taken the port between our probe and
                // the server's bind: try another one.
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("at least one attempt was made"))
    }

    /// Starts the server and waits until it answers.
    ///
    /// # Panics
    /// When the server cannot be started (see [`try_start`](Self::try_start)): this
    /// is meant for tests, where a missing `redis-server` should fail loudly.
    pub fn start(self) -> RedisServer {
        self.try_start().unwrap_or_else(|e| {
            panic!("could not start redis-server (install it with `apt install redis-server`): {e}")
        })
    }
}

impl RedisServer {
    /// Starts a server with default settings: no persistence, loopback only.
    ///
    /// # Panics
    /// When `redis-server` cannot be started; see [`RedisServerBuilder::start`].
    pub fn start() -> RedisServer {
        RedisServer::builder().start()
    }

    /// A builder for a server with extra arguments.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://localhost:<tls-port>`, when started with [`RedisServerBuilder::tls`].
    ///
    /// # Panics
    /// When the server has no TLS port.
    pub fn tls_url(&self) -> String {
        format!("rediss://localhost:{}", self.tls_port.expect("the server was started without .tls(..)"))
    }

    /// A plain connection to the server, for what tests check or set up behind
    /// Remq's back (raw commands, keys, `INFO`).
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        connect(&self.url()).await
    }

    /// A pub/sub connection to the server, for subscribing the way another
    /// client would.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn pubsub(&self) -> redis::aio::PubSub {
        redis::Client::open(self.url())
            .expect("a valid URL")
            .get_async_pubsub()
            .await
            .unwrap_or_else(|e| panic!("cannot subscribe at {}: {e}", self.url()))
    }

    /// Creates (or resets) the ACL user `name` with `password` and `rules`
    /// (`ACL SETUSER <name> reset on ><password> <rules…>`), and returns the URL
    /// that logs in as it. [`REMQ_ONLY`](Self::REMQ_ONLY) confines a user to
    /// Remq's keys and channels.
    ///
    /// # Panics
    /// When the server refuses the rules or cannot be reached.
    pub async fn acl_user(&self, name: &str, password: &str, rules: &[&str]) -> String {
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", name, "reset", "on", &format!(">{password}")])
            .arg(rules)
            .query_async(&mut self.connection().await)
            .await
            .unwrap_or_else(|e| panic!("ACL SETUSER {name} {rules:?} failed: {e}"));
        format!("redis://{name}:{password}@127.0.0.1:{}", self.port)
    }

    /// ACL rules for [`acl_user`](Self::acl_user): every command, on the keys
    /// and channels under `remq:` only (as the ACL section of docs/protocol.md starts).
    pub const REMQ_ONLY: [&'static str; 5] = ["resetkeys", "~remq:*", "resetchannels", "&remq:*", "+@all"];

    /// The server's clock (`TIME`), since the Unix epoch: what the scripts
    /// stamp the time index with and retention measures ages by.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn time(&self) -> Duration {
        let (seconds, micros): (u64, u64) = redis::cmd("TIME")
            .query_async(&mut self.connection().await)
            .await
            .unwrap_or_else(|e| panic!("cannot read the time of {}: {e}", self.url()));
        Duration::from_secs(seconds) + Duration::from_micros(micros)
    }

    /// The cursor stored for `consumer` in the default namespace
    /// (`remq:consumer:<consumer>:cursor`), if any.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn stored_cursor(&self, consumer: &str) -> Option<u64> {
        redis::cmd("GET")
            .arg(format!("remq:consumer:{consumer}:cursor"))
            .query_async(&mut self.connection().await)
            .await
            .unwrap_or_else(|e| panic!("cannot read the cursor of {consumer}: {e}"))
    }

    /// Waits until the cursor stored for `consumer` is at least `id`.
    ///
    /// # Panics
    /// When it is not within `limit`, or the server cannot be reached.
    pub async fn wait_for_cursor(&self, consumer: &str, id: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.stored_cursor(consumer).await < Some(id) {
            assert!(
                Instant::now() < deadline,
                "the cursor of {consumer} did not reach {id} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server's working directory (where AOF and RDB files go).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory (after [`kill`](Self::kill),
    /// or kills it first), with the same arguments, and waits until it answers.
    ///
    /// # Panics
    /// When the server does not come back, e.g. because the port was taken meanwhile.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().unwrap_or_else(|e| panic!("could not restart redis-server on port {}: {e}", self.port));
    }

    fn spawn(&mut self) -> io::Result<()> {
        let log = self.dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("could not run redis-server: {e}")))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.answers_ping() {
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                self.kill();
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(io::Error::other(format!(
                    "redis-server on port {} did not start: {}",
                    self.port,
                    log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// True when something on the port answers a RESP `PING` like Redis does
    /// (`+PONG`, or an error such as `-NOAUTH` from a password-protected server).
    fn answers_ping(&self) -> bool {
        answers_ping(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A plain connection to the Redis at `url`, e.g. as a user made with
/// [`RedisServer::acl_user`].
///
/// # Panics
/// When the URL is invalid or the server cannot be reached.
pub async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    // The redis crate's 500 ms reply timeout is too short for a big reply
    // (SLOWLOG GET, KEYS) on a loaded machine.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    redis::Client::open(url)
        .unwrap_or_else(|e| panic!("invalid URL {url}: {e}"))
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// True when a RESP server answers `PING` at `addr` within a short time.
pub(crate) fn answers_ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    let mut reader = BufReader::new(stream);
    reader.read_line(&mut line).is_ok() && (line.starts_with("+PONG") || line.starts_with('-'))
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}
