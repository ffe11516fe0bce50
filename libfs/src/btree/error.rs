//! Errors of the btree layer, and transaction restarts.

use crate::dev::DevError;
use crate::format::bkey::Pos;
use crate::format::btree_id::BtreeId;
use crate::journal::JournalError;

/// Errors of the btree layer.
#[derive(Debug, thiserror::Error)]
pub enum BtreeError {
    /// Device IO failed.
    #[error(transparent)]
    Dev(#[from] DevError),
    /// The journal failed (IO error, full, too big).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A node on disk is damaged or inconsistent with its parent.
    #[error(
        "{btree} btree, level {level}, node at byte {offset} (keys {min}..={max}): {detail}; the filesystem needs fsck"
    )]
    Corrupt {
        /// Which btree.
        btree: BtreeId,
        /// Node level.
        level: u8,
        /// Smallest position of the node (as its parent says).
        min: Pos,
        /// Largest position of the node.
        max: Pos,
        /// Device byte offset of the node (or of the bad entry in it).
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// No free node space.
    #[error("no space for a new btree node ({used} of {total} node slots in use)")]
    NoSpace {
        /// Slots in use.
        used: u64,
        /// Total slots.
        total: u64,
    },
    /// A key is too large for a node.
    #[error("key of {bytes} bytes does not fit in a {node_size}-byte btree node")]
    KeyTooBig {
        /// Key bytes.
        bytes: usize,
        /// Node size.
        node_size: u32,
    },
    /// A key the caller may not insert (wrong type, bad value).
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// An earlier metadata write failed (or the store was shut down); it is read-only.
    #[error("the btree is read-only: {0}")]
    ReadOnly(String),
    /// The tree cannot take more levels.
    #[error("{btree} btree would grow past {max} levels")]
    TooDeep {
        /// Which btree.
        btree: BtreeId,
        /// The depth limit.
        max: u8,
    },
    /// A fault injected at a fault site (tests; see `docs/faults.md`).
    #[error("injected fault at {site} (errno {errno})")]
    Injected {
        /// The site's name.
        site: &'static str,
        /// The errno it asked for.
        errno: i32,
    },
    /// A broken internal invariant (a bug): the operation stops rather than guess.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a transaction had to restart (counted per reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartReason {
    /// A lock taken out of order (a leaf the commit only read, relocked while holding the
    /// leaves it writes) was held by a writer: it is never waited for.
    LockContended,
    /// A dropped lock could not be retaken at the same seq (the node changed).
    Relock,
    /// A node was replaced (split, merge, compaction) under the traversal.
    NodeDead,
    /// A node had to be read from disk; locks were dropped for the IO.
    NodeFill,
    /// A leaf had to be split or compacted before the commit could insert.
    Split,
    /// The root changed during the traversal.
    RootChanged,
    /// The commit's journal reservation would have waited (for jset writes or reclaim):
    /// locks were dropped for the wait.
    JournalRes,
}

impl RestartReason {
    /// All reasons, for counters.
    pub const ALL: [RestartReason; 7] = [
        RestartReason::LockContended,
        RestartReason::Relock,
        RestartReason::NodeDead,
        RestartReason::NodeFill,
        RestartReason::Split,
        RestartReason::RootChanged,
        RestartReason::JournalRes,
    ];
    /// Index into counter arrays.
    pub fn idx(self) -> usize {
        self as usize
    }
}

/// A transaction step's failure: restart it, or give up with an error.
#[derive(Debug, thiserror::Error)]
pub enum TransError {
    /// Drop everything and run the transaction again.
    #[error("transaction restart: {0:?}")]
    Restart(RestartReason),
    /// A real error.
    #[error(transparent)]
    Error(#[from] BtreeError),
}

impl BtreeError {
    /// The error for a restart that escaped its retry loop (a bug).
    pub(crate) fn escaped(r: RestartReason) -> BtreeError {
        BtreeError::Internal(format!("transaction restart {r:?} escaped its retry loop"))
    }

    /// The errno a POSIX caller should see.
    pub fn errno(&self) -> i32 {
        match self {
            BtreeError::Dev(e) => e.errno(),
            BtreeError::Journal(e) => e.errno(),
            BtreeError::Corrupt { .. } => libc::EUCLEAN,
            BtreeError::NoSpace { .. } | BtreeError::TooDeep { .. } => libc::ENOSPC,
            BtreeError::KeyTooBig { .. } => libc::E2BIG,
            BtreeError::InvalidKey(_) => libc::EINVAL,
            BtreeError::ReadOnly(_) => libc::EROFS,
            BtreeError::Injected { errno, .. } => *errno,
            BtreeError::Internal(_) => libc::EIO,
        }
    }
}

impl From<JournalError> for TransError {
    fn from(e: JournalError) -> Self {
        TransError::Error(BtreeError::Journal(e))
    }
}

impl From<DevError> for TransError {
    fn from(e: DevError) -> Self {
        TransError::Error(BtreeError::Dev(e))
    }
}
