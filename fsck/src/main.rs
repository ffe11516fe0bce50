//! `fsck.sixfs`: checks and repairs a sixfs filesystem, following fsck(8) conventions.
//! Argument parsing and output only; the work is `sixfs::recovery::fsck_path`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sixfs::recovery::{FixPolicy, FsckOptions, FsckReport, Prompt, fsck_path};

/// fsck(8) exit codes.
const EXIT_OPERATIONAL: u8 = 8;
const EXIT_USAGE: u8 = 16;

/// Check and repair a sixfs filesystem.
///
/// Checks every superblock copy (repairing bad or stale copies from the newest), then replays
/// the journal in memory and checks every btree's structure (reported; btree repairs come with
/// the full fsck). Without -n, -p/-a or -y it asks before each repair, which needs a terminal.
///
/// Exit status (fsck(8)): 0 no problems; 1 problems corrected; 4 problems left
/// uncorrected; 8 operational error (unreadable device, no valid superblock, mounted);
/// 16 usage error.
#[derive(Parser, Debug)]
#[command(name = "fsck.sixfs", version, about, long_about)]
struct Cli {
    /// Block device or image file to check.
    device: PathBuf,
    /// Check only: open read-only and change nothing.
    #[arg(short = 'n', conflicts_with_all = ["preen", "auto", "yes"])]
    no: bool,
    /// Repair automatically what is safe to repair without asking.
    #[arg(short = 'p', conflicts_with_all = ["yes"])]
    preen: bool,
    /// Same as -p (BSD compatibility).
    #[arg(short = 'a', conflicts_with_all = ["yes"])]
    auto: bool,
    /// Repair everything repairable without asking.
    #[arg(short = 'y')]
    yes: bool,
    /// Ask before each repair (the default).
    #[arg(short = 'r')]
    interactive: bool,
    /// Check even if the filesystem looks clean (sixfs always checks everything it knows).
    #[arg(short = 'f')]
    force: bool,
    /// Print every superblock copy's state.
    #[arg(short = 'v')]
    verbose: bool,
    /// Progress to a file descriptor (accepted for fsck(8) compatibility; the check is quick).
    #[arg(short = 'C', value_name = "FD", num_args = 0..=1, default_missing_value = "1")]
    progress_fd: Option<i32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

struct TtyPrompt;

impl Prompt for TtyPrompt {
    fn confirm(&mut self, question: &str) -> bool {
        print!("{question} [y/n] ");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() {
            return false;
        }
        matches!(line.trim(), "y" | "Y" | "yes")
    }
}

fn print_text(r: &FsckReport, verbose: bool) {
    if verbose {
        for c in &r.superblock_copies {
            println!(
                "{}: {} superblock at byte {}: {}",
                r.device, c.role, c.offset, c.status
            );
        }
    }
    for p in &r.problems {
        let what = if p.fixed {
            "FIXED"
        } else if r.read_only {
            "not fixed (-n)"
        } else {
            "NOT FIXED"
        };
        println!("{} [problem {} {:?}]: {what}", p.message, p.number, p.id);
    }
    let fixed = r.problems.iter().filter(|p| p.fixed).count();
    match r.exit_code() {
        0 => println!("{}: clean", r.device),
        1 => println!("{}: {fixed} problem(s) found and corrected", r.device),
        _ => println!(
            "{}: {} problem(s) found, {} left uncorrected{}",
            r.device,
            r.problems.len(),
            r.problems.len() - fixed,
            if r.read_only {
                "; run without -n (e.g. -y) to repair"
            } else {
                ""
            }
        ),
    }
}

fn main() -> ExitCode {
    sixfs::util::cli::restore_sigpipe();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let policy = if cli.no {
        FixPolicy::No
    } else if cli.yes {
        FixPolicy::Yes
    } else if cli.preen || cli.auto {
        FixPolicy::Preen
    } else {
        if !std::io::stdin().is_terminal() {
            eprintln!(
                "fsck.sixfs: {}: need a terminal for interactive repairs; use -n to check only, -p to repair what is safe, or -y",
                cli.device.display()
            );
            return ExitCode::from(EXIT_OPERATIONAL);
        }
        FixPolicy::Ask
    };
    let _ = (cli.force, cli.interactive, cli.progress_fd);
    match fsck_path(&cli.device, &FsckOptions { policy }, &mut TtyPrompt) {
        Ok(r) => {
            if cli.json {
                let v = serde_json::json!({ "report": &r, "exit_code": r.exit_code() });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print_text(&r, cli.verbose);
            }
            ExitCode::from(u8::try_from(r.exit_code()).unwrap_or(EXIT_OPERATIONAL))
        }
        Err(e) => {
            if cli.json {
                let v =
                    serde_json::json!({ "error": e.to_string(), "exit_code": EXIT_OPERATIONAL });
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            eprintln!("fsck.sixfs: {e}");
            ExitCode::from(EXIT_OPERATIONAL)
        }
    }
}
