//! The options every subcommand shares, and the connection they describe.

use std::path::PathBuf;

use clap::{Args, Parser};
use remq::{Client, ClientBuilder};

use crate::commands::Command;
use crate::error::{CliError, Result};
use crate::output::Output;

/// Where the server is when neither `--url`, `REMQ_REDIS_URL` nor `REDIS_URL` says.
const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// Remq from the command line: durable, ordered topics on Redis.
#[derive(Debug, Parser)]
#[command(name = "remq", version, max_term_width = 100)]
pub(crate) struct Cli {
    /// The connection, shared by every subcommand.
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Print one JSON object per line instead of tables: {"id":..,"channel":..,"body":..}
    /// for messages, the body as UTF-8 text, or base64 with "encoding":"base64" when
    /// it is not UTF-8.
    #[arg(long, global = true, help_heading = "Output")]
    json: bool,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Runs the subcommand.
    pub(crate) async fn run(self) -> Result<()> {
        let context = Context { connection: self.connection, json: self.json };
        self.command.run(&context).await
    }
}

/// Which server and namespace, with the worker's environment variables as defaults.
#[derive(Debug, Args)]
#[command(next_help_heading = "Connection")]
pub(crate) struct ConnectionArgs {
    /// The Redis server: redis://[user:password@]host[:port][/db], or rediss:// for
    /// TLS [default: REDIS_URL, else redis://127.0.0.1:6379]
    #[arg(long, global = true, env = "REMQ_REDIS_URL", hide_env_values = true, value_name = "URL")]
    url: Option<String>,
    /// The namespace: the prefix of every key, e.g. remq:{orders}.
    #[arg(long, global = true, env = "REMQ_NAMESPACE", default_value = remq::Namespace::DEFAULT, value_name = "BASE")]
    namespace: String,
    /// PEM file of the CA to trust for rediss:// URLs, instead of the system's roots.
    #[arg(long, global = true, env = "REMQ_TLS_CA_CERT", value_name = "FILE")]
    tls_ca_cert: Option<PathBuf>,
    /// PEM file of a client certificate, for servers with tls-auth-clients.
    #[arg(
        long,
        global = true,
        env = "REMQ_TLS_CLIENT_CERT",
        value_name = "FILE",
        requires = "tls_client_key"
    )]
    tls_client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(
        long,
        global = true,
        env = "REMQ_TLS_CLIENT_KEY",
        value_name = "FILE",
        requires = "tls_client_cert"
    )]
    tls_client_key: Option<PathBuf>,
    /// In a partitioned namespace, the partition to work in (0 to P-1): consume,
    /// tail and channels need one; flush, dead and redrive cover every partition
    /// unless one is named.
    #[arg(long, global = true, value_name = "K")]
    partition: Option<u32>,
}

/// What a subcommand runs with: how to connect, and how to print.
#[derive(Debug)]
pub(crate) struct Context {
    /// The connection options.
    connection: ConnectionArgs,
    /// `--json`.
    json: bool,
}

impl Context {
    /// Connects to the server in the chosen namespace.
    ///
    /// # Errors
    /// The library's connection errors (unreachable server, refused
    /// credentials, invalid URL or namespace), or an unreadable certificate file.
    pub(crate) async fn client(&self) -> Result<Client> {
        Ok(self.client_builder()?.connect().await?)
    }

    /// The namespace a command that spans partitions works in: the partition
    /// `--partition` names, or the whole namespace (every partition of it);
    /// and whether the output should name partitions.
    ///
    /// # Errors
    /// As [`client`](Self::client); a `--partition` out of range.
    pub(crate) async fn spanned(&self) -> Result<(Client, bool)> {
        let client = self.client().await?;
        match self.connection.partition {
            Some(index) => Ok((client.partition(index).await?, true)),
            None => {
                let partitioned = client.partitions().await? > 1;
                Ok((client, partitioned))
            }
        }
    }

    /// The one namespace a command reads: the partition `--partition` names,
    /// or the namespace itself when it is not partitioned.
    ///
    /// # Errors
    /// As [`spanned`](Self::spanned); a partitioned namespace without
    /// `--partition`.
    pub(crate) async fn one_partition(&self) -> Result<Client> {
        let (client, partitioned) = self.spanned().await?;
        if partitioned && self.connection.partition.is_none() {
            let count = client.partitions().await?;
            return Err(CliError::Usage(format!(
                "{} has {count} partitions and this command reads one: add --partition <K> (0 to {})",
                client.namespace(),
                count - 1
            )));
        }
        Ok(client)
    }

    /// The builder [`client`](Self::client) connects with, for commands that
    /// set more options.
    ///
    /// # Errors
    /// An unreadable certificate file.
    pub(crate) fn client_builder(&self) -> Result<ClientBuilder> {
        let args = &self.connection;
        // The worker's order: REMQ_REDIS_URL (or --url), REDIS_URL, the default;
        // an empty value counts as unset.
        let url = [args.url.clone(), std::env::var("REDIS_URL").ok()]
            .into_iter()
            .flatten()
            .find(|url| !url.is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_owned());
        let mut builder = Client::builder(url).namespace(&args.namespace);
        if let Some(ca) = &args.tls_ca_cert {
            builder = builder.tls_root_cert(read_pem(ca)?);
        }
        if let (Some(cert), Some(key)) = (&args.tls_client_cert, &args.tls_client_key) {
            builder = builder.tls_client_cert(read_pem(cert)?, read_pem(key)?);
        }
        Ok(builder)
    }

    /// Standard output in the chosen format.
    pub(crate) fn output(&self) -> Output {
        Output::new(self.json)
    }
}

/// Reads a PEM file named on the command line.
fn read_pem(path: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))
}
