//! The Wayland platform (`VK_KHR_wayland_surface`).
//!
//! The layer owns a Wayland surface when the compositor offers
//! `zwp_linux_dmabuf_v1` (checked once, when the surface is created) and
//! the device has what the layer needs; otherwise the driver's own WSI
//! serves it. Each swapchain gets its own connection on the application's
//! `wl_display` (a private event queue: the application's queues never see
//! the layer's events) and a `wl_buffer` per image made from its dma-buf;
//! presents commit on the application's thread, and a thread of the
//! layer's dispatches the private queue ([`presenter`]).
//!
//! Sync: the sync bridge has already made the render the dma-buf's write
//! fence when an image arrives here. When the compositor offers
//! `zwp_linux_explicit_synchronization_v1` and `SYNCFILE_WSI_SYNC` allows
//! it (`auto` or `explicit`), the same sync_file goes along as the commit's
//! acquire fence and the compositor's release fence is added to the
//! dma-buf as a read fence, which the next acquire's export returns.
//! `wp_linux_drm_syncobj_v1` is detected and reported only: the layer's
//! drivers cannot export DRM syncobjs.
//!
//! Results, as Mesa's Wayland WSI gives them: a surface has no size of its
//! own (the swapchain's extent decides, so there is no resize to report);
//! a retired swapchain answers `VK_ERROR_OUT_OF_DATE_KHR`; with
//! `zwp_linux_dmabuf_v1` v4, a change in the modifiers the surface's
//! dma-buf feedback prefers for the swapchain's format makes it
//! `VK_SUBOPTIMAL_KHR`.
//!
//! libwayland-client is loaded with `dlopen` on first use, so applications
//! without Wayland still load the layer. Every wait on the compositor has a
//! deadline: a compositor that goes away or raises a protocol error makes
//! the surface lost (`VK_ERROR_SURFACE_LOST_KHR`), never a hang or a crash.
//! That holds for a surface made on a display that has already failed, too:
//! the layer owns it, and refuses every query and swapchain on it.

mod client;
pub(crate) mod feedback;
pub mod formats;
mod link;
mod presenter;
mod timing;

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ash::vk;

pub use client::{display_failed, Client, Events, Offer};
pub use link::{BufferDesc, Commit, Plane, Release, SurfaceLink};
pub use presenter::FIFO_WAIT;

use crate::plumbing::settings::{Platform, Settings, SyncMode};
use crate::plumbing::stats::{self, Counter};
use crate::vulkan::caps::{Format, SwapchainCaps};
use crate::wsi::platform::{
    sizeless_capabilities, PlatformError, PlatformSurface, Presenter, PresenterConfig,
};
use presenter::WaylandPresenter;

/// How long the layer waits for any one answer from the compositor.
pub const TIMEOUT: Duration = Duration::from_secs(10);

const PRESENT_MODES: [vk::PresentModeKHR; 3] = [
    vk::PresentModeKHR::FIFO,
    vk::PresentModeKHR::MAILBOX,
    vk::PresentModeKHR::IMMEDIATE,
];

#[derive(Debug, thiserror::Error)]
pub enum WaylandError {
    #[error("libwayland-client.so.0 cannot be loaded")]
    NoLibrary,
    #[error("the application's wl_display or wl_surface pointer is not one")]
    BadHandle,
    #[error("the connection to the compositor is lost: {0}")]
    Lost(String),
    #[error("the compositor did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the compositor does not offer {0}")]
    NotOffered(&'static str),
    #[error("the compositor's dma-buf format table cannot be read: {0}")]
    FormatTable(#[source] std::io::Error),
    #[error("the image's layout does not fit the protocol's 32-bit offsets")]
    Layout,
    #[error(
        "the compositor refused the dma-bufs of {0} images (zwp_linux_buffer_params_v1.failed)"
    )]
    Refused(usize),
    #[error("the compositor accepts neither {0:#x} nor {1:#x} with modifier {2:#x}")]
    Format(formats::Fourcc, formats::Fourcc, u64),
}

impl From<WaylandError> for PlatformError {
    fn from(e: WaylandError) -> Self {
        match e {
            WaylandError::Lost(why) => PlatformError::Lost(why),
            other => PlatformError::Refused(other.to_string()),
        }
    }
}

/// An owned Wayland surface: the application's display and surface, and
/// what the compositor offered when it was created.
#[derive(Debug)]
pub struct WaylandSurface {
    display: NonNull<c_void>,
    surface: NonNull<c_void>,
    offer: Offer,
    /// The loss has been logged: once per surface, however often the
    /// application asks.
    loss_reported: AtomicBool,
}

impl WaylandSurface {
    fn new(display: NonNull<c_void>, surface: NonNull<c_void>, offer: Offer) -> Self {
        WaylandSurface {
            display,
            surface,
            offer,
            loss_reported: AtomicBool::new(false),
        }
    }

    /// The surface of a display whose connection had already failed when
    /// the surface was made: every query about it answers
    /// `VK_ERROR_SURFACE_LOST_KHR`, as the loss is permanent.
    pub fn lost(display: NonNull<c_void>, surface: NonNull<c_void>) -> Self {
        Self::new(display, surface, Offer::default())
    }

    /// Whether the application's connection to the compositor has failed.
    fn connection_failed(&self) -> bool {
        // SAFETY: Vulkan makes the application keep the display alive as
        // long as the surface.
        let lost = unsafe { display_failed(self.display.as_ptr()) };
        if lost && !self.loss_reported.swap(true, Ordering::Relaxed) {
            tracing::warn!("the compositor connection of a Wayland surface is lost: its queries and swapchains answer VK_ERROR_SURFACE_LOST_KHR");
        }
        lost
    }
}

// SAFETY: the pointers are only ever handed to libwayland, whose proxies may
// be used from any thread (it locks the display itself); Vulkan makes the
// application keep them alive as long as the VkSurfaceKHR.
unsafe impl Send for WaylandSurface {}
// SAFETY: as above; the layer never dereferences them itself.
unsafe impl Sync for WaylandSurface {}

/// Whether a swapchain on this surface uses the explicit-sync protocol.
pub fn explicit(offer: &Offer, sync: SyncMode) -> bool {
    match sync {
        SyncMode::Auto | SyncMode::Explicit => offer.explicit_sync,
        // The CPU fallback hands over finished renders only; implicit is
        // what the setting says.
        SyncMode::Implicit | SyncMode::Cpu => false,
    }
}

/// The DRM format an image of `format` goes to the compositor as: the one
/// its alpha handling asks for if the compositor takes it with `modifier`,
/// else the other (alpha then blended, or ignored, unasked).
fn drm_format(
    offer: &Offer,
    format: vk::Format,
    opaque: bool,
    modifier: u64,
) -> Result<formats::Fourcc, WaylandError> {
    let wanted = formats::drm_format(format, opaque);
    let other = formats::drm_format(format, !opaque);
    match (wanted, other) {
        (Some(w), _) if offer.formats.contains(w, modifier) => Ok(w),
        (_, Some(o)) if offer.formats.contains(o, modifier) => Ok(o),
        _ => Err(WaylandError::Format(
            wanted.unwrap_or(0),
            other.unwrap_or(0),
            modifier,
        )),
    }
}

/// How many images a swapchain needs so that the application does not wait
/// for the compositor's repaints. The compositor samples a dma-buf where it
/// is (where a `wl_shm` buffer is copied and given back at once), so it
/// holds the image on the screen until a repaint after its successor's
/// commit: that one, one committed (or waiting to be), one being drawn;
/// MAILBOX, whose frames replace each other without waiting, needs one
/// more to draw into meanwhile. Mesa's Wayland WSI asks the same (3, 4 for
/// MAILBOX, and 4 when the mode is not named).
fn min_images(mode: Option<vk::PresentModeKHR>) -> u32 {
    match mode {
        Some(m) if m != vk::PresentModeKHR::MAILBOX => 3,
        _ => 4,
    }
}

impl PlatformSurface for WaylandSurface {
    fn platform(&self) -> Platform {
        Platform::Wayland
    }

    fn is_lost(&self) -> bool {
        self.connection_failed()
    }

    fn capabilities(
        &self,
        caps: &SwapchainCaps,
        mode: Option<vk::PresentModeKHR>,
    ) -> vk::SurfaceCapabilitiesKHR {
        // A Wayland surface takes the size of what is attached to it.
        sizeless_capabilities(
            caps,
            (min_images(mode), 0),
            // Opaque images go as X formats; others are blended
            // premultiplied, as Wayland defines alpha.
            vk::CompositeAlphaFlagsKHR::OPAQUE | vk::CompositeAlphaFlagsKHR::PRE_MULTIPLIED,
        )
    }

    fn present_modes(&self) -> &'static [vk::PresentModeKHR] {
        &PRESENT_MODES
    }

    fn accepts_modifier(&self, format: Format, modifier: u64, _: &Settings) -> bool {
        [true, false]
            .into_iter()
            .any(|opaque| drm_format(&self.offer, format.vk, opaque, modifier).is_ok())
    }

    fn create_presenter(
        &self,
        config: PresenterConfig<'_>,
    ) -> Result<Box<dyn Presenter>, PlatformError> {
        // SAFETY: Vulkan makes the application keep its display alive as
        // long as the surface, and the swapchain does not outlive that.
        let (mut client, mut events) = unsafe { Client::connect(self.display.as_ptr(), TIMEOUT) }?;
        let explicit = explicit(client.offer(), config.settings.sync);
        if config.settings.sync == SyncMode::Explicit && !explicit {
            tracing::warn!("SYNCFILE_WSI_SYNC=explicit, but the compositor offers no explicit-sync protocol: implicit sync only");
        }
        // SAFETY: as for the display; the surface outlives the swapchain.
        let link = unsafe { SurfaceLink::new(&client, self.surface.as_ptr(), explicit) }?;
        let opaque = config.composite_alpha == vk::CompositeAlphaFlagsKHR::OPAQUE;
        // The same for every image of a swapchain.
        let format = drm_format(client.offer(), config.format.vk, opaque, config.modifier)?;
        // Images whose memory is bound later get theirs at first present.
        let buffers = (0..config.images.len() as u32)
            .map(|i| {
                config
                    .images
                    .get(i)
                    .map(|image| presenter::wl_buffer(&mut client, image, format, i))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A buffer the compositor refuses (a protocol error, or `failed`) is
        // seen here, before the application has a swapchain, not at the
        // first present.
        events.roundtrip()?;
        let refused = events.take_refused();
        if !refused.is_empty() {
            stats::count(Counter::WaylandRefused);
            return Err(WaylandError::Refused(refused.len()).into());
        }
        tracing::info!(
            "Wayland swapchain: {} images, {:?}, {} sync",
            config.images.len(),
            config.present_mode,
            if explicit { "explicit" } else { "implicit" }
        );
        Ok(Box::new(WaylandPresenter::start(
            client,
            events,
            link,
            (buffers, config.images),
            format,
            config.returns,
        )?))
    }
}

/// Whether the layer can present to a compositor that offers `offer`: it
/// takes dma-bufs (`zwp_linux_dmabuf_v1` v3+) in some format.
pub fn serves(offer: &Offer) -> bool {
    offer.dmabuf_version != 0 && !offer.formats.is_empty()
}

/// What the compositor behind `display` offers, if the layer can serve a
/// surface there (`vkCreateWaylandSurfaceKHR`).
pub fn probe(display: *mut c_void, wl_surface: *mut c_void) -> Option<Arc<dyn PlatformSurface>> {
    let (display, wl_surface) = (NonNull::new(display)?, NonNull::new(wl_surface)?);
    // SAFETY: the application's live display (valid usage of
    // vkCreateWaylandSurfaceKHR); the client is dropped before returning.
    let offer = match unsafe { Client::connect(display.as_ptr(), TIMEOUT) } {
        Ok((c, _)) => c.offer().clone(),
        // SAFETY: the application's live display, as above.
        Err(e) if unsafe { display_failed(display.as_ptr()) } => {
            // The driver's WSI could only fail on this display too; owning
            // the surface makes every query answer VK_ERROR_SURFACE_LOST_KHR.
            tracing::error!("vkCreateWaylandSurfaceKHR on a display whose connection is lost ({e}): the surface is lost");
            stats::count(Counter::WaylandLost);
            return Some(Arc::new(WaylandSurface::lost(display, wl_surface)));
        }
        Err(e) => {
            tracing::warn!("the driver's WSI serves this Wayland surface: {e}");
            return None;
        }
    };
    if !serves(&offer) {
        tracing::info!(
            "the compositor offers no dma-buf formats (no zwp_linux_dmabuf_v1 v3+): the driver's WSI serves this Wayland surface"
        );
        stats::count(Counter::WaylandNoDmaBuf);
        return None;
    }
    if offer.drm_syncobj {
        tracing::info!("the compositor offers wp_linux_drm_syncobj_v1; the layer uses zwp_linux_explicit_synchronization_v1 or implicit sync");
    }
    Some(Arc::new(WaylandSurface::new(display, wl_surface, offer)))
}
