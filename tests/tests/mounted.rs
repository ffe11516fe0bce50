//! mkfs and fsck refuse a mounted device — the block device itself and the image file behind
//! a mounted loop device — and write nothing. Needs root and loop devices; otherwise the test
//! prints why it skipped.
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]

use std::path::PathBuf;
use std::process::Command;

use sixfs_e2e::{run, scratch};

struct Cleanup(Vec<(String, Vec<String>)>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (cmd, args) in self.0.iter().rev() {
            let _ = Command::new(cmd).args(args).status();
        }
    }
}

fn ok(cmd: &str, args: &[&str]) -> Result<String, String> {
    match Command::new(cmd).args(args).output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
        Ok(o) => Err(format!(
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("{cmd}: {e}")),
    }
}

#[test]
fn a_mounted_filesystem_is_refused() {
    let d = scratch();
    let img = d.path().join("ext4.img");
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    std::fs::File::create(&img)
        .unwrap()
        .set_len(32 << 20)
        .unwrap();
    if let Err(e) = ok("mkfs.ext4", &["-q", "-F", img.to_str().unwrap()]) {
        panic!("mkfs.ext4 (installed by scripts/install-deps.sh) failed: {e}");
    }
    let mut cleanup = Cleanup(Vec::new());
    let dev = match ok("losetup", &["-f", "--show", img.to_str().unwrap()]) {
        Ok(d) => PathBuf::from(d),
        Err(e) => {
            println!("SKIPPED: no loop device: {e}");
            return;
        }
    };
    cleanup.0.push((
        "losetup".into(),
        vec!["-d".into(), dev.display().to_string()],
    ));
    if let Err(e) = ok(
        "mount",
        &["-t", "ext4", dev.to_str().unwrap(), mnt.to_str().unwrap()],
    ) {
        println!("SKIPPED: cannot mount ext4 here: {e}");
        return;
    }
    cleanup
        .0
        .push(("umount".into(), vec![mnt.display().to_string()]));
    let where_ = std::fs::canonicalize(&mnt).unwrap().display().to_string();

    let r = run("mkfs-sixfs", [dev.as_os_str()]);
    r.expect_clean_error("is mounted on");
    assert!(r.stderr.contains(&where_), "{}", r.stderr);
    run("mkfs-sixfs", ["-f".as_ref(), dev.as_os_str()]).expect_clean_error("is mounted on");
    // The image file behind the mounted loop device is refused too.
    run("mkfs-sixfs", ["-f".as_ref(), img.as_os_str()]).expect_clean_error("is mounted on");
    let f = run("fsck-sixfs", ["-y".as_ref(), dev.as_os_str()]);
    f.expect_code(8);
    assert!(f.stderr.contains("is mounted on"), "{}", f.stderr);
    drop(cleanup);
    // (Mounting and unmounting ext4 changes the image itself, so compare what is on it: still
    // ext4, and no sixfs superblock was written.)
    run("sixfs-debug", ["show-super".as_ref(), img.as_os_str()])
        .expect_clean_error("not a sixfs filesystem: it contains an ext4 filesystem");
}
