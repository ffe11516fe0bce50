//! Helpers for the end-to-end tests: locate (and build, once per process) the real binaries,
//! run them, and make scratch images.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

static BUILD: Once = Once::new();

/// The directory holding the binaries of the profile these tests were built with.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Path of a workspace binary (`mkfs-sixfs`, `fsck-sixfs`, `sixfs-debug`, `mount-sixfs`),
/// building the binaries once per test process so they are never stale.
pub fn bin(name: &str) -> PathBuf {
    BUILD.call_once(|| {
        let dir = profile_dir();
        let target = dir.parent().expect("target dir");
        let profile = match dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(p) => p,
            None => "dev",
        };
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--profile", profile, "--bins"])
            .args([
                "-p",
                "sixfs-mkfs",
                "-p",
                "sixfs-fsck",
                "-p",
                "sixfs-debug",
                "-p",
                "sixfs-mount",
            ])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build for the binaries");
        assert!(status.success(), "building the binaries failed");
    });
    let p = profile_dir().join(name);
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// The result of running a binary.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit code, printing everything on mismatch.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts a clean failure: non-zero exit, no panic, a one-line message on stderr that
    /// mentions `needle`.
    #[track_caller]
    pub fn expect_clean_error(&self, needle: &str) -> &Self {
        assert_ne!(self.code, 0, "expected failure\nstdout:\n{}", self.stdout);
        assert!(
            !self.stderr.contains("panicked"),
            "panicked:\n{}",
            self.stderr
        );
        assert_ne!(self.code, 101, "exit code 101 is a panic:\n{}", self.stderr);
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected a one-line error, got:\n{}",
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "error does not mention {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

/// Runs a binary with arguments; stdin is /dev/null (not a terminal).
pub fn run<I, S>(name: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(bin(name))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
        .into()
}

/// A scratch directory on a disk-backed filesystem (not tmpfs), removed on drop.
/// `mkfs.sixfs -q --size SIZE IMG`, which must succeed.
pub fn mkfs_quiet(img: &Path, size: &str) {
    run(
        "mkfs-sixfs",
        [
            "-q".as_ref(),
            "--size".as_ref(),
            size.as_ref(),
            img.as_os_str(),
        ],
    )
    .expect_code(0);
}

pub fn scratch() -> tempfile::TempDir {
    let base = std::env::var_os("SIXFS_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-scratch"));
    std::fs::create_dir_all(&base).expect("create scratch base");
    tempfile::tempdir_in(base).expect("scratch dir")
}

/// A content hash of a file, to prove a command did not write.
pub fn file_digest(p: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    let data = std::fs::read(p).expect("read file");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}
