//! `syncbridge`: the command-line tool.
//!
//! `main` only parses arguments, sets up logging, runs one command and turns its result into an
//! exit code; each command lives in its own module under `commands/`.

mod cli;
mod commands;
mod exit;
mod registry;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, LogFormat};
use crate::exit::{CliError, Exit};

/// mimalloc rather than the system allocator: the engine allocates per row, and glibc's malloc
/// took about a third of a push's CPU time (`cargo bench -p syncbridge-engine --bench push`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.log_format);
    let runtime = match syncbridge_threads::runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return Exit::Internal.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(exit) => exit.into(),
        Err(error) => {
            eprintln!("error: {error}");
            error.exit.into()
        }
    }
}

async fn run(cli: Cli) -> Result<Exit, CliError> {
    let global = &cli.global;
    match cli.command {
        Command::Migrate => commands::migrate::run(global).await,
        Command::Apply(args) => commands::apply::run(global, &args).await,
        Command::Schema => commands::schema::run().map(|()| Exit::Ok),
        Command::Status => commands::status::run(global).await,
        Command::Introspect(args) => commands::run::introspect(global, &args).await,
        Command::Drift(args) => commands::run::drift(global, &args).await,
        Command::Provision(args) => commands::run::provision(global, &args).await,
        Command::Run(args) => commands::run::run(global, &args).await,
        Command::Runs(args) => commands::run::runs(global, &args).await,
        Command::Reconcile(args) => commands::run::reconcile(global, &args).await,
        Command::Changes(args) => commands::run::changes(global, &args).await,
        Command::Release(args) => commands::run::release(global, &args).await,
        Command::Dlq(args) => commands::dlq::run(global, &args).await,
        Command::Sharepoint(args) => commands::run::sharepoint(global, &args).await,
        Command::Plugins(args) => commands::plugins::run(global, &args),
        Command::Emulator(args) => commands::emulator::run(global, &args).await,
        Command::Quickstart(args) => commands::quickstart::run(global, &args).await,
    }
}

/// Logs go to stderr (stdout is for results and `--json`), filtered by `RUST_LOG` (default
/// `info`), as text or one JSON object per line. Text is coloured only for a terminal: a pipe,
/// a file or the journal gets plain lines, and so does anyone who sets `NO_COLOR`
/// (no-color.org).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}
