//! vgem, the virtual GEM driver: dma-bufs with fences that the caller
//! signals, the way to have *pending* fences without a GPU.
//!
//! vgem's fences are ordinary `dma_fence`s on the buffer's reservation
//! object, exactly where a GPU driver would put them; the kernel signals
//! one by itself after 10 seconds, and all of a device file's fences when
//! it is closed.

use std::os::fd::AsFd;
use std::sync::Arc;

use rustix::io::Errno;

use super::uapi;
use crate::error::{Error, Result};
use crate::kms::{Card, Handle};
use crate::{Access, DmaBuf, SyncFile};

/// An open vgem *card* node (its render node refuses dumb buffers).
#[derive(Debug, Clone)]
pub struct Vgem {
    card: Arc<Card>,
}

impl Vgem {
    /// Opens the first `/dev/dri/card*` whose driver (`DRM_IOCTL_VERSION`)
    /// is `vgem`. vgem's card has no `device/driver` link in sysfs, so
    /// asking each card is the way to find it. Fails with `ENODEV` when
    /// there is none (the `vgem` module is not loaded).
    pub fn open() -> Result<Vgem> {
        Ok(Vgem {
            card: Arc::new(Card::find("vgem")?),
        })
    }

    /// A new zero-filled buffer of at least `len` bytes, made as a dumb
    /// buffer (`DRM_IOCTL_MODE_CREATE_DUMB`, one row of 32-bit pixels).
    pub fn create_buffer(&self, len: usize) -> Result<VgemBuffer> {
        let pixels = u32::try_from(len.max(1).div_ceil(4)).map_err(|_| Error::Os(Errno::INVAL))?;
        let handle = self.card.create_dumb(pixels, 1, 32)?.handle;
        Ok(VgemBuffer {
            card: Arc::clone(&self.card),
            handle,
        })
    }

    /// A sync_file holding exactly one new unsignalled fence, and that
    /// fence: a write fence attached to a buffer of its own and exported
    /// with [`Access::Write`]. This is how tests get a *pending* sync_file
    /// without a GPU or `sw_sync`.
    pub fn pending_sync_file(&self) -> Result<(VgemFence, SyncFile)> {
        let buffer = self.create_buffer(4)?;
        let fence = buffer.attach_fence(Access::Write)?;
        let sync_file = buffer.export()?.export_sync_file(Access::Write)?;
        Ok((fence, sync_file))
    }
}

/// A vgem buffer object, held by its GEM handle; dropping it closes the
/// handle (`DRM_IOCTL_GEM_CLOSE`), while dma-bufs exported from it live on.
#[derive(Debug)]
pub struct VgemBuffer {
    card: Arc<Card>,
    handle: Handle,
}

impl VgemBuffer {
    /// The buffer as a dma-buf ([`Card::export`]): every export shares one
    /// reservation object, so they all see the same fences.
    pub fn export(&self) -> Result<DmaBuf> {
        self.card.export(self.handle)
    }

    /// `DRM_IOCTL_VGEM_FENCE_ATTACH`: adds a new unsignalled fence to the
    /// buffer, as a write fence for [`Access::Write`] and
    /// [`Access::ReadWrite`] (every later access waits for it) or as a read
    /// fence for [`Access::Read`] (only later writers wait).
    ///
    /// vgem refuses with `EBUSY` a fence that would have to wait for an
    /// unsignalled one already there: a write fence beside any pending
    /// fence, a read fence beside a pending write fence.
    pub fn attach_fence(&self, access: Access) -> Result<VgemFence> {
        let flags = match access {
            Access::Read => 0,
            Access::Write | Access::ReadWrite => uapi::VGEM_FENCE_WRITE,
        };
        let id = uapi::vgem_fence_attach(self.card.as_fd(), self.handle.0, flags)?;
        Ok(VgemFence {
            card: Arc::clone(&self.card),
            id: Some(id),
        })
    }
}

impl Drop for VgemBuffer {
    fn drop(&mut self) {
        // A handle that is already gone changes nothing; there is no one to
        // tell from a destructor.
        let _ = self.card.close_handle(self.handle);
    }
}

/// An unsignalled vgem fence. [`VgemFence::signal`] signals it; dropping it
/// signals it too, so a failing test never leaves a buffer blocked until
/// vgem's 10-second timeout.
#[derive(Debug)]
pub struct VgemFence {
    card: Arc<Card>,
    id: Option<u32>,
}

impl VgemFence {
    /// `DRM_IOCTL_VGEM_FENCE_SIGNAL`: signals the fence. Fails with
    /// `ETIMEDOUT` if vgem's timeout had already signalled it.
    pub fn signal(mut self) -> Result<()> {
        self.signal_once()
    }

    fn signal_once(&mut self) -> Result<()> {
        match self.id.take() {
            Some(id) => uapi::vgem_fence_signal(self.card.as_fd(), id).map_err(Error::Os),
            None => Ok(()),
        }
    }
}

impl Drop for VgemFence {
    fn drop(&mut self) {
        // Best effort: the fence may have timed out on its own already.
        let _ = self.signal_once();
    }
}
