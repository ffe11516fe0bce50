//! `SIXFS_FAULTS` configures sites when the registry is first used (its own test binary, so
//! the variable is set before anything in this process touches the registry).
#![allow(
    clippy::cast_possible_truncation,
    clippy::unwrap_used,
    reason = "test code"
)]
#![allow(unsafe_code, reason = "std::env::set_var is unsafe in edition 2024")]

#[test]
fn env_var_arms_sites() {
    // SAFETY: this binary has one test and sets the variable before starting any thread or
    // touching the registry; nothing reads the environment concurrently.
    unsafe {
        std::env::set_var(
            "SIXFS_FAULTS",
            "fenv:* times=2 error=ENOSPC; fenv:other off",
        )
    };
    let hit = || sixfs::fault!("fenv:write").map(|e| e.errno);
    assert_eq!(hit(), Some(libc::ENOSPC));
    assert_eq!(hit(), Some(libc::ENOSPC));
    assert_eq!(hit(), None);
    assert!(sixfs::fault!("fenv:other").is_none());
    sixfs::util::fault::reset();
    assert!(sixfs::util::fault::list().iter().all(|s| s.mode.is_none()));
}
