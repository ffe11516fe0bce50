//! Checking and repairing: the problem table (stable ids) and the fsck driver. Repairs are
//! ordinary writes through the layers below, so a crash during fsck is survivable.

pub mod fsck;
pub mod open;
pub mod problems;

pub use fsck::{FixPolicy, FsckError, FsckOptions, FsckReport, Prompt, fsck_device, fsck_path};
pub use open::{OpenError, RecoveryInfo, Store, StoreOptions};
pub use problems::{PROBLEMS, ProblemId, ProblemInfo};
