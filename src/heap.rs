//! dma-bufs from a dma-heap (`/dev/dma_heap/<name>`): memory that no device
//! owns, for a consumer that allocates the buffers it reads (an encoder's
//! pool, a headless display) and lends them to a producer.

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

use crate::error::Result;
use crate::DmaBuf;

/// The directory of the heaps' device nodes.
pub const DIR: &str = "/dev/dma_heap";

/// The heap of page-backed system memory, which every kernel with
/// `CONFIG_DMABUF_HEAPS_SYSTEM` has; its buffers support mapping and CPU
/// access.
pub const SYSTEM: &str = "system";

/// An open dma-heap.
#[derive(Debug)]
pub struct DmaHeap {
    fd: OwnedFd,
}

impl DmaHeap {
    /// Opens the heap `name` (such as [`SYSTEM`]).
    ///
    /// ```
    /// use syncfile::heap::{DmaHeap, SYSTEM};
    ///
    /// // Many machines have no heap, or keep it for root.
    /// let Ok(heap) = DmaHeap::open(SYSTEM) else {
    ///     return Ok(());
    /// };
    /// let buffer = heap.alloc(4096)?;
    /// assert!(syncfile::is_dma_buf(&buffer)?);
    /// # Ok::<(), syncfile::Error>(())
    /// ```
    pub fn open(name: &str) -> Result<DmaHeap> {
        let path = format!("{DIR}/{name}");
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(DmaHeap { fd })
    }

    /// A new dma-buf of at least `len` bytes (the heap rounds up to whole
    /// pages), readable, writable and closed on exec (`DMA_HEAP_IOCTL_ALLOC`).
    pub fn alloc(&self, len: usize) -> Result<DmaBuf> {
        let fd = crate::ioctl::dma_heap_alloc(self.fd.as_fd(), len as u64)?;
        Ok(DmaBuf::from(fd))
    }
}
