//! The X11 platform (`VK_KHR_xcb_surface`, `VK_KHR_xlib_surface`): DRI3
//! pixmaps made from the swapchain's dma-bufs, shown with Present.
//!
//! The layer owns an X11 surface when the server offers DRI3 1.2,
//! Present 1.2 and SYNC 3.1, its DRI3 device makes dumb buffers and
//! exports them, the window's depth is 24 or 32 and DRI3 takes LINEAR
//! buffers for it (checked once, when the surface is created); otherwise
//! everything about the surface goes to the driver's WSI. The layer talks
//! to the server on connections of its own ([`server`]), found from the
//! application's ([`app`]): the application's requests and events never
//! mix with the layer's.
//!
//! Buffers: a server can always use buffers of its own DRI3 device, and in
//! the test guest only those (glamor on llvmpipe maps them as dumb
//! buffers, which the kernel refuses for imported ones). So the images are
//! dumb buffers made on the device `DRI3Open` returns, imported into
//! Vulkan, as on a display (`crate::platform::dumb`).
//!
//! Capabilities and results, as Mesa's X11 WSI gives them: the current
//! extent is the window's size; a swapchain whose window's size no longer
//! matches answers `VK_ERROR_OUT_OF_DATE_KHR`, one whose frames the server
//! stopped flipping answers `VK_SUBOPTIMAL_KHR`; a window or server that is gone makes the surface
//! lost. Presents and sync: [`presenter`].

mod app;
mod link;
mod presenter;
pub mod server;
mod thread;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ash::vk;
use syncfile::kms::{self, Card};
use x11rb::protocol::xproto::Window;

pub use app::AppConnection;
use server::{Conn, Geometry, Offer};

use crate::platform::dumb;
use crate::plumbing::settings::{Platform, Settings};
use crate::plumbing::stats::{self, Counter};
use crate::vulkan::caps::{Format, SwapchainCaps};
use crate::wsi::platform::{
    require_linear, window_capabilities, Allocator, Buffer, PlatformError, PlatformSurface,
    Presenter, PresenterConfig, LINEAR,
};

const PRESENT_MODES: [vk::PresentModeKHR; 4] = [
    vk::PresentModeKHR::FIFO,
    vk::PresentModeKHR::MAILBOX,
    vk::PresentModeKHR::IMMEDIATE,
    vk::PresentModeKHR::FIFO_RELAXED,
];

#[derive(Debug, thiserror::Error)]
pub enum X11Error {
    #[error("{0} is not loaded in this process")]
    NoLibrary(String),
    #[error("the application's X connection or window is not one")]
    BadHandle,
    #[error("the X connection's server cannot be found: {0}")]
    Peer(String),
    #[error("cannot connect to the X server {0}")]
    Connect(String),
    #[error("the connection to the X server is lost: {0}")]
    Lost(#[from] x11rb::errors::ConnectionError),
    #[error("the X server refused a request: {0:?}")]
    Refused(x11rb::x11_utils::X11Error),
    #[error("cannot allocate an X resource id: {0}")]
    Id(#[from] x11rb::errors::ReplyOrIdError),
    #[error("{0}")]
    Unsupported(String),
}

impl From<x11rb::errors::ReplyError> for X11Error {
    fn from(e: x11rb::errors::ReplyError) -> Self {
        match e {
            x11rb::errors::ReplyError::ConnectionError(c) => X11Error::Lost(c),
            x11rb::errors::ReplyError::X11Error(x) => X11Error::Refused(x),
        }
    }
}

impl From<X11Error> for PlatformError {
    fn from(e: X11Error) -> Self {
        match e {
            X11Error::Lost(_) => PlatformError::Lost(e.to_string()),
            X11Error::Refused(ref x) if server::window_gone(x) => {
                PlatformError::Lost(e.to_string())
            }
            other => PlatformError::Refused(other.to_string()),
        }
    }
}

/// An owned X11 surface: the application's window, the layer's own
/// connection to its server (for the surface queries), and the server's
/// DRI3 device, on which the swapchains' images are made.
pub struct X11Surface {
    display: String,
    window: Window,
    conn: Conn,
    card: Arc<Card>,
    offer: Offer,
    depth: u8,
    /// The window's size when last asked (for a query that finds the
    /// server gone).
    last: Mutex<Geometry>,
    lost: AtomicBool,
}

impl X11Surface {
    /// The window's geometry now; a server or window that is gone makes
    /// the surface lost (logged once).
    fn geometry(&self) -> Geometry {
        match server::geometry(&self.conn, self.window) {
            Ok(g) => {
                *self.last.lock().unwrap_or_else(|e| e.into_inner()) = g;
                g
            }
            Err(e) => {
                if !self.lost.swap(true, Ordering::Relaxed) {
                    tracing::error!("the X11 surface is lost: {e}");
                    stats::count(Counter::X11Lost);
                }
                *self.last.lock().unwrap_or_else(|e| e.into_inner())
            }
        }
    }
}

/// The formats a window of 24 or 32 bits takes: its pixels are B, G, R
/// (and A or nothing) in memory order.
fn takes(format: vk::Format) -> bool {
    matches!(
        format,
        vk::Format::B8G8R8A8_UNORM | vk::Format::B8G8R8A8_SRGB
    )
}

/// How many images a swapchain needs so that the application does not
/// wait for the server: one shown, one queued, one being drawn; MAILBOX,
/// whose frames replace each other, one more to draw into meanwhile.
fn min_images(mode: Option<vk::PresentModeKHR>) -> u32 {
    match mode {
        Some(m) if m != vk::PresentModeKHR::MAILBOX => 3,
        _ => 4,
    }
}

impl PlatformSurface for X11Surface {
    fn platform(&self) -> Platform {
        Platform::X11
    }

    fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    fn capabilities(
        &self,
        caps: &SwapchainCaps,
        mode: Option<vk::PresentModeKHR>,
    ) -> vk::SurfaceCapabilitiesKHR {
        let g = self.geometry();
        let alpha = if self.depth == 32 {
            vk::CompositeAlphaFlagsKHR::PRE_MULTIPLIED | vk::CompositeAlphaFlagsKHR::INHERIT
        } else {
            vk::CompositeAlphaFlagsKHR::OPAQUE | vk::CompositeAlphaFlagsKHR::INHERIT
        };
        let size = vk::Extent2D {
            width: g.width.into(),
            height: g.height.into(),
        };
        window_capabilities(caps, (min_images(mode), 0), alpha, size)
    }

    fn present_modes(&self) -> &'static [vk::PresentModeKHR] {
        &PRESENT_MODES
    }

    fn accepts_format(&self, format: Format) -> bool {
        takes(format.vk)
    }

    fn accepts_modifier(&self, _: Format, modifier: u64, _: &Settings) -> bool {
        modifier == LINEAR
    }

    fn allocator(&self, _: &Settings) -> Option<Box<dyn Allocator>> {
        Some(Box::new(DumbAllocator(self.card.clone())))
    }

    fn create_presenter(
        &self,
        config: PresenterConfig<'_>,
    ) -> Result<Box<dyn Presenter>, PlatformError> {
        let conn = server::connect(&self.display)?;
        let g = self.geometry();
        Ok(Box::new(presenter::X11Presenter::start(
            conn,
            self.window,
            g,
            self.offer,
            config,
        )?))
    }
}

/// Allocates an X11 swapchain's images on the server's DRI3 device.
struct DumbAllocator(Arc<Card>);

impl Allocator for DumbAllocator {
    fn allocate(
        &self,
        format: Format,
        extent: vk::Extent2D,
        modifiers: &[u64],
    ) -> Result<Buffer, PlatformError> {
        require_linear(format, modifiers, "the X server's dumb buffers")?;
        dumb::buffer(&self.0, extent)
    }
}

/// Why the layer cannot serve this window, or what it needs to.
fn examine(connection: AppConnection, window: Window) -> Result<X11Surface, X11Error> {
    // SAFETY: the application's live connection (valid usage of the
    // surface's creation).
    let display = unsafe { connection.display_name() }?;
    let conn = server::connect(&display)?;
    let offer = server::offer(&conn)?;
    if !offer.suffices() {
        stats::count(Counter::X11NoDri3);
        return Err(X11Error::Unsupported(format!(
            "the X server offers DRI3 {}.{}, Present {}.{}, SYNC {}.{}; the layer needs DRI3 1.2, Present 1.2 and SYNC 3.1",
            offer.dri3.0, offer.dri3.1, offer.present.0, offer.present.1, offer.sync.0, offer.sync.1
        )));
    }
    let g = server::geometry(&conn, window)?;
    if g.depth != 24 && g.depth != 32 {
        return Err(X11Error::Unsupported(format!(
            "the window is {} bits deep; the layer shows 24- and 32-bit windows",
            g.depth
        )));
    }
    let modifiers = server::modifiers(&conn, window, g.depth)?;
    if !modifiers.is_empty() && !modifiers.contains(&LINEAR) {
        return Err(X11Error::Unsupported(format!(
            "DRI3 takes modifiers {modifiers:#x?} for this window, not LINEAR"
        )));
    }
    let card = server::device(&conn, window)?;
    let dumb = card.cap(kms::cap::DUMB_BUFFER).unwrap_or(0) != 0;
    let export = card.cap(kms::cap::PRIME).unwrap_or(0) & 2 != 0;
    if !dumb || !export {
        return Err(X11Error::Unsupported(
            "the X server's DRI3 device makes no dumb buffers it can export".into(),
        ));
    }
    if offer.syncobj() {
        tracing::info!("the X server offers DRI3 1.4 syncobjs; the layer uses SYNC fences (see the X11 platform's sync)");
    }
    Ok(X11Surface {
        display,
        window,
        conn,
        card: Arc::new(card),
        offer,
        depth: g.depth,
        last: Mutex::new(g),
        lost: AtomicBool::new(false),
    })
}

/// What the layer makes of a window (`vkCreateXcbSurfaceKHR`,
/// `vkCreateXlibSurfaceKHR`): its own surface, or `None` for the driver.
pub fn probe(connection: AppConnection, window: u32) -> Option<Arc<dyn PlatformSurface>> {
    match examine(connection, window) {
        Ok(s) => {
            tracing::info!(
                "the layer owns this X11 window ({}, DRI3 {}.{}, Present {}.{})",
                s.display,
                s.offer.dri3.0,
                s.offer.dri3.1,
                s.offer.present.0,
                s.offer.present.1
            );
            Some(Arc::new(s))
        }
        Err(e) => {
            tracing::warn!("the driver's WSI serves this X11 window: {e}");
            None
        }
    }
}

/// Whether the server behind `connection` is one the layer presents to
/// (`vkGet…PresentationSupportKHR`).
pub fn serves(connection: AppConnection) -> bool {
    // SAFETY: the application's live connection.
    let Ok(display) = (unsafe { connection.display_name() }) else {
        return false;
    };
    server::connect(&display)
        .and_then(|c| server::offer(&c))
        .is_ok_and(|o| o.suffices())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_needs_dri3_1_2_present_1_2_and_sync_fences() {
        let guest = Offer {
            dri3: (1, 2),
            present: (1, 2),
            sync: (3, 1),
        };
        assert!(guest.suffices() && !guest.syncobj());
        assert!(!Offer {
            dri3: (1, 0),
            ..guest
        }
        .suffices());
        assert!(!Offer {
            dri3: (0, 0),
            ..guest
        }
        .suffices());
        assert!(!Offer {
            sync: (3, 0),
            ..guest
        }
        .suffices());
        let newer = Offer {
            dri3: (1, 4),
            present: (1, 4),
            sync: (3, 1),
        };
        assert!(newer.suffices() && newer.syncobj());
    }

    #[test]
    fn windows_take_bgra_formats_and_mailbox_one_image_more() {
        assert!(takes(vk::Format::B8G8R8A8_SRGB) && takes(vk::Format::B8G8R8A8_UNORM));
        assert!(!takes(vk::Format::R8G8B8A8_UNORM));
        assert_eq!(min_images(Some(vk::PresentModeKHR::FIFO)), 3);
        assert_eq!(min_images(Some(vk::PresentModeKHR::MAILBOX)), 4);
        assert_eq!(min_images(None), 4);
    }
}
