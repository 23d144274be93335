//! [`FencedBuffer`]: a dma-buf from any source that tests can put pending
//! fences on.

use super::vgem::{Vgem, VgemBuffer, VgemFence};
use super::Source;
use crate::error::Result;
use crate::{Access, DmaBuf};

/// A dma-buf from one [`Source`] plus a vgem device that makes pending
/// fences for it, so one test body can run on every source.
///
/// On a vgem buffer, [`FencedBuffer::attach_fence`] attaches the fence to
/// the buffer itself, as a driver would; on the others it imports a
/// pending vgem sync_file with the same access. Either way the buffer ends
/// up with one more fence of that usage. One difference stays: vgem
/// refuses to attach a fence that would wait for a pending one (`EBUSY`),
/// while an import takes anything.
#[derive(Debug)]
pub struct FencedBuffer {
    dma_buf: DmaBuf,
    vgem: Vgem,
    bo: Option<VgemBuffer>,
}

impl FencedBuffer {
    /// A new buffer of at least `len` bytes from `source`; `vgem` makes the
    /// fences (and, for [`Source::Vgem`], the buffer).
    pub fn new(source: Source, vgem: &Vgem, len: usize) -> Result<FencedBuffer> {
        let (dma_buf, bo) = match source {
            Source::Vgem => {
                let bo = vgem.create_buffer(len)?;
                (bo.export()?, Some(bo))
            }
            Source::Heap | Source::Udmabuf => (source.alloc(len)?, None),
        };
        Ok(FencedBuffer {
            dma_buf,
            vgem: vgem.clone(),
            bo,
        })
    }

    /// The dma-buf.
    pub fn dma_buf(&self) -> &DmaBuf {
        &self.dma_buf
    }

    /// Puts a new unsignalled fence on the buffer as an access of this
    /// kind (read usage for [`Access::Read`], write usage otherwise) and
    /// returns it, to be signalled when the test says so.
    pub fn attach_fence(&self, access: Access) -> Result<VgemFence> {
        if let Some(bo) = &self.bo {
            return bo.attach_fence(access);
        }
        let (fence, sync_file) = self.vgem.pending_sync_file()?;
        self.dma_buf.import_sync_file(&sync_file, access)?;
        Ok(fence)
    }
}
