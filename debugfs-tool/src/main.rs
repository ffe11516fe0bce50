//! `sixfs-debug`: inspects sixfs images offline and read-only. Argument parsing and output
//! only; the views are in `sixfs::inspect`.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inspect sixfs images (offline and read-only: nothing is written to the device; the
/// journal is replayed in memory when a view needs the current keys).
///
/// Exit status: 0 on success, 1 on error, 2 on a command-line usage error.
#[derive(Parser, Debug)]
#[command(name = "sixfs-debug", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print every superblock field and the state of each superblock copy.
    ShowSuper(cmd::show_super::Args),
    /// List the keys of the btrees (after replaying the journal in memory).
    List(cmd::list::Args),
    /// Show every btree node: range, fill, and the entries written to it.
    Nodes(cmd::nodes::Args),
    /// Show the journal entries on disk and what recovery would replay.
    Journal(cmd::journal::Args),
    /// Print the table of problems fsck can find (stable ids).
    Problems(cmd::problems::Args),
}

fn main() -> ExitCode {
    sixfs::util::cli::restore_sigpipe();
    let cli = Cli::parse();
    let r = match &cli.command {
        Command::ShowSuper(a) => cmd::show_super::run(a),
        Command::List(a) => cmd::list::run(a),
        Command::Nodes(a) => cmd::nodes::run(a),
        Command::Journal(a) => cmd::journal::run(a),
        Command::Problems(a) => cmd::problems::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sixfs-debug: {e:#}");
            ExitCode::from(1)
        }
    }
}
