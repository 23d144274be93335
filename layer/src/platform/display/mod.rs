//! The display platform (`VK_KHR_display`): the outputs of the machine's
//! KMS devices as Vulkan displays, for any driver that can export and
//! import dma-bufs, scanned out by atomic commits that the kernel holds
//! until the render's fence signals.
//!
//! * [`outputs`] finds the displays (connected connectors, with their
//!   modes) and the planes (each card's primary planes), once per process.
//!   Their handles, and the handles of the modes and surfaces made on
//!   them, are the layer's own: addresses of the layer's objects, which
//!   never reach the driver.
//! * A swapchain's images are the card's own dumb buffers (LINEAR memory
//!   every display controller can scan out), exported as dma-bufs and
//!   imported into Vulkan: the layout a real GPU's export might not give a
//!   display controller is never in question, and an X server's DRI3
//!   device is served the same way.
//! * A [`Session`] holds the card while any swapchain lives on the display:
//!   DRM master from the first swapchain's creation, the output switched
//!   off and master dropped when the last one goes (so a console or
//!   another display server can take over).
//! * [`scanout`] is the presenter: one commit in flight, paced by flip
//!   events.

mod readback;
mod scanout;
mod session;

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use ash::vk;
use ash::vk::Handle;
use syncfile::kms::{self, client_cap, Card, ModeInfo, Object};

use crate::plumbing::settings::{Platform, Settings};
use crate::vulkan::caps::{Format, SwapchainCaps};
use crate::wsi::platform::LINEAR;
use crate::wsi::platform::{
    require_linear, Allocator, Buffer, PlatformError, PlatformSurface, Presenter, PresenterConfig,
};
pub use session::Session;

/// `DRM_MODE_TYPE_PREFERRED`.
const PREFERRED: u32 = 1 << 3;

/// One output of a KMS device: a connected connector.
pub struct Display {
    pub card: PathBuf,
    pub connector: u32,
    /// `Virtual-1`, `HDMI-A-2`: the kernel's name for it.
    pub name: CString,
    /// The physical size in mm, where known.
    pub mm: (u32, u32),
    /// Bit `i`: the card's `i`-th CRTC can drive it.
    pub crtcs: u32,
    /// Its modes: the connector's, then those the application made.
    modes: Mutex<Vec<Arc<Mode>>>,
    /// The card of its swapchains while any lives.
    session: Mutex<Weak<Session>>,
    /// A descriptor the application handed over (`vkAcquireDrmDisplayEXT`)
    /// for the layer to drive the display through, instead of opening the
    /// card itself.
    acquired: Mutex<Option<Arc<Card>>>,
}

/// A mode of a display.
pub struct Mode {
    pub info: ModeInfo,
    /// Refresh in mHz, from the timings.
    pub refresh_mhz: u32,
}

/// A primary plane of a card: what `VK_KHR_display` calls a plane.
pub struct Plane {
    pub card: PathBuf,
    pub id: u32,
    /// Bit `i`: it can feed the card's `i`-th CRTC.
    pub possible_crtcs: u32,
    /// The DRM fourccs it scans out.
    pub formats: Vec<u32>,
}

/// Every display and plane of the machine's KMS devices.
pub struct Outputs {
    pub displays: Vec<Display>,
    pub planes: Vec<Plane>,
}

impl Display {
    pub fn handle(&self) -> vk::DisplayKHR {
        vk::DisplayKHR::from_raw(std::ptr::from_ref(self) as u64)
    }

    /// Its modes; the first is the preferred one.
    pub fn modes(&self) -> Vec<Arc<Mode>> {
        self.modes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The mode `handle` of this display, if it is one.
    pub fn mode(&self, handle: vk::DisplayModeKHR) -> Option<Arc<Mode>> {
        self.modes().into_iter().find(|m| m.handle() == handle)
    }

    /// `vkCreateDisplayModeKHR`: the connector's mode of that size and
    /// refresh (KMS drives no other), as a mode of its own.
    pub fn create_mode(&self, extent: vk::Extent2D, refresh_mhz: u32) -> Option<Arc<Mode>> {
        let mut modes = self.modes.lock().unwrap_or_else(|e| e.into_inner());
        let found = modes.iter().find(|m| {
            m.extent() == extent && m.refresh_mhz.abs_diff(refresh_mhz) <= MODE_REFRESH_SLACK
        })?;
        let made = Arc::new(Mode {
            info: found.info,
            refresh_mhz: found.refresh_mhz,
        });
        modes.push(made.clone());
        Some(made)
    }

    /// Whether a plane can show this display.
    pub fn shown_by(&self, plane: &Plane) -> bool {
        plane.card == self.card && plane.possible_crtcs & self.crtcs != 0
    }

    /// Takes the display over with `card`, the application's descriptor
    /// (`vkAcquireDrmDisplayEXT`); `false` if a swapchain already drives
    /// it through another.
    pub fn acquire(&self, card: Card) -> bool {
        if self.live_session().is_some() {
            return false;
        }
        *self.acquired.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(card));
        true
    }

    /// `vkReleaseDisplayEXT`: forgets the application's descriptor.
    pub fn release(&self) {
        self.acquired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    fn live_session(&self) -> Option<Arc<Session>> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade()
    }

    /// The session of the display's swapchains: the live one, or a new one
    /// (DRM master, the output routed through `plane`) for the first
    /// swapchain.
    fn session(&self, plane: &Plane) -> Result<Arc<Session>, PlatformError> {
        let mut slot = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = slot.upgrade() {
            return Ok(s);
        }
        let acquired = self
            .acquired
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let s = Arc::new(Session::open(self, plane.id, acquired)?);
        *slot = Arc::downgrade(&s);
        Ok(s)
    }
}

/// How far apart in mHz a requested refresh and a mode's may be: the
/// timings give fractions that applications round.
const MODE_REFRESH_SLACK: u32 = 1000;

impl Mode {
    pub fn handle(&self) -> vk::DisplayModeKHR {
        vk::DisplayModeKHR::from_raw(std::ptr::from_ref(self) as u64)
    }

    pub fn extent(&self) -> vk::Extent2D {
        vk::Extent2D {
            width: self.info.hdisplay.into(),
            height: self.info.vdisplay.into(),
        }
    }

    fn of(info: ModeInfo) -> Arc<Mode> {
        Arc::new(Mode {
            info,
            refresh_mhz: u32::try_from(kms::refresh_mhz(&info)).unwrap_or(u32::MAX),
        })
    }
}

impl Outputs {
    /// The display `handle`, if it is one of the layer's.
    pub fn display(&self, handle: vk::DisplayKHR) -> Option<&Display> {
        self.displays.iter().find(|d| d.handle() == handle)
    }

    /// The mode `handle` and its display, if it is one of the layer's.
    pub fn mode(&self, handle: vk::DisplayModeKHR) -> Option<(&Display, Arc<Mode>)> {
        self.displays
            .iter()
            .find_map(|d| Some((d, d.mode(handle)?)))
    }

    /// The display of connector `connector` on the card whose device
    /// number is `rdev` (`vkGetDrmDisplayEXT`).
    pub fn by_connector(&self, rdev: u64, connector: u32) -> Option<&Display> {
        self.displays
            .iter()
            .find(|d| d.connector == connector && device_number(&d.card) == Some(rdev))
    }
}

/// The device number of a device node.
pub fn device_number(path: &Path) -> Option<u64> {
    rustix::fs::stat(path).ok().map(|s| s.st_rdev)
}

static OUTPUTS: OnceLock<Outputs> = OnceLock::new();

/// The displays and planes, if [`outputs`] found them already: a handle
/// can only be one of the layer's once they were.
pub fn found() -> Option<&'static Outputs> {
    OUTPUTS.get()
}

/// The displays and planes, found at the first call (with the settings of
/// the instance that asks first).
pub fn outputs(settings: &Settings) -> &'static Outputs {
    OUTPUTS.get_or_init(|| {
        let outputs = discover(settings.display_device.as_deref());
        let names: Vec<_> = outputs
            .displays
            .iter()
            .map(|d| format!("{} on {}", d.name.to_string_lossy(), d.card.display()))
            .collect();
        tracing::info!(
            "display platform: {} displays [{}], {} planes",
            names.len(),
            names.join(", "),
            outputs.planes.len()
        );
        outputs
    })
}

/// Reads the outputs of the cards `device` names (a node, or a driver's
/// name), or of every `/dev/dri/card*`.
fn discover(device: Option<&str>) -> Outputs {
    let mut cards: Vec<PathBuf> = match device {
        Some(path) if path.starts_with('/') => vec![PathBuf::from(path)],
        _ => std::fs::read_dir("/dev/dri")
            .into_iter()
            .flatten()
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("card"))
            })
            .collect(),
    };
    cards.sort();
    if let Some(driver) = device.filter(|d| !d.starts_with('/')) {
        cards.retain(|p| {
            Card::open(p)
                .and_then(|c| c.driver_name())
                .is_ok_and(|n| n == driver)
        });
    }
    let mut outputs = Outputs {
        displays: Vec::new(),
        planes: Vec::new(),
    };
    for path in cards {
        if let Err(e) = read_card(&path, &mut outputs) {
            tracing::debug!("display platform: skipping {}: {e}", path.display());
        }
    }
    outputs
}

fn read_card(path: &Path, outputs: &mut Outputs) -> Result<(), syncfile::Error> {
    let card = Card::open(path)?;
    // Without atomic commits there is no fenced scan-out to offer.
    card.set_client_cap(client_cap::ATOMIC, 1)?;
    let res = card.resources()?;
    for &id in &res.connectors {
        let c = card.connector(id)?;
        if !c.connected || c.modes.is_empty() || c.kind == kms::CONNECTOR_WRITEBACK {
            continue;
        }
        let mut crtcs = 0;
        for &e in &c.encoders {
            crtcs |= card.encoder_crtcs(e)?;
        }
        let mut modes: Vec<Arc<Mode>> = c.modes.iter().map(|&m| Mode::of(m)).collect();
        if let Some(i) = modes.iter().position(|m| m.info.type_ & PREFERRED != 0) {
            let preferred = modes.remove(i);
            modes.insert(0, preferred);
        }
        outputs.displays.push(Display {
            card: path.to_owned(),
            connector: id,
            name: CString::new(format!("{}-{}", connector_kind(c.kind), c.kind_id))
                .unwrap_or_default(),
            mm: c.mm,
            crtcs,
            modes: Mutex::new(modes),
            session: Mutex::new(Weak::new()),
            acquired: Mutex::new(None),
        });
    }
    for id in card.planes()? {
        let primary = card
            .properties(id, Object::Plane)?
            .iter()
            .any(|p| p.name == "type" && p.value == 1);
        if primary {
            let plane = card.plane(id)?;
            outputs.planes.push(Plane {
                card: path.to_owned(),
                id,
                possible_crtcs: plane.possible_crtcs,
                formats: plane.formats,
            });
        }
    }
    Ok(())
}

/// The kernel's name for a `DRM_MODE_CONNECTOR_*` kind.
fn connector_kind(kind: u32) -> &'static str {
    const NAMES: [&str; 22] = [
        "Unknown",
        "VGA",
        "DVI-I",
        "DVI-D",
        "DVI-A",
        "Composite",
        "SVIDEO",
        "LVDS",
        "Component",
        "DIN",
        "DP",
        "HDMI-A",
        "HDMI-B",
        "TV",
        "eDP",
        "Virtual",
        "DSI",
        "DPI",
        "Writeback",
        "SPI",
        "USB",
        "Unknown",
    ];
    NAMES.get(kind as usize).copied().unwrap_or("Unknown")
}

/// The present modes a display offers: FIFO and MAILBOX always (one commit
/// in flight, the queue paced by flip events), IMMEDIATE where the card
/// flips without waiting for vblank.
const MODES: [vk::PresentModeKHR; 3] = [
    vk::PresentModeKHR::FIFO,
    vk::PresentModeKHR::MAILBOX,
    vk::PresentModeKHR::IMMEDIATE,
];

/// A surface on a display plane (`vkCreateDisplayPlaneSurfaceKHR`).
pub struct DisplaySurface {
    pub display: &'static Display,
    pub mode: Arc<Mode>,
    pub plane: &'static Plane,
    /// Whether the card can flip without waiting for vblank.
    tearing: bool,
}

impl DisplaySurface {
    pub fn new(display: &'static Display, mode: Arc<Mode>, plane: &'static Plane) -> Self {
        let tearing = Card::open(&display.card)
            .and_then(|c| c.cap(kms::cap::ATOMIC_ASYNC_PAGE_FLIP))
            .is_ok_and(|v| v != 0);
        DisplaySurface {
            display,
            mode,
            plane,
            tearing,
        }
    }
}

/// The scan-out format of a swapchain format: alpha is not blended on a
/// primary plane, so the X variant (`XR24` for `AR24`).
fn scanout_fourcc(format: Format) -> u32 {
    format.fourcc & !0xff | u32::from(b'X')
}

impl PlatformSurface for DisplaySurface {
    fn platform(&self) -> Platform {
        Platform::Display
    }

    fn capabilities(
        &self,
        caps: &SwapchainCaps,
        _: Option<vk::PresentModeKHR>,
    ) -> vk::SurfaceCapabilitiesKHR {
        let extent = self.mode.extent();
        vk::SurfaceCapabilitiesKHR {
            // One image on the screen, one in the commit in flight, one
            // for the application: FIFO never waits for a free image.
            min_image_count: 3,
            max_image_count: 8,
            current_extent: extent,
            min_image_extent: extent,
            max_image_extent: extent,
            max_image_array_layers: 1,
            supported_transforms: vk::SurfaceTransformFlagsKHR::IDENTITY,
            current_transform: vk::SurfaceTransformFlagsKHR::IDENTITY,
            supported_composite_alpha: vk::CompositeAlphaFlagsKHR::OPAQUE,
            supported_usage_flags: caps.usage,
        }
    }

    fn present_modes(&self) -> &'static [vk::PresentModeKHR] {
        if self.tearing {
            &MODES
        } else {
            &MODES[..2]
        }
    }

    fn accepts_format(&self, format: Format) -> bool {
        self.plane.formats.contains(&scanout_fourcc(format))
    }

    fn accepts_modifier(&self, _: Format, modifier: u64, _: &Settings) -> bool {
        modifier == LINEAR
    }

    fn allocator(&self, _: &Settings) -> Option<Box<dyn Allocator>> {
        Some(Box::new(DumbAllocator {
            display: self.display,
            plane: self.plane,
            session: OnceLock::new(),
        }))
    }

    fn create_presenter(
        &self,
        config: PresenterConfig<'_>,
    ) -> Result<Box<dyn Presenter>, PlatformError> {
        let session = self.display.session(self.plane)?;
        scanout::start(session, &self.mode, config)
    }
}

/// Allocates a display swapchain's images as the card's dumb buffers.
struct DumbAllocator {
    display: &'static Display,
    plane: &'static Plane,
    /// Held from the first allocation to the swapchain's presenter, so
    /// that master is taken once.
    session: OnceLock<Arc<Session>>,
}

impl Allocator for DumbAllocator {
    fn allocate(
        &self,
        format: Format,
        extent: vk::Extent2D,
        modifiers: &[u64],
    ) -> Result<Buffer, PlatformError> {
        require_linear(format, modifiers, "scan-out buffers")?;
        let session = match self.session.get() {
            Some(s) => s,
            None => {
                let s = self.display.session(self.plane)?;
                self.session.get_or_init(|| s)
            }
        };
        session.allocate(extent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vulkan::caps::CANDIDATES;

    fn display(modes: &[(u16, u16, u32)]) -> Display {
        let modes = modes
            .iter()
            .map(|&(w, h, hz)| {
                Mode::of(ModeInfo {
                    hdisplay: w,
                    vdisplay: h,
                    vrefresh: hz,
                    ..Default::default()
                })
            })
            .collect();
        Display {
            card: PathBuf::from("/dev/dri/card9"),
            connector: 31,
            name: CString::new("Virtual-1").unwrap(),
            mm: (0, 0),
            crtcs: 0b10,
            modes: Mutex::new(modes),
            session: Mutex::new(Weak::new()),
            acquired: Mutex::new(None),
        }
    }

    #[test]
    fn a_made_mode_is_one_the_connector_lists_under_a_handle_of_its_own() {
        let d = display(&[(1024, 768, 60), (800, 600, 75)]);
        let extent = vk::Extent2D {
            width: 800,
            height: 600,
        };
        let made = d
            .create_mode(extent, 74_600)
            .expect("800x600 at about 75 Hz");
        assert_eq!((made.info.hdisplay, made.refresh_mhz), (800, 75_000));
        assert_eq!(d.modes().len(), 3);
        assert!(d.mode(made.handle()).is_some());
        assert_ne!(made.handle(), d.modes()[1].handle());
        assert!(d.create_mode(extent, 60_000).is_none());
        assert!(d
            .create_mode(
                vk::Extent2D {
                    width: 640,
                    height: 480
                },
                75_000
            )
            .is_none());
    }

    #[test]
    fn planes_show_displays_of_their_card_and_crtcs() {
        let d = display(&[(1024, 768, 60)]);
        let plane = |card: &str, crtcs| Plane {
            card: PathBuf::from(card),
            id: 40,
            possible_crtcs: crtcs,
            formats: Vec::new(),
        };
        assert!(d.shown_by(&plane("/dev/dri/card9", 0b11)));
        assert!(!d.shown_by(&plane("/dev/dri/card9", 0b01)));
        assert!(!d.shown_by(&plane("/dev/dri/card0", 0b10)));
    }

    #[test]
    fn scan_out_drops_alpha_and_names_follow_the_kernel() {
        assert_eq!(scanout_fourcc(CANDIDATES[0]), u32::from_le_bytes(*b"XR24"));
        assert_eq!(scanout_fourcc(CANDIDATES[2]), u32::from_le_bytes(*b"XB24"));
        assert_eq!(connector_kind(15), "Virtual");
        assert_eq!(connector_kind(11), "HDMI-A");
        assert_eq!(connector_kind(99), "Unknown");
    }
}
