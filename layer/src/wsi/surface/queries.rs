//! The layer's answers to the surface queries about a surface it owns, on
//! a physical device whose swapchains it can own ([`super::Answer::Layer`]).

use ash::vk;

use super::Surface;
use crate::vulkan::caps::SwapchainCaps;
use crate::vulkan::chain;
use crate::vulkan::instance::InstanceState;
use crate::vulkan::newer::{self, OneBool};

/// Whether queues of `family` can present to an owned surface: they must
/// run the layer's present submission, whose command buffer hands the image
/// to its consumer (a queue family ownership transfer, which graphics,
/// compute and transfer queues can record).
pub fn family_supports_present(
    instance: &InstanceState,
    pd: vk::PhysicalDevice,
    family: u32,
) -> bool {
    // SAFETY: a physical device of this instance.
    let families = unsafe { instance.fns.get_physical_device_queue_family_properties(pd) };
    families.get(family as usize).is_some_and(|f| {
        f.queue_count > 0
            && f.queue_flags.intersects(
                vk::QueueFlags::GRAPHICS | vk::QueueFlags::COMPUTE | vk::QueueFlags::TRANSFER,
            )
    })
}

/// The present mode the application asks about (`VkSurfacePresentModeEXT`
/// of VK_EXT_surface_maintenance1), if it names one.
///
/// # Safety
/// `info`'s chain is valid.
pub unsafe fn queried_present_mode(
    info: &vk::PhysicalDeviceSurfaceInfo2KHR<'_>,
) -> Option<vk::PresentModeKHR> {
    // SAFETY: the caller's valid chain.
    unsafe { chain::find::<vk::SurfacePresentModeEXT<'_>>(info.p_next) }.map(|m| m.present_mode)
}

/// Fills `caps` (and the output structures of its chain that concern an
/// owned surface) for the query `info`.
///
/// # Safety
/// `info` and `caps` are the application's valid structures.
pub unsafe fn capabilities2(
    surface: &Surface,
    swapchain_caps: &SwapchainCaps,
    info: &vk::PhysicalDeviceSurfaceInfo2KHR<'_>,
    caps: &mut vk::SurfaceCapabilities2KHR<'_>,
) {
    // SAFETY: the caller's valid chain.
    let mode = unsafe { queried_present_mode(info) };
    caps.surface_capabilities = surface.platform.capabilities(swapchain_caps, mode);
    let mut p = caps.p_next.cast::<vk::BaseOutStructure<'_>>();
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
                // Neither platform scales: the image is the surface's
                // size (headless has none; a Wayland surface takes its
                // buffer's).
                vk::StructureType::SURFACE_PRESENT_SCALING_CAPABILITIES_EXT => {
                    let s = &mut *p.cast::<vk::SurfacePresentScalingCapabilitiesEXT<'_>>();
                    s.supported_present_scaling = vk::PresentScalingFlagsEXT::empty();
                    s.supported_present_gravity_x = vk::PresentGravityFlagsEXT::empty();
                    s.supported_present_gravity_y = vk::PresentGravityFlagsEXT::empty();
                    s.min_scaled_image_extent = caps.surface_capabilities.min_image_extent;
                    s.max_scaled_image_extent = caps.surface_capabilities.max_image_extent;
                }
                vk::StructureType::SURFACE_PRESENT_MODE_COMPATIBILITY_EXT => {
                    // A swapchain switches among any of the surface's modes.
                    let c = &mut *p.cast::<vk::SurfacePresentModeCompatibilityEXT<'_>>();
                    let offered = surface.platform.present_modes();
                    let modes = match mode {
                        Some(m) if offered.contains(&m) => offered,
                        _ => &[],
                    };
                    // A short array is the application's to notice.
                    let _ =
                        crate::vulkan::fill(modes, &mut c.present_mode_count, c.p_present_modes);
                }
                // Every owned surface gives present ids and waits.
                newer::STRUCTURE_TYPE_SURFACE_CAPABILITIES_PRESENT_ID_2
                | newer::STRUCTURE_TYPE_SURFACE_CAPABILITIES_PRESENT_WAIT_2 => {
                    (*p.cast::<OneBool>()).value = vk::TRUE;
                }
                _ => {}
            }
            p = (*p).p_next;
        }
    }
}

/// `VkSurfaceCapabilities2EXT` (VK_EXT_display_surface_counter): the
/// capabilities, and no surface counters.
pub fn capabilities2_ext(
    surface: &Surface,
    caps: &SwapchainCaps,
    out: &mut vk::SurfaceCapabilities2EXT<'_>,
) {
    let c = surface.platform.capabilities(caps, None);
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
}

/// The surface formats the layer offers on a device: each format it can
/// export, in the sRGB colour space.
pub fn formats(surface: &Surface, caps: &SwapchainCaps) -> Vec<vk::SurfaceFormatKHR> {
    caps.formats
        .iter()
        .filter(|f| surface.platform.accepts_format(**f))
        .map(|f| vk::SurfaceFormatKHR {
            format: f.vk,
            color_space: vk::ColorSpaceKHR::SRGB_NONLINEAR,
        })
        .collect()
}

/// Fills a `VkSurfaceFormat2KHR` array the Vulkan way, writing only each
/// entry's format (its `pNext` chain stays the application's).
///
/// # Safety
/// `p_count` is valid; `p_formats` is null or has room for `*p_count`.
pub unsafe fn fill_formats2(
    list: &[vk::SurfaceFormatKHR],
    p_count: *mut u32,
    p_formats: *mut vk::SurfaceFormat2KHR<'_>,
) -> vk::Result {
    // SAFETY: the caller's valid count pointer.
    let count = unsafe { &mut *p_count };
    if p_formats.is_null() {
        *count = list.len() as u32;
        return vk::Result::SUCCESS;
    }
    let n = (*count as usize).min(list.len());
    for (k, f) in list.iter().take(n).enumerate() {
        // SAFETY: the array has room for `*count` entries.
        unsafe { (*p_formats.add(k)).surface_format = *f };
    }
    *count = n as u32;
    if n < list.len() {
        vk::Result::INCOMPLETE
    } else {
        vk::Result::SUCCESS
    }
}

/// The one rectangle a swapchain on the surface presents.
pub fn present_rectangle(surface: &Surface, caps: &SwapchainCaps) -> vk::Rect2D {
    vk::Rect2D {
        offset: vk::Offset2D { x: 0, y: 0 },
        extent: surface.platform.capabilities(caps, None).current_extent,
    }
}
