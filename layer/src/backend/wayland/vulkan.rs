//! The `VK_KHR_wayland_surface` commands: creating a surface (called down,
//! so the loader owns the handle; the layer owns it too when the compositor
//! offers dma-buf buffers) and presentation support.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::Arc;

use ash::vk;

use super::{display_failed, Client, WaylandSurface, TIMEOUT};
use crate::entry::guard;
use crate::extensions::Support;
use crate::settings::Platform;
use crate::stats::{self, Counter};
use crate::surface::{self, Surface};

/// What the compositor behind `display` offers, if the layer can serve a
/// surface there.
fn probe(display: *mut c_void, wl_surface: *mut c_void) -> Option<WaylandSurface> {
    let (display, wl_surface) = (NonNull::new(display)?, NonNull::new(wl_surface)?);
    // SAFETY: the application's live display (valid usage of
    // vkCreateWaylandSurfaceKHR); the client is dropped before returning.
    let offer = match unsafe { Client::connect(display.as_ptr(), TIMEOUT) } {
        Ok(c) => c.offer().clone(),
        // SAFETY: the application's live display, as above.
        Err(e) if unsafe { display_failed(display.as_ptr()) } => {
            // The driver's WSI could only fail on this display too; owning
            // the surface makes every query answer VK_ERROR_SURFACE_LOST_KHR.
            tracing::error!("vkCreateWaylandSurfaceKHR on a display whose connection is lost ({e}): the surface is lost");
            stats::count(Counter::WaylandLost);
            return Some(WaylandSurface::lost(display, wl_surface));
        }
        Err(e) => {
            tracing::warn!("the driver's WSI serves this Wayland surface: {e}");
            return None;
        }
    };
    if offer.dmabuf_version == 0 || offer.formats.is_empty() {
        tracing::info!(
            "the compositor offers no dma-buf formats (no zwp_linux_dmabuf_v1 v3+): the driver's WSI serves this Wayland surface"
        );
        stats::count(Counter::WaylandNoDmaBuf);
        return None;
    }
    if offer.drm_syncobj {
        tracing::info!("the compositor offers wp_linux_drm_syncobj_v1; the layer uses zwp_linux_explicit_synchronization_v1 or implicit sync");
    }
    Some(WaylandSurface::new(display, wl_surface, offer))
}

pub(crate) unsafe extern "system" fn create_wayland_surface(
    instance: vk::Instance,
    p_info: *const vk::WaylandSurfaceCreateInfoKHR<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_surface: *mut vk::SurfaceKHR,
) -> vk::Result {
    // SAFETY: the application's arguments of this command.
    unsafe {
        surface::create_by_calling_down(
            c"vkCreateWaylandSurfaceKHR",
            Platform::Wayland,
            instance,
            p_info,
            p_allocator,
            p_surface,
            |info| {
                probe(info.display, info.surface).map(|w| Surface {
                    platform: Platform::Wayland,
                    wayland: Some(Arc::new(w)),
                })
            },
        )
    }
}

pub(crate) unsafe extern "system" fn presentation_support(
    pd: vk::PhysicalDevice,
    family: u32,
    display: *mut c_void,
) -> vk::Bool32 {
    guard(
        "vkGetPhysicalDeviceWaylandPresentationSupportKHR",
        vk::FALSE,
        || {
            // SAFETY: the application passes a live physical device.
            let Some(instance) = (unsafe { surface::instance_of(pd) }) else {
                return vk::FALSE;
            };
            // Where the layer may own the swapchains, any queue can run its
            // present submission; otherwise the driver's WSI answers.
            if instance.settings.platforms.contains(Platform::Wayland)
                && matches!(instance.support(pd, |_| {}), Support::Ready { .. })
            {
                return vk::TRUE;
            }
            // SAFETY: an instance command of the next entity.
            let next: Option<vk::PFN_vkGetPhysicalDeviceWaylandPresentationSupportKHR> = unsafe {
                (instance.next_get_instance_proc_addr)(
                    instance.handle,
                    c"vkGetPhysicalDeviceWaylandPresentationSupportKHR".as_ptr(),
                )
                .map(|f| std::mem::transmute(f))
            };
            // SAFETY: the application's arguments.
            next.map_or(vk::FALSE, |f| unsafe { f(pd, family, display.cast()) })
        },
    )
}
