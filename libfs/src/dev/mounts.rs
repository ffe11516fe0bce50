//! Is a device or image file mounted? Used by mkfs and fsck to refuse writing under a
//! mounted filesystem.
//!
//! A block device is in use if a line of `/proc/self/mountinfo` names its major:minor, or
//! that of one of its partitions or of a device stacked on it (`holders/` in sysfs: device
//! mapper, md) — formatting `/dev/sda` while `/dev/sda1` is mounted is refused. An image file
//! is mounted if a loop device backed by it (`/sys/block/loop*/loop/backing_file`, compared by
//! device and inode), or a partition of that loop device, is mounted, or if a mount's source
//! is the file itself (FUSE mounts such as `mount.sixfs`). A filesystem that shows an anonymous
//! device number in mountinfo (btrfs: `0:N`) is matched by the block device its source names.
//!
//! The check fails closed: if mountinfo cannot be read, the answer is an error, never "not
//! mounted". Mountinfo is read as bytes (paths need not be UTF-8).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::DevError;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// One mountinfo line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mount {
    major: u32,
    minor: u32,
    mount_point: PathBuf,
    source: PathBuf,
}

/// Parses mountinfo text; lines that do not parse are skipped. Paths are unescaped and kept
/// byte for byte (they may not be UTF-8).
fn parse_mountinfo(text: &[u8]) -> Vec<Mount> {
    text.split(|&b| b == b'\n')
        .filter_map(|l| {
            let f: Vec<&[u8]> = l.split(|&b| b == b' ').collect();
            let mm = std::str::from_utf8(f.get(2)?).ok()?;
            let (maj, min) = mm.split_once(':')?;
            let mp = unescape(f.get(4)?);
            let sep = f.iter().position(|x| *x == b"-")?;
            let src = unescape(f.get(sep + 2)?);
            Some(Mount {
                major: maj.parse().ok()?,
                minor: min.parse().ok()?,
                mount_point: PathBuf::from(OsStr::from_bytes(&mp)),
                source: PathBuf::from(OsStr::from_bytes(&src)),
            })
        })
        .collect()
}

/// Reads and parses mountinfo; an unreadable mountinfo is an error naming `path`.
fn mountinfo(path: &Path) -> Result<Vec<Mount>, DevError> {
    match std::fs::read(MOUNTINFO) {
        Ok(text) => Ok(parse_mountinfo(&text)),
        Err(e) => Err(DevError::MountCheck {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Undoes mountinfo's octal escapes (`\040` for space, ...).
fn unescape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(d) = b.get(i + 1..i + 4)
            && d.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn major_minor(rdev: u64) -> (u32, u32) {
    let maj = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff);
    let min = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff);
    (
        u32::try_from(maj).unwrap_or(0),
        u32::try_from(min).unwrap_or(0),
    )
}

fn read_dev(p: &Path) -> Option<(u32, u32)> {
    let d = std::fs::read_to_string(p).ok()?;
    let (a, b) = d.trim().split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The block device (`maj`, `min`) and every device that uses part of it: its partitions
/// (subdirectories with a `partition` file) and what is stacked on it or on them
/// (`holders/`, one level at a time, depth-limited). `sys` is the sysfs root (`/sys`).
fn related_devs(sys: &Path, maj: u32, min: u32) -> Vec<(u32, u32)> {
    let mut out = vec![(maj, min)];
    let mut todo = vec![sys.join(format!("dev/block/{maj}:{min}"))];
    let mut depth = 0;
    while !todo.is_empty() && depth < 8 {
        depth += 1;
        let mut next = Vec::new();
        for dir in todo {
            let Ok(dir) = std::fs::canonicalize(&dir) else {
                continue;
            };
            let mut kids = Vec::new();
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    if e.path().join("partition").exists() {
                        kids.push(e.path());
                    }
                }
            }
            if let Ok(rd) = std::fs::read_dir(dir.join("holders")) {
                kids.extend(rd.flatten().map(|e| e.path()));
            }
            for k in kids {
                if let Some(d) = read_dev(&k.join("dev"))
                    && !out.contains(&d)
                {
                    out.push(d);
                    next.push(k);
                }
            }
        }
        todo = next;
    }
    out
}

/// Loop devices (major, minor) whose backing file is the file with (`dev`, `ino`).
fn loops_backed_by(dev: u64, ino: u64) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(back) = std::fs::read(p.join("loop/backing_file")) else {
            continue;
        };
        let mut back: &[u8] = &back;
        back = back.strip_suffix(b"\n").unwrap_or(back);
        back = back.strip_suffix(b" (deleted)").unwrap_or(back);
        let Ok(m) = std::fs::metadata(OsStr::from_bytes(back)) else {
            continue;
        };
        if m.dev() != dev || m.ino() != ino {
            continue;
        }
        if let Some(d) = read_dev(&p.join("dev")) {
            out.push(d);
        }
    }
    out
}

/// The device number of the block device at `path` (`None`: not one, or unreadable).
fn block_dev_number(path: &Path) -> Option<(u32, u32)> {
    let m = std::fs::metadata(path).ok()?;
    m.file_type()
        .is_block_device()
        .then(|| major_minor(m.rdev()))
}

/// Whether mount `m` is on one of `devs`: by the device number mountinfo shows, or — for
/// filesystems on an anonymous device number (btrfs, overlays: major 0), which name the real
/// device only as their source — by the number of the block device its source names.
fn on_devices(
    m: &Mount,
    devs: &[(u32, u32)],
    dev_number: impl Fn(&Path) -> Option<(u32, u32)>,
) -> bool {
    devs.contains(&(m.major, m.minor))
        || (m.major == 0
            && m.source.is_absolute()
            && dev_number(&m.source).is_some_and(|d| devs.contains(&d)))
}

/// Mount points where `path` (a block device or image file), a partition of it or a device
/// stacked on it is mounted; empty if none. Fails if it cannot tell (unreadable mountinfo).
pub fn mounted_at(path: &Path) -> Result<Vec<PathBuf>, DevError> {
    let meta = std::fs::metadata(path).map_err(|e| DevError::Open {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mounts = mountinfo(path)?;
    let sys = Path::new("/sys");
    let mut devs: Vec<(u32, u32)> = Vec::new();
    if meta.file_type().is_block_device() {
        let (a, b) = major_minor(meta.rdev());
        devs.extend(related_devs(sys, a, b));
    } else if meta.file_type().is_file() {
        for (a, b) in loops_backed_by(meta.dev(), meta.ino()) {
            devs.extend(related_devs(sys, a, b));
        }
    }
    let canon = std::fs::canonicalize(path).ok();
    let mut out = Vec::new();
    for m in mounts {
        let by_src = canon.as_ref().is_some_and(|c| m.source == *c);
        if (on_devices(&m, &devs, block_dev_number) || by_src) && !out.contains(&m.mount_point) {
            out.push(m.mount_point);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_on_an_anonymous_device_is_matched_by_its_source() {
        let mount = |major, minor, source: &str| Mount {
            major,
            minor,
            mount_point: PathBuf::from("/mnt"),
            source: PathBuf::from(source),
        };
        // A fake device-number lookup: /dev/sda1 is 8:1, nothing else is a block device.
        let num = |p: &Path| (p == Path::new("/dev/sda1")).then_some((8, 1));
        let devs = [(8, 0), (8, 1)]; // /dev/sda and its partition
        // btrfs on /dev/sda1 shows 0:45 in mountinfo: found through its source.
        assert!(on_devices(&mount(0, 45, "/dev/sda1"), &devs, num));
        // ext4 on /dev/sda1 shows 8:1: found by number.
        assert!(on_devices(&mount(8, 1, "/dev/sda1"), &devs, num));
        // Other disks, pseudo sources and relative sources are not ours.
        assert!(!on_devices(&mount(0, 45, "/dev/sdb1"), &devs, num));
        assert!(!on_devices(&mount(0, 22, "tmpfs"), &devs, num));
        assert!(!on_devices(&mount(8, 17, "/dev/sdb1"), &devs, num));
        // A source naming our device under a real (non-zero) number of another device is
        // matched by that number only (mountinfo's number is the truth there).
        assert!(!on_devices(&mount(253, 0, "/dev/sda1"), &devs, num));
    }

    #[test]
    fn unescape_handles_octal() {
        assert_eq!(unescape(b"/mnt/a\\040b"), b"/mnt/a b");
        assert_eq!(unescape(b"plain"), b"plain");
        assert_eq!(unescape(b"trail\\"), b"trail\\");
        assert_eq!(unescape(b"\\134x"), b"\\x");
        assert_eq!(unescape(b"\\777"), b"\\777", "not a byte");
        assert_eq!(unescape(b"\\04"), b"\\04");
    }

    #[test]
    fn mountinfo_with_non_utf8_bytes_still_parses() {
        let mut text = b"22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n".to_vec();
        text.extend_from_slice(b"30 22 7:3 / /mnt/caf\xe9\\040x rw - xfs /img/\xff\xfe.img rw\n");
        text.extend_from_slice(b"garbage line\n\n");
        text.extend_from_slice(b"31 22 0:45 / /mnt/f rw - fuse.sixfs /data/d\xe9.img rw");
        let m = parse_mountinfo(&text);
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!((m[0].major, m[0].minor), (254, 0));
        assert_eq!((m[1].major, m[1].minor), (7, 3));
        assert_eq!(m[1].mount_point.as_os_str().as_bytes(), b"/mnt/caf\xe9 x");
        assert_eq!(m[1].source.as_os_str().as_bytes(), b"/img/\xff\xfe.img");
        assert_eq!(m[2].source.as_os_str().as_bytes(), b"/data/d\xe9.img");
    }

    #[test]
    fn partitions_and_holders_of_a_disk_count_as_the_disk() {
        // A fake sysfs: disk 8:0 with partitions 8:1 and 8:2; 8:2 holds dm-0 (253:0), which
        // holds dm-1 (253:1); a non-partition subdirectory is ignored.
        let d = tempfile::tempdir().unwrap();
        let sys = d.path();
        let sda = sys.join("devices/pci/block/sda");
        let dm0 = sys.join("devices/virtual/block/dm-0");
        let dm1 = sys.join("devices/virtual/block/dm-1");
        for (dir, dev) in [
            (sda.clone(), "8:0"),
            (sda.join("sda1"), "8:1"),
            (sda.join("sda2"), "8:2"),
            (sda.join("queue"), "9:9"),
            (dm0.clone(), "253:0"),
            (dm1.clone(), "253:1"),
        ] {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("dev"), format!("{dev}\n")).unwrap();
        }
        for p in ["sda1", "sda2"] {
            std::fs::write(sda.join(p).join("partition"), "1\n").unwrap();
        }
        std::fs::create_dir_all(sda.join("sda2/holders")).unwrap();
        std::os::unix::fs::symlink(&dm0, sda.join("sda2/holders/dm-0")).unwrap();
        std::fs::create_dir_all(dm0.join("holders")).unwrap();
        std::os::unix::fs::symlink(&dm1, dm0.join("holders/dm-1")).unwrap();
        std::fs::create_dir_all(sys.join("dev/block")).unwrap();
        std::os::unix::fs::symlink(&sda, sys.join("dev/block/8:0")).unwrap();
        std::os::unix::fs::symlink(sda.join("sda2"), sys.join("dev/block/8:2")).unwrap();
        let mut got = related_devs(sys, 8, 0);
        got.sort_unstable();
        assert_eq!(got, vec![(8, 0), (8, 1), (8, 2), (253, 0), (253, 1)]);
        // A partition's own users, not its siblings.
        let mut got = related_devs(sys, 8, 2);
        got.sort_unstable();
        assert_eq!(got, vec![(8, 2), (253, 0), (253, 1)]);
        // Unknown to sysfs: just itself.
        assert_eq!(related_devs(sys, 1, 1), vec![(1, 1)]);
    }

    #[test]
    fn a_fresh_file_is_not_mounted_and_the_root_device_is() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("img");
        std::fs::write(&f, b"x").unwrap();
        assert!(mounted_at(&f).unwrap().is_empty());
        assert!(mounted_at(&d.path().join("missing")).is_err());
        // The disk holding / is in use (through a partition, on most machines).
        let root = std::fs::metadata("/").unwrap().dev();
        let (maj, min) = major_minor(root);
        let disks = std::fs::read_dir("/dev").unwrap().flatten().filter(|e| {
            e.metadata().is_ok_and(|m| {
                m.file_type().is_block_device()
                    && related_devs(
                        Path::new("/sys"),
                        major_minor(m.rdev()).0,
                        major_minor(m.rdev()).1,
                    )
                    .contains(&(maj, min))
            })
        });
        for disk in disks {
            assert!(
                !mounted_at(&disk.path()).unwrap().is_empty(),
                "{} holds / but is not seen as mounted",
                disk.path().display()
            );
        }
    }
}
