//! dma-bufs over ordinary memory: a sealed memfd made into a dma-buf by
//! `/dev/udmabuf`.

use std::os::fd::AsFd;

use rustix::fs::{Mode, OFlags};

use crate::error::Result;
use crate::DmaBuf;

/// The udmabuf device node.
pub const PATH: &str = "/dev/udmabuf";

/// A new dma-buf of `len` bytes rounded up to whole pages: a memfd of that
/// size, sealed against shrinking (udmabuf refuses memory that could vanish
/// under it), wrapped by `UDMABUF_CREATE`. The memfd is closed again; the
/// dma-buf keeps its pages.
pub fn alloc(len: usize) -> Result<DmaBuf> {
    let page = rustix::param::page_size();
    let size = len.max(1).div_ceil(page) * page;
    let memfd = rustix::fs::memfd_create(
        "syncfile-udmabuf",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )?;
    rustix::fs::ftruncate(&memfd, size as u64)?;
    rustix::fs::fcntl_add_seals(&memfd, rustix::fs::SealFlags::SHRINK)?;
    let device = rustix::fs::open(PATH, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())?;
    let fd = super::uapi::udmabuf_create(device.as_fd(), memfd.as_fd(), size as u64)?;
    Ok(DmaBuf::from(fd))
}
