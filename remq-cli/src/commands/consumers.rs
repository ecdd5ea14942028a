//! `remq consumers`: the consumers workers registered, with pattern, cursor,
//! lag, owner and when each was last seen.

use clap::Args;
use remq::RegisteredConsumer;
use serde::Serialize;

use crate::cli::Context;
use crate::error::Result;
use crate::output::{Column, Record};

/// Arguments of `remq consumers`.
#[derive(Debug, Args)]
pub(crate) struct ConsumersArgs {}

impl ConsumersArgs {
    /// Lists the registered consumers.
    pub(crate) async fn run(self, context: &Context) -> Result<()> {
        let client = context.client().await?;
        let consumers = client.consumers().await?;
        let head = client.head().await?;
        let rows: Vec<Row<'_>> = consumers
            .iter()
            .map(|consumer| Row { consumer, lag: head.get().saturating_sub(consumer.cursor.get()) })
            .collect();
        let mut out = context.output();
        out.all(&rows)?;
        out.flush()?;
        if rows.is_empty() && !out.is_json() {
            eprintln!(
                "remq: no consumer registered in namespace {} (workers register theirs while they run)",
                client.namespace()
            );
        }
        Ok(())
    }
}

/// One consumer's line.
struct Row<'a> {
    /// As registered.
    consumer: &'a RegisteredConsumer,
    /// The last id issued minus its cursor.
    lag: u64,
}

impl Record for Row<'_> {
    const COLUMNS: &'static [Column] = &[
        Column::text("CONSUMER"),
        Column::text("PATTERN"),
        Column::number("CURSOR"),
        Column::number("LAG"),
        Column::text("LEASE"),
        Column::text("OWNER"),
        Column::number("LAST SEEN"),
    ];

    fn json(&self) -> impl Serialize {
        let c = self.consumer;
        RowJson {
            consumer: &c.name,
            pattern: &c.pattern,
            cursor: c.cursor.get(),
            lag: self.lag,
            leased: c.leased,
            owner: &c.owner,
            seen_ms: c.seen_ms,
        }
    }

    fn cells(&self) -> Vec<String> {
        let c = self.consumer;
        let seen = c.unseen;
        vec![
            c.name.clone(),
            c.pattern.clone(),
            c.cursor.to_string(),
            self.lag.to_string(),
            if c.leased { "held" } else { "free" }.to_owned(),
            c.owner.clone(),
            format!("{}s ago", seen.as_secs()),
        ]
    }
}

/// A consumer in JSON.
#[derive(Serialize)]
struct RowJson<'a> {
    /// The durable name.
    consumer: &'a str,
    /// Its channel pattern.
    pattern: &'a str,
    /// Everything up to this id is processed.
    cursor: u64,
    /// The last id issued minus the cursor.
    lag: u64,
    /// Whether an instance holds its lease now.
    leased: bool,
    /// Host and process id of the instance that last owned it.
    owner: &'a str,
    /// When it was last seen, Unix milliseconds.
    seen_ms: u64,
}
