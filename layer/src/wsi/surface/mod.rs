//! Surfaces: which ones the layer owns ([`queries`] answers the surface
//! queries for them).
//!
//! Surfaces are created by calling down, so that the loader owns the handle
//! (it unwraps it for the drivers); the layer only records the platform of
//! each. It owns a surface when its settings allow that platform and a
//! backend serves it, and it answers the queries about an owned surface on
//! physical devices whose swapchains it can own. Everything else goes to
//! the driver.

mod queries;

use std::collections::HashMap;
use std::ffi::{c_void, CStr};
use std::sync::{Arc, LazyLock, Mutex};

use ash::vk;
use ash::vk::Handle;

use crate::backend::wayland::{self, WaylandSurface};
use crate::dispatch;
use crate::entry::guard;
use crate::instance::{InstanceState, INSTANCES};
use crate::settings::Platform;
use crate::stats::{self, Counter};

/// What the layer knows of a surface it owns.
#[derive(Clone, Debug)]
pub struct Surface {
    pub platform: Platform,
    /// The application's display and surface, for Wayland.
    pub wayland: Option<Arc<WaylandSurface>>,
}

impl Surface {
    /// Whether the window-system connection behind the surface has failed,
    /// which makes the surface lost for good.
    pub fn is_lost(&self) -> bool {
        self.wayland.as_ref().is_some_and(|w| w.is_lost())
    }
}

/// Owned surfaces by handle. Surface commands are not on the frame path, so
/// a lock is fine here.
static SURFACES: LazyLock<Mutex<HashMap<u64, Surface>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The owned surface `handle`, if it is one.
pub fn lookup(handle: vk::SurfaceKHR) -> Option<Surface> {
    SURFACES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&handle.as_raw())
        .cloned()
}

/// Records that the layer owns the surface `handle`.
fn own(handle: vk::SurfaceKHR, surface: Surface) {
    SURFACES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(handle.as_raw(), surface);
    stats::count(Counter::SurfacesOwned);
}

/// The instance-level commands of this module.
pub fn intercepted(name: &[u8]) -> Option<*const c_void> {
    Some(match name {
        b"vkCreateHeadlessSurfaceEXT" => create_headless_surface as *const c_void,
        b"vkCreateWaylandSurfaceKHR" => wayland::vulkan::create_wayland_surface as *const c_void,
        b"vkGetPhysicalDeviceWaylandPresentationSupportKHR" => {
            wayland::vulkan::presentation_support as *const c_void
        }
        b"vkDestroySurfaceKHR" => destroy_surface as *const c_void,
        b"vkGetPhysicalDeviceSurfaceSupportKHR" => queries::surface_support as *const c_void,
        b"vkGetPhysicalDeviceSurfaceCapabilitiesKHR" => {
            queries::surface_capabilities as *const c_void
        }
        b"vkGetPhysicalDeviceSurfaceCapabilities2KHR" => {
            queries::surface_capabilities2 as *const c_void
        }
        b"vkGetPhysicalDeviceSurfaceCapabilities2EXT" => {
            queries::surface_capabilities2_ext as *const c_void
        }
        b"vkGetPhysicalDeviceSurfaceFormatsKHR" => queries::surface_formats as *const c_void,
        b"vkGetPhysicalDeviceSurfaceFormats2KHR" => queries::surface_formats2 as *const c_void,
        b"vkGetPhysicalDeviceSurfacePresentModesKHR" => {
            queries::surface_present_modes as *const c_void
        }
        b"vkGetPhysicalDevicePresentRectanglesKHR" => queries::present_rectangles as *const c_void,
        _ => return None,
    })
}

/// The instance of a physical device or instance handle.
///
/// # Safety
/// `handle` is a live dispatchable handle of an instance the layer saw.
pub(crate) unsafe fn instance_of<H: Handle>(handle: H) -> Option<&'static InstanceState> {
    // SAFETY: the caller passes a live handle; instances outlive their
    // physical devices and surfaces.
    unsafe { INSTANCES.get(dispatch::key(handle)) }
}

/// The shape every `vkCreate*SurfaceKHR`/`EXT` command shares, for create
/// info `I`.
type CreateSurface<I> = unsafe extern "system" fn(
    vk::Instance,
    *const I,
    *const vk::AllocationCallbacks<'_>,
    *mut vk::SurfaceKHR,
) -> vk::Result;

/// Creates a surface with `command` by calling it down, so that the loader
/// owns the handle, and owns it too when the settings allow `platform` and
/// `serve` gives what the layer knows of it.
///
/// # Safety
/// The application's arguments of `command`, whose create info is `I`.
pub(crate) unsafe fn create_by_calling_down<I>(
    command: &'static CStr,
    platform: Platform,
    instance: vk::Instance,
    p_info: *const I,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_surface: *mut vk::SurfaceKHR,
    serve: impl FnOnce(&I) -> Option<Surface>,
) -> vk::Result {
    let name = command.to_str().unwrap_or("vkCreate*Surface");
    guard(name, vk::Result::ERROR_OUT_OF_HOST_MEMORY, || {
        // SAFETY: the application passes a live instance.
        let Some(state) = (unsafe { instance_of(instance) }) else {
            tracing::error!("{name}: unknown instance");
            return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
        };
        // SAFETY: an instance command of the next entity, which has the
        // shape of every surface creation command.
        let next: Option<CreateSurface<I>> = unsafe {
            (state.next_get_instance_proc_addr)(instance, command.as_ptr())
                .map(|f| std::mem::transmute(f))
        };
        let Some(next) = next else {
            return vk::Result::ERROR_EXTENSION_NOT_PRESENT;
        };
        // SAFETY: the application's arguments.
        let result = unsafe { next(instance, p_info, p_allocator, p_surface) };
        if result != vk::Result::SUCCESS {
            return result;
        }
        stats::count(Counter::SurfacesCreated);
        if state.settings.platforms.contains(platform) {
            // SAFETY: a valid create info, which the call down accepted.
            if let Some(surface) = serve(unsafe { &*p_info }) {
                // SAFETY: the next entity wrote the surface.
                own(unsafe { *p_surface }, surface);
            }
        }
        vk::Result::SUCCESS
    })
}

unsafe extern "system" fn create_headless_surface(
    instance: vk::Instance,
    p_info: *const vk::HeadlessSurfaceCreateInfoEXT<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_surface: *mut vk::SurfaceKHR,
) -> vk::Result {
    // SAFETY: the application's arguments of this command.
    unsafe {
        create_by_calling_down(
            c"vkCreateHeadlessSurfaceEXT",
            Platform::Headless,
            instance,
            p_info,
            p_allocator,
            p_surface,
            |_| {
                Some(Surface {
                    platform: Platform::Headless,
                    wayland: None,
                })
            },
        )
    }
}

unsafe extern "system" fn destroy_surface(
    instance: vk::Instance,
    surface: vk::SurfaceKHR,
    p_allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard("vkDestroySurfaceKHR", (), || {
        SURFACES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&surface.as_raw());
        // SAFETY: the application passes a live instance.
        let Some(state) = (unsafe { instance_of(instance) }) else {
            tracing::error!("vkDestroySurfaceKHR: unknown instance; cannot call down");
            return;
        };
        // SAFETY: the application's arguments, for the next entity.
        unsafe { (state.surface.destroy_surface_khr)(instance, surface, p_allocator) };
    })
}

/// Fills an array the Vulkan way: with a null pointer, the count; else as
/// many as fit, and `VK_INCOMPLETE` if not all did.
///
/// # Safety
/// `p_count` is valid; `p_out` is null or has room for `*p_count` items.
pub(crate) unsafe fn fill<T: Copy>(items: &[T], p_count: *mut u32, p_out: *mut T) -> vk::Result {
    // SAFETY: the caller passes a valid count pointer.
    let count = unsafe { &mut *p_count };
    if p_out.is_null() {
        *count = items.len() as u32;
        return vk::Result::SUCCESS;
    }
    let n = (*count as usize).min(items.len());
    // SAFETY: the caller's array has room for `*count` items, n of them used.
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), p_out, n) };
    *count = n as u32;
    if n < items.len() {
        vk::Result::INCOMPLETE
    } else {
        vk::Result::SUCCESS
    }
}
