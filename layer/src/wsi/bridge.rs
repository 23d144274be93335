//! The sync bridge: explicit Vulkan synchronization in and out of a
//! dma-buf's implicit fences, exactly as `DESIGN.md` ("One frame, as data")
//! describes.
//!
//! * Present: the render's sync_file (the present submission's semaphore,
//!   exported with [`export_semaphore`]) becomes the dma-buf's write fence
//!   ([`attach_write_fence`]), so every implicit-sync consumer waits for the
//!   render without anyone waiting on the CPU.
//! * Acquire: every fence a writer of the dma-buf must wait for (the
//!   consumer's reads and writes) comes out as one sync_file
//!   ([`writer_fence`]) and goes into the acquire semaphore and/or fence as
//!   a temporary payload ([`import_acquire`]).
//! * CPU fallback (a kernel without the ioctls, or `SYNCFILE_WSI_SYNC=cpu`):
//!   acquire waits with `poll(2)` on the dma-buf ([`wait_for_writer`]) and
//!   imports an already signalled payload (`None`).
//!
//! * Consumers (through the platform interface): a consumer that waits for
//!   implicit fences as a compositor's GPU would asks [`render_done`] or
//!   polls [`render_done_poll`]; the release fence of an explicit-sync
//!   protocol goes into the dma-buf as a read fence ([`carry_release_fence`]);
//!   one that takes a fence with every frame gets a signalled one for a
//!   render already complete ([`signalled_fence`]);
//!   a capture reads the pixels under [`cpu_read`].
//!
//! The kernel half takes plain dma-bufs and sync_files, so tests can feed
//! it a pending vgem fence in place of a driver's export.

use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};
use std::time::{Duration, Instant};

use ash::vk;
use rustix::event::{PollFd, PollFlags};
use syncfile::{Access, CpuAccess, DmaBuf, SyncFile};

use crate::plumbing::stats::{self, Counter, Wait};
use crate::vulkan::device::ExtFns;

/// A driver export that took longer than this waited for the GPU (lavapipe
/// waits for the whole device), and is counted as a CPU wait.
const SLOW_EXPORT: Duration = Duration::from_micros(100);

/// Present, kernel half: adds `render` to `dma_buf` as a write fence, so
/// every later implicit-sync access waits for it.
pub fn attach_write_fence<Fd: AsFd>(
    dma_buf: &DmaBuf<Fd>,
    render: &SyncFile,
) -> syncfile::Result<()> {
    dma_buf.import_sync_file(render, Access::Write)?;
    stats::count(Counter::ImportedIntoDmaBufsWrite);
    Ok(())
}

/// Acquire, kernel half: one sync_file with every fence a writer of
/// `dma_buf` must wait for, right now.
pub fn writer_fence<Fd: AsFd>(dma_buf: &DmaBuf<Fd>) -> syncfile::Result<SyncFile> {
    let f = dma_buf.export_sync_file(Access::Write)?;
    stats::count(Counter::ExportedFromDmaBufs);
    Ok(f)
}

/// Acquire, kernel half, as the layer calls it: [`writer_fence`], or
/// `None` when every access of `dma_buf` is already done (one `poll(2)`,
/// cheaper than an export and a descriptor, and the same answer: an
/// already signalled payload).
pub fn writer_fence_unless_idle<Fd: AsFd>(
    dma_buf: &DmaBuf<Fd>,
) -> syncfile::Result<Option<SyncFile>> {
    if dma_buf.is_ready(Access::Write)? {
        stats::count(Counter::AcquiresIdle);
        return Ok(None);
    }
    writer_fence(dma_buf).map(Some)
}

/// Acquire, CPU fallback: waits until every access of `dma_buf` is done
/// or `deadline` passes (`None`: for as long as it takes); `Ok(false)` if
/// it passed first.
pub fn wait_for_writer<Fd: AsFd>(
    dma_buf: &DmaBuf<Fd>,
    deadline: Option<Instant>,
) -> syncfile::Result<bool> {
    if dma_buf.is_ready(Access::Write)? {
        return Ok(true);
    }
    let start = Instant::now();
    let timeout = deadline.map(|d| d.saturating_duration_since(start));
    let ready = dma_buf.wait(Access::Write, timeout)?;
    stats::waited(Wait::DmaBufPoll, start.elapsed());
    Ok(ready)
}

/// Present, Vulkan half: the payload of `semaphore`, whose signal is
/// pending or done, as a sync_file; `None` when the driver says it has
/// already signalled (fd -1: nothing to import). The export resets the
/// semaphore.
///
/// # Safety
/// `semaphore` is a binary semaphore of `device` created exportable as
/// SYNC_FD, with a signal operation submitted.
pub unsafe fn export_semaphore(
    device: vk::Device,
    ext: &ExtFns,
    semaphore: vk::Semaphore,
) -> Result<Option<SyncFile>, vk::Result> {
    let info = vk::SemaphoreGetFdInfoKHR::default()
        .semaphore(semaphore)
        .handle_type(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD);
    let mut fd = -1;
    let start = Instant::now();
    // SAFETY: the caller's semaphore and device; fd is valid for writing.
    let r = unsafe { (ext.semaphore_fd.get_semaphore_fd_khr)(device, &info, &mut fd) };
    let took = start.elapsed();
    if took > SLOW_EXPORT {
        stats::waited(Wait::DriverSemaphoreExport, took);
    }
    if r != vk::Result::SUCCESS {
        return Err(r);
    }
    if fd < 0 {
        stats::count(Counter::ExportedAlreadySignalled);
        return Ok(None);
    }
    stats::count(Counter::ExportedFromSemaphores);
    // SAFETY: a successful export hands the caller a new descriptor.
    Ok(Some(SyncFile::from(unsafe { OwnedFd::from_raw_fd(fd) })))
}

/// Acquire, Vulkan half: makes `semaphore` and/or `fence` (either may be
/// null) wait for `fence_file` as a temporary SYNC_FD payload; `None`
/// imports an already signalled one (fd -1). Needs a second descriptor
/// when both are given, since an import takes its descriptor.
///
/// # Safety
/// `semaphore` and `fence` are null or unsignalled objects of `device`
/// with no pending operation, as `vkAcquireNextImageKHR` requires.
pub unsafe fn import_acquire(
    device: vk::Device,
    ext: &ExtFns,
    semaphore: vk::Semaphore,
    fence: vk::Fence,
    fence_file: Option<SyncFile>,
) -> Result<(), vk::Result> {
    let (for_semaphore, for_fence) = match fence_file {
        None => (None, None),
        Some(f) if semaphore != vk::Semaphore::null() && fence != vk::Fence::null() => {
            let second = f
                .try_clone()
                .map_err(|_| vk::Result::ERROR_OUT_OF_HOST_MEMORY)?;
            (Some(f), Some(second))
        }
        Some(f) if semaphore != vk::Semaphore::null() => (Some(f), None),
        Some(f) => (None, Some(f)),
    };
    if semaphore != vk::Semaphore::null() {
        let fd = into_raw(for_semaphore);
        let info = vk::ImportSemaphoreFdInfoKHR::default()
            .semaphore(semaphore)
            .flags(vk::SemaphoreImportFlags::TEMPORARY)
            .handle_type(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD)
            .fd(fd);
        // SAFETY: the caller's semaphore; fd is a sync_file or -1.
        let r = unsafe { (ext.semaphore_fd.import_semaphore_fd_khr)(device, &info) };
        if r != vk::Result::SUCCESS {
            close_raw(fd);
            drop(for_fence);
            return Err(r);
        }
        stats::count(Counter::ImportedIntoSemaphores);
    }
    if fence != vk::Fence::null() {
        let fd = into_raw(for_fence);
        let info = vk::ImportFenceFdInfoKHR::default()
            .fence(fence)
            .flags(vk::FenceImportFlags::TEMPORARY)
            .handle_type(vk::ExternalFenceHandleTypeFlags::SYNC_FD)
            .fd(fd);
        // SAFETY: the caller's fence; fd is a sync_file or -1.
        let r = unsafe { (ext.fence_fd.import_fence_fd_khr)(device, &info) };
        if r != vk::Result::SUCCESS {
            close_raw(fd);
            return Err(r);
        }
        stats::count(Counter::ImportedIntoFences);
    }
    Ok(())
}

/// Consumer: whether the render into `dma_buf` is done (every writer's
/// fence has signalled), so an implicit-sync reader may look.
pub fn render_done<Fd: AsFd>(dma_buf: &DmaBuf<Fd>) -> syncfile::Result<bool> {
    dma_buf.is_ready(Access::Read)
}

/// Consumer: waits until the render into `dma_buf` is done or `timeout`
/// passes (`None`: for as long as it takes); `Ok(false)` if it passed.
pub fn wait_for_render<Fd: AsFd>(
    dma_buf: &DmaBuf<Fd>,
    timeout: Option<Duration>,
) -> syncfile::Result<bool> {
    dma_buf.wait(Access::Read, timeout)
}

/// Consumer: what to `poll(2)` to wake when the render into `dma_buf` is
/// done, together with whatever else the consumer waits for.
pub fn render_done_poll<Fd: AsFd>(dma_buf: &DmaBuf<Fd>) -> PollFd<'_> {
    PollFd::from_borrowed_fd(dma_buf.as_fd(), PollFlags::IN)
}

/// Consumer: an already signalled sync_file, for a consumer that takes one
/// fence with every frame (a KMS plane's `IN_FENCE_FD`) when the render was
/// complete before its present (a driver's export gave no file): the
/// export of `idle`, a dma-buf that no one ever fences, is the kernel's
/// signalled stub fence.
pub fn signalled_fence<Fd: AsFd>(idle: &DmaBuf<Fd>) -> syncfile::Result<SyncFile> {
    idle.export_sync_file(Access::Read)
}

/// Consumer: carries the release fence of an explicit-sync protocol into
/// the image's dma-buf, as a *read* fence: that is what it is (the
/// consumer reading the image), so the next writer's export (acquire's
/// WRITE export, which returns readers and writers) waits for it, while a
/// reader would not. Fences are only ever added, so this cannot shorten
/// any wait already there.
pub fn carry_release_fence<Fd: AsFd>(
    dma_buf: &DmaBuf<Fd>,
    release: &SyncFile,
) -> syncfile::Result<()> {
    dma_buf.import_sync_file(release, Access::Read)?;
    stats::count(Counter::ImportedIntoDmaBufsRead);
    Ok(())
}

/// Consumer: CPU read access to `dma_buf` (cache coherency for a mapping),
/// for as long as the returned guard lives.
pub fn cpu_read<Fd: AsFd>(dma_buf: &DmaBuf<Fd>) -> syncfile::Result<CpuAccess<'_, Fd>> {
    dma_buf.cpu_access(Access::Read)
}

/// The descriptor of `f` for an import, which takes it on success; -1
/// (already signalled) for `None`.
fn into_raw(f: Option<SyncFile>) -> i32 {
    f.map_or(-1, |f| OwnedFd::from(f).into_raw_fd())
}

/// Closes a descriptor an import refused (and so did not take).
fn close_raw(fd: i32) {
    if fd >= 0 {
        // SAFETY: `fd` came from `into_raw` and the failed import left it ours.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
    }
}
