//! `sixfs-debug`: inspects sixfs images offline and read-only. Argument parsing and output
//! only; the views are in `sixfs::inspect`.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inspect sixfs images (offline, read-only: safe on a mounted device).
///
/// Exit status: 0 on success, 1 on error.
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
    /// Print the table of problems fsck can find (stable ids).
    Problems(cmd::problems::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.command {
        Command::ShowSuper(a) => cmd::show_super::run(a),
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
