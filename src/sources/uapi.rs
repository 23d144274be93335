//! The uapi of the test sources: `linux/udmabuf.h` and `drm/vgem_drm.h`
//! (the DRM core, dumb buffers and PRIME included, is [`crate::kms`]'s),
//! with one thin call per ioctl that returns the kernel's errno unchanged.

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};

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

/// `DRM_COMMAND_BASE`: driver-private DRM ioctls start here.
const DRM_COMMAND_BASE: u8 = 0x40;

pub(crate) const UDMABUF_CREATE: Opcode = opcode::write::<UdmabufCreate>(b'u', 0x42);
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

/// `DRM_IOCTL_MODE_CREATE_DUMB`: a `width` x `height` buffer of `bpp` bits
/// per pixel; returns its GEM handle.
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

    /// The values in `shared/REFERENCE.md` (x86_64).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn ioctl_numbers_match_the_reference() {
        assert_eq!(UDMABUF_CREATE, 0x4018_7542);
        assert_eq!(DRM_IOCTL_VGEM_FENCE_ATTACH, 0xC010_6441);
        assert_eq!(DRM_IOCTL_VGEM_FENCE_SIGNAL, 0x4008_6442);
    }

    #[test]
    fn struct_sizes_match_the_uapi() {
        assert_eq!(size_of::<UdmabufCreate>(), 24);
        assert_eq!(size_of::<VgemFenceAttach>(), 16);
        assert_eq!(size_of::<VgemFenceSignal>(), 8);
    }
}
