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
/// The question needs a real dma-buf, so the first call asks both ioctls
/// on `dma_buf`: it exports a sync_file with [`Access::Read`] (the fences a
/// reader waits for) and imports it back as a read fence, which changes
/// nothing anyone waits for: every writer already waits for those fences.
/// Its answer is kept; later calls return it without a system call,
/// whatever they are passed.
///
/// A kernel (or a sandbox) that answers either ioctl with `ENOTTY` gives
/// [`Support::Unavailable`]: the two are one feature, and a layer that
/// can export but not import has no way to hand a render to a reader
/// without waiting for it. Every
/// other failure (`dma_buf` is not a dma-buf, is closed, the process is out
/// of descriptors) is returned as the error it is and not remembered, so a
/// later call with a good buffer can still answer.
///
/// # Example
///
/// Choosing the fallback once, at the first buffer (the [crate's
/// example](crate#example) does it with a real one):
///
/// ```
/// use syncfile::probe::{probe, Support};
/// use syncfile::{Access, DmaBuf, SyncFile};
///
/// fn hand_over(buffer: &DmaBuf, render: &SyncFile) -> syncfile::Result<()> {
///     match probe(buffer)? {
///         Support::Available => buffer.import_sync_file(render, Access::Write),
///         // No ioctls: wait for the render before letting go of the buffer.
///         Support::Unavailable => render.wait(None).map(drop),
///     }
/// }
///
/// // A file that is not a dma-buf tells nothing, and is not remembered.
/// let not_a_buffer = std::fs::File::open("/dev/null")?;
/// assert_eq!(probe(&not_a_buffer), Err(syncfile::Error::NotADmaBuf));
/// assert_eq!(syncfile::probe::cached(), None);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn probe(dma_buf: impl AsFd) -> Result<Support> {
    if let Some(support) = SUPPORT.get() {
        return Ok(*support);
    }
    let dma_buf = DmaBuf::new(dma_buf.as_fd());
    let both = dma_buf
        .export_sync_file(Access::Read)
        .and_then(|fences| dma_buf.import_sync_file(&fences, Access::Read));
    let support = match both {
        Ok(()) => Support::Available,
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
