//! `problems [--markdown|--json]`: the fsck problem table.

use sixfs::recovery::PROBLEMS;
use sixfs::recovery::problems::problems_markdown;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Print the Markdown table kept in docs/fsck-problems.md.
    #[arg(long, conflicts_with = "json")]
    markdown: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: &Args) -> anyhow::Result<()> {
    if a.markdown {
        print!("{}", problems_markdown());
    } else if a.json {
        println!("{}", serde_json::to_string_pretty(PROBLEMS)?);
    } else {
        for p in PROBLEMS {
            println!(
                "{:>4} {:<24} {:<8} {}",
                p.number,
                p.name,
                if p.autofix {
                    "auto"
                } else if p.can_fix {
                    "ask"
                } else {
                    "no fix"
                },
                p.description
            );
        }
    }
    Ok(())
}
