//! A garbage primary superblock is survived: show-super and fsck work from a backup, and
//! `fsck -y` repairs the primary.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

use std::os::unix::fs::FileExt;

use sixfs_e2e::{file_digest, run, scratch};

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

#[test]
fn fsck_preen_repairs_a_stale_backup_and_json_reports_it() {
    let d = scratch();
    let img = d.path().join("s.img");
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
    // Zero the end copy: invalid, repairable automatically.
    let len = std::fs::metadata(&img).unwrap().len();
    let end = (len - 65536) & !4095;
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
