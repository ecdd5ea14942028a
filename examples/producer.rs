//! Publishes a steady stream of demo events for `examples/worker.rs`.
//!
//! ```text
//! cargo run --example producer            # 10 events a second until Ctrl-C
//! cargo run --example producer -- 1000    # or a given number per second
//! ```

use std::time::Duration;

use remq::Client;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let per_second: u64 = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(10);
    let target = remq_testkit::redis_url_or_local()?;
    let client = Client::connect(&target.url).await?;
    println!("publishing {per_second} events a second to {} (Ctrl-C to stop)", client.addr());
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second.max(1) as u32);
    for n in 0u64.. {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let (channel, body) = match n % 3 {
            0 => ("demo.orders.created", format!(r#"{{"order":{n},"cents":{}}}"#, 100 + n % 900)),
            1 => ("demo.orders.paid", format!(r#"{{"order":{},"cents":0}}"#, n - 1)),
            _ => ("demo.users.seen", format!(r#"{{"user":"u{}"}}"#, n % 17)),
        };
        let id = client.publish(channel, body).await?;
        if n % per_second.max(1) == 0 {
            println!("#{id} {channel}");
        }
    }
    Ok(())
}
