//! Measures mkfs on a 1 TiB sparse image file: wall time and bytes allocated. A measurement
//! to read, not a timed test. Usage: `cargo run --release -p sixfs-e2e --bin measure-mkfs [DIR]`.

use std::os::unix::fs::MetadataExt;
use std::time::Instant;

fn main() {
    let dir = std::env::args().nth(1).map(std::path::PathBuf::from);
    let tmp = match dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir_in(std::env::current_dir().expect("cwd")),
    }
    .expect("temp dir");
    let img = tmp.path().join("tb.img");
    let opts = sixfs::init::FormatOptions::default();
    let t = Instant::now();
    let r = sixfs::init::mkfs_path(&img, Some(1 << 40), &opts);
    let elapsed = t.elapsed();
    match r {
        Ok(r) => {
            let m = std::fs::metadata(&img).expect("stat image");
            println!(
                "mkfs 1 TiB sparse image: {:.1} ms, {} bytes allocated ({} buckets, {} journal buckets)",
                elapsed.as_secs_f64() * 1000.0,
                m.blocks() * 512,
                r.sb.nbuckets,
                r.sb.journal_buckets()
            );
        }
        Err(e) => {
            eprintln!("measure-mkfs: {e}");
            std::process::exit(1);
        }
    }
}
