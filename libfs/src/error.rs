//! The library's public error type and the one errno table.
//!
//! Each layer has its own error enum (`dev::DevError`, `format::FormatError`,
//! `sb::SbError`, ...), converted upward with `From`. Tool-level entry points (`mkfs`,
//! `fsck`) return their own typed errors, which also convert into [`Error`].

/// The result type of the public API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error the library reports to its callers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A block-device error (IO, bad size, device busy, ...).
    #[error(transparent)]
    Dev(#[from] crate::dev::DevError),
    /// Bytes that do not decode (corrupt or foreign metadata).
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),
    /// Superblock reading or writing failed.
    #[error(transparent)]
    Sb(#[from] crate::sb::SbError),
    /// Formatting failed or was refused.
    #[error(transparent)]
    Mkfs(#[from] crate::init::MkfsError),
    /// A check could not run.
    #[error(transparent)]
    Fsck(#[from] crate::recovery::FsckError),
    /// Opening or closing a store failed.
    #[error(transparent)]
    Open(#[from] crate::recovery::OpenError),
    /// A btree operation failed.
    #[error(transparent)]
    Btree(#[from] crate::btree::BtreeError),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
}

impl Error {
    /// The errno a POSIX caller should see. Exhaustive on purpose: a new variant does not
    /// compile until someone decides its errno.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Dev(e) => e.errno(),
            Error::Format(_) => libc::EUCLEAN,
            Error::Sb(crate::sb::SbError::Dev(e)) => e.errno(),
            Error::Sb(_) => libc::EINVAL,
            Error::Mkfs(crate::init::MkfsError::Dev(e)) => e.errno(),
            Error::Mkfs(crate::init::MkfsError::Mounted { .. }) => libc::EBUSY,
            Error::Mkfs(_) => libc::EINVAL,
            Error::Fsck(crate::recovery::FsckError::Dev(e)) => e.errno(),
            Error::Fsck(crate::recovery::FsckError::Mounted { .. }) => libc::EBUSY,
            Error::Fsck(_) => libc::EINVAL,
            Error::Open(e) => e.errno(),
            Error::Btree(e) => e.errno(),
            Error::Journal(e) => e.errno(),
        }
    }
}
