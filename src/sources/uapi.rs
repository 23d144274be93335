//! The uapi of the test sources: `linux/udmabuf.h`,
//! `drm/drm.h`, `drm/drm_mode.h` and `drm/vgem_drm.h`, with one thin call
//! per ioctl that returns the kernel's errno unchanged.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

use rustix::fs::OFlags;
use rustix::io;
use rustix::ioctl::{ioctl, opcode, Ioctl, IoctlOutput, Opcode, Setter, Updater};

/// `struct udmabuf_create`.
#[repr(C)]
pub(crate) struct UdmabufCreate {
    pub(crate) memfd: u32,
    pub(crate) flags: u32,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

/// `UDMABUF_FLAGS_CLOEXEC`.
pub(crate) const UDMABUF_FLAGS_CLOEXEC: u32 = 0x01;

/// `struct drm_version`: the three strings are filled into caller buffers.
#[repr(C)]
pub(crate) struct DrmVersion {
    pub(crate) version_major: i32,
    pub(crate) version_minor: i32,
    pub(crate) version_patchlevel: i32,
    pub(crate) name_len: usize,
    pub(crate) name: *mut u8,
    pub(crate) date_len: usize,
    pub(crate) date: *mut u8,
    pub(crate) desc_len: usize,
    pub(crate) desc: *mut u8,
}

/// `struct drm_mode_create_dumb`.
#[repr(C)]
pub(crate) struct DrmModeCreateDumb {
    pub(crate) height: u32,
    pub(crate) width: u32,
    pub(crate) bpp: u32,
    pub(crate) flags: u32,
    pub(crate) handle: u32,
    pub(crate) pitch: u32,
    pub(crate) size: u64,
}

/// `struct drm_prime_handle`.
#[repr(C)]
pub(crate) struct DrmPrimeHandle {
    pub(crate) handle: u32,
    pub(crate) flags: u32,
    pub(crate) fd: i32,
}

/// `struct drm_gem_close`.
#[repr(C)]
pub(crate) struct DrmGemClose {
    pub(crate) handle: u32,
    pub(crate) pad: u32,
}

/// `struct drm_vgem_fence_attach`.
#[repr(C)]
pub(crate) struct VgemFenceAttach {
    pub(crate) handle: u32,
    pub(crate) flags: u32,
    pub(crate) out_fence: u32,
    pub(crate) pad: u32,
}

/// `struct drm_vgem_fence_signal`.
#[repr(C)]
pub(crate) struct VgemFenceSignal {
    pub(crate) fence: u32,
    pub(crate) flags: u32,
}

/// `VGEM_FENCE_WRITE`: attach a write fence instead of a read fence.
pub(crate) const VGEM_FENCE_WRITE: u32 = 0x1;
/// File flags for the new dma-bufs: writable mappings, closed on exec
/// (`DRM_CLOEXEC | DRM_RDWR` for PRIME are the same bits).
const CLOEXEC_RDWR: u32 = OFlags::CLOEXEC.bits() | OFlags::RDWR.bits();

/// `DRM_COMMAND_BASE`: driver-private DRM ioctls start here.
const DRM_COMMAND_BASE: u8 = 0x40;

pub(crate) const UDMABUF_CREATE: Opcode = opcode::write::<UdmabufCreate>(b'u', 0x42);
pub(crate) const DRM_IOCTL_VERSION: Opcode = opcode::read_write::<DrmVersion>(b'd', 0x00);
pub(crate) const DRM_IOCTL_GEM_CLOSE: Opcode = opcode::write::<DrmGemClose>(b'd', 0x09);
pub(crate) const DRM_IOCTL_PRIME_HANDLE_TO_FD: Opcode =
    opcode::read_write::<DrmPrimeHandle>(b'd', 0x2d);
pub(crate) const DRM_IOCTL_MODE_CREATE_DUMB: Opcode =
    opcode::read_write::<DrmModeCreateDumb>(b'd', 0xb2);
pub(crate) const DRM_IOCTL_VGEM_FENCE_ATTACH: Opcode =
    opcode::read_write::<VgemFenceAttach>(b'd', DRM_COMMAND_BASE + 0x01);
pub(crate) const DRM_IOCTL_VGEM_FENCE_SIGNAL: Opcode =
    opcode::write::<VgemFenceSignal>(b'd', DRM_COMMAND_BASE + 0x02);

/// `UDMABUF_CREATE`, which returns the new dma-buf as the ioctl's result
/// rather than in the struct, so it needs its own [`Ioctl`].
struct CreateUdmabuf(UdmabufCreate);

// SAFETY: the opcode is `_IOW('u', 0x42, struct udmabuf_create)`, the pointer
// is to a struct of that layout that the kernel only reads, and on success
// the return value is a new descriptor.
unsafe impl Ioctl for CreateUdmabuf {
    type Output = OwnedFd;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        UDMABUF_CREATE
    }

    fn as_ptr(&mut self) -> *mut core::ffi::c_void {
        core::ptr::addr_of_mut!(self.0).cast()
    }

    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut core::ffi::c_void) -> io::Result<OwnedFd> {
        // SAFETY: `out` is the result of a successful UDMABUF_CREATE: a
        // descriptor the kernel just installed for us alone.
        Ok(unsafe { OwnedFd::from_raw_fd(out) })
    }
}

/// `UDMABUF_CREATE` over the first `size` bytes of `memfd`.
pub(crate) fn udmabuf_create(
    device: BorrowedFd<'_>,
    memfd: BorrowedFd<'_>,
    size: u64,
) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let create = CreateUdmabuf(UdmabufCreate {
        memfd: memfd.as_raw_fd() as u32,
        flags: UDMABUF_FLAGS_CLOEXEC,
        offset: 0,
        size,
    });
    // SAFETY: see the `Ioctl` impl of `CreateUdmabuf`.
    unsafe { ioctl(device, create) }
}

/// `DRM_IOCTL_VERSION`, for the driver name only.
pub(crate) fn drm_driver_name(card: BorrowedFd<'_>) -> io::Result<String> {
    let mut name = [0u8; 64];
    let mut version = DrmVersion {
        version_major: 0,
        version_minor: 0,
        version_patchlevel: 0,
        name_len: name.len(),
        name: name.as_mut_ptr(),
        date_len: 0,
        date: core::ptr::null_mut(),
        desc_len: 0,
        desc: core::ptr::null_mut(),
    };
    // SAFETY: the opcode is `DRM_IOWR(0x00, struct drm_version)` and `version`
    // has that layout; the kernel writes at most `name_len` bytes to `name`,
    // which has that many and lives past the call, and nothing to the
    // zero-length date and description.
    unsafe { ioctl(card, Updater::<DRM_IOCTL_VERSION, _>::new(&mut version)) }?;
    // The kernel reports the full length even when it truncated the copy.
    let len = version.name_len.min(name.len());
    Ok(String::from_utf8_lossy(&name[..len]).into_owned())
}

/// `DRM_IOCTL_MODE_CREATE_DUMB`: a `width` x `height` buffer of `bpp` bits
/// per pixel; returns its GEM handle.
pub(crate) fn drm_create_dumb(
    card: BorrowedFd<'_>,
    width: u32,
    height: u32,
    bpp: u32,
) -> io::Result<u32> {
    let mut dumb = DrmModeCreateDumb {
        height,
        width,
        bpp,
        flags: 0,
        handle: 0,
        pitch: 0,
        size: 0,
    };
    // SAFETY: the opcode is `DRM_IOWR(0xB2, struct drm_mode_create_dumb)` and
    // `dumb` has that layout and outlives the call.
    unsafe {
        ioctl(
            card,
            Updater::<DRM_IOCTL_MODE_CREATE_DUMB, _>::new(&mut dumb),
        )
    }?;
    Ok(dumb.handle)
}

/// `DRM_IOCTL_PRIME_HANDLE_TO_FD`: the GEM object as a dma-buf.
pub(crate) fn drm_prime_handle_to_fd(card: BorrowedFd<'_>, handle: u32) -> io::Result<OwnedFd> {
    let mut prime = DrmPrimeHandle {
        handle,
        flags: CLOEXEC_RDWR,
        fd: -1,
    };
    // SAFETY: the opcode is `DRM_IOWR(0x2d, struct drm_prime_handle)` and
    // `prime` has that layout and outlives the call.
    unsafe {
        ioctl(
            card,
            Updater::<DRM_IOCTL_PRIME_HANDLE_TO_FD, _>::new(&mut prime),
        )
    }?;
    // SAFETY: on success the kernel installed a new descriptor for us in
    // `prime.fd`; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(prime.fd) })
}

/// `DRM_IOCTL_GEM_CLOSE`: drops the handle (not the object, which dma-bufs
/// exported from it keep alive).
pub(crate) fn drm_gem_close(card: BorrowedFd<'_>, handle: u32) -> io::Result<()> {
    let close = DrmGemClose { handle, pad: 0 };
    // SAFETY: the opcode is `DRM_IOW(0x09, struct drm_gem_close)` and
    // `DrmGemClose` has that layout; the kernel only reads it.
    unsafe { ioctl(card, Setter::<DRM_IOCTL_GEM_CLOSE, _>::new(close)) }
}

/// `DRM_IOCTL_VGEM_FENCE_ATTACH`: a new unsignalled fence on the object;
/// returns its id.
pub(crate) fn vgem_fence_attach(card: BorrowedFd<'_>, handle: u32, flags: u32) -> io::Result<u32> {
    let mut attach = VgemFenceAttach {
        handle,
        flags,
        out_fence: 0,
        pad: 0,
    };
    // SAFETY: the opcode is `DRM_IOWR(0x41, struct drm_vgem_fence_attach)` and
    // `attach` has that layout and outlives the call.
    unsafe {
        ioctl(
            card,
            Updater::<DRM_IOCTL_VGEM_FENCE_ATTACH, _>::new(&mut attach),
        )
    }?;
    Ok(attach.out_fence)
}

/// `DRM_IOCTL_VGEM_FENCE_SIGNAL`: signals the fence and forgets its id.
pub(crate) fn vgem_fence_signal(card: BorrowedFd<'_>, fence: u32) -> io::Result<()> {
    let signal = VgemFenceSignal { fence, flags: 0 };
    // SAFETY: the opcode is `DRM_IOW(0x42, struct drm_vgem_fence_signal)` and
    // `VgemFenceSignal` has that layout; the kernel only reads it.
    unsafe { ioctl(card, Setter::<DRM_IOCTL_VGEM_FENCE_SIGNAL, _>::new(signal)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    /// The values in `shared/REFERENCE.md` (x86_64); `DRM_IOCTL_VERSION` is
    /// not listed there and comes from `drm.h` with the 64-byte x86_64 struct.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn ioctl_numbers_match_the_reference() {
        assert_eq!(UDMABUF_CREATE, 0x4018_7542);
        assert_eq!(DRM_IOCTL_VERSION, 0xC040_6400);
        assert_eq!(DRM_IOCTL_GEM_CLOSE, 0x4008_6409);
        assert_eq!(DRM_IOCTL_PRIME_HANDLE_TO_FD, 0xC00C_642D);
        assert_eq!(DRM_IOCTL_MODE_CREATE_DUMB, 0xC020_64B2);
        assert_eq!(DRM_IOCTL_VGEM_FENCE_ATTACH, 0xC010_6441);
        assert_eq!(DRM_IOCTL_VGEM_FENCE_SIGNAL, 0x4008_6442);
    }

    #[test]
    fn struct_sizes_match_the_uapi() {
        assert_eq!(size_of::<UdmabufCreate>(), 24);
        assert_eq!(size_of::<DrmModeCreateDumb>(), 32);
        assert_eq!(size_of::<DrmPrimeHandle>(), 12);
        assert_eq!(size_of::<DrmGemClose>(), 8);
        assert_eq!(size_of::<VgemFenceAttach>(), 16);
        assert_eq!(size_of::<VgemFenceSignal>(), 8);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(size_of::<DrmVersion>(), 64);
    }
}
