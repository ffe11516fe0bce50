//! Bad input gets a one-line error and a non-zero exit, never a panic and never a write:
//! truncated files, random bytes, a checksummed superblock with absurd sizes, another
//! filesystem's image, a directory, a missing path.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

use std::os::unix::fs::FileExt;
use std::path::Path;

use sixfs_e2e::{file_digest, mkfs_quiet, run, scratch};

/// Runs every read-only tool on `img` and checks each fails cleanly mentioning `needle`,
/// leaving the file unchanged.
fn all_tools_refuse(img: &Path, needle: &str) {
    let before = img.is_file().then(|| file_digest(img));
    let r = run("sixfs-debug", ["show-super".as_ref(), img.as_os_str()]);
    r.expect_clean_error(needle);
    let r = run("fsck-sixfs", ["-n".as_ref(), img.as_os_str()]);
    r.expect_clean_error(needle).expect_code(8);
    let r = run("fsck-sixfs", ["-y".as_ref(), img.as_os_str()]);
    r.expect_clean_error(needle).expect_code(8);
    if let Some(b) = before {
        assert_eq!(file_digest(img), b, "a tool wrote to {}", img.display());
    }
}

#[test]
fn nonexistent_path_and_directory_are_refused() {
    let d = scratch();
    all_tools_refuse(&d.path().join("missing.img"), "missing.img");
    all_tools_refuse(d.path(), "directory");
    run("mkfs-sixfs", [d.path().as_os_str()]).expect_clean_error("directory");
}

#[test]
fn truncated_random_and_zero_images_are_refused() {
    let d = scratch();
    let tiny = d.path().join("tiny.img");
    std::fs::write(&tiny, b"hello").unwrap();
    all_tools_refuse(&tiny, "too small to hold a superblock");

    let random = d.path().join("random.img");
    let mut x = 0x9e3779b97f4a7c15u64;
    let bytes: Vec<u8> = (0..(4 << 20))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    std::fs::write(&random, &bytes).unwrap();
    all_tools_refuse(&random, "no valid sixfs superblock");

    let zeros = d.path().join("zeros.img");
    std::fs::File::create(&zeros)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    all_tools_refuse(&zeros, "no valid sixfs superblock");

    // A real image cut short: the head copies are intact but the device is smaller than the
    // filesystem they describe. Every tool refuses it naming both sizes; fsck reports it as
    // an error it cannot correct (exit 4) in every mode; nothing is written.
    let cut = d.path().join("cut.img");
    mkfs_quiet(&cut, "64M");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    let before = file_digest(&cut);
    let msg = "device is 41943040 bytes but the superblock says the filesystem is 67108864 bytes (truncated?)";
    run("sixfs-debug", ["show-super".as_ref(), cut.as_os_str()]).expect_clean_error(msg);
    run("sixfs-debug", ["list".as_ref(), cut.as_os_str()]).expect_clean_error(msg);
    for mode in ["-n", "-p", "-y"] {
        let f = run("fsck-sixfs", [mode.as_ref(), cut.as_os_str()]);
        f.expect_code(4);
        assert!(
            f.stdout.contains(msg)
                && (f.stdout.contains("NOT FIXED") || f.stdout.contains("not fixed (-n)")),
            "fsck {mode}:\n{}",
            f.stdout
        );
        assert!(!f.stderr.contains("panicked"), "{}", f.stderr);
    }
    let j = run(
        "fsck-sixfs",
        ["-y".as_ref(), "--json".as_ref(), cut.as_os_str()],
    );
    j.expect_code(4);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(v["report"]["problems"][0]["id"], "sb_device_shrunk");
    assert_eq!(
        file_digest(&cut),
        before,
        "a tool wrote to a truncated image"
    );
    // Cut inside the primary copy: nothing valid is left.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(4096 + 100)
        .unwrap();
    all_tools_refuse(&cut, "too small to hold a superblock");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(4096 + 1000)
        .unwrap();
    all_tools_refuse(&cut, "no valid sixfs superblock");
}

#[test]
fn checksummed_superblocks_with_absurd_sizes_are_refused() {
    let d = scratch();
    let img = d.path().join("absurd.img");
    mkfs_quiet(&img, "64M");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&img)
        .unwrap();
    let len = f.metadata().unwrap().len();
    // In every copy: bucket size 3 GiB-ish, then fix the checksum.
    for off in [4096u64, 4096 + 65536, (len - 65536) & !4095] {
        let mut b = vec![0u8; 4096];
        f.read_exact_at(&mut b, off).unwrap();
        let bytes = u32::from_le_bytes(b[24..28].try_into().unwrap()) as usize;
        b[116..120].copy_from_slice(&0xc000_0000u32.to_le_bytes());
        let c = crc32c::crc32c(&b[20..bytes]);
        b[16..20].copy_from_slice(&c.to_le_bytes());
        f.write_all_at(&b, off).unwrap();
    }
    drop(f);
    all_tools_refuse(&img, "invalid bucket_size");
}

#[test]
fn other_filesystems_are_named() {
    let d = scratch();
    let img = d.path().join("ext4.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let st = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img)
        .status();
    assert!(
        st.expect("mkfs.ext4 (e2fsprogs) is installed by scripts/install-deps.sh")
            .success()
    );
    all_tools_refuse(
        &img,
        "not a sixfs filesystem: it contains an ext4 filesystem",
    );

    // A GPT label (no filesystem): named too, and mkfs refuses it.
    let gpt = d.path().join("gpt.img");
    std::fs::File::create(&gpt)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&gpt).unwrap();
    f.write_all_at(b"EFI PART", 512).unwrap();
    drop(f);
    all_tools_refuse(&gpt, "GPT partition table");
    run("mkfs-sixfs", [gpt.as_os_str()])
        .expect_clean_error("contains a GPT partition table; use -f");
}
