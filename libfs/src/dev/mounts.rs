//! Is a device or image file mounted? Used by mkfs and fsck to refuse writing under a
//! mounted filesystem.
//!
//! A block device is mounted if a line of `/proc/self/mountinfo` names its major:minor. An
//! image file is mounted if a loop device backed by it (`/sys/block/loop*/loop/backing_file`,
//! compared by device and inode) is mounted, or if a mount's source is the file itself (FUSE
//! mounts such as `mount.sixfs`).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::DevError;

/// One mountinfo line: (major, minor, mount point, source).
fn mountinfo() -> Vec<(u32, u32, PathBuf, String)> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let (maj, min) = f.get(2)?.split_once(':')?;
            let mp = unescape(f.get(4)?);
            let sep = f.iter().position(|x| *x == "-")?;
            let src = unescape(f.get(sep + 2)?);
            Some((maj.parse().ok()?, min.parse().ok()?, PathBuf::from(mp), src))
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.len() >= i + 4
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn major_minor(rdev: u64) -> (u32, u32) {
    let maj = ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff);
    let min = ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff);
    (
        u32::try_from(maj).unwrap_or(0),
        u32::try_from(min).unwrap_or(0),
    )
}

/// Loop devices (major, minor) whose backing file is the file with (`dev`, `ino`).
fn loops_backed_by(dev: u64, ino: u64) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(back) = std::fs::read_to_string(p.join("loop/backing_file")) else {
            continue;
        };
        let back = back.trim_end_matches('\n').trim_end_matches(" (deleted)");
        let Ok(m) = std::fs::metadata(back) else {
            continue;
        };
        if m.dev() != dev || m.ino() != ino {
            continue;
        }
        if let Ok(d) = std::fs::read_to_string(p.join("dev"))
            && let Some((a, b)) = d.trim().split_once(':')
            && let (Ok(a), Ok(b)) = (a.parse(), b.parse())
        {
            out.push((a, b));
        }
    }
    out
}

/// Mount points where `path` (a block device or image file) is mounted; empty if none.
pub fn mounted_at(path: &Path) -> Result<Vec<PathBuf>, DevError> {
    let meta = std::fs::metadata(path).map_err(|e| DevError::Open {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mounts = mountinfo();
    let mut devs: Vec<(u32, u32)> = Vec::new();
    if meta.file_type().is_block_device() {
        devs.push(major_minor(meta.rdev()));
    } else if meta.file_type().is_file() {
        devs.extend(loops_backed_by(meta.dev(), meta.ino()));
    }
    let canon = std::fs::canonicalize(path).ok();
    let mut out = Vec::new();
    for (maj, min, mp, src) in mounts {
        let by_dev = devs.contains(&(maj, min));
        let by_src = canon
            .as_ref()
            .is_some_and(|c| Path::new(&src) == c.as_path());
        if by_dev || by_src {
            out.push(mp);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_handles_octal() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("plain"), "plain");
        assert_eq!(unescape("trail\\"), "trail\\");
    }

    #[test]
    fn a_fresh_file_is_not_mounted_and_the_root_device_is() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("img");
        std::fs::write(&f, b"x").unwrap();
        assert!(mounted_at(&f).unwrap().is_empty());
        assert!(mounted_at(&d.path().join("missing")).is_err());
    }
}
