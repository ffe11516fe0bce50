//! The library's public error type and the one errno table.
//!
//! Each layer has its own error enum (`dev::DevError`, `format::FormatError`, ...), converted
//! upward with `From`. Only [`Error`] crosses the public API.

/// The result type of the public API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error the library reports to its callers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A block-device error (IO, bad size, device busy, ...).
    #[error(transparent)]
    Dev(#[from] crate::dev::DevError),
}

impl Error {
    /// The errno a POSIX caller should see. Exhaustive on purpose: a new variant does not
    /// compile until someone decides its errno.
    pub fn errno(&self) -> i32 {
        match self {
            Error::Dev(e) => e.errno(),
        }
    }
}
