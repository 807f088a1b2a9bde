//! The `shmkit` command-line tool: the command line (clap) and dispatch.
//! What each command prints is in `tools`; the work itself is in the
//! library (`shmkit::admin`) and, for `bench`, in the `shmkit-bench` crate;
//! for `bridge`, in the `shmkit-bridge` crate.

mod bridge;
mod tools;

use std::process::ExitCode;

use clap::builder::PossibleValuesParser;
use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

/// shmkit: shared memory between processes, without locks where none are
/// needed
#[derive(Debug, Parser)]
#[command(
    name = "shmkit",
    version,
    arg_required_else_help = true,
    after_help = "EXIT CODES:\n    0 success, 1 a command failed (the message says why), 2 bad usage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List every shmkit segment in /dev/shm (never a foreign file)
    ///
    /// For each: name, kind, element type, length, size, creator pid and
    /// whether it is alive (pid + start time, so a reused pid is not), age,
    /// status.
    Ls {
        /// Print one JSON object per line
        #[arg(long)]
        json: bool,
    },
    /// Show a segment's whole validated header
    ///
    /// For a ring also: head, tail, fill, closed, producer, consumers,
    /// sleepers; for an array: its first values. A corrupt segment is
    /// reported with what is wrong (exit code 1).
    Inspect {
        /// The segment's name (as in /dev/shm)
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Remove the named shmkit segments
    ///
    /// Refuses files that are not shmkit segments. Processes that have a
    /// segment open keep using it.
    Rm {
        /// The segments' names (as in /dev/shm)
        #[arg(value_name = "NAME", required = true)]
        names: Vec<String>,
    },
    /// Remove segments whose creator and every attached process are dead
    Gc {
        /// Only print what would be removed
        #[arg(long)]
        dry_run: bool,
        /// Consider only segments whose name starts with PREFIX (one
        /// application's segments, say)
        #[arg(long, value_name = "PREFIX", value_parser = name_prefix)]
        prefix: Option<String>,
    },
    /// Measure shmkit against the lock-based way of doing each job
    ///
    /// Side by side in one run, in real (pinned) processes, and print
    /// ratios.
    Bench {
        /// Longer, steadier runs (minutes instead of < 60 s)
        #[arg(long)]
        full: bool,
        /// Run only this group
        #[arg(long, value_name = "GROUP", value_parser = PossibleValuesParser::new(shmkit_bench::GROUPS))]
        only: Option<String>,
        /// One JSON object per line (schema in README.md)
        #[arg(long)]
        json: bool,
        /// Also run Python multiprocessing's versions (needs python3)
        #[arg(long)]
        python: bool,
    },
    /// Carry a queue beyond one machine through Redis Streams
    ///
    /// `out` forwards a local queue's items to a stream; `in` reads a
    /// consumer group into a local queue and acknowledges each entry once
    /// a local consumer marked it done (at-least-once across machines).
    #[command(subcommand)]
    Bridge(bridge::Bridge),
    /// Print a completion script for SHELL on stdout
    ///
    /// For example, for bash: `shmkit completions bash >
    /// ~/.local/share/bash-completion/completions/shmkit`.
    Completions {
        /// The shell to complete for
        #[arg(value_name = "SHELL")]
        shell: Shell,
    },
}

/// `gc --prefix`: a name prefix is non-empty and has no '/'.
fn name_prefix(p: &str) -> Result<String, String> {
    if p.is_empty() || p.contains('/') {
        Err("needs a non-empty name prefix without '/'".into())
    } else {
        Ok(p.to_owned())
    }
}

fn main() -> ExitCode {
    // `bench` re-runs this program as its workers. Their command line is the
    // bench's internal protocol, not part of the tool's: it is handed over
    // before clap sees it, so it appears in no help and no completion.
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some(shmkit_bench::WORKER_COMMAND) {
        return shmkit_bench::worker(&args.collect::<Vec<_>>());
    }
    // Usage errors exit with 2, `--help` and `--version` with 0 (clap's
    // `Error::exit`).
    let cli = Cli::parse();
    match cli.command {
        Command::Ls { json } => tools::ls(json),
        Command::Inspect { name } => tools::inspect(&name),
        Command::Rm { names } => tools::rm(&names),
        Command::Gc { dry_run, prefix } => tools::gc(dry_run, prefix.as_deref().unwrap_or("")),
        Command::Bench {
            full,
            only,
            json,
            python,
        } => shmkit_bench::run(&shmkit_bench::Options {
            full,
            only,
            json,
            python,
        }),
        Command::Bridge(b) => bridge::run(&b),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "shmkit", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks on the whole command line.
    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
