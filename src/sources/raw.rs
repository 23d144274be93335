//! The sync_file ioctls with raw flags and descriptors, which the typed API
//! cannot express: for tests that check how the kernel refuses them.
//! Errors are classified exactly as in [`DmaBuf`](crate::DmaBuf).

use std::os::fd::{AsFd, RawFd};

use rustix::io::Errno;

use crate::dma_buf::{dma_buf_error, Op};
use crate::error::{Error, Result};
use crate::SyncFile;

/// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` with any `flags`; the kernel accepts
/// only 1, 2 and 3 and answers [`Error::InvalidAccess`](crate::Error) otherwise.
pub fn export_sync_file(dma_buf: impl AsFd, flags: u32) -> Result<SyncFile> {
    crate::dma_buf::export_raw(dma_buf.as_fd(), flags)
}

/// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` with any `flags` and any descriptor
/// number, even -1; the kernel only looks the number up, so no number can
/// harm memory.
pub fn import_sync_file(dma_buf: impl AsFd, sync_file: RawFd, flags: u32) -> Result<()> {
    crate::dma_buf::import_raw(dma_buf.as_fd(), sync_file, flags)
}

/// The [`Error`] that the export ioctl's `errno` becomes on `dma_buf` with
/// these `flags`: for answers this kernel never gives, above all `ENOTTY`
/// from a kernel before 6.0, which must become [`Error::Unsupported`] on a
/// dma-buf and [`Error::NotADmaBuf`] on anything else.
pub fn export_error(dma_buf: impl AsFd, errno: Errno, flags: u32) -> Error {
    dma_buf_error(dma_buf.as_fd(), errno, Op::Export, flags)
}

/// [`export_error`] for the import ioctl, where `EINVAL` with good flags
/// means the descriptor was not a sync_file.
pub fn import_error(dma_buf: impl AsFd, errno: Errno, flags: u32) -> Error {
    dma_buf_error(dma_buf.as_fd(), errno, Op::Import, flags)
}
