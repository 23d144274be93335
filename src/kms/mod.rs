//! Kernel mode setting, as a display consumer of dma-bufs uses it: a KMS
//! device ([`Card`]) and its connectors, modes, CRTCs and planes; dma-bufs
//! imported as framebuffers; atomic commits ([`AtomicRequest`]) and the
//! flip events that say when a commit reached the screen.
//!
//! This is where implicit sync ends: a commit of a framebuffer waits for
//! the write fences of its dma-buf before scan-out (or for the sync_file
//! in the plane's `IN_FENCE_FD`, which then replaces them), so a render's
//! fence imported with [`DmaBuf::import_sync_file`](crate::DmaBuf) holds
//! the flip without anyone waiting on the CPU.
//!
//! Thin, like the rest of the crate: one method per kernel operation,
//! objects named by their kernel ids, errors with the kernel's errno.
//!
//! # Example
//!
//! The cards, their connectors and modes (`examples/outputs.rs`, which also
//! runs in the project's test guest; on a machine without `/dev/dri/card*`
//! it says so and stops):
//!
#![doc = concat!("```\n", include_str!("../../examples/outputs.rs"), "```")]
//!
//! Showing a framebuffer on an [`Output`] (in the guest, `tests/kms.rs`
//! does this on vkms):
//!
//! ```
//! use syncfile::kms::{AtomicRequest, Card, CommitFlags, Output};
//!
//! /// Queues `framebuffer` for the next vblank; the flip event comes back
//! /// with `frame` once it is on the screen.
//! fn flip(
//!     card: &Card,
//!     output: &Output,
//!     framebuffer: u32,
//!     size: (u32, u32),
//!     frame: u64,
//! ) -> syncfile::Result<()> {
//!     let mut request = AtomicRequest::new();
//!     output.show(&mut request, framebuffer, size)?;
//!     let flags = CommitFlags {
//!         event: true,
//!         nonblocking: true,
//!         ..CommitFlags::default()
//!     };
//!     card.commit(&request, flags, frame)?;
//!     Ok(())
//! }
//! ```

mod atomic;
mod output;
pub(crate) mod uapi;

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::ioctl::name_from_c;
use crate::{DmaBuf, Result};
pub use atomic::{AtomicRequest, CommitFlags, FlipEvent};
pub use output::Output;
use uapi::call;
pub use uapi::ModeInfo;

/// Where DRM device nodes live.
const DRI_DIR: &str = "/dev/dri";

/// `DRM_CAP_*` values a display consumer asks about.
pub mod cap {
    /// `DRM_CAP_DUMB_BUFFER`: the card makes dumb buffers.
    pub const DUMB_BUFFER: u64 = 0x1;
    /// `DRM_CAP_PRIME`: bit 1 import, bit 2 export.
    pub const PRIME: u64 = 0x5;
    /// `DRM_CAP_TIMESTAMP_MONOTONIC`: event times are `CLOCK_MONOTONIC`.
    pub const TIMESTAMP_MONOTONIC: u64 = 0x6;
    /// `DRM_CAP_ASYNC_PAGE_FLIP`: legacy tearing flips.
    pub const ASYNC_PAGE_FLIP: u64 = 0x7;
    /// `DRM_CAP_ADDFB2_MODIFIERS`.
    pub const ADDFB2_MODIFIERS: u64 = 0x10;
    /// `DRM_CAP_ATOMIC_ASYNC_PAGE_FLIP`: tearing atomic flips.
    pub const ATOMIC_ASYNC_PAGE_FLIP: u64 = 0x15;
}

/// `DRM_CLIENT_CAP_*` values.
pub mod client_cap {
    /// `DRM_CLIENT_CAP_UNIVERSAL_PLANES`: primary and cursor planes too.
    pub const UNIVERSAL_PLANES: u64 = 2;
    /// `DRM_CLIENT_CAP_ATOMIC` (implies universal planes).
    pub const ATOMIC: u64 = 3;
    /// `DRM_CLIENT_CAP_WRITEBACK_CONNECTORS` (needs ATOMIC first).
    pub const WRITEBACK_CONNECTORS: u64 = 5;
}

/// The kinds of KMS object whose properties [`Card::properties`] reads
/// (`DRM_MODE_OBJECT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    /// A CRTC: `MODE_ID`, `ACTIVE`.
    Crtc,
    /// A connector: `CRTC_ID`.
    Connector,
    /// A plane: `FB_ID`, `CRTC_ID`, `SRC_*`, `CRTC_*`, `IN_FENCE_FD`, `type`.
    Plane,
}

impl Object {
    fn raw(self) -> u32 {
        match self {
            Object::Crtc => 0xcccc_cccc,
            Object::Connector => 0xc0c0_c0c0,
            Object::Plane => 0xeeee_eeee,
        }
    }
}

/// The ids of a card's objects (`DRM_IOCTL_MODE_GETRESOURCES`).
#[derive(Clone, Debug, Default)]
pub struct Resources {
    /// In the kernel's order, which `possible_crtcs` masks index.
    pub crtcs: Vec<u32>,
    /// Connector ids.
    pub connectors: Vec<u32>,
    /// Encoder ids.
    pub encoders: Vec<u32>,
}

/// A connector's state (`DRM_IOCTL_MODE_GETCONNECTOR`).
#[derive(Clone, Debug)]
pub struct Connector {
    /// Its object id.
    pub id: u32,
    /// `DRM_MODE_CONNECTOR_*` (15 Virtual, 18 Writeback, ...).
    pub kind: u32,
    /// Which one of its kind (`Virtual-1` is kind 15, id 1).
    pub kind_id: u32,
    /// Whether something is plugged in (`connection` is 1).
    pub connected: bool,
    /// The physical size in mm, where known.
    pub mm: (u32, u32),
    /// The modes it offers, the preferred one flagged in `type_`.
    pub modes: Vec<ModeInfo>,
    /// The encoders that can drive it.
    pub encoders: Vec<u32>,
}

/// `DRM_MODE_CONNECTOR_WRITEBACK`.
pub const CONNECTOR_WRITEBACK: u32 = 18;

/// A plane's state (`DRM_IOCTL_MODE_GETPLANE`).
#[derive(Clone, Debug)]
pub struct Plane {
    /// Its object id.
    pub id: u32,
    /// Bit `i`: the plane can feed the card's `i`-th CRTC.
    pub possible_crtcs: u32,
    /// The CRTC it feeds now (0: none).
    pub crtc: u32,
    /// The framebuffer it shows now (0: none).
    pub framebuffer: u32,
    /// The DRM fourccs it scans out.
    pub formats: Vec<u32>,
}

/// One property of an object: its id (what a commit names) and value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Property {
    /// The property's id: what a commit names.
    pub id: u32,
    /// Its name (`FB_ID`, `IN_FENCE_FD`, ...).
    pub name: String,
    /// The object's current value of it.
    pub value: u64,
}

/// A GEM handle on a card: a buffer imported with PRIME, closed by
/// [`Card::close_handle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handle(pub u32);

/// A dumb buffer made by [`Card::create_dumb`]: its handle (closing it
/// frees the buffer once no framebuffer or dma-buf holds it) and layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DumbBuffer {
    /// Its GEM handle on the card that made it.
    pub handle: Handle,
    /// Bytes from one row to the next.
    pub pitch: u32,
    /// In bytes.
    pub size: u64,
}

/// A framebuffer to make from an imported buffer (one plane).
#[derive(Clone, Copy, Debug)]
pub struct FramebufferDesc {
    /// In pixels.
    pub width: u32,
    /// In pixels.
    pub height: u32,
    /// DRM fourcc.
    pub format: u32,
    /// The imported buffer.
    pub handle: Handle,
    /// Bytes per row.
    pub pitch: u32,
    /// Where the pixels start in the buffer.
    pub offset: u32,
    /// `Some` adds it with `DRM_MODE_FB_MODIFIERS`.
    pub modifier: Option<u64>,
}

/// An open KMS device node (`/dev/dri/cardN`).
#[derive(Debug)]
pub struct Card {
    fd: OwnedFd,
}

/// Lists `count` ids (or other items) a query fills in a second call.
fn list<T: Clone + Default>(count: u32) -> Vec<T> {
    vec![T::default(); count as usize]
}

impl Card {
    /// Opens `path` read-write, closed on exec.
    pub fn open(path: impl AsRef<Path>) -> Result<Card> {
        let fd = rustix::fs::open(
            path.as_ref(),
            OFlags::RDWR | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        )?;
        Ok(Card { fd })
    }

    /// Opens the first `/dev/dri/card*` (in name order) whose driver is
    /// `driver`. Virtual drivers (vgem, vkms) have no `device/driver` link
    /// in sysfs, so asking each card is the way to find them. Fails with
    /// `ENODEV` when there is none.
    pub fn find(driver: &str) -> Result<Card> {
        let mut cards: Vec<_> = std::fs::read_dir(DRI_DIR)
            .map_err(|_| Errno::NODEV)?
            .filter_map(|entry| Some(entry.ok()?.path()))
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("card"))
            })
            .collect();
        cards.sort();
        cards
            .into_iter()
            .filter_map(|path| Card::open(path).ok())
            .find(|card| card.driver_name().is_ok_and(|name| name == driver))
            .ok_or(Errno::NODEV.into())
    }

    /// The name of the driver behind the card ("vkms", "amdgpu", ...).
    pub fn driver_name(&self) -> Result<String> {
        Ok(uapi::driver_name(self.fd())?)
    }

    /// `DRM_IOCTL_GET_CAP`.
    pub fn cap(&self, capability: u64) -> Result<u64> {
        let mut c = uapi::DrmCap {
            capability,
            value: 0,
        };
        // SAFETY: a pointer-free struct of the opcode's type.
        unsafe { call::<{ uapi::GET_CAP }, _>(self.fd(), &mut c) }?;
        Ok(c.value)
    }

    /// `DRM_IOCTL_SET_CLIENT_CAP`.
    pub fn set_client_cap(&self, capability: u64, value: u64) -> Result<()> {
        let mut c = uapi::DrmCap { capability, value };
        // SAFETY: as for `cap`; the kernel only reads it.
        unsafe { call::<{ uapi::SET_CLIENT_CAP }, _>(self.fd(), &mut c) }?;
        Ok(())
    }

    /// Becomes the card's DRM master (or stops being it): only the master
    /// may commit.
    pub fn set_master(&self, take: bool) -> Result<()> {
        Ok(uapi::master(self.fd(), take)?)
    }

    /// The ids of the card's CRTCs, connectors and encoders.
    pub fn resources(&self) -> Result<Resources> {
        // The counts can grow between the calls (hot-plug): ask again then.
        loop {
            let mut r = uapi::CardRes::default();
            // SAFETY: no pointers: the kernel only fills in the counts.
            unsafe { call::<{ uapi::MODE_GETRESOURCES }, _>(self.fd(), &mut r) }?;
            let mut out = Resources {
                crtcs: list(r.count_crtcs),
                connectors: list(r.count_connectors),
                encoders: list(r.count_encoders),
            };
            let counts = (r.count_crtcs, r.count_connectors, r.count_encoders);
            r.count_fbs = 0;
            r.crtc_id_ptr = out.crtcs.as_mut_ptr() as u64;
            r.connector_id_ptr = out.connectors.as_mut_ptr() as u64;
            r.encoder_id_ptr = out.encoders.as_mut_ptr() as u64;
            // SAFETY: each pointer has room for its count of u32 ids.
            unsafe { call::<{ uapi::MODE_GETRESOURCES }, _>(self.fd(), &mut r) }?;
            if (r.count_crtcs, r.count_connectors, r.count_encoders) == counts {
                return Ok(out);
            }
        }
    }

    /// Connector `id`, probing it for modes only if it never was (the
    /// kernel's probe can take long on real hardware).
    pub fn connector(&self, id: u32) -> Result<Connector> {
        loop {
            let mut c = uapi::GetConnector {
                connector_id: id,
                ..Default::default()
            };
            // SAFETY: no pointers: the kernel fills in the counts.
            unsafe { call::<{ uapi::MODE_GETCONNECTOR }, _>(self.fd(), &mut c) }?;
            let mut modes: Vec<ModeInfo> = list(c.count_modes);
            let mut encoders: Vec<u32> = list(c.count_encoders);
            let counts = (c.count_modes, c.count_encoders);
            c.modes_ptr = modes.as_mut_ptr() as u64;
            c.encoders_ptr = encoders.as_mut_ptr() as u64;
            c.count_props = 0;
            // SAFETY: room for `count_modes` modeinfos and `count_encoders`
            // ids; no properties asked for.
            unsafe { call::<{ uapi::MODE_GETCONNECTOR }, _>(self.fd(), &mut c) }?;
            if (c.count_modes, c.count_encoders) == counts {
                return Ok(Connector {
                    id,
                    kind: c.connector_type,
                    kind_id: c.connector_type_id,
                    connected: c.connection == 1,
                    mm: (c.mm_width, c.mm_height),
                    modes,
                    encoders,
                });
            }
        }
    }

    /// The CRTCs encoder `id` can drive, as a bit mask over
    /// [`Resources::crtcs`].
    pub fn encoder_crtcs(&self, id: u32) -> Result<u32> {
        let mut e = uapi::GetEncoder {
            encoder_id: id,
            ..Default::default()
        };
        // SAFETY: a pointer-free struct of the opcode's type.
        unsafe { call::<{ uapi::MODE_GETENCODER }, _>(self.fd(), &mut e) }?;
        Ok(e.possible_crtcs)
    }

    /// The ids of every plane (with [`client_cap::UNIVERSAL_PLANES`] set,
    /// primary and cursor planes too).
    pub fn planes(&self) -> Result<Vec<u32>> {
        loop {
            let mut r = uapi::GetPlaneRes::default();
            // SAFETY: no pointer: the kernel fills in the count.
            unsafe { call::<{ uapi::MODE_GETPLANERESOURCES }, _>(self.fd(), &mut r) }?;
            let count = r.count_planes;
            let mut ids: Vec<u32> = list(count);
            r.plane_id_ptr = ids.as_mut_ptr() as u64;
            // SAFETY: room for `count_planes` ids.
            unsafe { call::<{ uapi::MODE_GETPLANERESOURCES }, _>(self.fd(), &mut r) }?;
            if r.count_planes == count {
                return Ok(ids);
            }
        }
    }

    /// Plane `id`.
    pub fn plane(&self, id: u32) -> Result<Plane> {
        let mut p = uapi::GetPlane {
            plane_id: id,
            ..Default::default()
        };
        // SAFETY: no pointer: the kernel fills in the count.
        unsafe { call::<{ uapi::MODE_GETPLANE }, _>(self.fd(), &mut p) }?;
        let mut formats: Vec<u32> = list(p.count_format_types);
        p.format_type_ptr = formats.as_mut_ptr() as u64;
        // SAFETY: room for `count_format_types` fourccs (a plane's format
        // list never changes).
        unsafe { call::<{ uapi::MODE_GETPLANE }, _>(self.fd(), &mut p) }?;
        formats.truncate(p.count_format_types as usize);
        Ok(Plane {
            id,
            possible_crtcs: p.possible_crtcs,
            crtc: p.crtc_id,
            framebuffer: p.fb_id,
            formats,
        })
    }

    /// Every property of object `id`, with its name and current value.
    pub fn properties(&self, id: u32, kind: Object) -> Result<Vec<Property>> {
        let (ids, values) = loop {
            let mut o = uapi::ObjGetProperties {
                obj_id: id,
                obj_type: kind.raw(),
                ..Default::default()
            };
            // SAFETY: no pointers: the kernel fills in the count.
            unsafe { call::<{ uapi::MODE_OBJ_GETPROPERTIES }, _>(self.fd(), &mut o) }?;
            let count = o.count_props;
            let mut ids: Vec<u32> = list(count);
            let mut values: Vec<u64> = list(count);
            o.props_ptr = ids.as_mut_ptr() as u64;
            o.prop_values_ptr = values.as_mut_ptr() as u64;
            // SAFETY: room for `count_props` ids and values.
            unsafe { call::<{ uapi::MODE_OBJ_GETPROPERTIES }, _>(self.fd(), &mut o) }?;
            if o.count_props == count {
                break (ids, values);
            }
        };
        ids.into_iter()
            .zip(values)
            .map(|(prop, value)| {
                let mut p = uapi::GetProperty {
                    prop_id: prop,
                    ..Default::default()
                };
                // SAFETY: no pointers: values and enums are not asked for.
                unsafe { call::<{ uapi::MODE_GETPROPERTY }, _>(self.fd(), &mut p) }?;
                Ok(Property {
                    id: prop,
                    name: name_from_c(&p.name),
                    value,
                })
            })
            .collect()
    }

    /// Imports `dma_buf` with PRIME.
    pub fn import(&self, dma_buf: BorrowedFd<'_>) -> Result<Handle> {
        use std::os::fd::AsRawFd;
        let mut h = uapi::DrmPrimeHandle {
            handle: 0,
            flags: 0,
            fd: dma_buf.as_raw_fd(),
        };
        // SAFETY: a pointer-free struct; the kernel looks the descriptor up.
        unsafe { call::<{ uapi::PRIME_FD_TO_HANDLE }, _>(self.fd(), &mut h) }?;
        Ok(Handle(h.handle))
    }

    /// A new zero-filled dumb buffer (`DRM_IOCTL_MODE_CREATE_DUMB`): LINEAR
    /// memory the card can scan out, `bpp` bits per pixel, rows `pitch`
    /// bytes apart as the driver chose.
    pub fn create_dumb(&self, width: u32, height: u32, bpp: u32) -> Result<DumbBuffer> {
        let mut d = uapi::CreateDumb {
            width,
            height,
            bpp,
            ..Default::default()
        };
        // SAFETY: a pointer-free struct of the opcode's type.
        unsafe { call::<{ uapi::MODE_CREATE_DUMB }, _>(self.fd(), &mut d) }?;
        Ok(DumbBuffer {
            handle: Handle(d.handle),
            pitch: d.pitch,
            size: d.size,
        })
    }

    /// `DRM_IOCTL_PRIME_HANDLE_TO_FD`: the buffer as a dma-buf (readable,
    /// writable, closed on exec). Every export of one buffer shares its
    /// reservation object, so they all see the same fences.
    pub fn export(&self, handle: Handle) -> Result<DmaBuf> {
        let mut h = uapi::DrmPrimeHandle {
            handle: handle.0,
            flags: uapi::CLOEXEC_RDWR,
            fd: -1,
        };
        // SAFETY: a pointer-free struct of the opcode's type.
        unsafe { call::<{ uapi::PRIME_HANDLE_TO_FD }, _>(self.fd(), &mut h) }?;
        // SAFETY: on success the kernel installed a new descriptor for us
        // alone in `fd`.
        Ok(DmaBuf::from(unsafe { OwnedFd::from_raw_fd(h.fd) }))
    }

    /// Closes a buffer's handle (framebuffers made of it keep
    /// the buffer alive).
    pub fn close_handle(&self, handle: Handle) -> Result<()> {
        Ok(uapi::gem_close(self.fd(), handle.0)?)
    }

    /// Makes a framebuffer (`DRM_IOCTL_MODE_ADDFB2`); its id.
    pub fn add_framebuffer(&self, d: &FramebufferDesc) -> Result<u32> {
        let mut f = uapi::FbCmd2 {
            width: d.width,
            height: d.height,
            pixel_format: d.format,
            flags: if d.modifier.is_some() {
                uapi::FB_MODIFIERS
            } else {
                0
            },
            ..Default::default()
        };
        f.handles[0] = d.handle.0;
        f.pitches[0] = d.pitch;
        f.offsets[0] = d.offset;
        f.modifier[0] = d.modifier.unwrap_or(0);
        // SAFETY: a pointer-free struct of the opcode's type.
        unsafe { call::<{ uapi::MODE_ADDFB2 }, _>(self.fd(), &mut f) }?;
        Ok(f.fb_id)
    }

    /// Removes framebuffer `id` (switching off a plane that shows it).
    pub fn remove_framebuffer(&self, id: u32) -> Result<()> {
        let mut id = id;
        // SAFETY: the opcode's argument is one u32.
        unsafe { call::<{ uapi::MODE_RMFB }, _>(self.fd(), &mut id) }?;
        Ok(())
    }

    /// A property blob holding `mode` (for a CRTC's `MODE_ID`); its id.
    pub fn create_mode_blob(&self, mode: &ModeInfo) -> Result<u32> {
        let mut b = uapi::CreateBlob {
            data: std::ptr::from_ref(mode) as u64,
            length: std::mem::size_of::<ModeInfo>() as u32,
            blob_id: 0,
        };
        // SAFETY: `data` points at `length` readable bytes for the call.
        unsafe { call::<{ uapi::MODE_CREATEPROPBLOB }, _>(self.fd(), &mut b) }?;
        Ok(b.blob_id)
    }

    /// Destroys blob `id`.
    pub fn destroy_blob(&self, id: u32) -> Result<()> {
        let mut b = uapi::DestroyBlob { blob_id: id };
        // SAFETY: a pointer-free struct of the opcode's type.
        unsafe { call::<{ uapi::MODE_DESTROYPROPBLOB }, _>(self.fd(), &mut b) }?;
        Ok(())
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<OwnedFd> for Card {
    /// A card from a descriptor of a KMS device node opened elsewhere (a
    /// DRM lease, a display server's handed-over descriptor).
    fn from(fd: OwnedFd) -> Card {
        Card { fd }
    }
}

impl AsFd for Card {
    /// The card's descriptor: readable when an event waits (`poll(2)`).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A mode's refresh in mHz, from its timings (the kernel's `vrefresh` is
/// rounded to whole Hz).
pub fn refresh_mhz(mode: &ModeInfo) -> u64 {
    let pixels = u64::from(mode.htotal) * u64::from(mode.vtotal);
    if pixels == 0 {
        return u64::from(mode.vrefresh) * 1000;
    }
    u64::from(mode.clock) * 1_000_000 / pixels
}

impl ModeInfo {
    /// The mode's name ("1024x768").
    pub fn name(&self) -> String {
        name_from_c(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_comes_from_the_timings() {
        // CEA 1080p60: 148.5 MHz over 2200 x 1125.
        let mode = ModeInfo {
            clock: 148_500,
            htotal: 2200,
            vtotal: 1125,
            vrefresh: 60,
            ..Default::default()
        };
        assert_eq!(refresh_mhz(&mode), 60_000);
        let unknown = ModeInfo {
            vrefresh: 75,
            ..Default::default()
        };
        assert_eq!(refresh_mhz(&unknown), 75_000);
    }
}
