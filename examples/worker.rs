//! A worker with two handlers on different patterns.
//!
//! ```text
//! cargo run --example worker        # in one terminal
//! cargo run --example producer      # in another
//! ```
//!
//! Stop it with Ctrl-C (or SIGTERM): in-flight handlers finish, the final
//! checkpoint is written and the lease released. Start it again and it goes on
//! after the last message it processed; start a second copy and it stands by,
//! taking over when the first one stops.
//!
//! Settings come from `REMQ_*` variables (see docs/configuration.md); `RUST_LOG` sets the
//! log level (default `info`). With `REMQ_METRICS_ADDR=127.0.0.1:9090` it serves
//! `/metrics`, `/healthz` and `/readyz` there. Every minute it flushes the demo
//! channels down to what both handlers have processed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use remq::{Channel, FlushPolicy, Json, Message, State, Worker};
use serde::Deserialize;

/// An order event, as the producer publishes it.
#[derive(Debug, Deserialize)]
struct Order {
    /// The order number.
    order: u64,
    /// The amount, in cents.
    cents: u64,
}

/// Shared application state: here, just a running revenue total.
#[derive(Clone, Default)]
struct Ledger {
    /// Total of all orders seen, in cents.
    revenue: Arc<AtomicU64>,
}

/// Every order event, in id order; a body that is not an `Order` is a
/// permanent failure, logged and skipped.
#[remq::handler("demo.orders.*", name = "demo-ledger")]
async fn book_order(Json(order): Json<Order>, Channel(channel): Channel, State(ledger): State<Ledger>) {
    let total = ledger.revenue.fetch_add(order.cents, Ordering::Relaxed) + order.cents;
    tracing::info!(order = order.order, channel, total_cents = total, "booked");
}

/// Every user event, raw.
#[remq::handler("demo.users.*", name = "demo-audit")]
async fn audit_user(message: Message) -> remq::Result<()> {
    tracing::info!(id = %message.id, channel = message.channel, body = %String::from_utf8_lossy(&message.body), "audited");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let target = remq_testkit::redis_url_or_local()?;
    Worker::from_env()?
        .redis_url(target.url)
        .state(Ledger::default())
        .flush(FlushPolicy::new("demo.*").every(Duration::from_secs(60)))
        .run()
        .await?;
    Ok(())
}
