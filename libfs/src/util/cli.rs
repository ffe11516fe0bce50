//! Small helpers the command-line tools share.
#![allow(unsafe_code)] // one libc call; see the SAFETY note.

/// Restores the default `SIGPIPE` action, so a tool whose output is cut short by a closed
/// pipe (`sixfs-debug list | head`) ends quietly, as Unix tools do, instead of failing to
/// print and panicking.
pub fn restore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_DFL at program start, before any threads
    // exist, has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
