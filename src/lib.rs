//! Support code shared by Remq's examples and integration tests.
//!
//! The one thing here is [`RedisServer`]: a throwaway `redis-server` process on a
//! free loopback port with its own temporary directory, stopped when dropped. Tests
//! start one each, so they run in parallel, can kill and restart their server, and
//! never depend on a Redis someone else left running.
//!
//! [`connect`] opens a plain connection to a Redis URL (as another user, say).
//!
//! [`TlsFiles`] makes a throwaway CA and certificates, and
//! [`RedisServerBuilder::tls`] serves TLS with them next to the plain port.
//!
//! [`RunningWorker`] runs a worker in the background and stops it gracefully (or
//! crashes it); [`WorkerProcess`] runs the `remq-test-worker` binary as a child
//! process, and [`walk`] checks the ids it recorded against those published.
//!
//! [`wait_for`] and [`wait_until`] poll a condition until a deadline, so tests
//! wait for what they check instead of sleeping; [`publish_when_back`] publishes
//! once a restarted Redis answers again. [`http_get`], [`metric`],
//! [`scrape_until`] and [`wait_for_readiness`] read a worker's `/metrics`,
//! `/healthz` and `/readyz`; [`local_listener`] and [`closed_port`] hand out
//! loopback ports. [`capture_logs`] keeps what a test binary logs, for tests
//! that check a log line.
//!
//! [`documentation_files`] lists `README.md` and `docs/*.md` for the tests
//! that check the documentation.
//!
//! [`redis_cpu`] and [`process_cpu`] tell benchmarks what Redis and the
//! process spent on a run ([`info_field`] reads other `INFO` numbers).
//!
//! [`redis_url_or_local`] is what the examples use: the URL from the environment, or
//! the Redis on 127.0.0.1:6379 when one answers, or else a throwaway server.

mod docs;
mod local;
mod logs;
mod probe;
mod process;
mod redis_cluster;
mod redis_server;
mod running;
mod tls;
mod usage;
mod walk;

pub use docs::{documentation_files, repository_root};
pub use local::{RedisTarget, redis_url_or_local};
pub use logs::{CapturedLogs, capture_logs};
pub use probe::{
    closed_port, http_get, init_test_logs, local_listener, metric, publish_when_back, read_all, scrape_until,
    wait_for, wait_for_readiness, wait_until,
};
pub use process::WorkerProcess;
pub use redis_cluster::RedisCluster;
pub use redis_server::{RedisServer, RedisServerBuilder, connect};
pub use running::{RunningWorker, test_worker};
pub use tls::TlsFiles;
pub use usage::{info_field, process_cpu, redis_cpu};
pub use walk::{Rewind, Walk, try_walk, walk};
