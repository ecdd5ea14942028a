//! `remq consumers`: the consumers workers registered, with pattern, cursor,
//! lag, owner and when each was last seen; in a partitioned namespace, one line
//! per consumer and partition, with the group member it is assigned to.

use std::time::SystemTime;

use clap::{Args, Subcommand};
use remq::{MessageId, RegisteredConsumer};
use serde::Serialize;

use crate::cli::Context;
use crate::error::Result;
use crate::output::{Column, Record};

/// Arguments of `remq consumers`.
#[derive(Debug, Args)]
pub(crate) struct ConsumersArgs {
    /// Without one, list the consumers.
    #[command(subcommand)]
    action: Option<Action>,
}

/// What to do to a consumer.
#[derive(Debug, Subcommand)]
enum Action {
    /// Move a consumer's cursor (only while no worker owns it: the move takes
    /// its lease, so no running owner can overwrite it); its next owner goes on
    /// after it. In a partitioned namespace, one partition's (--partition).
    Seek {
        /// The consumer's durable name.
        name: String,
        /// An id (the next owner handles what comes after it), a UTC time
        /// (2026-12-01T09:00:00Z) or a time ago (15m): from the first message
        /// that may have been published since.
        #[arg(long, value_name = "ID|TIME|AGO", value_parser = parse_target)]
        to: Target,
    },
}

/// Where `seek` moves a cursor.
#[derive(Clone, Debug)]
enum Target {
    /// After this id.
    Id(MessageId),
    /// Before the first message that may have been published at this time.
    Time(SystemTime),
}

/// An id, else a `--since`-style time.
fn parse_target(value: &str) -> std::result::Result<Target, String> {
    match value.parse() {
        Ok(id) => Ok(Target::Id(id)),
        Err(_) => super::parse_since(value).map(Target::Time),
    }
}

/// What `seek` stored, in JSON.
#[derive(Serialize)]
struct Moved<'a> {
    /// The consumer.
    consumer: &'a str,
    /// Its cursor now.
    cursor: u64,
}

impl ConsumersArgs {
    /// Lists the registered consumers, or moves one's cursor.
    pub(crate) async fn run(self, context: &Context) -> Result<()> {
        match self.action {
            None => list(context).await,
            Some(Action::Seek { name, to }) => {
                let client = context.one_partition().await?;
                let to = match to {
                    Target::Id(id) => id,
                    Target::Time(time) => super::cursor_at(&client, time).await?,
                };
                let cursor = client.seek(&name, to).await?.get();
                let mut out = context.output();
                if out.is_json() {
                    out.json_line(&Moved { consumer: &name, cursor })?;
                } else {
                    out.line(&format!("{name}: cursor at {cursor}; its next owner goes on after it"))?;
                }
                Ok(out.flush()?)
            }
        }
    }
}

/// Lists the registered consumers.
async fn list(context: &Context) -> Result<()> {
    let client = context.client().await?;
    let consumers = client.consumers().await?;
    let rows: Vec<Row<'_>> = consumers.iter().map(Row::new).collect();
    let mut out = context.output();
    if client.partitions().await? > 1 {
        out.all(&rows.into_iter().map(PartitionRow).collect::<Vec<_>>())?;
    } else {
        out.all(&rows)?;
    }
    out.flush()?;
    if consumers.is_empty() && !out.is_json() {
        eprintln!(
            "remq: no consumer registered in namespace {} (workers register theirs while they run)",
            client.namespace()
        );
    }
    Ok(())
}

/// One consumer's line.
struct Row<'a> {
    /// As registered.
    consumer: &'a RegisteredConsumer,
    /// The last id issued minus its cursor.
    lag: u64,
}

impl<'a> Row<'a> {
    fn new(consumer: &'a RegisteredConsumer) -> Self {
        Row { consumer, lag: consumer.head.get().saturating_sub(consumer.cursor.get()) }
    }

    fn json_fields(&self) -> RowJson<'a> {
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
}

/// One partition of a consumer of a partitioned namespace: its partition and
/// the group member it is assigned to, then the columns of [`Row`].
struct PartitionRow<'a>(Row<'a>);

impl Record for PartitionRow<'_> {
    fn columns() -> Vec<Column> {
        let mut columns = Row::columns();
        columns.splice(1..1, [Column::number("PARTITION"), Column::text("ASSIGNED TO")]);
        columns
    }

    fn json(&self) -> impl Serialize {
        let c = self.0.consumer;
        PartitionJson {
            row: self.0.json_fields(),
            partition: c.partition,
            assigned_to: c.assigned_to.as_deref(),
        }
    }

    fn cells(&self) -> Vec<String> {
        let c = self.0.consumer;
        let mut cells = self.0.cells();
        let assigned = c.assigned_to.clone().unwrap_or_else(|| "-".to_owned());
        cells.splice(1..1, [c.partition.to_string(), assigned]);
        cells
    }
}

/// A partition of a consumer in JSON: the fields of [`RowJson`], then these.
#[derive(Serialize)]
struct PartitionJson<'a> {
    /// The consumer's fields.
    #[serde(flatten)]
    row: RowJson<'a>,
    /// The partition.
    partition: u32,
    /// The group member the partition is assigned to, if any is live.
    assigned_to: Option<&'a str>,
}

impl Record for Row<'_> {
    fn columns() -> Vec<Column> {
        vec![
            Column::text("CONSUMER"),
            Column::text("PATTERN"),
            Column::number("CURSOR"),
            Column::number("LAG"),
            Column::text("LEASE"),
            Column::text("OWNER"),
            Column::number("LAST SEEN"),
        ]
    }

    fn json(&self) -> impl Serialize {
        self.json_fields()
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
