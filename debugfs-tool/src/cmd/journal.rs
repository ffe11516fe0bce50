//! `journal DEVICE [--keys] [--json]`: the journal entries on disk.

use std::path::PathBuf;

use sixfs::inspect::store::journal;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Block device or image file.
    device: PathBuf,
    /// Also print every key in every entry.
    #[arg(long)]
    keys: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: &Args) -> anyhow::Result<()> {
    let dev = super::open_ro(&a.device)?;
    let j = journal(&dev, a.keys)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(());
    }
    println!(
        "{} journal buckets; {}; blacklisted seqs: {}",
        j.buckets.len(),
        match (j.clean, j.replay_range) {
            (true, _) => "clean shutdown: nothing to replay".to_string(),
            (false, Some((l, n))) => format!("recovery would replay seqs {l}..={n}"),
            (false, None) => "no flush entry to recover from".to_string(),
        },
        if j.blacklist.is_empty() {
            "none".to_string()
        } else {
            j.blacklist
                .iter()
                .map(|(a, b)| format!("{a}..={b}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    for s in &j.jsets {
        let keys: Vec<String> = s
            .key_entries
            .iter()
            .map(|(b, l, n)| format!("{n} {b}@{l}"))
            .collect();
        let usage: Vec<String> = s.usage.iter().map(|(c, v)| format!("{c}={v}")).collect();
        println!(
            "seq {:>6} last_seq {:>6} {:<8} bucket {:>3} byte {:>10} {:>6} B{}{}  keys [{}]{}{}",
            s.seq,
            s.last_seq,
            if s.flush { "flush" } else { "noflush" },
            s.bucket,
            s.offset,
            s.bytes,
            if s.in_replay_range { " replay" } else { "" },
            if s.blacklisted { " BLACKLISTED" } else { "" },
            keys.join(", "),
            if s.padding > 0 {
                format!(" padding {}", s.padding)
            } else {
                String::new()
            },
            if usage.is_empty() {
                String::new()
            } else {
                format!("  usage [{}]", usage.join(", "))
            }
        );
        for k in &s.keys {
            println!("        {} {}", k.btree, k.text);
        }
    }
    for (b, at, e) in &j.damaged {
        println!("damaged entry in bucket {b} at byte {at}: {e}");
    }
    Ok(())
}
