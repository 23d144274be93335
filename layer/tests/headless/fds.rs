//! This process's own descriptors and memory, as the kernel lists them: how
//! the tests count leaks and find the layer's dma-bufs (the layer runs in
//! the test's process, so its image dma-bufs are among our descriptors).

use std::collections::BTreeSet;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use syncfile::DmaBuf;

use crate::common::child::Result;

/// Descriptor numbers open in this process right now.
fn open_fds() -> Result<Vec<RawFd>> {
    let mut fds = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        if let Some(n) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            fds.push(n);
        }
    }
    Ok(fds)
}

/// How many descriptors this process has open (the listing's own
/// directory descriptor included, the same each time).
pub fn count() -> Result<usize> {
    Ok(open_fds()?.len())
}

/// The highest descriptor number open in this process (one too high at
/// most: the listing's own descriptor is among those listed).
pub fn highest() -> Result<RawFd> {
    Ok(open_fds()?.into_iter().max().unwrap_or(2))
}

/// `VmRSS` from `/proc/self/status`, in KiB.
pub fn vm_rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS in /proc/self/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmRSS line")?
        .parse()?)
}

/// A dma-buf open in this process: its descriptor number, its inode (the
/// buffer's identity: every descriptor of one dma-buf shares it) and a
/// duplicate descriptor of our own.
pub struct Found {
    pub fd: RawFd,
    pub inode: u64,
    pub dma_buf: DmaBuf,
}

/// Every dma-buf open in this process.
pub fn dma_bufs() -> Result<Vec<Found>> {
    let mut found = Vec::new();
    for fd in open_fds()? {
        // SAFETY: `fd` was open when listed. Another thread (the driver's or
        // the layer's) may close it and reuse the number meanwhile; `dup`
        // then fails or duplicates whatever is there now, which is checked
        // below. Nothing else is done with the borrowed number.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let Ok(dup): std::result::Result<OwnedFd, _> = rustix::io::fcntl_dupfd_cloexec(borrowed, 0)
        else {
            continue;
        };
        if syncfile::is_dma_buf(&dup).unwrap_or(false) {
            let inode = rustix::fs::fstat(&dup)?.st_ino;
            found.push(Found {
                fd,
                inode,
                dma_buf: DmaBuf::new(dup),
            });
        }
    }
    Ok(found)
}

/// The dma-bufs in `after` that were not open (by number and buffer) in
/// `before`: those made in between.
pub fn made_between(before: &[Found], after: Vec<Found>) -> Vec<Found> {
    let old: BTreeSet<(RawFd, u64)> = before.iter().map(|f| (f.fd, f.inode)).collect();
    after
        .into_iter()
        .filter(|f| !old.contains(&(f.fd, f.inode)))
        .collect()
}

/// How many distinct buffers `found` holds.
pub fn distinct(found: &[Found]) -> usize {
    found.iter().map(|f| f.inode).collect::<BTreeSet<_>>().len()
}

/// How many aligned 4-byte pixels of the dma-buf equal `pixel`, read
/// through a mapping inside a CPU-access bracket (which waits only for
/// writers' fences, never for readers').
pub fn count_pixels(dma_buf: &DmaBuf, pixel: [u8; 4]) -> Result<usize> {
    let len = rustix::fs::seek(dma_buf.as_fd(), rustix::fs::SeekFrom::End(0))? as usize;
    let access = dma_buf.cpu_access(syncfile::Access::Read)?;
    // SAFETY: a shared read-only mapping of the whole buffer, unmapped
    // below; the buffer outlives it (we hold a descriptor).
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ,
            rustix::mm::MapFlags::SHARED,
            dma_buf.as_fd(),
            0,
        )?
    };
    // SAFETY: `len` readable bytes at `ptr` until the munmap below. The GPU
    // may write them meanwhile only where the caller checks whether it did.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    let n = bytes.chunks_exact(4).filter(|p| *p == pixel).count();
    // SAFETY: the mapping made above, no longer referenced.
    unsafe { rustix::mm::munmap(ptr, len)? };
    access.finish()?;
    Ok(n)
}

/// A pending vgem write fence imported into every dma-buf open in this
/// process (the layer's images among them: which one a present or acquire
/// picks is the layer's choice), and how many took it.
pub fn fence_every_dma_buf() -> Result<(syncfile::sources::vgem::VgemFence, usize)> {
    let (fence, sync_file) = syncfile::sources::vgem::Vgem::open()?.pending_sync_file()?;
    Ok((fence, import_into_every_dma_buf(&sync_file)?))
}

/// `sync_file` imported as a write fence into every dma-buf open in this
/// process; how many took it.
pub fn import_into_every_dma_buf(sync_file: &syncfile::SyncFile) -> Result<usize> {
    let bufs = dma_bufs()?;
    for b in &bufs {
        b.dma_buf
            .import_sync_file(sync_file, syncfile::Access::Write)?;
    }
    Ok(bufs.len())
}
