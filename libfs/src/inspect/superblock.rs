//! Human-readable and JSON views of a device's superblock (for `sixfs-debug show-super`),
//! in the spirit of `dumpe2fs -h` and `bcachefs show-super`.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::format::btree_id::BtreeId;
use crate::format::btree_ptr::BtreePtr;
use crate::format::jset::{JEntryType, entries_iter};
use crate::format::superblock::{SbFlags, Superblock};
use crate::sb::{CopyReport, SbRead};

/// Flag or feature names, lowercase, joined by `, ` (`none` when empty); bits without a name
/// are shown in hex.
pub fn flag_names<F: bitflags::Flags>(f: &F) -> String
where
    F::Bits: std::fmt::LowerHex,
{
    let mut names: Vec<String> = f.iter_names().map(|(n, _)| n.to_lowercase()).collect();
    let known = F::all().bits();
    let unknown = f.bits() & !known;
    if unknown != <F::Bits as bitflags::Bits>::EMPTY {
        names.push(format!("unknown bits {unknown:#x}"));
    }
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The btree roots a clean section records: `(btree, level, pointer)`; `None` if the section's
/// entries do not decode.
pub fn clean_roots(sb: &Superblock) -> Option<Vec<(BtreeId, u8, BtreePtr)>> {
    let c = sb.clean.as_ref()?;
    let it = entries_iter(&c.entries)?;
    Some(
        it.filter(|e| e.typ == JEntryType::BtreeRoot)
            .filter_map(|e| e.root().map(|p| (e.btree, e.level, p)))
            .collect(),
    )
}

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
                r.start.saturating_mul(bs),
                r.end().saturating_mul(bs)
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
        ("Flags", flag_names(&sb.flags)),
        (
            "Clean",
            format!(
                "{} ({})",
                if sb.flags.contains(SbFlags::CLEAN) {
                    "yes"
                } else {
                    "no, journal replay needed"
                },
                if sb.clean.is_some() {
                    "clean section present"
                } else {
                    "no clean section"
                }
            ),
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
        ("Features", flag_names(&sb.features)),
        ("Compat features", flag_names(&sb.compat)),
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
        match clean_roots(sb) {
            Some(roots) if !roots.is_empty() => {
                for (b, level, p) in roots {
                    v.push((
                        "Clean btree root",
                        format!(
                            "{:<8} level {level}, sector {} (byte {}), seq {:#018x}, written {} sectors",
                            b.name(),
                            p.sector,
                            p.sector.saturating_mul(512),
                            p.node_seq,
                            p.sectors_written
                        ),
                    ));
                }
            }
            Some(_) => v.push(("Clean btree roots", "none".into())),
            None => v.push(("Clean btree roots", "<undecodable entries>".into())),
        }
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
        m.insert("flag_names".into(), json!(flag_names(&sb.flags)));
        m.insert("feature_names".into(), json!(flag_names(&sb.features)));
        if let Some(roots) = clean_roots(sb) {
            let roots: Vec<Value> = roots
                .iter()
                .map(|(b, level, p)| {
                    json!({
                        "btree": b.name(),
                        "level": level,
                        "sector": p.sector,
                        "seq": p.node_seq,
                        "sectors_written": p.sectors_written,
                    })
                })
                .collect();
            m.insert("clean_roots".into(), json!(roots));
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::bkey::Pos;
    use crate::format::jset::push_root_entry;
    use crate::format::superblock::tests::sample;
    use crate::format::superblock::{CleanSection, CompatFeatures, Features};

    fn field<'a>(f: &'a [(&'static str, String)], name: &str) -> Vec<&'a str> {
        f.iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn flags_features_and_clean_roots_are_shown_by_name() {
        let mut sb = sample(64 << 20, 512 << 10, 256 << 10);
        let f = fields(&sb);
        assert_eq!(field(&f, "Flags"), ["none"]);
        assert_eq!(field(&f, "Features"), ["none"]);
        assert_eq!(
            field(&f, "Clean"),
            ["no, journal replay needed (no clean section)"]
        );
        assert!(field(&f, "Clean btree root").is_empty());

        sb.flags = SbFlags::CLEAN | SbFlags::NEEDS_FSCK;
        sb.features = Features::LZ4 | Features::BLAKE3;
        sb.compat = CompatFeatures::from_bits_retain(0x30);
        let mut entries = Vec::new();
        for (b, level, sector) in [(BtreeId::Extents, 0u8, 2048u64), (BtreeId::Inodes, 2, 4096)] {
            let p = BtreePtr {
                sector,
                node_seq: 0xabc,
                sectors_written: 8,
                generation: 0,
                min_pos: Pos::default(),
            };
            push_root_entry(&mut entries, b, level, &p);
        }
        sb.clean = Some(CleanSection {
            journal_seq: 9,
            entries,
        });
        let f = fields(&sb);
        assert_eq!(field(&f, "Flags"), ["clean, needs_fsck"]);
        assert_eq!(field(&f, "Features"), ["lz4, blake3"]);
        assert_eq!(field(&f, "Compat features"), ["unknown bits 0x30"]);
        assert_eq!(field(&f, "Clean"), ["yes (clean section present)"]);
        let roots = field(&f, "Clean btree root");
        assert_eq!(roots.len(), 2, "{roots:?}");
        assert!(
            roots[0].starts_with(
                "extents  level 0, sector 2048 (byte 1048576), seq 0x0000000000000abc, written 8"
            ),
            "{}",
            roots[0]
        );
        assert!(
            roots[1].starts_with("inodes   level 2, sector 4096"),
            "{}",
            roots[1]
        );
        let text = {
            let mut out = String::new();
            render(&mut out, &sb);
            out
        };
        assert!(
            !text.contains("SbFlags(") && !text.contains("Features("),
            "{text}"
        );
        let j = sb_json(&sb);
        assert_eq!(j["clean_roots"][1]["btree"], "inodes");
        assert_eq!(j["clean_roots"][1]["level"], 2);
        assert_eq!(j["flag_names"], "clean, needs_fsck");
    }
}
