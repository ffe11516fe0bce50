//! Every problem fsck can find, with a stable id, a name, and whether repairing it is safe to
//! do automatically (`fsck -p`). Ids are never reused or renumbered; `docs/fsck-problems.md`
//! is generated from [`PROBLEMS`] (`sixfs-debug problems --markdown`).

use serde::Serialize;

/// A kind of problem fsck can find.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemId {
    /// A superblock copy is unreadable or invalid while another copy is valid.
    SbCopyInvalid,
    /// A superblock copy is valid but older than the newest copy.
    SbCopyStale,
    /// The device is smaller than the filesystem recorded in the superblock.
    SbDeviceShrunk,
    /// The journal cannot be replayed (a needed entry is missing or damaged, no roots).
    JournalUnrecoverable,
    /// A btree node is damaged or inconsistent with the tree around it.
    BtreeStructure,
}

/// What is known about a problem kind.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ProblemInfo {
    /// The kind.
    pub id: ProblemId,
    /// Stable number (never reused).
    pub number: u16,
    /// Stable name.
    pub name: &'static str,
    /// What it means.
    pub description: &'static str,
    /// Whether fsck can repair it.
    pub can_fix: bool,
    /// Whether the repair is safe without asking (`fsck -p`).
    pub autofix: bool,
    /// What the repair does.
    pub repair: &'static str,
}

/// The table of all problems, in number order.
pub const PROBLEMS: &[ProblemInfo] = &[
    ProblemInfo {
        id: ProblemId::SbCopyInvalid,
        number: 1,
        name: "sb_copy_invalid",
        description: "a superblock copy is unreadable or invalid (bad magic, checksum, or fields)",
        can_fix: true,
        autofix: true,
        repair: "rewrite the copy from the newest valid copy",
    },
    ProblemInfo {
        id: ProblemId::SbCopyStale,
        number: 2,
        name: "sb_copy_stale",
        description: "a superblock copy is valid but older than the newest copy (an interrupted superblock write)",
        can_fix: true,
        autofix: true,
        repair: "rewrite the copy from the newest valid copy",
    },
    ProblemInfo {
        id: ProblemId::SbDeviceShrunk,
        number: 3,
        name: "sb_device_shrunk",
        description: "the device is smaller than the filesystem on it (a truncated image or a shrunk partition)",
        can_fix: false,
        autofix: false,
        repair: "none: restore the device to its recorded size",
    },
    ProblemInfo {
        id: ProblemId::JournalUnrecoverable,
        number: 4,
        name: "journal_unrecoverable",
        description: "the journal cannot be replayed: an entry that must be replayed is missing or damaged, or no entry holds the btree roots",
        can_fix: false,
        autofix: false,
        repair: "none yet (repair comes with the full fsck); the image is left untouched",
    },
    ProblemInfo {
        id: ProblemId::BtreeStructure,
        number: 5,
        name: "btree_structure",
        description: "a btree node is damaged (checksum, key order or bounds) or does not fit the tree (wrong level, range, or reachable twice)",
        can_fix: false,
        autofix: false,
        repair: "none yet (repair comes with the full fsck); the image is left untouched",
    },
];

impl ProblemId {
    /// The table entry for this problem.
    pub fn info(self) -> &'static ProblemInfo {
        PROBLEMS
            .iter()
            .find(|p| p.id == self)
            .unwrap_or(&PROBLEMS[0])
    }
}

/// The problem table as Markdown, for `docs/`.
pub fn problems_markdown() -> String {
    let mut s = String::from(
        "| # | name | can fix | automatic (-p) | meaning | repair |\n|---|---|---|---|---|---|\n",
    );
    for p in PROBLEMS {
        s.push_str(&format!(
            "| {} | `{}` | {} | {} | {} | {} |\n",
            p.number,
            p.name,
            if p.can_fix { "yes" } else { "no" },
            if p.autofix { "yes" } else { "no" },
            p.description,
            p.repair
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_are_unique_and_every_id_has_an_entry() {
        for (i, a) in PROBLEMS.iter().enumerate() {
            assert_eq!(a.id.info().number, a.number);
            for b in &PROBLEMS[i + 1..] {
                assert_ne!(a.number, b.number);
                assert_ne!(a.name, b.name);
            }
            assert!(
                !a.autofix || a.can_fix,
                "{} is autofix but not fixable",
                a.name
            );
        }
    }

    #[test]
    fn docs_table_is_up_to_date() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/fsck-problems.md"
        ))
        .expect("docs/fsck-problems.md exists");
        assert!(
            doc.contains(&problems_markdown()),
            "docs/fsck-problems.md is out of date: regenerate it with `sixfs-debug problems --markdown`"
        );
    }
}
