//! mkfs, show-super and fsck on a real block device (a loop device), when the machine
//! allows loop devices; otherwise the test says why it skipped.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

use std::path::PathBuf;
use std::process::Command;

use sixfs_e2e::{run, scratch};

struct LoopDev(PathBuf);

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
fn mkfs_on_a_loop_device() {
    let d = scratch();
    let img = d.path().join("backing.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let out = match Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&img)
        .output()
    {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            println!(
                "SKIPPED: losetup failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return;
        }
        Err(e) => {
            println!("SKIPPED: cannot run losetup: {e}");
            return;
        }
    };
    let dev = LoopDev(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let p = dev.0.as_os_str();

    run(
        "mkfs-sixfs",
        ["-q".as_ref(), "--size".as_ref(), "64M".as_ref(), p],
    )
    .expect_clean_error("--size applies only to image files");
    run(
        "mkfs-sixfs",
        ["-q".as_ref(), "-L".as_ref(), "loopy".as_ref(), p],
    )
    .expect_code(0);
    let s = run("sixfs-debug", ["show-super".as_ref(), "--json".as_ref(), p]);
    s.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(&s.stdout).unwrap();
    assert_eq!(v["superblock"]["label"], "loopy");
    assert_eq!(v["superblock"]["dev_size"], 64u64 << 20);
    run("fsck-sixfs", ["-n".as_ref(), p]).expect_code(0);
    run("mkfs-sixfs", [p]).expect_clean_error("contains a sixfs filesystem; use -f");
    // The backing file holds the same filesystem.
    run("fsck-sixfs", ["-n".as_ref(), img.as_os_str()]).expect_code(0);
}
