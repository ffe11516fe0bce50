//! Human-readable and JSON views of a device's superblock (for `sixfs-debug show-super`),
//! in the spirit of `dumpe2fs -h` and `bcachefs show-super`.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::format::superblock::Superblock;
use crate::sb::{CopyReport, SbRead};

/// Formats unix nanoseconds as an RFC 3339 UTC time.
pub fn format_time(ns: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// A size in bytes with a binary-unit hint, e.g. `524288 (512 KiB)`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else if v.fract() == 0.0 {
        format!("{bytes} ({v:.0} {})", UNITS[u])
    } else {
        format!("{bytes} ({v:.2} {})", UNITS[u])
    }
}

/// The fields of one superblock, as (name, value) lines.
pub fn fields(sb: &Superblock) -> Vec<(&'static str, String)> {
    let bs = u64::from(sb.bucket_size);
    let journal: Vec<String> = sb
        .journal
        .iter()
        .map(|r| {
            format!(
                "buckets {}..{} (bytes {}..{})",
                r.start,
                r.end(),
                r.start * bs,
                r.end() * bs
            )
        })
        .collect();
    let blacklist: Vec<String> = sb
        .blacklist
        .iter()
        .map(|r| format!("{}..={}", r.start, r.end))
        .collect();
    let mut v = vec![
        (
            "Label",
            if sb.label.is_empty() {
                "<none>".to_string()
            } else {
                sb.label.clone()
            },
        ),
        ("UUID", sb.user_uuid.to_string()),
        ("Internal UUID", sb.uuid.to_string()),
        (
            "Version",
            format!("{} (readable by {} and later)", sb.version, sb.version_min),
        ),
        ("Sequence", sb.seq.to_string()),
        ("Flags", format!("{:?}", sb.flags)),
        (
            "Clean",
            if sb.clean.is_some() {
                "yes".into()
            } else {
                "no (journal replay needed)".into()
            },
        ),
        ("Created", format_time(sb.time_created)),
        ("Last written", format_time(sb.write_time)),
        ("Device size", format_size(sb.dev_size)),
        ("Block size", format_size(u64::from(sb.block_size))),
        ("Bucket size", format_size(bs)),
        (
            "Btree node size",
            format_size(u64::from(sb.btree_node_size)),
        ),
        (
            "Buckets",
            format!(
                "{} (usable {}..{})",
                sb.nbuckets, sb.first_bucket, sb.nbuckets
            ),
        ),
        (
            "Journal",
            format!("{} buckets: {}", sb.journal_buckets(), journal.join(", ")),
        ),
        ("Compression", sb.options.compression.to_string()),
        ("Data checksum", sb.options.data_csum.name().to_string()),
        (
            "Metadata checksum",
            sb.options.metadata_csum.name().to_string(),
        ),
        ("Features", format!("{:?}", sb.features)),
        ("Compat features", format!("{:?}", sb.compat)),
        (
            "Superblock layout",
            format!(
                "{} copies of up to {} bytes at {}",
                sb.layout.offsets.len(),
                sb.layout.max_bytes,
                sb.layout
                    .offsets
                    .iter()
                    .map(|o| format!("byte {o}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    ];
    if let Some(c) = &sb.clean {
        v.push(("Clean journal seq", c.journal_seq.to_string()));
    }
    v.push((
        "Journal seq blacklist",
        if blacklist.is_empty() {
            "none".into()
        } else {
            blacklist.join(", ")
        },
    ));
    v
}

fn render(out: &mut String, sb: &Superblock) {
    for (k, val) in fields(sb) {
        let _ = writeln!(out, "{:<24}{}", format!("{k}:"), val);
    }
}

fn copy_line(c: &CopyReport) -> String {
    format!("{} superblock at byte {}: {}", c.role, c.offset, c.status)
}

/// The text `show-super` prints.
pub fn show_super_text(dev: &str, read: &SbRead, all_copies: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Device:                 {dev}");
    render(&mut out, &read.sb);
    let _ = writeln!(out, "Superblock copies:");
    for c in &read.copies {
        let _ = writeln!(out, "  {}", copy_line(c));
    }
    if all_copies {
        for c in &read.copies {
            if let Some(sb) = &c.sb {
                let _ = writeln!(out, "\n{} copy at byte {}:", c.role, c.offset);
                render(&mut out, sb);
            }
        }
    }
    out
}

fn sb_json(sb: &Superblock) -> Value {
    let mut v = serde_json::to_value(sb).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert(
            "time_created_utc".into(),
            json!(format_time(sb.time_created)),
        );
        m.insert("write_time_utc".into(), json!(format_time(sb.write_time)));
    }
    v
}

/// The JSON `show-super --json` prints.
pub fn show_super_json(dev: &str, read: &SbRead, all_copies: bool) -> Value {
    let copies: Vec<Value> = read
        .copies
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
            if all_copies && let (Value::Object(m), Some(sb)) = (&mut v, &c.sb) {
                m.insert("superblock".into(), sb_json(sb));
            }
            v
        })
        .collect();
    json!({ "device": dev, "superblock": sb_json(&read.sb), "copies": copies })
}
