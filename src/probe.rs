//! Does this kernel have the dma-buf sync_file ioctls?

use std::os::fd::AsFd;
use std::sync::OnceLock;

use crate::dma_buf::{Access, DmaBuf};
use crate::error::{Error, Result};

/// Whether the kernel has `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` and
/// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` (Linux 6.0+ built with
/// `CONFIG_SYNC_FILE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Support {
    /// Both ioctls exist.
    Available,
    /// The kernel answered `ENOTTY` on a dma-buf: use a fallback (wait with
    /// `poll(2)` on the dma-buf, or on the CPU).
    Unavailable,
}

static SUPPORT: OnceLock<Support> = OnceLock::new();

/// Asks the kernel, once per process, whether it has the sync_file ioctls.
///
/// The question needs a real dma-buf, so the first call exports a sync_file
/// with [`Access::Read`] from `dma_buf` (which changes nothing on the
/// buffer) and closes it. Its answer is kept; later calls return it without
/// a system call, whatever they are passed.
///
/// Only a kernel without the ioctls gives [`Support::Unavailable`]; every
/// other failure (`dma_buf` is not a dma-buf, is closed, the process is out
/// of descriptors) is returned as the error it is and not remembered, so a
/// later call with a good buffer can still answer.
pub fn probe(dma_buf: impl AsFd) -> Result<Support> {
    if let Some(support) = SUPPORT.get() {
        return Ok(*support);
    }
    let support = match DmaBuf::new(dma_buf.as_fd()).export_sync_file(Access::Read) {
        Ok(_) => Support::Available,
        Err(Error::Unsupported) => Support::Unavailable,
        Err(error) => return Err(error),
    };
    Ok(*SUPPORT.get_or_init(|| support))
}

/// The answer of an earlier [`probe`], if one has been found.
pub fn cached() -> Option<Support> {
    SUPPORT.get().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_other_than_enotty_are_not_remembered() {
        let (pipe, _writer) = rustix::pipe::pipe().unwrap();
        assert_eq!(probe(&pipe), Err(Error::NotADmaBuf));
        assert_eq!(cached(), None);
    }
}
