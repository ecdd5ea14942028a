//! `remq namespace create <base> --partitions N`: a partitioned namespace.

use clap::{Args, Subcommand};
use remq::MAX_PARTITIONS;
use serde::Serialize;

use crate::cli::Context;
use crate::error::Result;

/// Arguments of `remq namespace`.
#[derive(Debug, Args)]
pub(crate) struct NamespaceArgs {
    /// What to do.
    #[command(subcommand)]
    action: Action,
}

/// The `remq namespace` subcommands.
#[derive(Debug, Subcommand)]
enum Action {
    /// Create a namespace with a fixed number of partitions (each an ordinary
    /// namespace: remq:{orders} → remq:{orders.0} …); again with the same
    /// number it does nothing, with another it fails.
    Create {
        /// The namespace's base, e.g. remq:{orders} (a hash tag on a cluster).
        base: String,
        /// How many partitions (1 to 1024).
        #[arg(long, value_name = "P", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PARTITIONS)))]
        partitions: u32,
    },
}

/// A created namespace in JSON.
#[derive(Serialize)]
struct Created<'a> {
    /// Its base.
    namespace: &'a str,
    /// Its partition count.
    partitions: u32,
    /// The base of its first partition.
    first: String,
}

impl NamespaceArgs {
    /// Creates the namespace and prints what it is made of.
    pub(crate) async fn run(self, context: &Context) -> Result<()> {
        let Action::Create { base, partitions } = self.action;
        let client = context.client().await?.with_namespace(&base)?;
        client.create_partitions(partitions).await?;
        let first = client.partition(0).await?.namespace().to_string();
        let last = client.partition(partitions - 1).await?.namespace().to_string();
        let mut out = context.output();
        if out.is_json() {
            out.json_line(&Created { namespace: &base, partitions, first })?;
        } else {
            out.line(&format!("{base}: {partitions} partition(s), {first} … {last}"))?;
        }
        Ok(out.flush()?)
    }
}
