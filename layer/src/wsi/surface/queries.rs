//! The layer's answers to the surface queries: for an owned surface on a
//! physical device whose swapchains it can own, from the backend; for a lost
//! one, `VK_ERROR_SURFACE_LOST_KHR`; for everything else, the driver's.

use std::sync::Arc;

use ash::vk;

use super::{fill, instance_of, lookup, Surface};
use crate::backend::{self, Backend};
use crate::entry::guard;
use crate::extensions::Support;
use crate::formats::SwapchainCaps;
use crate::instance::InstanceState;

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

pub(super) unsafe extern "system" fn surface_support(
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

pub(super) unsafe extern "system" fn surface_capabilities(
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

pub(super) unsafe extern "system" fn surface_capabilities2(
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

pub(super) unsafe extern "system" fn surface_capabilities2_ext(
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

pub(super) unsafe extern "system" fn surface_formats(
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

pub(super) unsafe extern "system" fn surface_formats2(
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

pub(super) unsafe extern "system" fn surface_present_modes(
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

pub(super) unsafe extern "system" fn present_rectangles(
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
