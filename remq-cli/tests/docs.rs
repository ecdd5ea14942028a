//! The `remq` command lines the documentation shows still parse.
//!
//! The convention (stated in `docs/cli.md`): in a ` ```sh ` block every line is a
//! command line; in a ` ```console ` block the lines that start with `$ ` are, the
//! others are output. A line is split at `|`, `;`, `&&`, `||` and `&` outside
//! quotes, and every command in it whose program is `remq` is checked. Other
//! blocks (` ```text `, ` ```rust ` …) are not commands.
//!
//! Each command runs the built binary against a Redis that is not there
//! (`redis://127.0.0.1:1`), so nothing is ever sent anywhere: arguments that
//! parse end with a connection error (exit 1) or succeed, and arguments clap
//! refuses end with its usage error (exit 2, "error: …" on stderr). A usage
//! error the command itself reports after parsing (exit 2 too, but "remq:
//! error: …", say an unreadable certificate file) means the arguments parsed.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use remq_testkit::{documentation_files, repository_root};

/// The binary under test.
const REMQ: &str = env!("CARGO_BIN_EXE_remq");

/// A port nothing listens on: a connection is refused at once.
const NOWHERE: &str = "redis://127.0.0.1:1";

/// The command lines of `markdown`, with their line numbers (1-based).
fn command_lines(markdown: &str) -> Vec<(usize, String)> {
    let mut lines = Vec::new();
    // The language of the fenced block we are in, if any.
    let mut block: Option<String> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            block = match block {
                None => Some(info.split([',', ' ']).next().unwrap_or("").to_owned()),
                Some(_) => None,
            };
            continue;
        }
        let command = match block.as_deref() {
            Some("sh") => Some(trimmed),
            Some("console") => trimmed.strip_prefix("$ "),
            _ => None,
        };
        if let Some(command) = command.filter(|c| !c.is_empty() && !c.starts_with('#')) {
            lines.push((index + 1, command.to_owned()));
        }
    }
    lines
}

/// A shell token: a word (quotes removed) or a control operator.
#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Operator,
}

/// Splits a command line as `sh` would, for the little the documentation
/// uses: words, '…' and "…" quotes, backslash escapes, control operators, and
/// a trailing `# comment`. No expansions.
fn tokenize(line: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    // Whether a word has started (so `''` is an empty word, not nothing).
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let end_word = |tokens: &mut Vec<Token>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            tokens.push(Token::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            word.push(chars.next().unwrap());
                        }
                        _ => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    word.push(c);
                }
            }
            '#' if !in_word => break,
            '|' | ';' | '&' => {
                end_word(&mut tokens, &mut word, &mut in_word);
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                tokens.push(Token::Operator);
            }
            c if c.is_whitespace() => end_word(&mut tokens, &mut word, &mut in_word),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut tokens, &mut word, &mut in_word);
    tokens
}

/// The arguments of every `remq` command on `line` (leading `NAME=value`
/// assignments skipped).
fn remq_invocations(line: &str) -> Vec<Vec<String>> {
    let mut invocations = Vec::new();
    let mut command: Vec<String> = Vec::new();
    let mut flush = |command: &mut Vec<String>| {
        let words = std::mem::take(command);
        let program = words.iter().position(|w| !is_assignment(w));
        if let Some(at) = program.filter(|&at| words[at] == "remq") {
            invocations.push(words[at + 1..].to_vec());
        }
    };
    for token in tokenize(line) {
        match token {
            Token::Word(word) => command.push(word),
            Token::Operator => flush(&mut command),
        }
    }
    flush(&mut command);
    invocations
}

/// `NAME=value`, as in `RUSTC_BOOTSTRAP=1 cargo …`.
fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// How `remq <args>` ended against a Redis that is not there.
struct Run {
    /// The exit code; `None` when it had to be killed.
    code: Option<i32>,
    /// What it printed on stderr.
    stderr: String,
}

impl Run {
    /// Whether clap refused the arguments.
    fn is_usage_error(&self) -> bool {
        self.code == Some(2) && !self.stderr.starts_with("remq: error:")
    }
}

/// Runs `remq <args>` with nothing taken from the environment but the
/// unreachable URL, no stdin, and a deadline.
fn run(args: &[String]) -> Run {
    let mut command = Command::new(REMQ);
    command.args(args).env("REMQ_REDIS_URL", NOWHERE);
    for var in [
        "REDIS_URL",
        "REMQ_NAMESPACE",
        "REMQ_TLS_CA_CERT",
        "REMQ_TLS_CLIENT_CERT",
        "REMQ_TLS_CLIENT_KEY",
        "REMQ_PUBLISH_REPLICAS",
        "REMQ_PUBLISH_REPLICAS_TIMEOUT",
        "REMQ_DEAD_LETTER_PREFIX",
    ] {
        command.env_remove(var);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {REMQ}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    Run { code: status.and_then(|s| s.code()), stderr }
}

#[test]
fn every_remq_command_line_in_the_docs_parses() {
    let root = repository_root();
    let mut checked: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut failures = Vec::new();
    for path in documentation_files() {
        let markdown = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let shown = path.strip_prefix(root).unwrap_or(&path).display().to_string();
        for (number, line) in command_lines(&markdown) {
            for args in remq_invocations(&line) {
                let outcome = run(&args);
                if outcome.code.is_none() {
                    failures.push(format!("{shown}:{number}: `{line}` did not end within 60 s"));
                } else if outcome.is_usage_error() {
                    failures.push(format!("{shown}:{number}: `{line}` does not parse:\n{}", outcome.stderr));
                }
                checked.push((path.clone(), args));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} command line(s) in the docs are wrong:\n\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The check is not vacuous: docs/cli.md shows every subcommand `remq
    // --help` lists, each in a checked command line.
    let help = Command::new(REMQ).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let subcommands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|&name| name != "help")
        .collect();
    assert!(subcommands.len() >= 10, "no subcommands found in `remq --help`:\n{help}");
    let cli_md = root.join("docs").join("cli.md");
    let missing: Vec<&str> = subcommands
        .iter()
        .copied()
        .filter(|sub| !checked.iter().any(|(path, args)| *path == cli_md && args.iter().any(|a| a == sub)))
        .collect();
    assert!(missing.is_empty(), "docs/cli.md shows no checked command line for: {missing:?}");
}

#[test]
fn command_lines_are_split_as_the_shell_splits_them() {
    let words = |line: &str| remq_invocations(line);
    assert_eq!(
        words(r#"printf '{"order":2}\n' | remq publish orders.paid --lines"#),
        [["publish", "orders.paid", "--lines"]]
    );
    assert_eq!(words("remq consume ''"), [["consume", ""]]);
    assert_eq!(
        words(r#"remq --url redis://127.0.0.1:1 channels; echo "exit $?""#),
        [["--url", "redis://127.0.0.1:1", "channels"]]
    );
    assert_eq!(words("remq tail 'orders.*' --from 2   # a comment"), [["tail", "orders.*", "--from", "2"]]);
    assert_eq!(words(r#"remq publish x "a \"quoted\" body""#), [["publish", "x", r#"a "quoted" body"#]]);
    assert_eq!(words("RUST_LOG=debug remq channels && remq consumers"), [["channels"], ["consumers"]]);
    assert!(words("cargo install --path remq-cli").is_empty());
    let blocks = "```sh\nremq channels\n```\n```console\n$ remq consumers\nremq: not a command\n```\n```text\nremq dead\n```\n";
    assert_eq!(command_lines(blocks), [(2, "remq channels".to_owned()), (5, "remq consumers".to_owned())]);
}
