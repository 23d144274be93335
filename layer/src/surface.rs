//! Surfaces: which ones the layer owns, and its answers to the surface
//! queries for them.
//!
//! Surfaces are created by calling down, so that the loader owns the handle
//! (it unwraps it for the drivers); the layer only records the platform of
//! each. It owns a surface when its settings allow that platform and a
//! backend serves it, and it answers the queries about an owned surface on
//! physical devices whose swapchains it can own. Everything else goes to
//! the driver.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, LazyLock, Mutex};

use ash::vk;
use ash::vk::Handle;

use crate::backend::wayland::{self, WaylandSurface};
use crate::backend::{self, Backend};
use crate::dispatch;
use crate::entry::guard;
use crate::extensions::Support;
use crate::formats::SwapchainCaps;
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
pub(crate) fn own(handle: vk::SurfaceKHR, surface: Surface) {
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
        b"vkGetPhysicalDeviceSurfaceSupportKHR" => surface_support as *const c_void,
        b"vkGetPhysicalDeviceSurfaceCapabilitiesKHR" => surface_capabilities as *const c_void,
        b"vkGetPhysicalDeviceSurfaceCapabilities2KHR" => surface_capabilities2 as *const c_void,
        b"vkGetPhysicalDeviceSurfaceCapabilities2EXT" => surface_capabilities2_ext as *const c_void,
        b"vkGetPhysicalDeviceSurfaceFormatsKHR" => surface_formats as *const c_void,
        b"vkGetPhysicalDeviceSurfaceFormats2KHR" => surface_formats2 as *const c_void,
        b"vkGetPhysicalDeviceSurfacePresentModesKHR" => surface_present_modes as *const c_void,
        b"vkGetPhysicalDevicePresentRectanglesKHR" => present_rectangles as *const c_void,
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

unsafe extern "system" fn create_headless_surface(
    instance: vk::Instance,
    p_info: *const vk::HeadlessSurfaceCreateInfoEXT<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_surface: *mut vk::SurfaceKHR,
) -> vk::Result {
    guard(
        "vkCreateHeadlessSurfaceEXT",
        vk::Result::ERROR_OUT_OF_HOST_MEMORY,
        || {
            // SAFETY: the application passes a live instance.
            let Some(state) = (unsafe { instance_of(instance) }) else {
                tracing::error!("vkCreateHeadlessSurfaceEXT: unknown instance");
                return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
            };
            // SAFETY: an instance command of the next entity.
            let next: Option<vk::PFN_vkCreateHeadlessSurfaceEXT> = unsafe {
                (state.next_get_instance_proc_addr)(
                    instance,
                    c"vkCreateHeadlessSurfaceEXT".as_ptr(),
                )
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
            if state.settings.platforms.contains(Platform::Headless) {
                // SAFETY: the next entity wrote the surface.
                let handle = unsafe { *p_surface };
                own(
                    handle,
                    Surface {
                        platform: Platform::Headless,
                        wayland: None,
                    },
                );
            }
            vk::Result::SUCCESS
        },
    )
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

/// How the layer answers a query about `surface` on `pd`.
enum Answer {
    /// The layer answers, from these.
    Layer {
        surface: Surface,
        caps: Arc<SwapchainCaps>,
        backend: &'static dyn Backend,
    },
    /// The driver answers.
    Driver(&'static InstanceState),
    /// `VK_ERROR_SURFACE_LOST_KHR`: the surface's window-system connection
    /// is gone, or the physical device is unknown to the layer.
    Lost,
}

/// Decides who answers queries about `surface` on `pd`.
///
/// # Safety
/// `pd` is a live physical device.
unsafe fn answer(pd: vk::PhysicalDevice, surface: vk::SurfaceKHR) -> Answer {
    // SAFETY: the caller passes a live physical device.
    let Some(instance) = (unsafe { instance_of(pd) }) else {
        return Answer::Lost;
    };
    let Some((backend, surface)) =
        lookup(surface).and_then(|s| Some((backend::for_platform(s.platform)?, s)))
    else {
        return Answer::Driver(instance);
    };
    if surface.is_lost() {
        return Answer::Lost;
    }
    let report = |why: &str| {
        tracing::warn!("not owning the swapchains of this physical device, {why}: the driver's own WSI serves them");
    };
    match instance.support(pd, report) {
        Support::Ready { caps, .. } => Answer::Layer {
            surface,
            caps,
            backend,
        },
        Support::Missing(_) => Answer::Driver(instance),
    }
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

unsafe extern "system" fn surface_support(
    pd: vk::PhysicalDevice,
    family: u32,
    surface: vk::SurfaceKHR,
    p_supported: *mut vk::Bool32,
) -> vk::Result {
    guard(
        "vkGetPhysicalDeviceSurfaceSupportKHR",
        vk::Result::ERROR_SURFACE_LOST_KHR,
        || {
            // SAFETY: the application passes a live physical device.
            match unsafe { answer(pd, surface) } {
                // Every queue can run the layer's present submission.
                Answer::Layer { .. } => {
                    // SAFETY: the caller passes a valid output pointer.
                    unsafe { *p_supported = vk::TRUE };
                    vk::Result::SUCCESS
                }
                // SAFETY: the application's arguments, for the next entity.
                Answer::Driver(i) => unsafe {
                    (i.surface.get_physical_device_surface_support_khr)(
                        pd,
                        family,
                        surface,
                        p_supported,
                    )
                },
                Answer::Lost => vk::Result::ERROR_SURFACE_LOST_KHR,
            }
        },
    )
}

unsafe extern "system" fn surface_capabilities(
    pd: vk::PhysicalDevice,
    surface: vk::SurfaceKHR,
    p_caps: *mut vk::SurfaceCapabilitiesKHR,
) -> vk::Result {
    guard(
        "vkGetPhysicalDeviceSurfaceCapabilitiesKHR",
        vk::Result::ERROR_SURFACE_LOST_KHR,
        || {
            // SAFETY: the application passes a live physical device.
            match unsafe { answer(pd, surface) } {
                Answer::Layer {
                    surface,
                    caps,
                    backend,
                } => {
                    // SAFETY: the caller passes a valid output pointer.
                    unsafe { *p_caps = backend.capabilities(&surface, &caps, None) };
                    vk::Result::SUCCESS
                }
                // SAFETY: the application's arguments, for the next entity.
                Answer::Driver(i) => unsafe {
                    (i.surface.get_physical_device_surface_capabilities_khr)(pd, surface, p_caps)
                },
                Answer::Lost => vk::Result::ERROR_SURFACE_LOST_KHR,
            }
        },
    )
}

/// The present mode the application asks about (`VkSurfacePresentModeEXT`
/// of VK_EXT_surface_maintenance1), if it names one.
///
/// # Safety
/// `info`'s chain is valid.
unsafe fn queried_present_mode(
    info: &vk::PhysicalDeviceSurfaceInfo2KHR<'_>,
) -> Option<vk::PresentModeKHR> {
    let mut p = info.p_next.cast::<vk::BaseInStructure>();
    while !p.is_null() {
        // SAFETY: a valid input chain.
        let node = unsafe { &*p };
        if node.s_type == vk::StructureType::SURFACE_PRESENT_MODE_EXT {
            // SAFETY: the structure of that sType.
            return Some(unsafe { (*p.cast::<vk::SurfacePresentModeEXT<'_>>()).present_mode });
        }
        p = node.p_next;
    }
    None
}

/// Fills the output structures of `VkSurfaceCapabilities2KHR`'s chain that
/// concern an owned surface.
///
/// # Safety
/// `info` and `caps` are the application's valid structures.
unsafe fn fill_capabilities2_chain(
    info: &vk::PhysicalDeviceSurfaceInfo2KHR<'_>,
    caps: &mut vk::SurfaceCapabilities2KHR<'_>,
) {
    // SAFETY: the caller's valid chain.
    let mode = unsafe { queried_present_mode(info) };
    let mut p = caps.p_next.cast::<vk::BaseOutStructure>();
    while !p.is_null() {
        // SAFETY: a valid output chain; each node is the structure its sType
        // names.
        unsafe {
            match (*p).s_type {
                vk::StructureType::SURFACE_PROTECTED_CAPABILITIES_KHR => {
                    (*p.cast::<vk::SurfaceProtectedCapabilitiesKHR<'_>>()).supports_protected =
                        vk::FALSE;
                }
                vk::StructureType::SHARED_PRESENT_SURFACE_CAPABILITIES_KHR => {
                    (*p.cast::<vk::SharedPresentSurfaceCapabilitiesKHR<'_>>())
                        .shared_present_supported_usage_flags = vk::ImageUsageFlags::empty();
                }
                vk::StructureType::SURFACE_PRESENT_SCALING_CAPABILITIES_EXT => {
                    let s = &mut *p.cast::<vk::SurfacePresentScalingCapabilitiesEXT<'_>>();
                    s.supported_present_scaling = vk::PresentScalingFlagsEXT::empty();
                    s.supported_present_gravity_x = vk::PresentGravityFlagsEXT::empty();
                    s.supported_present_gravity_y = vk::PresentGravityFlagsEXT::empty();
                    s.min_scaled_image_extent = caps.surface_capabilities.min_image_extent;
                    s.max_scaled_image_extent = caps.surface_capabilities.max_image_extent;
                }
                vk::StructureType::SURFACE_PRESENT_MODE_COMPATIBILITY_EXT => {
                    // Switching modes needs VK_EXT_swapchain_maintenance1,
                    // which the layer does not implement: each mode is
                    // compatible only with itself.
                    let c = &mut *p.cast::<vk::SurfacePresentModeCompatibilityEXT<'_>>();
                    let modes: &[vk::PresentModeKHR] = match &mode {
                        Some(m) => std::slice::from_ref(m),
                        None => &[],
                    };
                    // A short array is the application's to notice.
                    let _ = fill(modes, &mut c.present_mode_count, c.p_present_modes);
                }
                _ => {}
            }
            p = (*p).p_next;
        }
    }
}

unsafe extern "system" fn surface_capabilities2(
    pd: vk::PhysicalDevice,
    p_info: *const vk::PhysicalDeviceSurfaceInfo2KHR<'_>,
    p_caps: *mut vk::SurfaceCapabilities2KHR<'_>,
) -> vk::Result {
    guard(
        "vkGetPhysicalDeviceSurfaceCapabilities2KHR",
        vk::Result::ERROR_SURFACE_LOST_KHR,
        || {
            // SAFETY: the application passes valid structures.
            let (info, out) = unsafe { (&*p_info, &mut *p_caps) };
            // SAFETY: the application passes a live physical device.
            match unsafe { answer(pd, info.surface) } {
                Answer::Layer {
                    surface,
                    caps,
                    backend,
                } => {
                    // SAFETY: the application's valid chain.
                    let mode = unsafe { queried_present_mode(info) };
                    out.surface_capabilities = backend.capabilities(&surface, &caps, mode);
                    // SAFETY: the application's valid chains.
                    unsafe { fill_capabilities2_chain(info, out) };
                    vk::Result::SUCCESS
                }
                // SAFETY: the application's arguments, for the next entity.
                Answer::Driver(i) => unsafe {
                    (i.surface2.get_physical_device_surface_capabilities2_khr)(pd, p_info, p_caps)
                },
                Answer::Lost => vk::Result::ERROR_SURFACE_LOST_KHR,
            }
        },
    )
}

unsafe extern "system" fn surface_capabilities2_ext(
    pd: vk::PhysicalDevice,
    surface: vk::SurfaceKHR,
    p_caps: *mut vk::SurfaceCapabilities2EXT<'_>,
) -> vk::Result {
    guard(
        "vkGetPhysicalDeviceSurfaceCapabilities2EXT",
        vk::Result::ERROR_SURFACE_LOST_KHR,
        || {
            // SAFETY: the application passes a live physical device.
            match unsafe { answer(pd, surface) } {
                Answer::Layer {
                    surface,
                    caps,
                    backend,
                } => {
                    let c = backend.capabilities(&surface, &caps, None);
                    // SAFETY: the caller passes a valid output structure.
                    let out = unsafe { &mut *p_caps };
                    out.min_image_count = c.min_image_count;
                    out.max_image_count = c.max_image_count;
                    out.current_extent = c.current_extent;
                    out.min_image_extent = c.min_image_extent;
                    out.max_image_extent = c.max_image_extent;
                    out.max_image_array_layers = c.max_image_array_layers;
                    out.supported_transforms = c.supported_transforms;
                    out.current_transform = c.current_transform;
                    out.supported_composite_alpha = c.supported_composite_alpha;
                    out.supported_usage_flags = c.supported_usage_flags;
                    out.supported_surface_counters = vk::SurfaceCounterFlagsEXT::empty();
                    vk::Result::SUCCESS
                }
                Answer::Driver(i) => {
                    // SAFETY: an instance command of the next entity.
                    let next: Option<vk::PFN_vkGetPhysicalDeviceSurfaceCapabilities2EXT> = unsafe {
                        (i.next_get_instance_proc_addr)(
                            i.handle,
                            c"vkGetPhysicalDeviceSurfaceCapabilities2EXT".as_ptr(),
                        )
                        .map(|f| std::mem::transmute(f))
                    };
                    match next {
                        // SAFETY: the application's arguments.
                        Some(f) => unsafe { f(pd, surface, p_caps) },
                        None => vk::Result::ERROR_SURFACE_LOST_KHR,
                    }
                }
                Answer::Lost => vk::Result::ERROR_SURFACE_LOST_KHR,
            }
        },
    )
}

/// The surface formats the layer offers on a device: each format it can
/// export, in the sRGB colour space.
fn formats(caps: &SwapchainCaps) -> Vec<vk::SurfaceFormatKHR> {
    caps.formats
        .iter()
        .map(|f| vk::SurfaceFormatKHR {
            format: f.vk,
            color_space: vk::ColorSpaceKHR::SRGB_NONLINEAR,
        })
        .collect()
}

unsafe extern "system" fn surface_formats(
    pd: vk::PhysicalDevice,
    surface: vk::SurfaceKHR,
    p_count: *mut u32,
    p_formats: *mut vk::SurfaceFormatKHR,
) -> vk::Result {
    guard(
        "vkGetPhysicalDeviceSurfaceFormatsKHR",
        vk::Result::ERROR_SURFACE_LOST_KHR,
        || {
            // SAFETY: the application passes a live physical device.
            match unsafe { answer(pd, surface) } {
                // SAFETY: the application's valid count and array.
                Answer::Layer { caps, .. } => unsafe { fill(&formats(&caps), p_count, p_formats) },
                // SAFETY: the application's arguments, for the next entity.
                Answer::Driver(i) => unsafe {
                    (i.surface.get_physical_device_surface_formats_khr)(
                        pd, surface, p_count, p_formats,
                    )
                },
                Answer::Lost => vk::Result::ERROR_SURFACE_LOST_KHR,
            }
        },
    )
}

unsafe extern "system" fn surface_formats2(
    pd: vk::PhysicalDevice,
    p_info: *const vk::PhysicalDeviceSurfaceInfo2KHR<'_>,
    p_count: *mut u32,
    p_formats: *mut vk::SurfaceFormat2KHR<'_>,
) -> vk::Result {
    guard(
        "vkGetPhysicalDeviceSurfaceFormats2KHR",
        vk::Result::ERROR_SURFACE_LOST_KHR,
        || {
            // SAFETY: the application passes a valid info structure.
            let surface = unsafe { (*p_info).surface };
            // SAFETY: the application passes a live physical device.
            match unsafe { answer(pd, surface) } {
                Answer::Layer { caps, .. } => {
                    let list = formats(&caps);
                    // SAFETY: the application's valid count pointer.
                    let count = unsafe { &mut *p_count };
                    if p_formats.is_null() {
                        *count = list.len() as u32;
                        return vk::Result::SUCCESS;
                    }
                    let n = (*count as usize).min(list.len());
                    for (k, f) in list.iter().take(n).enumerate() {
                        // SAFETY: the array has room for `*count` entries;
                        // only the format is written, its pNext chain stays.
                        unsafe { (*p_formats.add(k)).surface_format = *f };
                    }
                    *count = n as u32;
                    if n < list.len() {
                        vk::Result::INCOMPLETE
                    } else {
                        vk::Result::SUCCESS
                    }
                }
                // SAFETY: the application's arguments, for the next entity.
                Answer::Driver(i) => unsafe {
                    (i.surface2.get_physical_device_surface_formats2_khr)(
                        pd, p_info, p_count, p_formats,
                    )
                },
                Answer::Lost => vk::Result::ERROR_SURFACE_LOST_KHR,
            }
        },
    )
}

unsafe extern "system" fn surface_present_modes(
    pd: vk::PhysicalDevice,
    surface: vk::SurfaceKHR,
    p_count: *mut u32,
    p_modes: *mut vk::PresentModeKHR,
) -> vk::Result {
    guard(
        "vkGetPhysicalDeviceSurfacePresentModesKHR",
        vk::Result::ERROR_SURFACE_LOST_KHR,
        || {
            // SAFETY: the application passes a live physical device.
            match unsafe { answer(pd, surface) } {
                // SAFETY: the application's valid count and array.
                Answer::Layer {
                    surface, backend, ..
                } => unsafe { fill(backend.present_modes(&surface), p_count, p_modes) },
                // SAFETY: the application's arguments, for the next entity.
                Answer::Driver(i) => unsafe {
                    (i.surface.get_physical_device_surface_present_modes_khr)(
                        pd, surface, p_count, p_modes,
                    )
                },
                Answer::Lost => vk::Result::ERROR_SURFACE_LOST_KHR,
            }
        },
    )
}

unsafe extern "system" fn present_rectangles(
    pd: vk::PhysicalDevice,
    surface: vk::SurfaceKHR,
    p_count: *mut u32,
    p_rects: *mut vk::Rect2D,
) -> vk::Result {
    guard(
        "vkGetPhysicalDevicePresentRectanglesKHR",
        vk::Result::ERROR_SURFACE_LOST_KHR,
        || {
            // SAFETY: the application passes a live physical device.
            match unsafe { answer(pd, surface) } {
                Answer::Layer {
                    surface,
                    caps,
                    backend,
                } => {
                    let extent = backend.capabilities(&surface, &caps, None).current_extent;
                    let rect = vk::Rect2D {
                        offset: vk::Offset2D { x: 0, y: 0 },
                        extent,
                    };
                    // SAFETY: the application's valid count and array.
                    unsafe { fill(&[rect], p_count, p_rects) }
                }
                Answer::Driver(i) => {
                    // SAFETY: an instance command of the next entity.
                    let next: Option<vk::PFN_vkGetPhysicalDevicePresentRectanglesKHR> = unsafe {
                        (i.next_get_instance_proc_addr)(
                            i.handle,
                            c"vkGetPhysicalDevicePresentRectanglesKHR".as_ptr(),
                        )
                        .map(|f| std::mem::transmute(f))
                    };
                    match next {
                        // SAFETY: the application's arguments.
                        Some(f) => unsafe { f(pd, surface, p_count, p_rects) },
                        None => vk::Result::ERROR_SURFACE_LOST_KHR,
                    }
                }
                Answer::Lost => vk::Result::ERROR_SURFACE_LOST_KHR,
            }
        },
    )
}
