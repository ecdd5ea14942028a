//! Quickstart: publish a few messages, then replay them from the durable log.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Uses `REMQ_REDIS_URL` or `REDIS_URL` when set, else the Redis on
//! 127.0.0.1:6379, else starts a throwaway `redis-server` and says so.

use remq::{Client, MessageId};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = remq_testkit::redis_url_or_local()?;
    let client = Client::connect(&target.url).await?;
    println!("connected to {}", client.addr());

    // Everything published from here on is what this run will replay.
    let cursor = client.head().await?;
    let orders = [
        ("quickstart.orders.created", r#"{"order":1,"total":42.0}"#),
        ("quickstart.orders.paid", r#"{"order":1}"#),
        ("quickstart.users.created", r#"{"user":"ada"}"#),
        ("quickstart.orders.created", r#"{"order":2,"total":7.5}"#),
    ];
    for (channel, body) in orders {
        let id = client.publish(channel, body).await?;
        println!("published #{id} on {channel}");
    }
    let batch =
        client.publish_batch("quickstart.orders.shipped", [r#"{"order":1}"#, r#"{"order":2}"#]).await?;
    println!("published #{}..=#{} on quickstart.orders.shipped in one call", batch.start(), batch.end());

    println!("\nreplaying quickstart.orders.* after #{cursor}:");
    let messages = client.consume("quickstart.orders.*", cursor, 100).await?;
    for message in &messages {
        println!("  #{:<6} {:<28} {}", message.id, message.channel, String::from_utf8_lossy(&message.body));
    }
    let last = messages.last().map_or(MessageId::ZERO, |m| m.id);
    println!("\n{} messages, in id order; a consumer would now checkpoint #{last}", messages.len());

    let removed = client.flush("quickstart.*", batch.end().get().saturating_add(1).into()).await?;
    println!("flushed {removed} quickstart messages");
    Ok(())
}
