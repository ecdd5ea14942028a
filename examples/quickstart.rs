//! Quickstart: a handler receives what a producer publishes, the worker stops
//! gracefully, and a second run of the worker resumes after its checkpoint.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! Uses `REMQ_REDIS_URL` or `REDIS_URL` when set, else the Redis on
//! 127.0.0.1:6379, else starts a throwaway `redis-server` and says so.

use remq::{Client, Message, MessageId, StartFrom, State, Worker};
use tokio::sync::mpsc;

/// Where the handler reports what it handled, so this demo knows when to stop.
#[derive(Clone)]
struct Handled(mpsc::UnboundedSender<MessageId>);

/// Every order event, in id order, exactly once per consumer: the durable
/// consumer `quickstart-billing` keeps its cursor in Redis.
#[remq::handler("quickstart.orders.*", name = "quickstart-billing")]
async fn bill(message: Message, State(handled): State<Handled>) {
    println!(
        "  handler: #{:<6} {:<27} {}",
        message.id,
        message.channel,
        String::from_utf8_lossy(&message.body)
    );
    let _ = handled.0.send(message.id);
}

/// Runs the worker until the handler has handled `last`, then stops it the
/// way SIGTERM does: no new messages, the final checkpoint stored. Returns the
/// ids the handler saw, in the order it saw them.
async fn run_until(
    url: &str,
    after: MessageId,
    last: MessageId,
) -> Result<Vec<MessageId>, Box<dyn std::error::Error>> {
    let (sender, mut handled) = mpsc::unbounded_channel();
    // A consumer seen for the first time starts after `after`; one with a
    // checkpoint resumes after it.
    let worker = Worker::new(url).start_from(StartFrom::After(after)).state(Handled(sender));
    let shutdown = worker.shutdown_token();
    let running = tokio::spawn(worker.run());
    let mut seen = Vec::new();
    while let Some(id) = handled.recv().await {
        seen.push(id);
        if id >= last {
            break;
        }
    }
    shutdown.cancel();
    running.await??;
    Ok(seen)
}

/// Checks that the handler saw exactly the orders among `published`, in order.
fn check(published: &[(&str, MessageId)], seen: &[MessageId]) -> Result<(), Box<dyn std::error::Error>> {
    let orders: Vec<MessageId> = published
        .iter()
        .filter(|(channel, _)| channel.starts_with("quickstart.orders."))
        .map(|(_, id)| *id)
        .collect();
    if orders != seen {
        return Err(format!("the handler saw {seen:?}, expected {orders:?}").into());
    }
    Ok(())
}

/// The consumer's stored cursor: the last id it checkpointed.
async fn checkpoint(client: &Client) -> Result<Option<MessageId>, remq::Error> {
    let consumers = client.consumers().await?;
    Ok(consumers.into_iter().find(|c| c.name == "quickstart-billing").map(|c| c.cursor))
}

/// Publishes `events`; returns each one's channel and id.
async fn publish<'a>(
    client: &Client,
    events: &[(&'a str, &str)],
) -> Result<Vec<(&'a str, MessageId)>, remq::Error> {
    let mut published = Vec::new();
    for &(channel, body) in events {
        let id = client.publish(channel, body).await?;
        println!("  published #{id:<6} {channel:<27} {body}");
        published.push((channel, id));
    }
    Ok(published)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = remq_testkit::redis_url_or_local()?;
    let client = Client::connect(&target.url).await?;
    println!("connected to {}", client.addr());
    let head = client.head().await?;
    match checkpoint(&client).await? {
        Some(cursor) => println!("quickstart-billing has a checkpoint at #{cursor} from an earlier run"),
        None => println!("quickstart-billing is new: it will start after #{head}, the last id issued"),
    }

    println!("\n1. a producer publishes three orders (and an event the handler does not follow)");
    let published = publish(
        &client,
        &[
            ("quickstart.orders.created", r#"{"order":1,"total":42.0}"#),
            ("quickstart.users.created", r#"{"user":"ada"}"#),
            ("quickstart.orders.paid", r#"{"order":1}"#),
            ("quickstart.orders.created", r#"{"order":2,"total":7.5}"#),
        ],
    )
    .await?;

    println!("\n2. the worker runs the handler, then stops gracefully");
    check(&published, &run_until(&target.url, head, published[3].1).await?)?;
    let stored = checkpoint(&client).await?.unwrap_or(MessageId::ZERO);
    println!("  stopped: the final checkpoint is #{stored}");

    println!("\n3. while no worker runs, two more orders are published");
    let published = publish(
        &client,
        &[("quickstart.orders.shipped", r#"{"order":1}"#), ("quickstart.orders.shipped", r#"{"order":2}"#)],
    )
    .await?;
    let last = published[1].1;

    println!("\n4. the worker starts again and resumes after checkpoint #{stored}: only the new orders");
    check(&published, &run_until(&target.url, head, last).await?)?;
    let stored = checkpoint(&client).await?.unwrap_or(MessageId::ZERO);
    println!("  stopped: the final checkpoint is #{stored}; each order was handled once, in order");

    let removed = client.flush("quickstart.*", MessageId::new(last.get() + 1)).await?;
    println!("\nflushed the {removed} quickstart messages; run it again and it resumes after #{stored}");
    Ok(())
}
