//! dma-bufs from the system dma-heap (`/dev/dma_heap/system`).

use crate::error::Result;
use crate::heap::DmaHeap;
use crate::DmaBuf;

/// The system heap's device node: page-backed buffers, no device needed.
pub const PATH: &str = "/dev/dma_heap/system";

/// A new dma-buf of at least `len` bytes from the system heap (see
/// [`DmaHeap::alloc`]). Its exporter supports mapping and CPU access.
pub fn alloc(len: usize) -> Result<DmaBuf> {
    DmaHeap::open(crate::heap::SYSTEM)?.alloc(len)
}
