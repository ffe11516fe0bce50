//! The format layer's one error type: what a decoder found wrong, typed so a repair tool can
//! match on it, with enough context for a one-line message.

/// Errors from decoding (or refusing to encode) on-disk structures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Fewer bytes than the structure needs.
    #[error("{what}: truncated ({have} bytes, need {need})")]
    Short {
        /// The structure being decoded.
        what: &'static str,
        /// Bytes required.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The magic number does not match.
    #[error("{what}: bad magic (not a sixfs {what})")]
    BadMagic {
        /// The structure being decoded.
        what: &'static str,
    },
    /// The stored checksum does not match the contents.
    #[error("{what}: checksum mismatch (stored {stored:#x}, computed {computed:#x})")]
    BadChecksum {
        /// The structure being decoded.
        what: &'static str,
        /// Checksum stored on disk (truncated to 64 bits for display).
        stored: u64,
        /// Checksum of the bytes read.
        computed: u64,
    },
    /// The on-disk format version is not one this build can read.
    #[error(
        "{what}: format version {version} (readable by version {version_min} and later) is not supported by this build (supports {supported_min}..={supported})"
    )]
    Version {
        /// The structure being decoded.
        what: &'static str,
        /// Version that wrote it.
        version: u16,
        /// Oldest version that can read it.
        version_min: u16,
        /// Oldest version this build reads.
        supported_min: u16,
        /// Newest version this build reads.
        supported: u16,
    },
    /// Incompatible features this build does not know.
    #[error("{what}: unsupported incompatible features {bits:#x}")]
    Features {
        /// The structure being decoded.
        what: &'static str,
        /// The unknown feature bits.
        bits: u64,
    },
    /// A field holds a value that is impossible or inconsistent with the others.
    #[error("{what}: invalid {field}: {detail}")]
    Invalid {
        /// The structure being decoded.
        what: &'static str,
        /// The field at fault.
        field: &'static str,
        /// Why it is wrong.
        detail: String,
    },
}

impl FormatError {
    /// Shorthand for [`FormatError::Invalid`].
    pub fn invalid(what: &'static str, field: &'static str, detail: impl Into<String>) -> Self {
        FormatError::Invalid {
            what,
            field,
            detail: detail.into(),
        }
    }
}
