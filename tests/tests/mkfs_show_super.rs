//! mkfs on an image file, then show-super shows what was asked for; mkfs refuses what it
//! must refuse and writes nothing when it does.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

use sixfs_e2e::{file_digest, run, scratch};

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
    run(
        "mkfs-sixfs",
        [
            "-q".as_ref(),
            "--size".as_ref(),
            "64M".as_ref(),
            img.as_os_str(),
        ],
    )
    .expect_code(0);
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
    run(
        "mkfs-sixfs",
        [
            "-q".as_ref(),
            "--size".as_ref(),
            "1T".as_ref(),
            img.as_os_str(),
        ],
    )
    .expect_code(0);
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
