//! Recognises filesystem and partition-table signatures in the first bytes of a device, so
//! mkfs can refuse to overwrite something and error messages can say what a device holds.

use super::superblock::{SB_MAGIC, SB_PRIMARY_OFFSET};

/// How many bytes from the start of a device [`probe`] looks at.
pub const PROBE_BYTES: usize = 128 * 1024;

/// Something recognised on a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signature {
    /// A sixfs superblock magic at the primary location.
    Sixfs,
    /// An ext2, ext3 or ext4 superblock (the name says which).
    Ext(&'static str),
    /// A btrfs superblock.
    Btrfs,
    /// An XFS superblock.
    Xfs,
    /// A bcachefs superblock.
    Bcachefs,
    /// A GPT partition table.
    Gpt,
    /// An MBR (DOS) partition table with at least one partition.
    Mbr,
    /// A Linux swap area.
    Swap,
    /// A LUKS encrypted volume.
    Luks,
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Signature::Sixfs => f.write_str("a sixfs filesystem"),
            Signature::Ext(n) => write!(f, "an {n} filesystem"),
            Signature::Btrfs => f.write_str("a btrfs filesystem"),
            Signature::Xfs => f.write_str("an xfs filesystem"),
            Signature::Bcachefs => f.write_str("a bcachefs filesystem"),
            Signature::Gpt => f.write_str("a GPT partition table"),
            Signature::Mbr => f.write_str("a DOS (MBR) partition table"),
            Signature::Swap => f.write_str("a swap area"),
            Signature::Luks => f.write_str("a LUKS encrypted volume"),
        }
    }
}

fn at(head: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    head.get(off..off.checked_add(len)?)
}

fn le16(head: &[u8], off: usize) -> Option<u16> {
    at(head, off, 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn le32(head: &[u8], off: usize) -> Option<u32> {
    at(head, off, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Every signature found in `head`, the first bytes of a device (up to [`PROBE_BYTES`]).
pub fn probe(head: &[u8]) -> Vec<Signature> {
    let mut found = Vec::new();
    let sb = usize::try_from(SB_PRIMARY_OFFSET).unwrap_or(usize::MAX);
    if at(head, sb, 16) == Some(&SB_MAGIC[..]) {
        found.push(Signature::Sixfs);
    }
    // ext2/3/4: superblock at 1024, magic 0xEF53 at offset 56 in it.
    if le16(head, 1024 + 56) == Some(0xEF53) {
        let compat = le32(head, 1024 + 92).unwrap_or(0);
        let incompat = le32(head, 1024 + 96).unwrap_or(0);
        let ro_compat = le32(head, 1024 + 100).unwrap_or(0);
        const HAS_JOURNAL: u32 = 0x4;
        const EXT4_INCOMPAT: u32 = 0x40 | 0x80 | 0x200 | 0x400 | 0x8000 | 0x10000;
        const EXT4_RO_COMPAT: u32 = 0x8 | 0x10 | 0x20 | 0x40 | 0x400;
        let name = if incompat & EXT4_INCOMPAT != 0 || ro_compat & EXT4_RO_COMPAT != 0 {
            "ext4"
        } else if compat & HAS_JOURNAL != 0 {
            "ext3"
        } else {
            "ext2"
        };
        found.push(Signature::Ext(name));
    }
    if at(head, 65536 + 64, 8) == Some(&b"_BHRfS_M"[..]) {
        found.push(Signature::Btrfs);
    }
    if at(head, 0, 4) == Some(&b"XFSB"[..]) {
        found.push(Signature::Xfs);
    }
    // bcachefs: struct bch_sb at 4096: csum(16) version(2) version_min(2) pad(4) magic(16).
    const BCACHEFS_MAGIC: [u8; 16] = [
        0xc6, 0x85, 0x73, 0xf6, 0x66, 0xce, 0x90, 0xa9, 0xd9, 0x6a, 0x60, 0xcf, 0x80, 0x3d, 0xf7,
        0xef,
    ];
    const BCACHE_MAGIC: [u8; 16] = [
        0xc6, 0x85, 0x73, 0xf6, 0x4e, 0x1a, 0x45, 0xca, 0x82, 0x65, 0xf5, 0x7f, 0x48, 0xba, 0x6d,
        0x81,
    ];
    let m = at(head, 4096 + 24, 16);
    if m == Some(&BCACHEFS_MAGIC[..]) || m == Some(&BCACHE_MAGIC[..]) {
        found.push(Signature::Bcachefs);
    }
    if at(head, 512, 8) == Some(&b"EFI PART"[..]) {
        found.push(Signature::Gpt);
    } else if at(head, 510, 2) == Some(&[0x55, 0xaa][..]) {
        // A DOS label: at least one partition entry with a type and a size.
        let has_part = (0..4).any(|i| {
            let e = 446 + 16 * i;
            let typ = at(head, e + 4, 1).map_or(0, |b| b[0]);
            let sectors = le32(head, e + 12).unwrap_or(0);
            typ != 0 && sectors != 0
        });
        if has_part {
            found.push(Signature::Mbr);
        }
    }
    for page in [4096usize, 8192, 16384, 65536] {
        if at(head, page - 10, 10) == Some(&b"SWAPSPACE2"[..]) {
            found.push(Signature::Swap);
            break;
        }
    }
    if at(head, 0, 6) == Some(&b"LUKS\xba\xbe"[..]) {
        found.push(Signature::Luks);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_and_short_input_have_no_signature() {
        assert!(probe(&[0u8; PROBE_BYTES]).is_empty());
        assert!(probe(&[]).is_empty());
        assert!(probe(&[0x55; 100]).is_empty());
    }

    #[test]
    fn recognises_each_signature() {
        let mut h = vec![0u8; PROBE_BYTES];
        h[1024 + 56..1024 + 58].copy_from_slice(&0xEF53u16.to_le_bytes());
        h[1024 + 96..1024 + 100].copy_from_slice(&0x40u32.to_le_bytes());
        assert_eq!(probe(&h), vec![Signature::Ext("ext4")]);
        h[1024 + 96..1024 + 100].copy_from_slice(&0u32.to_le_bytes());
        h[1024 + 92..1024 + 96].copy_from_slice(&4u32.to_le_bytes());
        assert_eq!(probe(&h), vec![Signature::Ext("ext3")]);

        let mut h = vec![0u8; PROBE_BYTES];
        h[65600..65608].copy_from_slice(b"_BHRfS_M");
        assert_eq!(probe(&h), vec![Signature::Btrfs]);

        let mut h = vec![0u8; PROBE_BYTES];
        h[512..520].copy_from_slice(b"EFI PART");
        h[510] = 0x55;
        h[511] = 0xaa;
        assert_eq!(probe(&h), vec![Signature::Gpt]);

        let mut h = vec![0u8; PROBE_BYTES];
        h[510] = 0x55;
        h[511] = 0xaa;
        assert!(
            probe(&h).is_empty(),
            "a boot signature without partitions is not a table"
        );
        h[446 + 4] = 0x83;
        h[446 + 12..446 + 16].copy_from_slice(&2048u32.to_le_bytes());
        assert_eq!(probe(&h), vec![Signature::Mbr]);

        let mut h = vec![0u8; PROBE_BYTES];
        h[4096..4112].copy_from_slice(&SB_MAGIC);
        assert_eq!(probe(&h), vec![Signature::Sixfs]);
    }
}
