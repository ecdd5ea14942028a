//! `remq`: Remq from the command line. Publish messages, follow a pattern live,
//! read pages of the log, list channels, inspect and replay dead letters, and
//! measure a server's throughput, against any Redis that speaks the Remq
//! protocol.
//!
//! ```text
//! remq publish orders.created '{"order":1}'
//! remq tail 'orders.*' --from-start
//! remq --json consume 'orders.*' --after 0 --limit 100
//! ```
//!
//! # Layout
//! - `cli`: the options every subcommand shares (`--url`, `--namespace`, TLS,
//!   `--json`) and the connection they describe.
//! - `commands`: one module per subcommand, each with its clap arguments and its
//!   `run`; a new subcommand is one more file there, a variant of `Command` and
//!   its arm in `Command::run`.
//! - `output`: aligned tables for people, one JSON object per line for scripts,
//!   and how bodies are shown in each.
//! - `stop`: Ctrl-C, SIGTERM, or a reader that closed stdout: what ends `tail`.
//! - `error`: what goes to stderr, and the exit code.

mod cli;
mod commands;
mod error;
mod output;
mod stop;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // The library reports what it retries on its own (a dropped connection, a
    // Redis restart during `tail`) through `tracing`: show warnings on stderr,
    // or what RUST_LOG asks for.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    // One thread: the commands are I/O-bound, and the server usually needs the
    // machine's other cores more than the tool does.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(cli.run()),
        Err(e) => Err(error::CliError::Io(e)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => error.report(),
    }
}
