//! The window systems: one trait every backend implements, and the
//! backend of each platform.
//!
//! The platform-independent swapchain owns the images, their state machine
//! and the sync bridge; a backend only answers for its surfaces and
//! consumes presented images:
//!
//! * surface queries: [`Backend::capabilities`], [`Backend::present_modes`],
//!   and which DRM format modifiers its consumer reads
//!   ([`Backend::accepts_modifier`]);
//! * [`Backend::create_presenter`] starts consuming one swapchain's images;
//! * [`Presenter::present`] hands over one image whose dma-buf already
//!   carries the render's write fence, with the same fence as a sync_file
//!   for consumers that speak an explicit-sync protocol;
//! * the backend gives images back with [`Pool::release`] and reports a
//!   surface that is out of date or lost with [`Pool::set_status`], from
//!   its own thread;
//! * [`Presenter::wait_for_release`] is how an acquire waits, within its
//!   timeout, for the backend to release an image; a backend that must
//!   read window-system events on the acquiring thread overrides it.

pub mod headless;
pub mod wayland;
mod worker;

use std::time::Instant;

use ash::vk;
use syncfile::{DmaBuf, SyncFile};

use crate::formats::{Format, SwapchainCaps};
use crate::settings::{Platform, Settings};
use crate::surface::Surface;
use crate::swapchain::pool::Pool;

/// One swapchain image as a consumer sees it: a dma-buf (the backend's own
/// descriptor) and how its single plane is laid out.
#[derive(Debug)]
pub struct BackendImage {
    pub dma_buf: DmaBuf,
    pub format: Format,
    pub modifier: u64,
    pub extent: vk::Extent2D,
    /// Where the plane starts in the dma-buf, in bytes.
    pub offset: u64,
    /// Bytes from one row to the next.
    pub stride: u64,
    /// The plane's size in bytes.
    pub size: u64,
}

/// One presented image: its index, and the frame's number (presents since
/// the process started, from 0), which names captured frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    pub index: u32,
    pub seq: u64,
}

/// What a presenter is made for.
pub struct PresenterConfig<'a> {
    pub images: Vec<BackendImage>,
    pub present_mode: vk::PresentModeKHR,
    pub composite_alpha: vk::CompositeAlphaFlagsKHR,
    pub pool: std::sync::Arc<Pool>,
    pub settings: &'a Settings,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, std::io::Error),
    #[error("{0}")]
    Os(#[from] rustix::io::Errno),
    #[error(transparent)]
    Wayland(#[from] wayland::WaylandError),
}

/// The capabilities of a surface with no size of its own, whose swapchain's
/// extent decides (headless, Wayland): any extent the device's images
/// allow, one layer, no transform; `images` is the lowest and highest image
/// count (0: no highest), `alpha` the ways its consumer reads alpha.
fn sizeless_capabilities(
    caps: &SwapchainCaps,
    images: (u32, u32),
    alpha: vk::CompositeAlphaFlagsKHR,
) -> vk::SurfaceCapabilitiesKHR {
    vk::SurfaceCapabilitiesKHR {
        min_image_count: images.0,
        max_image_count: images.1,
        current_extent: vk::Extent2D {
            width: u32::MAX,
            height: u32::MAX,
        },
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

/// One window system.
pub trait Backend: Sync {
    /// The surface's capabilities on a device whose swapchains can be made
    /// of `caps`, for swapchains of present mode `mode` when the
    /// application names one (`VkSurfacePresentModeEXT`, or the mode of
    /// the swapchain being made), else for any.
    fn capabilities(
        &self,
        surface: &Surface,
        caps: &SwapchainCaps,
        mode: Option<vk::PresentModeKHR>,
    ) -> vk::SurfaceCapabilitiesKHR;

    /// The present modes it implements, in order of preference.
    fn present_modes(&self, surface: &Surface) -> &'static [vk::PresentModeKHR];

    /// Whether its consumer can read images of this format and modifier.
    fn accepts_modifier(
        &self,
        surface: &Surface,
        format: Format,
        modifier: u64,
        settings: &Settings,
    ) -> bool;

    /// Starts consuming the images of one swapchain.
    fn create_presenter(
        &self,
        surface: &Surface,
        config: PresenterConfig<'_>,
    ) -> Result<Box<dyn Presenter>, BackendError>;
}

/// One swapchain's connection to its window system.
pub trait Presenter: Send + Sync {
    /// Hands `frame` over. Its dma-buf carries the render's write fence, and
    /// `render` is that fence as a sync_file (`None` when the render is
    /// known to be complete). Returns the result for the present, such as
    /// `SUCCESS`, `SUBOPTIMAL_KHR` or `ERROR_OUT_OF_DATE_KHR`; on an error
    /// the image is not the backend's, and the caller releases it.
    fn present(&self, frame: Frame, render: Option<&SyncFile>) -> vk::Result;

    /// Waits until `pool` may have a free image (its generation moved past
    /// `generation`) or `deadline` passes.
    fn wait_for_release(&self, pool: &Pool, generation: u64, deadline: Option<Instant>) {
        pool.wait_for_release(generation, deadline);
    }

    /// Stops consuming: every image it holds goes back to the pool, its
    /// threads end and its descriptors close. Later presents are refused
    /// with `ERROR_OUT_OF_DATE_KHR`.
    fn stop(&self);
}

/// The backend of `platform`, if the layer has one yet.
pub fn for_platform(platform: Platform) -> Option<&'static dyn Backend> {
    match platform {
        Platform::Headless => Some(&headless::HEADLESS),
        Platform::Wayland => Some(&wayland::WAYLAND),
        Platform::X11 | Platform::Display => None,
    }
}
