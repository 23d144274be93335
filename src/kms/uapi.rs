//! The KMS uapi a display consumer needs (`include/uapi/drm/drm.h`,
//! `drm_mode.h`): argument structs, ioctl numbers and one thin call per
//! ioctl that returns the kernel's errno unchanged.

use std::os::fd::BorrowedFd;

use rustix::io;
use rustix::ioctl::{ioctl, opcode, Opcode, Setter, Updater};

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

/// `struct drm_get_cap` and `struct drm_set_client_cap` (same layout).
#[repr(C)]
pub(crate) struct DrmCap {
    pub(crate) capability: u64,
    pub(crate) value: u64,
}

/// `struct drm_prime_handle`.
#[repr(C)]
pub(crate) struct DrmPrimeHandle {
    pub(crate) handle: u32,
    pub(crate) flags: u32,
    pub(crate) fd: i32,
}

/// `struct drm_mode_create_dumb`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct CreateDumb {
    pub(crate) height: u32,
    pub(crate) width: u32,
    pub(crate) bpp: u32,
    pub(crate) flags: u32,
    pub(crate) handle: u32,
    pub(crate) pitch: u32,
    pub(crate) size: u64,
}

/// File flags for exported dma-bufs: writable mappings, closed on exec
/// (`DRM_CLOEXEC | DRM_RDWR` are the same bits as `O_CLOEXEC | O_RDWR`).
pub(crate) const CLOEXEC_RDWR: u32 =
    rustix::fs::OFlags::CLOEXEC.bits() | rustix::fs::OFlags::RDWR.bits();

/// `struct drm_gem_close`.
#[repr(C)]
pub(crate) struct DrmGemClose {
    pub(crate) handle: u32,
    pub(crate) pad: u32,
}

/// `struct drm_mode_card_res`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct CardRes {
    pub(crate) fb_id_ptr: u64,
    pub(crate) crtc_id_ptr: u64,
    pub(crate) connector_id_ptr: u64,
    pub(crate) encoder_id_ptr: u64,
    pub(crate) count_fbs: u32,
    pub(crate) count_crtcs: u32,
    pub(crate) count_connectors: u32,
    pub(crate) count_encoders: u32,
    pub(crate) min_width: u32,
    pub(crate) max_width: u32,
    pub(crate) min_height: u32,
    pub(crate) max_height: u32,
}

/// `struct drm_mode_modeinfo`: one display mode, as the kernel lists it
/// and as a CRTC's `MODE_ID` blob holds it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)] // The timings are the uapi's, named as there.
pub struct ModeInfo {
    /// Pixel clock in kHz.
    pub clock: u32,
    pub hdisplay: u16,
    pub hsync_start: u16,
    pub hsync_end: u16,
    pub htotal: u16,
    pub hskew: u16,
    pub vdisplay: u16,
    pub vsync_start: u16,
    pub vsync_end: u16,
    pub vtotal: u16,
    pub vscan: u16,
    /// Refresh in Hz, rounded.
    pub vrefresh: u32,
    /// `DRM_MODE_FLAG_*`.
    pub flags: u32,
    /// `DRM_MODE_TYPE_*` (`PREFERRED` is 1 << 3).
    pub type_: u32,
    /// NUL-terminated.
    pub name: [u8; 32],
}

/// `struct drm_mode_get_connector`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct GetConnector {
    pub(crate) encoders_ptr: u64,
    pub(crate) modes_ptr: u64,
    pub(crate) props_ptr: u64,
    pub(crate) prop_values_ptr: u64,
    pub(crate) count_modes: u32,
    pub(crate) count_props: u32,
    pub(crate) count_encoders: u32,
    pub(crate) encoder_id: u32,
    pub(crate) connector_id: u32,
    pub(crate) connector_type: u32,
    pub(crate) connector_type_id: u32,
    pub(crate) connection: u32,
    pub(crate) mm_width: u32,
    pub(crate) mm_height: u32,
    pub(crate) subpixel: u32,
    pub(crate) pad: u32,
}

/// `struct drm_mode_get_encoder`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct GetEncoder {
    pub(crate) encoder_id: u32,
    pub(crate) encoder_type: u32,
    pub(crate) crtc_id: u32,
    pub(crate) possible_crtcs: u32,
    pub(crate) possible_clones: u32,
}

/// `struct drm_mode_get_plane_res`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct GetPlaneRes {
    pub(crate) plane_id_ptr: u64,
    pub(crate) count_planes: u32,
}

/// `struct drm_mode_get_plane`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct GetPlane {
    pub(crate) plane_id: u32,
    pub(crate) crtc_id: u32,
    pub(crate) fb_id: u32,
    pub(crate) possible_crtcs: u32,
    pub(crate) gamma_size: u32,
    pub(crate) count_format_types: u32,
    pub(crate) format_type_ptr: u64,
}

/// `struct drm_mode_obj_get_properties`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct ObjGetProperties {
    pub(crate) props_ptr: u64,
    pub(crate) prop_values_ptr: u64,
    pub(crate) count_props: u32,
    pub(crate) obj_id: u32,
    pub(crate) obj_type: u32,
}

/// `struct drm_mode_get_property`, without its value and enum lists.
#[repr(C)]
#[derive(Default)]
pub(crate) struct GetProperty {
    pub(crate) values_ptr: u64,
    pub(crate) enum_blob_ptr: u64,
    pub(crate) prop_id: u32,
    pub(crate) flags: u32,
    pub(crate) name: [u8; 32],
    pub(crate) count_values: u32,
    pub(crate) count_enum_blobs: u32,
}

/// `struct drm_mode_fb_cmd2`.
#[repr(C)]
#[derive(Default)]
pub(crate) struct FbCmd2 {
    pub(crate) fb_id: u32,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) pixel_format: u32,
    pub(crate) flags: u32,
    pub(crate) handles: [u32; 4],
    pub(crate) pitches: [u32; 4],
    pub(crate) offsets: [u32; 4],
    pub(crate) modifier: [u64; 4],
}

/// `struct drm_mode_create_blob`.
#[repr(C)]
pub(crate) struct CreateBlob {
    pub(crate) data: u64,
    pub(crate) length: u32,
    pub(crate) blob_id: u32,
}

/// `struct drm_mode_destroy_blob`.
#[repr(C)]
pub(crate) struct DestroyBlob {
    pub(crate) blob_id: u32,
}

/// `struct drm_mode_atomic`.
#[repr(C)]
pub(crate) struct Atomic {
    pub(crate) flags: u32,
    pub(crate) count_objs: u32,
    pub(crate) objs_ptr: u64,
    pub(crate) count_props_ptr: u64,
    pub(crate) props_ptr: u64,
    pub(crate) prop_values_ptr: u64,
    pub(crate) reserved: u64,
    pub(crate) user_data: u64,
}

/// `struct drm_event`.
pub(crate) const EVENT_HEADER: usize = 8;
/// `DRM_EVENT_FLIP_COMPLETE`.
pub(crate) const EVENT_FLIP_COMPLETE: u32 = 0x02;
/// `struct drm_event_vblank`: the header, `user_data`, `tv_sec`, `tv_usec`,
/// `sequence`, `crtc_id`.
pub(crate) const EVENT_VBLANK_LEN: usize = 32;

/// `DRM_MODE_FB_MODIFIERS`.
pub(crate) const FB_MODIFIERS: u32 = 1 << 1;

pub(crate) const VERSION: Opcode = opcode::read_write::<DrmVersion>(b'd', 0x00);
pub(crate) const GEM_CLOSE: Opcode = opcode::write::<DrmGemClose>(b'd', 0x09);
pub(crate) const GET_CAP: Opcode = opcode::read_write::<DrmCap>(b'd', 0x0c);
pub(crate) const SET_CLIENT_CAP: Opcode = opcode::write::<DrmCap>(b'd', 0x0d);
pub(crate) const SET_MASTER: Opcode = opcode::none(b'd', 0x1e);
pub(crate) const DROP_MASTER: Opcode = opcode::none(b'd', 0x1f);
pub(crate) const PRIME_HANDLE_TO_FD: Opcode = opcode::read_write::<DrmPrimeHandle>(b'd', 0x2d);
pub(crate) const PRIME_FD_TO_HANDLE: Opcode = opcode::read_write::<DrmPrimeHandle>(b'd', 0x2e);
pub(crate) const MODE_GETRESOURCES: Opcode = opcode::read_write::<CardRes>(b'd', 0xA0);
pub(crate) const MODE_GETENCODER: Opcode = opcode::read_write::<GetEncoder>(b'd', 0xA6);
pub(crate) const MODE_GETCONNECTOR: Opcode = opcode::read_write::<GetConnector>(b'd', 0xA7);
pub(crate) const MODE_GETPROPERTY: Opcode = opcode::read_write::<GetProperty>(b'd', 0xAA);
pub(crate) const MODE_RMFB: Opcode = opcode::read_write::<u32>(b'd', 0xAF);
pub(crate) const MODE_GETPLANERESOURCES: Opcode = opcode::read_write::<GetPlaneRes>(b'd', 0xB5);
pub(crate) const MODE_GETPLANE: Opcode = opcode::read_write::<GetPlane>(b'd', 0xB6);
pub(crate) const MODE_CREATE_DUMB: Opcode = opcode::read_write::<CreateDumb>(b'd', 0xB2);
pub(crate) const MODE_ADDFB2: Opcode = opcode::read_write::<FbCmd2>(b'd', 0xB8);
pub(crate) const MODE_OBJ_GETPROPERTIES: Opcode =
    opcode::read_write::<ObjGetProperties>(b'd', 0xB9);
pub(crate) const MODE_ATOMIC: Opcode = opcode::read_write::<Atomic>(b'd', 0xBC);
pub(crate) const MODE_CREATEPROPBLOB: Opcode = opcode::read_write::<CreateBlob>(b'd', 0xBD);
pub(crate) const MODE_DESTROYPROPBLOB: Opcode = opcode::read_write::<DestroyBlob>(b'd', 0xBE);

/// One `_IOWR`/`_IOW` KMS ioctl on `arg`, which the kernel may read and write.
///
/// # Safety
/// `OPCODE`'s argument struct is `T`, and every pointer `arg` carries
/// (the `*_ptr` fields) points at memory of at least the size its count
/// field says, alive until the call returns.
pub(crate) unsafe fn call<const OPCODE: Opcode, T>(
    fd: BorrowedFd<'_>,
    arg: &mut T,
) -> io::Result<()> {
    // SAFETY: as the caller promises.
    unsafe { ioctl(fd, Updater::<OPCODE, T>::new(arg)) }
}

/// `DRM_IOCTL_VERSION`, for the driver name only.
pub(crate) fn driver_name(card: BorrowedFd<'_>) -> io::Result<String> {
    let mut name = [0u8; 64];
    let mut v = DrmVersion {
        version_major: 0,
        version_minor: 0,
        version_patchlevel: 0,
        name_len: name.len(),
        name: name.as_mut_ptr(),
        date_len: 0,
        date: std::ptr::null_mut(),
        desc_len: 0,
        desc: std::ptr::null_mut(),
    };
    // SAFETY: `name` has `name_len` bytes and outlives the call; the
    // kernel writes no more, and nothing for the zero-length others.
    unsafe { call::<VERSION, _>(card, &mut v) }?;
    // The kernel reports the full length even when it truncated the copy.
    Ok(crate::ioctl::name_from_c(
        &name[..v.name_len.min(name.len())],
    ))
}

/// `DRM_IOCTL_GEM_CLOSE`: drops the handle (not the object, which
/// framebuffers and dma-bufs made of it keep alive).
pub(crate) fn gem_close(card: BorrowedFd<'_>, handle: u32) -> io::Result<()> {
    let close = DrmGemClose { handle, pad: 0 };
    // SAFETY: the opcode is `_IOW('d', 0x09, struct drm_gem_close)` and
    // `DrmGemClose` has that layout; the kernel only reads it.
    unsafe { ioctl(card, Setter::<GEM_CLOSE, _>::new(close)) }
}

/// `DRM_IOCTL_SET_MASTER` or `DRM_IOCTL_DROP_MASTER`.
pub(crate) fn master(fd: BorrowedFd<'_>, take: bool) -> io::Result<()> {
    // SAFETY: both opcodes are `_IO` ioctls without an argument.
    unsafe {
        if take {
            ioctl(fd, rustix::ioctl::NoArg::<SET_MASTER>::new())
        } else {
            ioctl(fd, rustix::ioctl::NoArg::<DROP_MASTER>::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    /// The sizes of the uapi structs on a 64-bit kernel.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn struct_sizes_match_the_uapi() {
        assert_eq!(size_of::<DrmVersion>(), 64);
        assert_eq!(size_of::<DrmCap>(), 16);
        assert_eq!(size_of::<DrmPrimeHandle>(), 12);
        assert_eq!(size_of::<DrmGemClose>(), 8);
        assert_eq!(size_of::<CreateDumb>(), 32);
        assert_eq!(size_of::<CardRes>(), 64);
        assert_eq!(size_of::<ModeInfo>(), 68);
        assert_eq!(size_of::<GetConnector>(), 80);
        assert_eq!(size_of::<GetEncoder>(), 20);
        assert_eq!(size_of::<GetPlaneRes>(), 16);
        assert_eq!(size_of::<GetPlane>(), 32);
        assert_eq!(size_of::<ObjGetProperties>(), 32);
        assert_eq!(size_of::<GetProperty>(), 64);
        assert_eq!(size_of::<FbCmd2>(), 104);
        assert_eq!(size_of::<CreateBlob>(), 16);
        assert_eq!(size_of::<Atomic>(), 56);
    }

    /// `DRM_IOCTL_*` as the C headers compute them on x86_64.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn ioctl_numbers_match_the_headers() {
        assert_eq!(VERSION, 0xC040_6400);
        assert_eq!(GET_CAP, 0xC010_640C);
        assert_eq!(SET_CLIENT_CAP, 0x4010_640D);
        assert_eq!(GEM_CLOSE, 0x4008_6409);
        assert_eq!(SET_MASTER, 0x0000_641E);
        assert_eq!(PRIME_HANDLE_TO_FD, 0xC00C_642D);
        assert_eq!(PRIME_FD_TO_HANDLE, 0xC00C_642E);
        assert_eq!(MODE_CREATE_DUMB, 0xC020_64B2);
        assert_eq!(MODE_GETRESOURCES, 0xC040_64A0);
        assert_eq!(MODE_GETCONNECTOR, 0xC050_64A7);
        assert_eq!(MODE_RMFB, 0xC004_64AF);
        assert_eq!(MODE_ADDFB2, 0xC068_64B8);
        assert_eq!(MODE_ATOMIC, 0xC038_64BC);
    }
}
