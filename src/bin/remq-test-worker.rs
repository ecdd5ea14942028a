//! A worker process for Remq's crash, failover and shutdown tests.
//!
//! It runs one handler that appends each message id to a Redis list, so what
//! it processed survives the process being killed. Configured by the usual
//! `REMQ_*` variables plus:
//! - `TEST_PATTERN`: the pattern to consume (default `*`);
//! - `TEST_CONSUMER`: the durable consumer name (default `recorder`);
//! - `TEST_RECORD_KEY`: the list ids are pushed to (default `test:processed`);
//! - `TEST_DELAY_MS`: how long each message takes to handle (default 0);
//! - `TEST_PER_PARTITION`: when set, ids go to `<TEST_RECORD_KEY>:<partition>`
//!   as `<id>,<unix-ms>,<TEST_LABEL>` (for consumer groups: which process
//!   handled which partition's message, and when).

use std::time::Duration;

use redis::aio::ConnectionManager;
use remq::{Message, State, Worker};

/// Where and how the handler records.
#[derive(Clone)]
struct Recorder {
    /// Connection for the record list (outside the `remq:` keys).
    conn: ConnectionManager,
    /// The list key.
    key: String,
    /// Simulated work per message.
    delay: Duration,
    /// `Some(label)`: record per partition, with the time and this label.
    per_partition: Option<String>,
}

async fn record(State(recorder): State<Recorder>, message: Message) -> remq::Result<()> {
    // Even a zero sleep waits for the timer's next 1 ms tick: skip it.
    if !recorder.delay.is_zero() {
        tokio::time::sleep(recorder.delay).await;
    }
    let (key, entry) = match &recorder.per_partition {
        None => (recorder.key.clone(), message.id.to_string()),
        Some(label) => {
            let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let key = format!("{}:{}", recorder.key, message.partition);
            (key, format!("{},{},{label}", message.id, ms.as_millis()))
        }
    };
    redis::cmd("RPUSH")
        .arg(key)
        .arg(entry)
        .query_async::<()>(&mut recorder.conn.clone())
        .await
        .map_err(remq::Error::retryable)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let url = std::env::var("REMQ_REDIS_URL")?;
    let conn = redis::Client::open(url)?.get_connection_manager().await?;
    let recorder = Recorder {
        conn,
        key: env("TEST_RECORD_KEY", "test:processed"),
        delay: Duration::from_millis(env("TEST_DELAY_MS", "0").parse()?),
        per_partition: std::env::var("TEST_PER_PARTITION").ok().map(|_| env("TEST_LABEL", "worker")),
    };
    Worker::from_env()?
        .state(recorder)
        .named_handler(env("TEST_CONSUMER", "recorder"), env("TEST_PATTERN", "*"), record)
        .run()
        .await?;
    Ok(())
}
