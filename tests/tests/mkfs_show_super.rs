//! mkfs on an image file, then show-super shows what was asked for; mkfs refuses what it
//! must refuse and writes nothing when it does.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

use sixfs_e2e::{file_digest, mkfs_quiet, run, scratch};

#[test]
fn show_super_shows_the_label_uuid_and_sizes_given_to_mkfs() {
    let d = scratch();
    let img = d.path().join("a.img");
    let uuid = "0b1c2d3e-4f50-4617-8899-aabbccddeeff";
    run(
        "mkfs-sixfs",
        [
            "-q",
            "--size",
            "96M",
            "-L",
            "my-label",
            "-U",
            uuid,
            "--block-size",
            "4K",
            "--bucket-size",
            "256K",
            "--btree-node-size",
            "128K",
            "--compression",
            "zstd:7",
            "--data-checksum",
            "blake3",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([img.display().to_string()]),
    )
    .expect_code(0);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 96 << 20);

    let text = run("sixfs-debug", ["show-super".as_ref(), img.as_os_str()]);
    text.expect_code(0);
    for want in [
        "Label:                  my-label",
        uuid,
        "Block size:             4096 (4 KiB)",
        "Bucket size:            262144 (256 KiB)",
        "Btree node size:        131072 (128 KiB)",
        "Device size:            100663296 (96 MiB)",
        "Compression:            zstd:7",
        "Data checksum:          blake3",
        "Flags:                  clean\n",
        "Clean:                  yes (clean section present)",
        "Features:               zstd, blake3\n",
        "Compat features:        none\n",
        "Clean btree root:       extents  level 0, sector ",
        "Clean btree root:       alloc    level 0, sector ",
    ] {
        assert!(
            text.stdout.contains(want),
            "show-super lacks {want:?}:\n{}",
            text.stdout
        );
    }
    assert!(
        text.stderr.is_empty(),
        "unexpected warnings: {}",
        text.stderr
    );
    assert_eq!(
        text.stdout.matches("Clean btree root:").count(),
        5,
        "one root per btree:\n{}",
        text.stdout
    );
    assert!(!text.stdout.contains("Features("), "{}", text.stdout);

    let json = run(
        "sixfs-debug",
        ["show-super".as_ref(), "--json".as_ref(), img.as_os_str()],
    );
    json.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let sb = &v["superblock"];
    assert_eq!(sb["label"], "my-label");
    assert_eq!(sb["user_uuid"], uuid);
    assert_eq!(sb["block_size"], 4096);
    assert_eq!(sb["bucket_size"], 262144);
    assert_eq!(sb["btree_node_size"], 131072);
    assert_eq!(sb["dev_size"], 96u64 << 20);
    assert_eq!(sb["options"]["compression"]["type"], "zstd");
    assert_eq!(sb["options"]["compression"]["level"], 7);
    assert_eq!(sb["flag_names"], "clean");
    assert_eq!(sb["clean_roots"].as_array().unwrap().len(), 5);
    assert_eq!(sb["clean_roots"][0]["level"], 0);
    let copies = v["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 3);
    assert!(
        copies.iter().all(|c| c["status"]["state"] == "valid"),
        "{copies:?}"
    );
}

#[test]
fn mkfs_json_reports_the_superblock() {
    let d = scratch();
    let img = d.path().join("j.img");
    let r = run(
        "mkfs-sixfs",
        [
            "--json".as_ref(),
            "--size".as_ref(),
            "64M".as_ref(),
            img.as_os_str(),
        ],
    );
    r.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["created"], true);
    assert_eq!(v["superblock"]["dev_size"], 64u64 << 20);
    assert!(v["superblock"]["journal"][0]["nr"].as_u64().unwrap() >= 8);
}

#[test]
fn mkfs_refuses_an_ext4_image_unless_forced() {
    let d = scratch();
    let img = d.path().join("ext4.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let st = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img)
        .status()
        .expect("mkfs.ext4 is installed by scripts/install-deps.sh (package e2fsprogs)");
    assert!(st.success());
    let before = file_digest(&img);

    let r = run("mkfs-sixfs", [img.as_os_str()]);
    r.expect_clean_error("contains an ext4 filesystem; use -f to overwrite it");
    assert_eq!(
        file_digest(&img),
        before,
        "a refused mkfs wrote to the image"
    );

    run(
        "mkfs-sixfs",
        ["-q".as_ref(), "-f".as_ref(), img.as_os_str()],
    )
    .expect_code(0);
    let r = run("sixfs-debug", ["show-super".as_ref(), img.as_os_str()]);
    r.expect_code(0);
    // The ext4 signature is gone: a second mkfs finds only sixfs.
    run("mkfs-sixfs", [img.as_os_str()]).expect_clean_error("contains a sixfs filesystem; use -f");
}

#[test]
fn mkfs_refuses_bad_sizes_with_a_clear_message_and_no_write() {
    let d = scratch();
    let img = d.path().join("s.img");
    run("mkfs-sixfs", [img.as_os_str()]).expect_clean_error("give --size to create an image file");
    assert!(!img.exists(), "mkfs created a file it refused to format");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--size", "64M", "--bucket-size", "300K"],
            "bucket size 307200 is not a power of two",
        ),
        (
            &["--size", "64M", "--block-size", "3000"],
            "block size 3000 is not a power of two",
        ),
        (
            &[
                "--size",
                "64M",
                "--btree-node-size",
                "1M",
                "--bucket-size",
                "512K",
            ],
            "bucket size 524288 is smaller than the btree node size 1048576",
        ),
        (
            &[
                "--size",
                "64M",
                "--block-size",
                "4K",
                "--btree-node-size",
                "8K",
            ],
            "btree node size 8192 is smaller than 4 blocks (16384 bytes for 4096-byte blocks)",
        ),
        (&["--size", "1M"], "the minimum with 524288-byte buckets is"),
        (
            &["--size", "64M", "--compression", "zstd:99"],
            "zstd level must be 1..=22",
        ),
        (
            &["--size", "64M", "--metadata-checksum", "none"],
            "metadata checksums cannot be disabled",
        ),
        (
            &[
                "--size",
                "64M",
                "-L",
                "a-label-that-is-much-longer-than-32-bytes",
            ],
            "longer than 32 bytes",
        ),
    ];
    for (args, msg) in cases {
        let r = run(
            "mkfs-sixfs",
            args.iter().map(|s| s.as_ref()).chain([img.as_os_str()]),
        );
        assert_ne!(r.code, 0, "{args:?} accepted");
        assert!(r.stderr.contains(msg), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"));
        assert!(!img.exists(), "{args:?} created the image");
    }
    // Growing: an existing smaller file is grown, a larger one is never shrunk.
    std::fs::File::create(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    mkfs_quiet(&img, "64M");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 64 << 20);
    run(
        "mkfs-sixfs",
        [
            "-f".as_ref(),
            "--size".as_ref(),
            "32M".as_ref(),
            img.as_os_str(),
        ],
    )
    .expect_clean_error("mkfs never shrinks a file");
}

#[test]
fn mkfs_on_a_sparse_terabyte_allocates_almost_nothing() {
    let d = scratch();
    let img = d.path().join("tb.img");
    mkfs_quiet(&img, "1T");
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&img).unwrap();
    assert_eq!(m.len(), 1 << 40);
    let allocated = m.blocks() * 512;
    assert!(
        allocated < 64 << 20,
        "mkfs allocated {allocated} bytes on a sparse 1 TiB image"
    );
    run("fsck-sixfs", ["-n".as_ref(), img.as_os_str()]).expect_code(0);
}

#[test]
fn mkfs_rounds_size_to_whole_blocks() {
    let d = scratch();
    let img = d.path().join("r.img");
    let r = run(
        "mkfs-sixfs",
        ["--size".as_ref(), "100000001".as_ref(), img.as_os_str()],
    );
    r.expect_code(0);
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 99_999_744);
    assert!(
        r.stdout
            .contains("--size 100000001 rounded down to 99999744"),
        "{}",
        r.stdout
    );
    let img = d.path().join("r64.img");
    run(
        "mkfs-sixfs",
        [
            "-q".as_ref(),
            "--block-size".as_ref(),
            "64K".as_ref(),
            "--size".as_ref(),
            "100000001".as_ref(),
            img.as_os_str(),
        ],
    )
    .expect_code(0);
    assert_eq!(std::fs::metadata(&img).unwrap().len() % 65536, 0);
    run("fsck-sixfs", ["-n".as_ref(), img.as_os_str()]).expect_code(0);
}

/// Runs mkfs with `SIXFS_FAULTS` set.
fn mkfs_with_faults(faults: &str, args: &[&std::ffi::OsStr]) -> sixfs_e2e::Run {
    std::process::Command::new(sixfs_e2e::bin("mkfs-sixfs"))
        .args(args)
        .env("SIXFS_FAULTS", faults)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .into()
}

#[test]
fn a_failed_format_leaves_no_file_behind_and_a_grown_file_its_old_size() {
    let d = scratch();
    let img = d.path().join("f.img");
    let r = mkfs_with_faults(
        "dev:flush oneshot",
        &["--size".as_ref(), "64M".as_ref(), img.as_os_str()],
    );
    r.expect_clean_error("flush");
    assert!(!img.exists(), "mkfs left the file it created behind");
    // An existing file is kept, at its old length.
    std::fs::File::create(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let r = mkfs_with_faults(
        "dev:flush oneshot",
        &["--size".as_ref(), "64M".as_ref(), img.as_os_str()],
    );
    r.expect_clean_error("flush");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 32 << 20);
}

#[test]
fn a_busy_image_is_neither_grown_nor_written() {
    use sixfs::dev::file::{FileDevice, OpenOptions};
    let d = scratch();
    let img = d.path().join("b.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    let before = file_digest(&img);
    let held = FileDevice::open(
        &img,
        &OpenOptions {
            write: true,
            direct: false,
            exclusive: true,
        },
    )
    .unwrap();
    run(
        "mkfs-sixfs",
        ["--size".as_ref(), "64M".as_ref(), img.as_os_str()],
    )
    .expect_clean_error("device is busy");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 32 << 20, "grown");
    assert_eq!(file_digest(&img), before, "written");
    drop(held);
    mkfs_quiet(&img, "64M");
}

/// Makes a `size`-byte image with an external mkfs, or says why it cannot.
fn foreign_image(
    dir: &std::path::Path,
    tool: &str,
    args: &[&str],
    size: u64,
) -> Option<std::path::PathBuf> {
    let img = dir.join(format!("{tool}.img"));
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    match std::process::Command::new(tool)
        .args(args)
        .arg(&img)
        .output()
    {
        Ok(o) if o.status.success() => Some(img),
        Ok(o) => {
            println!(
                "SKIPPED {tool}: it failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            println!("SKIPPED {tool}: not available ({e}); scripts/install-deps.sh installs it");
            None
        }
    }
}

#[test]
fn mkfs_refuses_real_btrfs_xfs_and_vfat_images() {
    let d = scratch();
    let cases: &[(&str, &[&str], u64, &str)] = &[
        (
            "mkfs.btrfs",
            &["-q", "-f"],
            256 << 20,
            "contains a btrfs filesystem",
        ),
        (
            "mkfs.xfs",
            &["-q", "-f"],
            320 << 20,
            "contains an xfs filesystem",
        ),
        (
            "mkfs.vfat",
            &[],
            64 << 20,
            "contains a FAT16 (vfat) filesystem",
        ),
    ];
    for (tool, args, size, msg) in cases {
        let Some(img) = foreign_image(d.path(), tool, args, *size) else {
            continue;
        };
        let before = file_digest(&img);
        run("mkfs-sixfs", [img.as_os_str()]).expect_clean_error(&format!("{msg}; use -f"));
        run("sixfs-debug", ["show-super".as_ref(), img.as_os_str()])
            .expect_clean_error(&format!("not a sixfs filesystem: it {msg}"));
        assert_eq!(file_digest(&img), before, "{tool}: a refused mkfs wrote");
        run(
            "mkfs-sixfs",
            ["-q".as_ref(), "-f".as_ref(), img.as_os_str()],
        )
        .expect_code(0);
        run("fsck-sixfs", ["-n".as_ref(), img.as_os_str()]).expect_code(0);
        println!("{tool}: refused, then overwritten with -f");
    }
}
