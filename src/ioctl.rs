//! The dma-buf, sync_file and dma-heap uapi: ioctl numbers, argument
//! structs (`include/uapi/linux/dma-buf.h`, `include/uapi/linux/sync_file.h`,
//! `include/uapi/linux/dma-heap.h`) and one
//! thin call per ioctl that returns the kernel's errno unchanged. Turning an
//! errno into a typed [`Error`](crate::Error) is the callers' business,
//! because the same errno means different things per ioctl.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::io;
use rustix::ioctl::{ioctl, opcode, Opcode, Setter, Updater};

/// `DMA_BUF_SYNC_READ`: the flag bit for read access.
pub(crate) const SYNC_READ: u32 = 1;
/// `DMA_BUF_SYNC_WRITE`: the flag bit for write access.
pub(crate) const SYNC_WRITE: u32 = 2;
/// `DMA_BUF_SYNC_RW`.
pub(crate) const SYNC_RW: u32 = SYNC_READ | SYNC_WRITE;
/// `DMA_BUF_SYNC_START`, for `DMA_BUF_IOCTL_SYNC`.
pub(crate) const SYNC_START: u64 = 0;
/// `DMA_BUF_SYNC_END`, for `DMA_BUF_IOCTL_SYNC`.
pub(crate) const SYNC_END: u64 = 1 << 2;

/// `struct dma_buf_sync`.
#[repr(C)]
pub(crate) struct DmaBufSync {
    pub(crate) flags: u64,
}

/// `struct dma_buf_export_sync_file` and `struct dma_buf_import_sync_file`,
/// which have the same layout.
#[repr(C)]
pub(crate) struct DmaBufSyncFile {
    pub(crate) flags: u32,
    pub(crate) fd: i32,
}

/// `struct dma_heap_allocation_data`.
#[repr(C)]
pub(crate) struct DmaHeapAllocationData {
    pub(crate) len: u64,
    pub(crate) fd: u32,
    pub(crate) fd_flags: u32,
    pub(crate) heap_flags: u64,
}

/// `struct sync_merge_data`.
#[repr(C)]
pub(crate) struct SyncMergeData {
    pub(crate) name: [u8; 32],
    pub(crate) fd2: i32,
    pub(crate) fence: i32,
    pub(crate) flags: u32,
    pub(crate) pad: u32,
}

/// `struct sync_fence_info`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct SyncFenceInfo {
    pub(crate) obj_name: [u8; 32],
    pub(crate) driver_name: [u8; 32],
    pub(crate) status: i32,
    pub(crate) flags: u32,
    pub(crate) timestamp_ns: u64,
}

/// `struct sync_file_info`.
#[repr(C)]
pub(crate) struct SyncFileInfo {
    pub(crate) name: [u8; 32],
    pub(crate) status: i32,
    pub(crate) flags: u32,
    pub(crate) num_fences: u32,
    pub(crate) pad: u32,
    pub(crate) sync_fence_info: u64,
}

pub(crate) const DMA_BUF_IOCTL_SYNC: Opcode = opcode::write::<DmaBufSync>(b'b', 0);
pub(crate) const DMA_BUF_IOCTL_EXPORT_SYNC_FILE: Opcode =
    opcode::read_write::<DmaBufSyncFile>(b'b', 2);
pub(crate) const DMA_BUF_IOCTL_IMPORT_SYNC_FILE: Opcode = opcode::write::<DmaBufSyncFile>(b'b', 3);
pub(crate) const SYNC_IOC_MERGE: Opcode = opcode::read_write::<SyncMergeData>(b'>', 3);
pub(crate) const SYNC_IOC_FILE_INFO: Opcode = opcode::read_write::<SyncFileInfo>(b'>', 4);
pub(crate) const DMA_HEAP_IOCTL_ALLOC: Opcode =
    opcode::read_write::<DmaHeapAllocationData>(b'H', 0);

/// `DMA_BUF_IOCTL_SYNC` with raw flags (`SYNC_START`/`SYNC_END` | access).
pub(crate) fn dma_buf_sync(fd: BorrowedFd<'_>, flags: u64) -> io::Result<()> {
    // SAFETY: the opcode is `_IOW('b', 0, struct dma_buf_sync)` and `DmaBufSync`
    // mirrors that struct; the kernel only reads it.
    unsafe {
        ioctl(
            fd,
            Setter::<DMA_BUF_IOCTL_SYNC, _>::new(DmaBufSync { flags }),
        )
    }
}

/// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` with raw access flags.
pub(crate) fn dma_buf_export_sync_file(fd: BorrowedFd<'_>, flags: u32) -> io::Result<OwnedFd> {
    let mut arg = DmaBufSyncFile { flags, fd: -1 };
    // SAFETY: the opcode is `_IOWR('b', 2, struct dma_buf_export_sync_file)`
    // and `arg` has that layout and outlives the call.
    unsafe {
        ioctl(
            fd,
            Updater::<DMA_BUF_IOCTL_EXPORT_SYNC_FILE, _>::new(&mut arg),
        )
    }?;
    // SAFETY: on success the kernel installed a new descriptor for us in
    // `arg.fd`; nothing else knows it, so we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(arg.fd) })
}

/// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` with raw access flags and a raw sync_file
/// descriptor, which the kernel only reads (the caller keeps it).
pub(crate) fn dma_buf_import_sync_file(
    fd: BorrowedFd<'_>,
    flags: u32,
    sync_file: RawFd,
) -> io::Result<()> {
    let arg = DmaBufSyncFile {
        flags,
        fd: sync_file,
    };
    // SAFETY: the opcode is `_IOW('b', 3, struct dma_buf_import_sync_file)`
    // and `DmaBufSyncFile` has that layout; the kernel only reads it and
    // looks the descriptor up itself, so a stale number cannot harm memory.
    unsafe { ioctl(fd, Setter::<DMA_BUF_IOCTL_IMPORT_SYNC_FILE, _>::new(arg)) }
}

/// `SYNC_IOC_MERGE`: a new sync_file with the fences of `fd` and `fd2`.
pub(crate) fn sync_merge(fd: BorrowedFd<'_>, fd2: RawFd, name: [u8; 32]) -> io::Result<OwnedFd> {
    let mut arg = SyncMergeData {
        name,
        fd2,
        fence: -1,
        flags: 0,
        pad: 0,
    };
    // SAFETY: the opcode is `_IOWR('>', 3, struct sync_merge_data)` and `arg`
    // has that layout and outlives the call.
    unsafe { ioctl(fd, Updater::<SYNC_IOC_MERGE, _>::new(&mut arg)) }?;
    // SAFETY: on success the kernel installed a new descriptor for us in
    // `arg.fence`; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(arg.fence) })
}

/// `SYNC_IOC_FILE_INFO` without the fence list: name, status and the number
/// of fences.
pub(crate) fn sync_file_info(fd: BorrowedFd<'_>) -> io::Result<SyncFileInfo> {
    let mut info = SyncFileInfo {
        name: [0; 32],
        status: 0,
        flags: 0,
        num_fences: 0,
        pad: 0,
        sync_fence_info: 0,
    };
    // SAFETY: the opcode is `_IOWR('>', 4, struct sync_file_info)` and `info`
    // has that layout; with `num_fences == 0` the kernel writes nothing but
    // `info` itself.
    unsafe { ioctl(fd, Updater::<SYNC_IOC_FILE_INFO, _>::new(&mut info)) }?;
    Ok(info)
}

/// `SYNC_IOC_FILE_INFO` with the fence list, sized by a first call. The
/// fence set of a sync_file never changes, so the size cannot go stale.
pub(crate) fn sync_file_info_with_fences(
    fd: BorrowedFd<'_>,
) -> io::Result<(SyncFileInfo, Vec<SyncFenceInfo>)> {
    let mut info = sync_file_info(fd)?;
    let empty = SyncFenceInfo {
        obj_name: [0; 32],
        driver_name: [0; 32],
        status: 0,
        flags: 0,
        timestamp_ns: 0,
    };
    let mut fences = vec![empty; info.num_fences as usize];
    info.sync_fence_info = fences.as_mut_ptr() as u64;
    // SAFETY: as in `sync_file_info`; in addition the kernel writes
    // `info.num_fences` entries of `struct sync_fence_info` to the address in
    // `info.sync_fence_info`, which points at exactly that many `SyncFenceInfo`
    // (same layout) that live until after the call.
    unsafe { ioctl(fd, Updater::<SYNC_IOC_FILE_INFO, _>::new(&mut info)) }?;
    fences.truncate(info.num_fences as usize);
    Ok((info, fences))
}

/// The bytes of a NUL-terminated name field, up to the NUL, as text.
/// `DMA_HEAP_IOCTL_ALLOC`: a new dma-buf of `len` bytes from the heap
/// `heap`, readable, writable (mappings may be shared writable) and closed
/// on exec.
pub(crate) fn dma_heap_alloc(heap: BorrowedFd<'_>, len: u64) -> io::Result<OwnedFd> {
    let mut data = DmaHeapAllocationData {
        len,
        fd: 0,
        fd_flags: (rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::RDWR).bits(),
        heap_flags: 0,
    };
    // SAFETY: the opcode is `_IOWR('H', 0, struct dma_heap_allocation_data)`
    // and `data` has that layout and outlives the call.
    unsafe { ioctl(heap, Updater::<DMA_HEAP_IOCTL_ALLOC, _>::new(&mut data)) }?;
    // SAFETY: on success the kernel installed a new descriptor for us in
    // `data.fd`; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(data.fd as i32) })
}

pub(crate) fn name_from_c(bytes: &[u8]) -> String {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..len]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    /// The values in `shared/REFERENCE.md`, computed there from the uapi
    /// headers for x86_64.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn ioctl_numbers_match_the_reference() {
        assert_eq!(DMA_BUF_IOCTL_SYNC, 0x4008_6200);
        assert_eq!(DMA_BUF_IOCTL_EXPORT_SYNC_FILE, 0xC008_6202);
        assert_eq!(DMA_BUF_IOCTL_IMPORT_SYNC_FILE, 0x4008_6203);
        assert_eq!(SYNC_IOC_MERGE, 0xC030_3E03);
        assert_eq!(SYNC_IOC_FILE_INFO, 0xC038_3E04);
        assert_eq!(DMA_HEAP_IOCTL_ALLOC, 0xC018_4800);
    }

    #[test]
    fn struct_sizes_match_the_uapi() {
        assert_eq!(size_of::<DmaBufSync>(), 8);
        assert_eq!(size_of::<DmaBufSyncFile>(), 8);
        assert_eq!(size_of::<DmaHeapAllocationData>(), 24);
        assert_eq!(size_of::<SyncMergeData>(), 48);
        assert_eq!(size_of::<SyncFileInfo>(), 56);
        assert_eq!(size_of::<SyncFenceInfo>(), 80);
    }

    #[test]
    fn names_stop_at_the_first_nul() {
        let mut field = [0u8; 32];
        field[..4].copy_from_slice(b"vgem");
        assert_eq!(name_from_c(&field), "vgem");
        assert_eq!(name_from_c(&[b'x'; 32]), "x".repeat(32));
    }
}
