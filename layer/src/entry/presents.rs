//! The commands of the swapchain extensions the layer provides: present
//! waits (`VK_KHR_present_wait`, `…wait2`), image release (swapchain
//! maintenance), present timing (`VK_GOOGLE_display_timing`) and HDR
//! metadata. The layer's swapchains are served by the WSI core; the
//! driver's go down where the driver has the command, and otherwise get
//! the answer that leaves the application running, logged once.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};

use ash::vk;

use super::swapchains::on_swapchain;
use super::Scope;
use crate::vulkan::array;
use crate::vulkan::device::{self, DeviceState};
use crate::vulkan::newer::PresentWait2Info;
use crate::wsi::swapchain;

pub(super) fn lookup(name: &[u8]) -> Option<(Scope, *const c_void)> {
    let f = match name {
        b"vkWaitForPresentKHR" => wait_for_present as *const c_void,
        b"vkWaitForPresent2KHR" => wait_for_present2 as *const c_void,
        b"vkReleaseSwapchainImagesEXT" => release_images_ext as *const c_void,
        b"vkReleaseSwapchainImagesKHR" => release_images_khr as *const c_void,
        b"vkGetRefreshCycleDurationGOOGLE" => refresh_cycle_duration as *const c_void,
        b"vkGetPastPresentationTimingGOOGLE" => past_presentation_timing as *const c_void,
        b"vkSetHdrMetadataEXT" => set_hdr_metadata as *const c_void,
        _ => return None,
    };
    Some((Scope::Swapchain, f))
}

/// The answer for a driver's swapchain whose driver lacks `command`: the
/// application enabled the extension for the layer's swapchains.
fn driver_lacks<R>(command: &str, answer: R) -> R {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "{command} on a swapchain of the driver's, which lacks the command (the layer provides its extension for its own swapchains only); answering as if done (logged once)"
        );
    }
    answer
}

/// `vkReleaseSwapchainImagesEXT` and its KHR alias.
///
/// # Safety
/// The application's arguments.
unsafe fn release_images(
    command: &str,
    device: vk::Device,
    p_info: *const vk::ReleaseSwapchainImagesInfoEXT<'_>,
) -> vk::Result {
    // SAFETY: the application's valid release info.
    let info = unsafe { &*p_info };
    // SAFETY: the info holds this many indices.
    let indices = unsafe { array(info.p_image_indices, info.image_index_count) };
    // SAFETY: the application's arguments.
    unsafe {
        on_swapchain(
            command,
            device,
            info.swapchain,
            vk::Result::ERROR_SURFACE_LOST_KHR,
            |s| s.release_images(command, indices),
            |d| match &d.provided.release_images {
                Some(f) => (f.release_swapchain_images_ext)(device, p_info),
                None => driver_lacks(command, vk::Result::ERROR_SURFACE_LOST_KHR),
            },
        )
    }
}

entry! {
    fn wait_for_present(
        device: vk::Device,
        handle: vk::SwapchainKHR,
        present_id: u64,
        timeout: u64,
    ) -> vk::Result, "vkWaitForPresentKHR", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the application's arguments.
        unsafe {
            on_swapchain(
                "vkWaitForPresentKHR",
                device,
                handle,
                vk::Result::ERROR_DEVICE_LOST,
                |s| s.wait_for_present(present_id, timeout),
                |d| match &d.provided.present_wait {
                    Some(f) => (f.wait_for_present_khr)(device, handle, present_id, timeout),
                    None => driver_lacks("vkWaitForPresentKHR", vk::Result::SUCCESS),
                },
            )
        }
    }

    fn wait_for_present2(
        device: vk::Device,
        handle: vk::SwapchainKHR,
        p_info: *const PresentWait2Info,
    ) -> vk::Result, "vkWaitForPresent2KHR", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the application's arguments.
        unsafe {
            let info = &*p_info;
            on_swapchain(
                "vkWaitForPresent2KHR",
                device,
                handle,
                vk::Result::ERROR_DEVICE_LOST,
                |s| s.wait_for_present(info.present_id, info.timeout),
                |d| match d.provided.present_wait2 {
                    Some(f) => f(device, handle, p_info),
                    None => driver_lacks("vkWaitForPresent2KHR", vk::Result::SUCCESS),
                },
            )
        }
    }

    fn release_images_ext(
        device: vk::Device,
        p_info: *const vk::ReleaseSwapchainImagesInfoEXT<'_>,
    ) -> vk::Result, "vkReleaseSwapchainImagesEXT", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the application's arguments.
        unsafe { release_images("vkReleaseSwapchainImagesEXT", device, p_info) }
    }

    fn release_images_khr(
        device: vk::Device,
        p_info: *const vk::ReleaseSwapchainImagesInfoEXT<'_>,
    ) -> vk::Result, "vkReleaseSwapchainImagesKHR", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the application's arguments.
        unsafe { release_images("vkReleaseSwapchainImagesKHR", device, p_info) }
    }

    fn refresh_cycle_duration(
        device: vk::Device,
        handle: vk::SwapchainKHR,
        p_duration: *mut vk::RefreshCycleDurationGOOGLE,
    ) -> vk::Result, "vkGetRefreshCycleDurationGOOGLE", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the application's arguments.
        unsafe {
            on_swapchain(
                "vkGetRefreshCycleDurationGOOGLE",
                device,
                handle,
                vk::Result::ERROR_DEVICE_LOST,
                |s| {
                    (*p_duration).refresh_duration = s.refresh_ns();
                    vk::Result::SUCCESS
                },
                |d| match &d.provided.display_timing {
                    Some(f) => (f.get_refresh_cycle_duration_google)(device, handle, p_duration),
                    None => {
                        driver_lacks("vkGetRefreshCycleDurationGOOGLE", vk::Result::ERROR_SURFACE_LOST_KHR)
                    }
                },
            )
        }
    }

    fn past_presentation_timing(
        device: vk::Device,
        handle: vk::SwapchainKHR,
        p_count: *mut u32,
        p_timings: *mut vk::PastPresentationTimingGOOGLE,
    ) -> vk::Result, "vkGetPastPresentationTimingGOOGLE", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the application's arguments.
        unsafe {
            on_swapchain(
                "vkGetPastPresentationTimingGOOGLE",
                device,
                handle,
                vk::Result::ERROR_DEVICE_LOST,
                |s| s.past_timings(p_count, p_timings),
                |d| match &d.provided.display_timing {
                    Some(f) => (f.get_past_presentation_timing_google)(device, handle, p_count, p_timings),
                    None => driver_lacks(
                        "vkGetPastPresentationTimingGOOGLE",
                        vk::Result::ERROR_SURFACE_LOST_KHR,
                    ),
                },
            )
        }
    }

    fn set_hdr_metadata(
        device: vk::Device,
        count: u32,
        p_swapchains: *const vk::SwapchainKHR,
        p_metadata: *const vk::HdrMetadataEXT<'_>,
    ), "vkSetHdrMetadataEXT", on panic (), {
        // SAFETY: the application's arrays of `count` entries.
        let (handles, metadata) = unsafe { (array(p_swapchains, count), array(p_metadata, count)) };
        let mut theirs = (Vec::new(), Vec::new());
        for (&h, m) in handles.iter().zip(metadata) {
            // SAFETY: the swapchains are alive for the command.
            match unsafe { swapchain::get(h) } {
                Some(s) => s.set_hdr_metadata(m),
                None => {
                    theirs.0.push(h);
                    theirs.1.push(*m);
                }
            }
        }
        if theirs.0.is_empty() {
            return;
        }
        // SAFETY: the device is alive for the command.
        let Some(d) = (unsafe { device::of(device) }) else {
            return tracing::error!("vkSetHdrMetadataEXT: unknown device");
        };
        // SAFETY: the application's swapchains and metadata, for the driver.
        unsafe { set_theirs(d, &theirs.0, &theirs.1) }
    }
}

/// Passes the driver's swapchains' HDR metadata down, if it takes any.
///
/// # Safety
/// The application's swapchains and metadata, alive for the command.
unsafe fn set_theirs(
    d: &DeviceState,
    handles: &[vk::SwapchainKHR],
    metadata: &[vk::HdrMetadataEXT<'_>],
) {
    match &d.provided.hdr_metadata {
        // SAFETY: as the caller promises; the arrays have one entry each.
        Some(f) => unsafe {
            (f.set_hdr_metadata_ext)(
                d.handle,
                handles.len() as u32,
                handles.as_ptr(),
                metadata.as_ptr(),
            )
        },
        None => driver_lacks("vkSetHdrMetadataEXT", ()),
    }
}
