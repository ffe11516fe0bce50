//! A copy-on-write overlay: reads come from the base device unless the overlay was written
//! there; writes stay in memory; flush does nothing. Lets read-only tools (sixfs-debug,
//! `fsck -n`) open a store — including journal replay — without writing to the device.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{BlockDevice, DevError, check_range, us};

const BLOCK: u64 = 4096;

/// A block device whose writes never reach its base.
#[derive(Debug)]
pub struct OverlayDevice {
    base: Arc<dyn BlockDevice>,
    blocks: Mutex<HashMap<u64, Box<[u8]>>>,
}

impl OverlayDevice {
    /// An overlay over `base`.
    pub fn new(base: Arc<dyn BlockDevice>) -> OverlayDevice {
        OverlayDevice {
            base,
            blocks: Mutex::new(HashMap::new()),
        }
    }

    /// Bytes held in memory.
    pub fn overlay_bytes(&self) -> usize {
        self.blocks.lock().len() * us(BLOCK)
    }
}

impl BlockDevice for OverlayDevice {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), DevError> {
        self.base.read_at(buf, offset)?;
        let m = self.blocks.lock();
        if m.is_empty() {
            return Ok(());
        }
        let end = offset + buf.len() as u64;
        for b in offset / BLOCK..end.div_ceil(BLOCK) {
            if let Some(data) = m.get(&b) {
                let bs = b * BLOCK;
                let from = bs.max(offset);
                let to = (bs + BLOCK).min(end);
                let (f, t) = (us(from - offset), us(to - offset));
                buf[f..t].copy_from_slice(&data[us(from - bs)..us(to - bs)]);
            }
        }
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DevError> {
        check_range(
            self.base.name(),
            "write",
            offset,
            buf.len(),
            self.base.len(),
        )?;
        let end = offset + buf.len() as u64;
        for b in offset / BLOCK..end.div_ceil(BLOCK) {
            let bs = b * BLOCK;
            let mut m = self.blocks.lock();
            if !m.contains_key(&b) {
                drop(m);
                let len = us(BLOCK.min(self.base.len() - bs));
                let mut fresh = vec![0u8; len];
                self.read_at(&mut fresh, bs)?;
                m = self.blocks.lock();
                m.entry(b).or_insert_with(|| fresh.into_boxed_slice());
            }
            let Some(data) = m.get_mut(&b) else { continue };
            let from = bs.max(offset);
            let to = (bs + BLOCK).min(end);
            data[us(from - bs)..us(to - bs)]
                .copy_from_slice(&buf[us(from - offset)..us(to - offset)]);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), DevError> {
        Ok(())
    }

    fn len(&self) -> u64 {
        self.base.len()
    }

    fn logical_block_size(&self) -> u32 {
        self.base.logical_block_size()
    }

    fn name(&self) -> &str {
        self.base.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev::CrashDevice;

    #[test]
    fn writes_stay_in_the_overlay() {
        let base = Arc::new(CrashDevice::new(1 << 16, 512));
        base.write_at(&[1u8; 8192], 0).unwrap();
        let o = OverlayDevice::new(base.clone());
        o.write_at(&[2u8; 100], 4000).unwrap();
        let mut b = vec![0u8; 8192];
        o.read_at(&mut b, 0).unwrap();
        assert!(b[..4000].iter().all(|&x| x == 1));
        assert!(b[4000..4100].iter().all(|&x| x == 2));
        assert!(b[4100..].iter().all(|&x| x == 1));
        base.read_at(&mut b, 0).unwrap();
        assert!(b.iter().all(|&x| x == 1), "the base was written");
    }
}
