//! Image files and raw block devices.
//!
//! One type serves both: a regular file's size is its length; a block device's size comes
//! from the `BLKGETSIZE64` ioctl and its logical block size from `BLKSSZGET`. Exclusive
//! opens use `O_EXCL` on block devices (the kernel refuses if the device is mounted or held)
//! and a non-blocking `flock(LOCK_EX)` on files, held for as long as the device is open.
//! With `direct`, IO uses `O_DIRECT` through aligned bounce buffers, reading and rewriting
//! partial edge blocks, so callers never see alignment errors.
#![allow(unsafe_code)] // ioctl and flock calls; each block has a SAFETY note.

use std::fs::{File, OpenOptions as StdOpen};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{BlockDevice, DevError, check_range};

/// How to open a device.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// Open for writing.
    pub write: bool,
    /// Use `O_DIRECT` (bypass the page cache).
    pub direct: bool,
    /// Refuse if another process holds it (and keep others out while open).
    pub exclusive: bool,
}

/// An image file or a block device.
#[derive(Debug)]
pub struct FileDevice {
    file: File,
    path: PathBuf,
    name: String,
    size: u64,
    block: u32,
    is_blk: bool,
    direct: bool,
}

const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKSSZGET: libc::c_ulong = 0x1268;

fn io_err(path: &Path, e: std::io::Error) -> DevError {
    DevError::Open {
        path: path.to_path_buf(),
        source: e,
    }
}

impl FileDevice {
    /// Opens an existing image file or block device.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<FileDevice, DevError> {
        let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
        let ft = meta.file_type();
        let what = if ft.is_dir() {
            Some("is a directory")
        } else if ft.is_fifo() {
            Some("is a fifo, not a device or image file")
        } else if ft.is_socket() {
            Some("is a socket, not a device or image file")
        } else if ft.is_char_device() {
            Some("is a character device, not a block device or image file")
        } else {
            None
        };
        if let Some(w) = what {
            return Err(DevError::NotADevice {
                path: path.to_path_buf(),
                what: w.to_string(),
            });
        }
        let is_blk = ft.is_block_device();
        let mut o = StdOpen::new();
        o.read(true).write(opts.write);
        let mut flags = libc::O_CLOEXEC;
        if opts.direct {
            flags |= libc::O_DIRECT;
        }
        if opts.exclusive && is_blk {
            flags |= libc::O_EXCL;
        }
        o.custom_flags(flags);
        let file = o.open(path).map_err(|e| {
            if e.raw_os_error() == Some(libc::EBUSY) {
                DevError::Busy {
                    path: path.to_path_buf(),
                }
            } else {
                io_err(path, e)
            }
        })?;
        if opts.exclusive && !is_blk {
            // SAFETY: flock on a valid, owned descriptor; no memory is passed.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Err(DevError::Busy {
                        path: path.to_path_buf(),
                    });
                }
                return Err(io_err(path, e));
            }
        }
        let (size, block) = if is_blk {
            let mut size: u64 = 0;
            // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at `size`.
            let r = unsafe { libc::ioctl(file.as_raw_fd(), BLKGETSIZE64, &mut size as *mut u64) };
            if r != 0 {
                return Err(io_err(path, std::io::Error::last_os_error()));
            }
            let mut bs: libc::c_int = 0;
            // SAFETY: BLKSSZGET writes one int through the pointer, which points at `bs`.
            let r =
                unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET, &mut bs as *mut libc::c_int) };
            if r != 0 {
                return Err(io_err(path, std::io::Error::last_os_error()));
            }
            (size, u32::try_from(bs).unwrap_or(512).max(512))
        } else {
            (meta.len(), if opts.direct { 4096 } else { 512 })
        };
        Ok(FileDevice {
            file,
            name: path.display().to_string(),
            path: path.to_path_buf(),
            size,
            block,
            is_blk,
            direct: opts.direct,
        })
    }

    /// The path opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is a block device (not an image file).
    pub fn is_block_device(&self) -> bool {
        self.is_blk
    }

    /// Creates `path` as a sparse image file of `size` bytes, or grows an existing file to
    /// `size`. Never shrinks; refuses anything that is not a regular file.
    pub fn create_image(path: &Path, size: u64) -> Result<(), DevError> {
        match std::fs::metadata(path) {
            Ok(m) if !m.file_type().is_file() => {
                return Err(DevError::NotADevice {
                    path: path.to_path_buf(),
                    what: "--size applies only to image files".into(),
                });
            }
            Ok(m) if m.len() >= size => return Ok(()),
            _ => {}
        }
        let f = StdOpen::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| io_err(path, e))?;
        f.set_len(size).map_err(|e| io_err(path, e))
    }

    /// Grows an image file opened for writing to `size` bytes (sparse); never shrinks, and
    /// refuses block devices.
    pub fn grow(&mut self, size: u64) -> Result<(), DevError> {
        if self.is_blk {
            return Err(DevError::NotADevice {
                path: self.path.clone(),
                what: "a block device cannot be grown".into(),
            });
        }
        if size > self.size {
            self.file.set_len(size).map_err(|e| io_err(&self.path, e))?;
            self.size = size;
        }
        Ok(())
    }

    /// Bytes allocated on disk (for files; the device size for block devices).
    pub fn allocated_bytes(&self) -> Result<u64, DevError> {
        if self.is_blk {
            return Ok(self.size);
        }
        let m = self.file.metadata().map_err(|e| io_err(&self.path, e))?;
        Ok(m.blocks() * 512)
    }

    fn err(&self, op: &'static str, offset: u64, len: usize, e: std::io::Error) -> DevError {
        DevError::Io {
            dev: self.name.clone(),
            op,
            offset,
            len,
            source: e,
        }
    }

    /// O_DIRECT read: aligned bounce buffer covering the request.
    fn read_direct(&self, buf: &mut [u8], offset: u64) -> Result<(), DevError> {
        let a = u64::from(self.block);
        let start = offset / a * a;
        let end = (offset + buf.len() as u64).div_ceil(a) * a;
        let mut bounce = AlignedBuf::new(
            usize::try_from(end - start).unwrap_or(0),
            self.block as usize,
        );
        self.file
            .read_exact_at(bounce.as_mut(), start)
            .map_err(|e| self.err("read", offset, buf.len(), e))?;
        let skip = usize::try_from(offset - start).unwrap_or(0);
        buf.copy_from_slice(&bounce.as_mut()[skip..skip + buf.len()]);
        Ok(())
    }

    /// O_DIRECT write: read-modify-write of partial edge blocks through a bounce buffer.
    fn write_direct(&self, buf: &[u8], offset: u64) -> Result<(), DevError> {
        let a = u64::from(self.block);
        let start = offset / a * a;
        let end = (offset + buf.len() as u64).div_ceil(a) * a;
        let mut bounce = AlignedBuf::new(
            usize::try_from(end - start).unwrap_or(0),
            self.block as usize,
        );
        let skip = usize::try_from(offset - start).unwrap_or(0);
        if skip != 0 || !buf.len().is_multiple_of(self.block as usize) {
            self.file
                .read_exact_at(bounce.as_mut(), start)
                .map_err(|e| self.err("read", start, bounce.len(), e))?;
        }
        bounce.as_mut()[skip..skip + buf.len()].copy_from_slice(buf);
        self.file
            .write_all_at(bounce.as_mut(), start)
            .map_err(|e| self.err("write", offset, buf.len(), e))
    }
}

/// A heap buffer whose start is aligned (for O_DIRECT), made by over-allocating.
struct AlignedBuf {
    raw: Vec<u8>,
    off: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize, align: usize) -> AlignedBuf {
        let raw = vec![0u8; len + align];
        let addr = raw.as_ptr() as usize;
        let off = addr.next_multiple_of(align) - addr;
        AlignedBuf { raw, off, len }
    }
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.off..self.off + self.len]
    }
    fn len(&self) -> usize {
        self.len
    }
}

impl BlockDevice for FileDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DevError> {
        check_range(&self.name, "read", offset, buf.len(), self.size)?;
        if let Some(e) = crate::fault!("dev:read") {
            return Err(DevError::Injected {
                dev: self.name.clone(),
                op: "read",
                offset,
                detail: e.to_string(),
            });
        }
        if self.direct {
            return self.read_direct(buf, offset);
        }
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| self.err("read", offset, buf.len(), e))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DevError> {
        check_range(&self.name, "write", offset, buf.len(), self.size)?;
        if let Some(e) = crate::fault!("dev:write") {
            return Err(DevError::Injected {
                dev: self.name.clone(),
                op: "write",
                offset,
                detail: e.to_string(),
            });
        }
        if self.direct {
            return self.write_direct(buf, offset);
        }
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| self.err("write", offset, buf.len(), e))
    }

    fn flush(&self) -> Result<(), DevError> {
        if let Some(e) = crate::fault!("dev:flush") {
            return Err(DevError::Injected {
                dev: self.name.clone(),
                op: "flush",
                offset: 0,
                detail: e.to_string(),
            });
        }
        self.file
            .sync_data()
            .map_err(|e| self.err("flush", 0, 0, e))
    }

    fn len(&self) -> u64 {
        self.size
    }

    fn logical_block_size(&self) -> u32 {
        self.block
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> tempfile::TempDir {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dev-scratch");
        std::fs::create_dir_all(&base).unwrap();
        tempfile::tempdir_in(base).unwrap()
    }

    #[test]
    fn round_trip_and_out_of_range() {
        let d = scratch();
        let p = d.path().join("img");
        FileDevice::create_image(&p, 1 << 20).unwrap();
        let dev = FileDevice::open(
            &p,
            &OpenOptions {
                write: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(dev.len(), 1 << 20);
        dev.write_at(b"hello", 1000).unwrap();
        let mut b = [0u8; 5];
        dev.read_at(&mut b, 1000).unwrap();
        assert_eq!(&b, b"hello");
        let mut big = vec![0u8; 10];
        assert!(matches!(
            dev.read_at(&mut big, (1 << 20) - 5),
            Err(DevError::OutOfRange { .. })
        ));
        assert!(matches!(
            dev.write_at(&big, 1 << 20),
            Err(DevError::OutOfRange { .. })
        ));
    }

    #[test]
    fn direct_io_handles_unaligned_requests() {
        let d = scratch();
        let p = d.path().join("img");
        FileDevice::create_image(&p, 1 << 20).unwrap();
        let dev = match FileDevice::open(
            &p,
            &OpenOptions {
                write: true,
                direct: true,
                exclusive: false,
            },
        ) {
            Ok(d) => d,
            Err(e) => {
                println!("SKIPPED: O_DIRECT not supported here: {e}");
                return;
            }
        };
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        if let Err(e) = dev.write_at(&data, 12_345) {
            println!("SKIPPED: O_DIRECT write failed here: {e}");
            return;
        }
        let mut back = vec![0u8; data.len()];
        dev.read_at(&mut back, 12_345).unwrap();
        assert_eq!(back, data);
        let mut edge = [0u8; 3];
        dev.read_at(&mut edge, 12_344).unwrap();
        assert_eq!(edge, [0, data[0], data[1]]);
    }

    #[test]
    fn exclusive_open_twice_is_busy() {
        let d = scratch();
        let p = d.path().join("img");
        FileDevice::create_image(&p, 4096).unwrap();
        let ex = OpenOptions {
            write: true,
            exclusive: true,
            ..Default::default()
        };
        let _a = FileDevice::open(&p, &ex).unwrap();
        assert!(matches!(
            FileDevice::open(&p, &ex),
            Err(DevError::Busy { .. })
        ));
    }

    #[test]
    fn directories_fifos_and_missing_paths_are_refused() {
        let d = scratch();
        assert!(matches!(
            FileDevice::open(d.path(), &OpenOptions::default()),
            Err(DevError::NotADevice { .. })
        ));
        let missing = d.path().join("nope");
        let e = FileDevice::open(&missing, &OpenOptions::default()).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            FileDevice::open(&fifo, &OpenOptions::default()),
            Err(DevError::NotADevice { .. })
        ));
        assert!(FileDevice::create_image(d.path(), 10).is_err());
    }
}
