//! `fsck`: runs the check passes over a device and repairs what the policy allows.
//!
//! Passes so far:
//! 1. superblocks: every copy read and validated; invalid, foreign or stale copies rewritten
//!    from the newest valid copy; a device smaller than the filesystem reported (and nothing
//!    written or checked further);
//! 2. btrees: the store is opened on a copy-on-write overlay (the journal is replayed in
//!    memory, nothing is written) and the structural check runs over every btree; problems
//!    are reported (not repaired yet).
//!
//! Outcome → fsck(8) exit code: nothing found 0; everything found was corrected 1; something
//! left uncorrected 4; the check could not run 8 (no valid superblock, IO error, mounted
//! device when asked to repair).

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::problems::ProblemId;
use crate::btree::BtreeError;
use crate::dev::file::{FileDevice, OpenOptions};
use crate::dev::{BlockDevice, DevError, mounts};
use crate::journal::JournalError;
use crate::sb::{self, CopyReport, CopyStatus, SbError};

/// What to do about problems found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FixPolicy {
    /// Report only; open the device read-only (`-n`).
    No,
    /// Repair what is safe to repair automatically (`-p`, `-a`).
    Preen,
    /// Repair everything repairable (`-y`).
    Yes,
    /// Ask for each problem (interactive).
    Ask,
}

/// Answers "repair this?" questions in [`FixPolicy::Ask`] mode.
pub trait Prompt {
    /// Returns true to repair.
    fn confirm(&mut self, question: &str) -> bool;
}

/// A prompt that always declines (used when there is no terminal).
#[derive(Debug)]
pub struct NoPrompt;

impl Prompt for NoPrompt {
    fn confirm(&mut self, _question: &str) -> bool {
        false
    }
}

/// Options for [`fsck_path`].
#[derive(Clone, Copy, Debug)]
pub struct FsckOptions {
    /// What to repair.
    pub policy: FixPolicy,
}

/// One problem found.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    /// The kind.
    pub id: ProblemId,
    /// Its stable number.
    pub number: u16,
    /// What was found, naming the device and offset.
    pub message: String,
    /// Whether it was repaired.
    pub fixed: bool,
}

/// The result of a check.
#[derive(Clone, Debug, Serialize)]
pub struct FsckReport {
    /// Device checked.
    pub device: String,
    /// Every superblock copy and its state before repair.
    pub superblock_copies: Vec<CopyReport>,
    /// Problems found.
    pub problems: Vec<Found>,
    /// Whether the device was opened read-only.
    pub read_only: bool,
}

impl FsckReport {
    /// The fsck(8) exit code for this outcome: 0, 1 or 4.
    pub fn exit_code(&self) -> i32 {
        if self.problems.iter().any(|p| !p.fixed) {
            4
        } else if self.problems.is_empty() {
            0
        } else {
            1
        }
    }
}

/// Errors that stop a check from running (exit code 8).
#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    /// Opening or reading the device failed.
    #[error(transparent)]
    Dev(#[from] DevError),
    /// No valid superblock: nothing to check against.
    #[error(transparent)]
    Sb(#[from] SbError),
    /// The device is mounted and repairs were asked for.
    #[error("{dev}: is mounted on {at}; run fsck on an unmounted filesystem (or -n to only look)")]
    Mounted {
        /// Device name.
        dev: String,
        /// Mount point(s).
        at: String,
    },
}

/// Checks the device or image at `path`.
pub fn fsck_path(
    path: &Path,
    opts: &FsckOptions,
    prompt: &mut dyn Prompt,
) -> Result<FsckReport, FsckError> {
    let read_only = opts.policy == FixPolicy::No;
    // Fail on a missing path or a directory before anything else.
    drop(FileDevice::open(path, &OpenOptions::default())?);
    let at = mounts::mounted_at(path)?;
    if !at.is_empty() && !read_only {
        return Err(FsckError::Mounted {
            dev: path.display().to_string(),
            at: at
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice::open(
        path,
        &OpenOptions {
            write: !read_only,
            direct: false,
            exclusive: !read_only,
        },
    )?);
    fsck_device(&dev, opts, prompt)
}

fn decide(policy: FixPolicy, id: ProblemId, question: &str, prompt: &mut dyn Prompt) -> bool {
    let info = id.info();
    if !info.can_fix {
        return false;
    }
    match policy {
        FixPolicy::No => false,
        FixPolicy::Preen => info.autofix,
        FixPolicy::Yes => true,
        FixPolicy::Ask => prompt.confirm(question),
    }
}

/// A device error inside an open or check failure: fsck could not read what it checks, which
/// is an operational error (exit 8), not a problem found in the filesystem (exit 4).
fn device_error(e: super::OpenError) -> Result<DevError, super::OpenError> {
    use super::OpenError as O;
    match e {
        O::Dev(d)
        | O::Sb(SbError::Dev(d))
        | O::Btree(BtreeError::Dev(d))
        | O::Journal(JournalError::Dev(d)) => Ok(d),
        other => Err(other),
    }
}

/// Opens the store read-only (journal replayed on an overlay) and checks every btree. Problems
/// found go to `problems`; a device error reading it is returned.
fn btree_pass(
    dev: &Arc<dyn BlockDevice>,
    name: &str,
    problems: &mut Vec<Found>,
) -> Result<(), FsckError> {
    let overlay: Arc<dyn BlockDevice> = Arc::new(crate::dev::OverlayDevice::new(dev.clone()));
    let push = |problems: &mut Vec<Found>, id: ProblemId, message: String| {
        problems.push(Found {
            id,
            number: id.info().number,
            message,
            fixed: false,
        });
    };
    let store = match super::Store::open(
        overlay,
        &super::StoreOptions {
            cache_nodes: 1 << 16,
        },
    ) {
        Ok(s) => s,
        Err(e) => {
            let e = match device_error(e) {
                Ok(d) => return Err(FsckError::Dev(d)),
                Err(e) => e,
            };
            let id = match e {
                super::OpenError::Btree(_) => ProblemId::BtreeStructure,
                _ => ProblemId::JournalUnrecoverable,
            };
            push(problems, id, format!("{name}: cannot open the btrees: {e}"));
            return Ok(());
        }
    };
    match crate::btree::check::check(store.btree()) {
        Ok(r) => {
            for p in r.problems {
                push(problems, ProblemId::BtreeStructure, format!("{name}: {p}"));
            }
        }
        Err(BtreeError::Dev(d)) => return Err(FsckError::Dev(d)),
        Err(e) => push(problems, ProblemId::BtreeStructure, format!("{name}: {e}")),
    }
    Ok(())
}

/// Checks an opened device. The device must be writable unless the policy is
/// [`FixPolicy::No`].
pub fn fsck_device(
    dev: &Arc<dyn BlockDevice>,
    opts: &FsckOptions,
    prompt: &mut dyn Prompt,
) -> Result<FsckReport, FsckError> {
    let name = dev.name().to_string();
    let read = match sb::read_superblock(&**dev) {
        Ok(r) => r,
        Err(SbError::Truncated {
            dev: d,
            len,
            dev_size,
            copies,
        }) => {
            // A device shorter than its filesystem: reported, left uncorrected, nothing written.
            let message = SbError::Truncated {
                dev: d,
                len,
                dev_size,
                copies: Vec::new(),
            }
            .to_string();
            let id = ProblemId::SbDeviceShrunk;
            return Ok(FsckReport {
                device: name,
                superblock_copies: copies,
                problems: vec![Found {
                    id,
                    number: id.info().number,
                    message,
                    fixed: false,
                }],
                read_only: opts.policy == FixPolicy::No,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let mut problems = Vec::new();
    let mut wrote = false;
    let mut write_err: Option<SbError> = None;
    for c in read.bad_copies() {
        let (id, what) = match &c.status {
            CopyStatus::Stale { .. } => (ProblemId::SbCopyStale, c.status.to_string()),
            CopyStatus::Invalid { reason } => (ProblemId::SbCopyInvalid, reason.clone()),
            CopyStatus::Valid { .. } => continue,
        };
        let message = format!("{name}: {} superblock at byte {}: {what}", c.role, c.offset);
        let fits = c.offset.saturating_add(u64::from(read.sb.layout.max_bytes)) <= dev.len();
        let fixed =
            fits && decide(
                opts.policy,
                id,
                &format!("{message}. Rewrite it from the newest copy?"),
                prompt,
            ) && write_err.is_none()
                && match sb::write_copy(&**dev, &read.sb, c.offset) {
                    Ok(()) => {
                        wrote = true;
                        true
                    }
                    Err(e) => {
                        write_err = Some(e);
                        false
                    }
                };
        problems.push(Found {
            id,
            number: id.info().number,
            message,
            fixed,
        });
    }
    // Copies already rewritten are flushed even when a later rewrite failed.
    if wrote {
        dev.flush()?;
    }
    if let Some(e) = write_err {
        return Err(e.into());
    }
    btree_pass(dev, &name, &mut problems)?;
    Ok(FsckReport {
        device: name,
        superblock_copies: read.copies,
        problems,
        read_only: opts.policy == FixPolicy::No,
    })
}
