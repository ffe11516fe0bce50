//! `mount.sixfs`: will mount sixfs through FUSE once the POSIX layer exists. Until then it
//! says so and fails, rather than pretending.

use std::process::ExitCode;

/// mount(8) exit code for "mount failure".
const EXIT_MOUNT_FAILURE: u8 = 32;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "mount.sixfs DEVICE MOUNTPOINT [-o OPTIONS] [-f]\n\n\
             Mounting is not available in this version of sixfs: the filesystem layer that a\n\
             FUSE mount serves is not built yet. Use mkfs.sixfs, fsck.sixfs and sixfs-debug."
        );
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "-V" || a == "--version") {
        println!("mount.sixfs {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "mount.sixfs: mounting is not available in this version of sixfs (no filesystem layer yet)"
    );
    ExitCode::from(EXIT_MOUNT_FAILURE)
}
