//! What a failed command prints, and its exit code.

use std::io;
use std::process::ExitCode;

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum CliError {
    /// Remq or Redis said no; its message already says what to do and never
    /// holds a password.
    Remq(remq::Error),
    /// Reading stdin or a file, or writing stdout, failed.
    Io(io::Error),
    /// The arguments make no sense together, beyond what clap checks.
    Usage(String),
}

/// The result of a command.
pub(crate) type Result<T, E = CliError> = std::result::Result<T, E>;

impl From<remq::Error> for CliError {
    fn from(error: remq::Error) -> Self {
        CliError::Remq(error)
    }
}

impl From<io::Error> for CliError {
    fn from(error: io::Error) -> Self {
        CliError::Io(error)
    }
}

impl CliError {
    /// Prints the error to stderr and returns the exit code: 0 when only the
    /// reader of stdout went away (`remq consume x | head -1`), 2 for usage
    /// errors as clap does, 1 otherwise.
    pub(crate) fn report(self) -> ExitCode {
        match self {
            CliError::Io(error) if error.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            CliError::Io(error) => {
                eprintln!("remq: error: {error}");
                ExitCode::FAILURE
            }
            CliError::Usage(message) => {
                eprintln!("remq: error: {message}");
                ExitCode::from(2)
            }
            CliError::Remq(error) => {
                eprintln!("remq: error: {error}");
                if let Some(hint) = hint(&error) {
                    eprintln!("hint: {hint}");
                }
                ExitCode::FAILURE
            }
        }
    }
}

/// How to fix what the library's message describes, in command-line terms.
fn hint(error: &remq::Error) -> Option<&'static str> {
    match error {
        remq::Error::Connect { .. } | remq::Error::InvalidUrl { .. } | remq::Error::Tls { .. } => {
            Some("pass the server with --url redis://[user:password@]host:port[/db] or set REMQ_REDIS_URL")
        }
        remq::Error::Auth { .. } => Some("put the user and password in --url or REMQ_REDIS_URL"),
        remq::Error::InvalidPattern { .. } => {
            Some("a pattern is a Redis glob over channel names, e.g. 'orders.*' (quote it in the shell)")
        }
        remq::Error::InvalidNamespace { .. } => {
            Some("--namespace / REMQ_NAMESPACE takes a base such as remq:{orders}")
        }
        _ => None,
    }
}
