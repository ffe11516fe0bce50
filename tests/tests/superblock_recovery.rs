//! A garbage primary superblock is survived: show-super and fsck work from a backup, and
//! `fsck -y` repairs the primary.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

use std::os::unix::fs::FileExt;

use sixfs_e2e::{file_digest, mkfs_quiet, run, scratch};

#[test]
fn garbage_primary_is_survived_and_repaired_by_fsck() {
    let d = scratch();
    let img = d.path().join("p.img");
    run(
        "mkfs-sixfs",
        [
            "-q".as_ref(),
            "--size".as_ref(),
            "64M".as_ref(),
            "-L".as_ref(),
            "keep".as_ref(),
            img.as_os_str(),
        ],
    )
    .expect_code(0);
    run("fsck-sixfs", ["-n".as_ref(), img.as_os_str()]).expect_code(0);

    // Overwrite the primary copy with garbage.
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13).to_le_bytes()[0])
        .collect();
    f.write_all_at(&garbage, 4096).unwrap();
    drop(f);

    let s = run("sixfs-debug", ["show-super".as_ref(), img.as_os_str()]);
    s.expect_code(0);
    assert!(
        s.stdout.contains("Label:                  keep"),
        "{}",
        s.stdout
    );
    assert!(
        s.stderr.contains("warning") && s.stderr.contains("primary superblock at byte 4096"),
        "{}",
        s.stderr
    );

    let before = file_digest(&img);
    let n = run("fsck-sixfs", ["-n".as_ref(), img.as_os_str()]);
    n.expect_code(4);
    assert!(
        n.stdout.contains("primary superblock at byte 4096"),
        "{}",
        n.stdout
    );
    assert_eq!(file_digest(&img), before, "fsck -n wrote to the image");

    // No mode and no terminal: refuses like e2fsck (operational error).
    run("fsck-sixfs", [img.as_os_str()]).expect_code(8);

    let y = run("fsck-sixfs", ["-y".as_ref(), img.as_os_str()]);
    y.expect_code(1);
    assert!(y.stdout.contains("FIXED"), "{}", y.stdout);

    run("fsck-sixfs", ["-n".as_ref(), img.as_os_str()]).expect_code(0);
    let s = run("sixfs-debug", ["show-super".as_ref(), img.as_os_str()]);
    s.expect_code(0);
    assert!(s.stderr.is_empty(), "{}", s.stderr);
}

fn mkfs_64m(img: &std::path::Path) {
    mkfs_quiet(img, "64M");
}

/// Byte offsets of the three copies of a 64 MiB image.
fn copies(img: &std::path::Path) -> [u64; 3] {
    let len = std::fs::metadata(img).unwrap().len();
    [4096, 4096 + 65536, (len - 65536) & !4095]
}

/// Sets the seq of the copy at `off` and fixes its checksum: still a valid copy.
fn set_seq(img: &std::path::Path, off: u64, seq: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let mut b = vec![0u8; 65536];
    f.read_exact_at(&mut b, off).unwrap();
    let bytes = u32::from_le_bytes(b[24..28].try_into().unwrap()) as usize;
    b[32..40].copy_from_slice(&seq.to_le_bytes());
    let c = crc32c::crc32c(&b[20..bytes]);
    b[16..20].copy_from_slice(&c.to_le_bytes());
    f.write_all_at(&b[..bytes], off).unwrap();
}

#[test]
fn fsck_preen_repairs_a_stale_backup_and_json_reports_it() {
    let d = scratch();
    let img = d.path().join("s.img");
    mkfs_64m(&img);
    // An interrupted superblock write: the head copies have seq 2, the end copy still the
    // older (valid) seq 1.
    let [p, b, end] = copies(&img);
    set_seq(&img, p, 2);
    set_seq(&img, b, 2);
    let s = run("sixfs-debug", ["show-super".as_ref(), img.as_os_str()]);
    s.expect_code(0);
    assert!(
        s.stdout.contains("Sequence:               2"),
        "{}",
        s.stdout
    );
    assert!(
        s.stderr
            .contains(&format!("at byte {end}: stale (seq 1, newest is 2)")),
        "{}",
        s.stderr
    );
    let before = file_digest(&img);
    run("fsck-sixfs", ["-n".as_ref(), img.as_os_str()]).expect_code(4);
    assert_eq!(file_digest(&img), before, "fsck -n wrote to the image");
    let j = run(
        "fsck-sixfs",
        ["-p".as_ref(), "--json".as_ref(), img.as_os_str()],
    );
    j.expect_code(1);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let probs = v["report"]["problems"].as_array().unwrap();
    assert_eq!(probs.len(), 1, "{probs:?}");
    assert_eq!(probs[0]["id"], "sb_copy_stale");
    assert_eq!(probs[0]["fixed"], true);
    assert!(
        probs[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("byte {end}: stale (seq 1, newest is 2)"))
    );
    run("fsck-sixfs", ["-n".as_ref(), img.as_os_str()]).expect_code(0);
    let s = run(
        "sixfs-debug",
        ["show-super".as_ref(), "--json".as_ref(), img.as_os_str()],
    );
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    for c in v["copies"].as_array().unwrap() {
        assert_eq!(c["status"]["state"], "valid", "{c}");
        assert_eq!(c["status"]["seq"], 2, "{c}");
    }
}

#[test]
fn fsck_preen_repairs_an_invalid_end_copy_and_json_reports_it() {
    let d = scratch();
    let img = d.path().join("i.img");
    mkfs_64m(&img);
    // Zero the end copy: invalid, repairable automatically.
    let [_, _, end] = copies(&img);
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&[0u8; 4096], end).unwrap();
    drop(f);
    let j = run(
        "fsck-sixfs",
        ["-p".as_ref(), "--json".as_ref(), img.as_os_str()],
    );
    j.expect_code(1);
    let v: serde_json::Value = serde_json::from_str(&j.stdout).unwrap();
    let p = &v["report"]["problems"][0];
    assert_eq!(p["id"], "sb_copy_invalid");
    assert_eq!(p["fixed"], true);
    assert!(
        p["message"]
            .as_str()
            .unwrap()
            .contains(&format!("byte {end}"))
    );
    run("fsck-sixfs", ["-n".as_ref(), img.as_os_str()]).expect_code(0);
}

#[test]
fn fsck_usage_errors_exit_16() {
    run("fsck-sixfs", ["--no-such-flag"]).expect_code(16);
    run("fsck-sixfs", Vec::<String>::new()).expect_code(16);
    run("fsck-sixfs", ["--help"]).expect_code(0);
}

#[test]
fn fsck_takes_fsck8_progress_options_without_swallowing_the_device() {
    let d = scratch();
    let img = d.path().join("c.img");
    mkfs_64m(&img);
    run(
        "fsck-sixfs",
        ["-n".as_ref(), "-C".as_ref(), img.as_os_str()],
    )
    .expect_code(0);
    run(
        "fsck-sixfs",
        ["-C".as_ref(), "0".as_ref(), "-n".as_ref(), img.as_os_str()],
    )
    .expect_code(0);
    run(
        "fsck-sixfs",
        ["-C0".as_ref(), "-n".as_ref(), img.as_os_str()],
    )
    .expect_code(0);
    run(
        "fsck-sixfs",
        ["-n".as_ref(), img.as_os_str(), "-C".as_ref()],
    )
    .expect_code(0);
}

#[test]
fn fsck_lists_bad_copies_without_verbose() {
    // A truncated image: the problem is the size, and the copy past the end is listed too.
    let d = scratch();
    let img = d.path().join("t.img");
    mkfs_64m(&img);
    let [_, _, end] = copies(&img);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(48 << 20)
        .unwrap();
    let n = run("fsck-sixfs", ["-n".as_ref(), img.as_os_str()]);
    n.expect_code(4);
    assert!(
        n.stdout.contains(&format!(
            "end backup superblock at byte {end}: past the end of the device"
        )),
        "{}",
        n.stdout
    );
    assert!(n.stdout.contains("(truncated?)"), "{}", n.stdout);
}
