//! The platform interface: what the WSI core asks of a window system, and
//! what a window system may ask of the core. One implementation per
//! platform (`crate::platform`); none of them makes a Vulkan call or has
//! sync code of its own.
//!
//! * A [`PlatformSurface`] is one surface the layer owns: it answers the
//!   surface queries (capabilities, present modes, which DRM format
//!   modifiers its consumer reads), says who allocates its images' memory
//!   (the Vulkan driver, exported as a dma-buf, or the consumer through an
//!   [`Allocator`], imported into Vulkan), and starts a [`Presenter`] for
//!   each swapchain.
//! * [`Presenter::present`] runs on the application's thread, inside
//!   `vkQueuePresentKHR`: every request on an application-owned object
//!   (its `wl_surface`, its X window) is made there and nowhere else. The
//!   image's dma-buf already carries the render's write fence; the same
//!   fence comes as a sync_file for consumers that speak explicit sync.
//! * The consumer gives images back through [`Returns`] (with the release
//!   fence of an explicit-sync protocol, which the core carries into the
//!   dma-buf), from whatever thread it learns it on, and reports a surface
//!   that is out of date or lost the same way.

use std::sync::{Arc, OnceLock};

use ash::vk;
use syncfile::{DmaBuf, SyncFile};

use crate::plumbing::settings::{Platform, Settings};
use crate::vulkan::caps::{Format, SwapchainCaps};

/// One surface the layer owns.
pub trait PlatformSurface: Send + Sync {
    fn platform(&self) -> Platform;

    /// Whether the window-system connection behind the surface has failed,
    /// which makes the surface lost for good.
    fn is_lost(&self) -> bool {
        false
    }

    /// The surface's capabilities on a device whose swapchains can be made
    /// of `caps`, for swapchains of present mode `mode` when the
    /// application names one (`VkSurfacePresentModeEXT`, or the mode of
    /// the swapchain being made), else for any.
    fn capabilities(
        &self,
        caps: &SwapchainCaps,
        mode: Option<vk::PresentModeKHR>,
    ) -> vk::SurfaceCapabilitiesKHR;

    /// The present modes it implements, in order of preference.
    fn present_modes(&self) -> &'static [vk::PresentModeKHR];

    /// Whether its consumer shows images of this format at all (the
    /// surface's formats are the device's that it accepts).
    fn accepts_format(&self, format: Format) -> bool {
        let _ = format;
        true
    }

    /// Whether its consumer can read images of this format and modifier.
    fn accepts_modifier(&self, format: Format, modifier: u64, settings: &Settings) -> bool;

    /// Who allocates its swapchains' images: `None` for the Vulkan driver
    /// (the memory is exported as a dma-buf), else the consumer's own
    /// allocator (its buffers are imported into Vulkan).
    fn allocator(&self, settings: &Settings) -> Option<Box<dyn Allocator>> {
        let _ = settings;
        None
    }

    /// Starts consuming the images of one swapchain.
    fn create_presenter(
        &self,
        config: PresenterConfig<'_>,
    ) -> Result<Box<dyn Presenter>, PlatformError>;
}

/// A consumer that allocates the buffers it reads (a KMS device's scan-out
/// buffers, an X server's DRI3 device), for the core to import into Vulkan.
pub trait Allocator: Send {
    /// A single-plane buffer of `format` and `extent` with one of
    /// `modifiers` (the driver's choices for the swapchain's usage, in its
    /// order of preference).
    fn allocate(
        &self,
        format: Format,
        extent: vk::Extent2D,
        modifiers: &[u64],
    ) -> Result<Buffer, PlatformError>;
}

/// `DRM_FORMAT_MOD_LINEAR`.
pub const LINEAR: u64 = 0;

/// For an allocator whose buffers are LINEAR (`buffers`: what they are):
/// refuses a swapchain whose images the driver cannot make LINEAR.
pub fn require_linear(
    format: Format,
    modifiers: &[u64],
    buffers: &str,
) -> Result<(), PlatformError> {
    if modifiers.contains(&crate::wsi::platform::LINEAR) {
        return Ok(());
    }
    Err(PlatformError::Refused(format!(
        "the driver cannot make LINEAR images of {:?} with this usage, which {buffers} are",
        format.vk
    )))
}

/// A single-plane dma-buf and its layout.
#[derive(Debug)]
pub struct Buffer {
    pub dma_buf: DmaBuf,
    pub modifier: u64,
    /// Where the plane starts in the dma-buf, in bytes.
    pub offset: u64,
    /// Bytes from one row to the next.
    pub stride: u64,
    /// The plane's size in bytes.
    pub size: u64,
}

/// One swapchain image as its consumer sees it: the buffer (with a
/// descriptor of the consumer's own) and what is in it.
#[derive(Debug)]
pub struct ConsumerImage {
    pub buffer: Buffer,
    pub format: Format,
    pub extent: vk::Extent2D,
}

/// A swapchain's images as their consumer sees them, by index: each set
/// once, when its memory is bound (at creation, or at its first acquire if
/// the application deferred the allocation), so always before its first
/// present. The swapchain sets them; its presenter and its [`Returns`] read.
#[derive(Clone)]
pub struct ConsumerImages(Arc<[OnceLock<ConsumerImage>]>);

impl ConsumerImages {
    pub fn new(count: usize) -> Self {
        Self((0..count).map(|_| OnceLock::new()).collect())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Image `index`, if its memory is bound.
    pub fn get(&self, index: u32) -> Option<&ConsumerImage> {
        self.0.get(index as usize)?.get()
    }

    /// Binds image `index`; the first binding stays.
    pub fn set(&self, index: u32, image: ConsumerImage) {
        if let Some(slot) = self.0.get(index as usize) {
            let _ = slot.set(image);
        }
    }
}

/// One presented image: its index, the frame's number (presents since the
/// process started, from 0, which names captured frames and reports what
/// became of it), and how to show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub index: u32,
    pub seq: u64,
    /// This present's mode: one of the modes the swapchain was made for
    /// (`VK_EXT_swapchain_maintenance1` switches among them per present).
    pub mode: vk::PresentModeKHR,
    /// Not to be shown before this `CLOCK_MONOTONIC` time, in ns
    /// (`VK_GOOGLE_display_timing`'s `desiredPresentTime`).
    pub not_before_ns: Option<u64>,
}

/// `CLOCK_MONOTONIC` now, in ns: the clock of [`Frame::not_before_ns`]
/// and [`Shown::At`], as Vulkan's present timing uses it.
pub fn monotonic_now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// What became of a frame its consumer was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    /// On screen from `time_ns` (`CLOCK_MONOTONIC`), on a display that
    /// refreshes every `refresh_ns` if the consumer knows.
    At {
        time_ns: u64,
        refresh_ns: Option<u64>,
    },
    /// Never shown: replaced by a newer frame first, or dropped as the
    /// consumer stopped.
    Discarded,
}

/// What a presenter is made for.
pub struct PresenterConfig<'a> {
    pub images: ConsumerImages,
    /// Every image's format and DRM format modifier (bound or not yet).
    pub format: Format,
    pub modifier: u64,
    pub present_mode: vk::PresentModeKHR,
    pub composite_alpha: vk::CompositeAlphaFlagsKHR,
    pub returns: Arc<dyn Returns>,
    pub settings: &'a Settings,
}

/// How a consumer gives a swapchain's images back and reports on its
/// surface. The swapchain implements it; any thread may call it.
pub trait Returns: Send + Sync {
    /// The consumer is done with image `index`, or will be once
    /// `release_fence` (from an explicit-sync protocol) signals.
    fn release(&self, index: u32, release_fence: Option<SyncFile>);

    /// Reports the surface's state: `SUBOPTIMAL_KHR`, or an error every
    /// later acquire and present returns (`ERROR_OUT_OF_DATE_KHR`,
    /// `ERROR_SURFACE_LOST_KHR`); errors stick.
    fn set_status(&self, status: vk::Result);

    /// What was last reported (`SUCCESS` at first).
    fn status(&self) -> vk::Result;

    /// Reports frame `seq` shown or discarded. Every frame the presenter
    /// was given is reported once, in order; a report also settles every
    /// older frame not reported.
    fn shown(&self, seq: u64, shown: Shown);
}

/// One swapchain's connection to its window system.
pub trait Presenter: Send + Sync {
    /// Hands `frame` over, on the application's thread inside
    /// `vkQueuePresentKHR`. Its dma-buf carries the render's write fence,
    /// and `render` is that fence as a sync_file (`None` when the render is
    /// known to be complete). `damage` is what changed since the image was
    /// last presented (`VK_KHR_incremental_present`; `None`: everything).
    /// Returns the result for the present, such as `SUCCESS`,
    /// `SUBOPTIMAL_KHR` or `ERROR_OUT_OF_DATE_KHR`; on an error the image
    /// is not the consumer's, and the caller releases it.
    fn present(
        &self,
        frame: Frame,
        render: Option<&SyncFile>,
        damage: Option<&[vk::RectLayerKHR]>,
    ) -> vk::Result;

    /// The application's HDR metadata for the images from the next present
    /// on (`vkSetHdrMetadataEXT`). No platform the layer has carries it to
    /// its consumer yet, so by default it is dropped, as Mesa's WSI does on
    /// such platforms.
    fn hdr_metadata(&self, _metadata: &vk::HdrMetadataEXT<'_>) {}

    /// The consumer's refresh period in ns, where it is known before any
    /// frame was shown.
    fn refresh_ns(&self) -> Option<u64> {
        None
    }

    /// Whether its presents make requests on objects the application owns
    /// (its `wl_surface`, its X window), which only the application's
    /// thread may do: then the CPU fallback waits for the render inside
    /// `vkQueuePresentKHR` rather than on a present thread.
    fn uses_application_objects(&self) -> bool {
        false
    }

    /// Whether every present hands `render` to the consumer with the frame
    /// (an explicit-sync protocol), and the consumer waits for it: then the
    /// dma-buf's write fence is not needed, and a kernel without the
    /// sync_file ioctls costs no wait.
    fn carries_render_fence(&self) -> bool {
        false
    }

    /// Stops consuming, on the application's thread: every image it holds
    /// goes back, its threads end and its descriptors close. Later
    /// presents are refused with `ERROR_OUT_OF_DATE_KHR`.
    fn stop(&self);
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The window system's connection is gone: the surface is lost.
    #[error("the connection to the window system is lost: {0}")]
    Lost(String),
    /// The window system refuses what the swapchain needs, or does not
    /// answer in time.
    #[error("{0}")]
    Refused(String),
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
    #[error("{0}")]
    Os(#[from] rustix::io::Errno),
}

impl PlatformError {
    /// The result of a swapchain creation that failed with this error.
    pub fn result(&self) -> vk::Result {
        match self {
            PlatformError::Lost(_) => vk::Result::ERROR_SURFACE_LOST_KHR,
            PlatformError::Thread(..) => vk::Result::ERROR_OUT_OF_HOST_MEMORY,
            PlatformError::Refused(_) | PlatformError::Os(_) => {
                vk::Result::ERROR_INITIALIZATION_FAILED
            }
        }
    }
}

/// The capabilities of a surface with no size of its own, whose swapchain's
/// extent decides (headless, Wayland): see [`window_capabilities`].
pub fn sizeless_capabilities(
    caps: &SwapchainCaps,
    images: (u32, u32),
    alpha: vk::CompositeAlphaFlagsKHR,
) -> vk::SurfaceCapabilitiesKHR {
    let sizeless = vk::Extent2D {
        width: u32::MAX,
        height: u32::MAX,
    };
    window_capabilities(caps, images, alpha, sizeless)
}

/// The capabilities of a window of size `current`: any extent the device's
/// images allow, one layer, no transform; `images` is the lowest and
/// highest image count (0: no highest), `alpha` the ways its consumer
/// reads alpha.
pub fn window_capabilities(
    caps: &SwapchainCaps,
    images: (u32, u32),
    alpha: vk::CompositeAlphaFlagsKHR,
    current: vk::Extent2D,
) -> vk::SurfaceCapabilitiesKHR {
    vk::SurfaceCapabilitiesKHR {
        min_image_count: images.0,
        max_image_count: images.1,
        current_extent: current,
        min_image_extent: vk::Extent2D {
            width: 1,
            height: 1,
        },
        max_image_extent: vk::Extent2D {
            width: caps.max_extent,
            height: caps.max_extent,
        },
        max_image_array_layers: 1,
        supported_transforms: vk::SurfaceTransformFlagsKHR::IDENTITY,
        current_transform: vk::SurfaceTransformFlagsKHR::IDENTITY,
        supported_composite_alpha: alpha,
        supported_usage_flags: caps.usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_loses_the_surface_other_failures_do_not() {
        assert_eq!(
            PlatformError::Lost("Broken pipe".into()).result(),
            vk::Result::ERROR_SURFACE_LOST_KHR
        );
        assert_eq!(
            PlatformError::Refused("no such format".into()).result(),
            vk::Result::ERROR_INITIALIZATION_FAILED
        );
    }
}
