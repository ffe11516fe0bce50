//! Recognises filesystem, volume and partition-table signatures in the first and last bytes
//! of a device, so mkfs can refuse to overwrite something and error messages can say what a
//! device holds.
//!
//! [`probe`] looks at the head of a device (the first [`PROBE_BYTES`]), [`probe_tail`] at its
//! last [`TAIL_PROBE_BYTES`] (md RAID 0.90/1.0 superblocks, the backup GPT header, the sixfs
//! end copy). Only magic numbers are checked: enough to refuse, not to trust.

use super::superblock::{SB_MAGIC, SB_MAX_BYTES, SB_PRIMARY_OFFSET};

/// How many bytes from the start of a device [`probe`] looks at.
pub const PROBE_BYTES: usize = 128 * 1024;
/// How many bytes from the end of a device [`probe_tail`] looks at.
pub const TAIL_PROBE_BYTES: usize = 128 * 1024;

/// Something recognised on a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signature {
    /// A sixfs superblock magic at a copy's standard location.
    Sixfs,
    /// An ext2, ext3 or ext4 superblock (the name says which).
    Ext(&'static str),
    /// A btrfs superblock.
    Btrfs,
    /// An XFS superblock.
    Xfs,
    /// A bcachefs superblock.
    Bcachefs,
    /// A FAT boot sector (the name says FAT12, FAT16 or FAT32).
    Vfat(&'static str),
    /// An exFAT boot sector.
    Exfat,
    /// An NTFS boot sector.
    Ntfs,
    /// An F2FS superblock.
    F2fs,
    /// An LVM2 physical volume label.
    Lvm2,
    /// A Linux md RAID member (the superblock version: 0.90, 1.0, 1.1 or 1.2).
    MdRaid(&'static str),
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
            Signature::Vfat(n) => write!(f, "a {n} (vfat) filesystem"),
            Signature::Exfat => f.write_str("an exfat filesystem"),
            Signature::Ntfs => f.write_str("an ntfs filesystem"),
            Signature::F2fs => f.write_str("an f2fs filesystem"),
            Signature::Lvm2 => f.write_str("an LVM2 physical volume"),
            Signature::MdRaid(v) => write!(f, "a Linux md RAID member (superblock {v})"),
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

/// The md RAID superblock magic (little-endian on disk for 1.x; host order for 0.90, which
/// on the machines sixfs runs on is little-endian).
const MD_MAGIC: u32 = 0xa92b_4efc;

/// The FAT variant a boot sector announces, if it is one: an x86 jump, a sane sector size and
/// cluster size, and the `FAT..` type string where FAT12/16 or FAT32 keep it.
fn fat_kind(head: &[u8]) -> Option<&'static str> {
    let jump = at(head, 0, 3)?;
    if !(jump[0] == 0xeb && jump[2] == 0x90 || jump[0] == 0xe9) {
        return None;
    }
    let sector = le16(head, 11)?;
    let cluster = *at(head, 13, 1)?.first()?;
    if !matches!(sector, 512 | 1024 | 2048 | 4096) || !cluster.is_power_of_two() {
        return None;
    }
    if at(head, 82, 5) == Some(&b"FAT32"[..]) {
        return Some("FAT32");
    }
    match at(head, 54, 8)? {
        b"FAT12   " => Some("FAT12"),
        b"FAT16   " => Some("FAT16"),
        b"FAT     " => Some("FAT"),
        _ => None,
    }
}

/// Every signature found in `head`, the first bytes of a device (up to [`PROBE_BYTES`]).
pub fn probe(head: &[u8]) -> Vec<Signature> {
    let mut found = Vec::new();
    let sb = usize::try_from(SB_PRIMARY_OFFSET).unwrap_or(usize::MAX);
    let backup = sb.saturating_add(SB_MAX_BYTES as usize);
    if at(head, sb, 16) == Some(&SB_MAGIC[..]) || at(head, backup, 16) == Some(&SB_MAGIC[..]) {
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
    // Boot-sector filesystems: the OEM name at 3 says exFAT or NTFS; FAT by its BPB.
    if at(head, 3, 8) == Some(&b"EXFAT   "[..]) {
        found.push(Signature::Exfat);
    } else if at(head, 3, 8) == Some(&b"NTFS    "[..]) {
        found.push(Signature::Ntfs);
    } else if let Some(kind) = fat_kind(head) {
        found.push(Signature::Vfat(kind));
    }
    // f2fs: superblock at 1024, magic 0xF2F52010.
    if le32(head, 1024) == Some(0xf2f5_2010) {
        found.push(Signature::F2fs);
    }
    // LVM2: "LABELONE" at the start of one of the first four sectors, type "LVM2 001" at 24.
    if (0..4).any(|s| {
        at(head, s * 512, 8) == Some(&b"LABELONE"[..])
            && at(head, s * 512 + 24, 8) == Some(&b"LVM2 001"[..])
    }) {
        found.push(Signature::Lvm2);
    }
    // md RAID 1.1 (at 0) and 1.2 (at 4096): magic, then major version 1.
    for (off, v) in [(0usize, "1.1"), (4096, "1.2")] {
        if le32(head, off) == Some(MD_MAGIC) && le32(head, off + 4) == Some(1) {
            found.push(Signature::MdRaid(v));
        }
    }
    // GPT: header at LBA 1, on 512-byte or 4 KiB sectors.
    if at(head, 512, 8) == Some(&b"EFI PART"[..]) || at(head, 4096, 8) == Some(&b"EFI PART"[..]) {
        found.push(Signature::Gpt);
    } else if at(head, 510, 2) == Some(&[0x55, 0xaa][..]) && !found.iter().any(is_boot_sector) {
        // A DOS label: at least one partition entry with a type and a size (a FAT/NTFS boot
        // sector also ends in 55 aa, and its code can look like entries).
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

fn is_boot_sector(s: &Signature) -> bool {
    matches!(s, Signature::Vfat(_) | Signature::Exfat | Signature::Ntfs)
}

/// Signatures kept at the end of a device of `dev_size` bytes, found in `tail`, its last
/// bytes (up to [`TAIL_PROBE_BYTES`]; fewer on a small device): md RAID 0.90 and 1.0
/// superblocks, a backup GPT header (512-byte or 4 KiB sectors), a sixfs end copy.
pub fn probe_tail(tail: &[u8], dev_size: u64) -> Vec<Signature> {
    let mut found = Vec::new();
    let Some(base) = dev_size.checked_sub(tail.len() as u64) else {
        return found;
    };
    // Device offset -> index in `tail`.
    let ix = |off: u64| -> Option<usize> { usize::try_from(off.checked_sub(base)?).ok() };
    let sixfs_end = dev_size.saturating_sub(u64::from(SB_MAX_BYTES)) & !4095;
    if dev_size >= u64::from(SB_MAX_BYTES) + SB_PRIMARY_OFFSET
        && ix(sixfs_end).and_then(|i| at(tail, i, 16)) == Some(&SB_MAGIC[..])
    {
        found.push(Signature::Sixfs);
    }
    // md 0.90: the last 64 KiB-aligned 64 KiB block; 1.0: 8 KiB from the end, 4 KiB aligned.
    if dev_size >= 128 << 10 {
        let v090 = (dev_size & !0xffff) - 0x10000;
        if ix(v090).and_then(|i| le32(tail, i)) == Some(MD_MAGIC) {
            found.push(Signature::MdRaid("0.90"));
        }
    }
    if dev_size >= 12 << 10 {
        let v10 = (dev_size - 8192) & !4095;
        if ix(v10).and_then(|i| le32(tail, i)) == Some(MD_MAGIC)
            && ix(v10 + 4).and_then(|i| le32(tail, i)) == Some(1)
        {
            found.push(Signature::MdRaid("1.0"));
        }
    }
    for sector in [512u64, 4096] {
        if let Some(off) = dev_size.checked_sub(sector)
            && ix(off).and_then(|i| at(tail, i, 8)) == Some(&b"EFI PART"[..])
        {
            found.push(Signature::Gpt);
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(h: &mut [u8], at: usize, v: &[u8]) {
        h[at..at + v.len()].copy_from_slice(v);
    }

    #[test]
    fn zeros_and_short_input_have_no_signature() {
        assert!(probe(&[0u8; PROBE_BYTES]).is_empty());
        assert!(probe(&[]).is_empty());
        assert!(probe(&[0x55; 100]).is_empty());
        assert!(probe_tail(&[0u8; TAIL_PROBE_BYTES], 1 << 30).is_empty());
        assert!(probe_tail(&[], 0).is_empty());
        assert!(
            probe_tail(&[0u8; 100], 10).is_empty(),
            "tail longer than the device"
        );
        assert!(probe_tail(&[0xff; 5000], 5000).is_empty());
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

    /// A FAT boot sector as mkfs.vfat writes it: jump, OEM name, BPB, type string, 55 aa.
    fn fat_boot(kind: &[u8; 8], at_32: bool) -> Vec<u8> {
        let mut h = vec![0u8; PROBE_BYTES];
        put(&mut h, 0, &[0xeb, 0x3c, 0x90]);
        put(&mut h, 3, b"mkfs.fat");
        put(&mut h, 11, &512u16.to_le_bytes());
        h[13] = 4;
        put(&mut h, if at_32 { 82 } else { 54 }, kind);
        // Boot code that happens to look like a partition entry.
        put(
            &mut h,
            446,
            &[
                0x80, 1, 1, 0, 0x0e, 0xfe, 0xff, 0xff, 0, 8, 0, 0, 0, 0, 1, 0,
            ],
        );
        put(&mut h, 510, &[0x55, 0xaa]);
        h
    }

    #[test]
    fn recognises_boot_sector_filesystems() {
        assert_eq!(
            probe(&fat_boot(b"FAT12   ", false)),
            vec![Signature::Vfat("FAT12")]
        );
        assert_eq!(
            probe(&fat_boot(b"FAT16   ", false)),
            vec![Signature::Vfat("FAT16")]
        );
        assert_eq!(
            probe(&fat_boot(b"FAT32   ", true)),
            vec![Signature::Vfat("FAT32")]
        );
        // No jump instruction, or a nonsense sector size: not FAT (but still an MBR here).
        let mut h = fat_boot(b"FAT16   ", false);
        h[0] = 0;
        assert_eq!(probe(&h), vec![Signature::Mbr]);
        let mut h = fat_boot(b"FAT16   ", false);
        put(&mut h, 11, &700u16.to_le_bytes());
        assert_eq!(probe(&h), vec![Signature::Mbr]);

        let mut h = fat_boot(b"\0\0\0\0\0\0\0\0", false);
        put(&mut h, 3, b"EXFAT   ");
        assert_eq!(probe(&h), vec![Signature::Exfat]);
        put(&mut h, 3, b"NTFS    ");
        assert_eq!(probe(&h), vec![Signature::Ntfs]);
    }

    #[test]
    fn recognises_volume_and_raid_signatures() {
        let mut h = vec![0u8; PROBE_BYTES];
        put(&mut h, 1024, &0xf2f5_2010u32.to_le_bytes());
        assert_eq!(probe(&h), vec![Signature::F2fs]);

        for sector in 0..4 {
            let mut h = vec![0u8; PROBE_BYTES];
            put(&mut h, sector * 512, b"LABELONE");
            put(&mut h, sector * 512 + 24, b"LVM2 001");
            assert_eq!(probe(&h), vec![Signature::Lvm2], "sector {sector}");
        }
        let mut h = vec![0u8; PROBE_BYTES];
        put(&mut h, 512, b"LABELONE");
        assert!(probe(&h).is_empty(), "a label without the LVM2 type");

        for (off, v) in [(0usize, "1.1"), (4096, "1.2")] {
            let mut h = vec![0u8; PROBE_BYTES];
            put(&mut h, off, &MD_MAGIC.to_le_bytes());
            put(&mut h, off + 4, &1u32.to_le_bytes());
            assert_eq!(probe(&h), vec![Signature::MdRaid(v)]);
        }

        // GPT on a 4 KiB-sector device: the header at byte 4096.
        let mut h = vec![0u8; PROBE_BYTES];
        put(&mut h, 4096, b"EFI PART");
        put(&mut h, 510, &[0x55, 0xaa]);
        assert_eq!(probe(&h), vec![Signature::Gpt]);

        // A sixfs whose primary is damaged: the backup's magic is enough.
        let mut h = vec![0u8; PROBE_BYTES];
        put(&mut h, 4096 + 65536, &SB_MAGIC);
        assert_eq!(probe(&h), vec![Signature::Sixfs]);
    }

    #[test]
    fn recognises_signatures_at_the_end() {
        let size: u64 = (1 << 30) + 12345 * 512;
        let base = size - TAIL_PROBE_BYTES as u64;
        let idx = |off: u64| usize::try_from(off - base).unwrap();

        let mut t = vec![0u8; TAIL_PROBE_BYTES];
        put(
            &mut t,
            idx((size & !0xffff) - 0x10000),
            &MD_MAGIC.to_le_bytes(),
        );
        assert_eq!(probe_tail(&t, size), vec![Signature::MdRaid("0.90")]);

        let mut t = vec![0u8; TAIL_PROBE_BYTES];
        let v10 = idx((size - 8192) & !4095);
        put(&mut t, v10, &MD_MAGIC.to_le_bytes());
        put(&mut t, v10 + 4, &1u32.to_le_bytes());
        assert_eq!(probe_tail(&t, size), vec![Signature::MdRaid("1.0")]);

        for sector in [512u64, 4096] {
            let mut t = vec![0u8; TAIL_PROBE_BYTES];
            put(&mut t, idx(size - sector), b"EFI PART");
            assert_eq!(probe_tail(&t, size), vec![Signature::Gpt]);
        }

        let mut t = vec![0u8; TAIL_PROBE_BYTES];
        put(&mut t, idx((size - 65536) & !4095), &SB_MAGIC);
        assert_eq!(probe_tail(&t, size), vec![Signature::Sixfs]);

        // A device smaller than the window: the tail is the whole device.
        let mut t = vec![0u8; 200 << 10];
        t.truncate(150 << 10);
        let size = t.len() as u64;
        put(
            &mut t,
            usize::try_from((size & !0xffff) - 0x10000).unwrap(),
            &MD_MAGIC.to_le_bytes(),
        );
        assert_eq!(probe_tail(&t, size), vec![Signature::MdRaid("0.90")]);
    }
}
