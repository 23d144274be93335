//! dma-bufs from the system dma-heap (`/dev/dma_heap/system`).

use std::os::fd::AsFd;

use rustix::fs::{Mode, OFlags};

use crate::error::Result;
use crate::DmaBuf;

/// The system heap's device node: page-backed buffers, no device needed.
pub const PATH: &str = "/dev/dma_heap/system";

/// `DMA_HEAP_IOCTL_ALLOC` on the system heap: a new dma-buf of at least
/// `len` bytes (the heap rounds up to whole pages), readable, writable and
/// closed on exec. Its exporter supports mapping and CPU access.
pub fn alloc(len: usize) -> Result<DmaBuf> {
    let heap = rustix::fs::open(PATH, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let fd = super::uapi::dma_heap_alloc(heap.as_fd(), len as u64)?;
    Ok(DmaBuf::from(fd))
}
