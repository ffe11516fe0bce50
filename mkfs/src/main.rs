//! `mkfs.sixfs`: formats a device or an image file as sixfs. Argument parsing and output only;
//! the work is `sixfs::init::mkfs_path`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sixfs::format::csum::{ChecksumType, Compression};
use sixfs::format::superblock::FsOptions;
use sixfs::init::{FormatOptions, mkfs_path};
use sixfs::inspect::superblock::format_size;
use sixfs::units::parse_size;

/// Format a device or image file as sixfs.
///
/// Refuses to overwrite a device that holds another filesystem or a partition table unless
/// -f is given, and a mounted device unless -f is given twice. Formatting writes only the
/// superblock areas and the initial metadata, never the whole device.
///
/// Exit status: 0 on success, 1 on any error or refusal, 2 on a command-line usage error.
#[derive(Parser, Debug)]
#[command(name = "mkfs.sixfs", version, about, long_about)]
struct Cli {
    /// Block device or image file to format.
    device: PathBuf,
    /// Filesystem label (up to 32 bytes).
    #[arg(short = 'L', long, default_value = "")]
    label: String,
    /// Filesystem UUID (default: random).
    #[arg(short = 'U', long)]
    uuid: Option<uuid::Uuid>,
    /// Create the image file with this size, or grow it to this size (e.g. 64M, 10G, 1T),
    /// rounded down to a whole number of blocks. Required when the file does not exist; not
    /// allowed for block devices.
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,
    /// Block size: smallest unit of allocation and IO (power of two, 512..64K; default 4K).
    #[arg(long, value_parser = parse_size)]
    block_size: Option<u64>,
    /// Bucket size: the unit of space reuse (power of two, ≥ btree node size; default 512K).
    #[arg(long, value_parser = parse_size)]
    bucket_size: Option<u64>,
    /// Btree node size (power of two, 4K..1M, ≥ block size; default 256K).
    #[arg(long, value_parser = parse_size)]
    btree_node_size: Option<u64>,
    /// Journal size in buckets (default: 1/128 of the buckets, 8..512).
    #[arg(long)]
    journal_buckets: Option<u64>,
    /// Compression for file data: none, lz4, zstd or zstd:LEVEL (1..22).
    #[arg(long, default_value = "none", value_parser = Compression::parse)]
    compression: Compression,
    /// Checksum for file data: crc32c, blake3 or none.
    #[arg(long, default_value = "crc32c", value_parser = parse_data_csum)]
    data_checksum: ChecksumType,
    /// Checksum for metadata (btree nodes, journal): crc32c or blake3.
    #[arg(long, default_value = "crc32c", value_parser = parse_meta_csum)]
    metadata_checksum: ChecksumType,
    /// Overwrite an existing filesystem or partition table; give twice to format a mounted
    /// device.
    #[arg(short = 'f', long, action = clap::ArgAction::Count)]
    force: u8,
    /// Print nothing on success.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_data_csum(s: &str) -> Result<ChecksumType, String> {
    ChecksumType::parse(s).ok_or_else(|| format!("unknown checksum {s:?} (crc32c, blake3 or none)"))
}

fn parse_meta_csum(s: &str) -> Result<ChecksumType, String> {
    match ChecksumType::parse(s) {
        Some(ChecksumType::None) => Err("metadata checksums cannot be disabled".into()),
        Some(t) => Ok(t),
        None => Err(format!("unknown checksum {s:?} (crc32c or blake3)")),
    }
}

fn size_u32(name: &str, v: Option<u64>) -> anyhow::Result<Option<u32>> {
    v.map(|v| u32::try_from(v).map_err(|_| anyhow::anyhow!("{name} {v} is too large")))
        .transpose()
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let opts = FormatOptions {
        label: cli.label.clone(),
        user_uuid: cli.uuid,
        block_size: size_u32("block size", cli.block_size)?,
        bucket_size: size_u32("bucket size", cli.bucket_size)?,
        btree_node_size: size_u32("btree node size", cli.btree_node_size)?,
        journal_buckets: cli.journal_buckets,
        options: FsOptions {
            compression: cli.compression,
            data_csum: cli.data_checksum,
            metadata_csum: cli.metadata_checksum,
        },
        force: cli.force,
    };
    let r = mkfs_path(&cli.device, cli.size, &opts)?;
    let sb = &r.sb;
    if cli.json {
        let v = serde_json::json!({
            "device": cli.device.display().to_string(),
            "created": r.created,
            "size_rounded_from": r.size_rounded_from,
            "overwritten": r.overwritten,
            "superblock": sb,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if !cli.quiet {
        for o in &r.overwritten {
            println!("Overwrote {o} on {}", cli.device.display());
        }
        if let Some(from) = r.size_rounded_from {
            println!(
                "Note: --size {from} rounded down to {} (a whole number of {}-byte blocks)",
                sb.dev_size, sb.block_size
            );
        }
        println!(
            "Formatted {} as sixfs (format version {})",
            cli.device.display(),
            sb.version
        );
        if !sb.label.is_empty() {
            println!("  Label:             {}", sb.label);
        }
        println!("  UUID:              {}", sb.user_uuid);
        println!("  Size:              {}", format_size(sb.dev_size));
        println!(
            "  Block size:        {}",
            format_size(u64::from(sb.block_size))
        );
        println!(
            "  Bucket size:       {}",
            format_size(u64::from(sb.bucket_size))
        );
        println!(
            "  Btree node size:   {}",
            format_size(u64::from(sb.btree_node_size))
        );
        println!(
            "  Buckets:           {} ({} usable)",
            sb.nbuckets,
            sb.nbuckets - sb.first_bucket
        );
        println!("  Journal:           {} buckets", sb.journal_buckets());
        println!("  Compression:       {}", sb.options.compression);
        println!(
            "  Checksums:         data {}, metadata {}",
            sb.options.data_csum.name(),
            sb.options.metadata_csum.name()
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    sixfs::util::cli::restore_sigpipe();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mkfs.sixfs: {e:#}");
            ExitCode::from(1)
        }
    }
}
