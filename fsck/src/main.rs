//! `fsck.sixfs`: checks and repairs a sixfs filesystem, following fsck(8) conventions.
//! Argument parsing and output only; the work is `sixfs::recovery::fsck_path`.

use std::ffi::OsString;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sixfs::recovery::{FixPolicy, FsckOptions, FsckReport, Prompt, fsck_path};
use sixfs::sb::CopyStatus;

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
    /// As with e2fsck, the fd is `-C FD` or `-CFD`; a `-C` followed by something that is not
    /// a number takes no fd, so `-C /dev/x` checks /dev/x.
    #[arg(short = 'C', value_name = "FD", num_args = 0..=1, default_missing_value = "1")]
    progress_fd: Option<i32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

struct TtyPrompt;

impl Prompt for TtyPrompt {
    fn confirm(&mut self, question: &str) -> bool {
        // On stderr: stdout carries the report (and --json must stay parseable).
        eprint!("{question} [y/n] ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() {
            return false;
        }
        matches!(line.trim(), "y" | "Y" | "yes")
    }
}

/// `-C` with a following argument that is not a number takes no fd (fsck(8) passes `-C0` or
/// `-C 3`; `fsck.sixfs -C /dev/x` must check /dev/x): such a `-C` becomes `-C1`.
fn fix_progress_arg(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.into_iter().peekable();
    while let Some(a) = it.next() {
        if a == "-C"
            && it
                .peek()
                .is_some_and(|n| n.to_str().is_none_or(|n| n.parse::<i32>().is_err()))
        {
            out.push(OsString::from("-C1"));
        } else {
            out.push(a);
        }
    }
    out
}

fn print_text(r: &FsckReport, verbose: bool) {
    for c in &r.superblock_copies {
        // Without -v, the copies that are not fine (those a problem already names are listed
        // with it).
        let line = format!("{} superblock at byte {}", c.role, c.offset);
        let bad = !matches!(c.status, CopyStatus::Valid { .. });
        let named = r.problems.iter().any(|p| p.message.contains(&line));
        if verbose || (bad && !named) {
            println!("{}: {line}: {}", r.device, c.status);
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
    let cli = match Cli::try_parse_from(fix_progress_arg(std::env::args_os().collect())) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let v: Vec<OsString> = std::iter::once("fsck.sixfs")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        Cli::try_parse_from(fix_progress_arg(v))
    }

    #[test]
    fn progress_fd_never_swallows_the_device() {
        let c = parse(&["-C", "/dev/x"]).unwrap();
        assert_eq!(
            (c.device, c.progress_fd),
            (PathBuf::from("/dev/x"), Some(1))
        );
        let c = parse(&["-n", "-C", "3", "/dev/x"]).unwrap();
        assert_eq!(
            (c.device, c.progress_fd),
            (PathBuf::from("/dev/x"), Some(3))
        );
        let c = parse(&["-C0", "/dev/x"]).unwrap();
        assert_eq!(
            (c.device, c.progress_fd),
            (PathBuf::from("/dev/x"), Some(0))
        );
        let c = parse(&["/dev/x", "-C"]).unwrap();
        assert_eq!(
            (c.device, c.progress_fd),
            (PathBuf::from("/dev/x"), Some(1))
        );
        let c = parse(&["-p", "-C", "-y"]);
        assert!(c.is_err(), "-p and -y conflict; -C must not hide that");
        let c = parse(&["-y", "/dev/x"]).unwrap();
        assert_eq!(c.progress_fd, None);
    }
}
