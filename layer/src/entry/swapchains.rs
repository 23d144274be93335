//! The VK_KHR_swapchain commands: the layer's own swapchains are served by
//! the WSI core, the driver's go down. On devices the layer owns they are
//! the layer's even where the driver has no VK_KHR_swapchain.

use std::ffi::c_void;

use ash::vk;

use super::Scope;
use crate::vulkan::device::{self, DeviceState};
use crate::wsi::surface;
use crate::wsi::swapchain::{self, create, present, Swapchain};

pub(super) fn lookup(name: &[u8]) -> Option<(Scope, *const c_void)> {
    let f = match name {
        b"vkCreateSwapchainKHR" => create_swapchain as *const c_void,
        b"vkDestroySwapchainKHR" => destroy_swapchain as *const c_void,
        b"vkGetSwapchainImagesKHR" => get_swapchain_images as *const c_void,
        b"vkAcquireNextImageKHR" => acquire_next_image as *const c_void,
        b"vkAcquireNextImage2KHR" => acquire_next_image2 as *const c_void,
        b"vkQueuePresentKHR" => queue_present as *const c_void,
        b"vkGetDeviceGroupSurfacePresentModesKHR" => {
            device_group_surface_present_modes as *const c_void
        }
        _ => return None,
    };
    Some((Scope::Swapchain, f))
}

/// Runs `ours` on the layer's swapchain `handle`, or `theirs` on the
/// device the driver's belongs to; `unknown` when the device is not one
/// the layer saw (which cannot happen through the loader).
///
/// # Safety
/// `device` and `handle` are the application's, alive for the command.
pub(super) unsafe fn on_swapchain<R>(
    command: &str,
    device: vk::Device,
    handle: vk::SwapchainKHR,
    unknown: R,
    ours: impl FnOnce(&Swapchain) -> R,
    theirs: impl FnOnce(&DeviceState) -> R,
) -> R {
    // SAFETY: the swapchain is alive for the command.
    if let Some(s) = unsafe { swapchain::get(handle) } {
        return ours(s);
    }
    // SAFETY: the device is alive for the command.
    match unsafe { device::of(device) } {
        Some(d) => theirs(d),
        None => {
            tracing::error!("{command}: unknown device");
            unknown
        }
    }
}

entry! {
    fn create_swapchain(
        device: vk::Device,
        p_info: *const vk::SwapchainCreateInfoKHR<'_>,
        p_allocator: *const vk::AllocationCallbacks<'_>,
        p_swapchain: *mut vk::SwapchainKHR,
    ) -> vk::Result, "vkCreateSwapchainKHR", on panic vk::Result::ERROR_INITIALIZATION_FAILED, {
        // SAFETY: the device is alive for the command.
        let Some(state) = (unsafe { device::of(device) }) else {
            tracing::error!("vkCreateSwapchainKHR: unknown device");
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        // SAFETY: the application's arguments.
        unsafe { create::create_swapchain(state, &*p_info, p_allocator, p_swapchain) }
    }

    fn destroy_swapchain(
        device: vk::Device,
        handle: vk::SwapchainKHR,
        p_allocator: *const vk::AllocationCallbacks<'_>,
    ), "vkDestroySwapchainKHR", on panic (), {
        if handle == vk::SwapchainKHR::null() {
            return;
        }
        if let Some(s) = swapchain::SWAPCHAINS.remove(ash::vk::Handle::as_raw(handle) as usize) {
            return swapchain::destroy(s);
        }
        // SAFETY: the device is alive for the command.
        match unsafe { device::of(device) } {
            // SAFETY: the application's arguments, for the driver.
            Some(d) => unsafe { (d.swapchain.destroy_swapchain_khr)(device, handle, p_allocator) },
            None => tracing::error!("vkDestroySwapchainKHR: unknown device"),
        }
    }

    fn get_swapchain_images(
        device: vk::Device,
        handle: vk::SwapchainKHR,
        p_count: *mut u32,
        p_images: *mut vk::Image,
    ) -> vk::Result, "vkGetSwapchainImagesKHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe {
            on_swapchain(
                "vkGetSwapchainImagesKHR",
                device,
                handle,
                vk::Result::ERROR_OUT_OF_HOST_MEMORY,
                |s| crate::vulkan::fill(s.images(), p_count, p_images),
                |d| (d.swapchain.get_swapchain_images_khr)(device, handle, p_count, p_images),
            )
        }
    }

    fn acquire_next_image(
        device: vk::Device,
        handle: vk::SwapchainKHR,
        timeout: u64,
        semaphore: vk::Semaphore,
        fence: vk::Fence,
        p_index: *mut u32,
    ) -> vk::Result, "vkAcquireNextImageKHR", on panic vk::Result::ERROR_OUT_OF_DATE_KHR, {
        // SAFETY: the application's arguments.
        unsafe {
            on_swapchain(
                "vkAcquireNextImageKHR",
                device,
                handle,
                vk::Result::ERROR_DEVICE_LOST,
                |s| acquired(s.acquire(timeout, semaphore, fence), p_index),
                |d| {
                    (d.swapchain.acquire_next_image_khr)(
                        device, handle, timeout, semaphore, fence, p_index,
                    )
                },
            )
        }
    }

    fn acquire_next_image2(
        device: vk::Device,
        p_info: *const vk::AcquireNextImageInfoKHR<'_>,
        p_index: *mut u32,
    ) -> vk::Result, "vkAcquireNextImage2KHR", on panic vk::Result::ERROR_OUT_OF_DATE_KHR, {
        // SAFETY: the application's arguments; the device mask can only
        // name the one device of the group.
        unsafe {
            let info = &*p_info;
            on_swapchain(
                "vkAcquireNextImage2KHR",
                device,
                info.swapchain,
                vk::Result::ERROR_DEVICE_LOST,
                |s| acquired(s.acquire(info.timeout, info.semaphore, info.fence), p_index),
                |d| (d.swapchain.acquire_next_image2_khr)(device, p_info, p_index),
            )
        }
    }

    fn queue_present(queue: vk::Queue, p_info: *const vk::PresentInfoKHR<'_>) -> vk::Result,
        "vkQueuePresentKHR", on panic vk::Result::ERROR_OUT_OF_DATE_KHR, {
        // SAFETY: the queue is alive for the command.
        let Some(device) = (unsafe { device::of(queue) }) else {
            tracing::error!("vkQueuePresentKHR: unknown queue");
            return vk::Result::ERROR_DEVICE_LOST;
        };
        // SAFETY: the application's arguments.
        unsafe { present::queue_present(device, queue, &*p_info) }
    }

    fn device_group_surface_present_modes(
        device: vk::Device,
        handle: vk::SurfaceKHR,
        p_modes: *mut vk::DeviceGroupPresentModeFlagsKHR,
    ) -> vk::Result, "vkGetDeviceGroupSurfacePresentModesKHR", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the device is alive for the command.
        let Some(state) = (unsafe { device::of(device) }) else {
            return vk::Result::ERROR_SURFACE_LOST_KHR;
        };
        if let Some(s) = surface::lookup(handle) {
            if state.owned().is_some() {
                // A group of one device presents its own images.
                // SAFETY: the application passes a valid output pointer.
                unsafe { *p_modes = vk::DeviceGroupPresentModeFlagsKHR::LOCAL };
                return vk::Result::SUCCESS;
            }
            if s.layer_made {
                return vk::Result::ERROR_SURFACE_LOST_KHR;
            }
        }
        // SAFETY: the application's arguments, for the driver.
        unsafe {
            (state.swapchain.get_device_group_surface_present_modes_khr)(device, handle, p_modes)
        }
    }
}

/// Writes an acquired image's index.
///
/// # Safety
/// `p_index` is valid for writing.
unsafe fn acquired(result: Result<(u32, vk::Result), vk::Result>, p_index: *mut u32) -> vk::Result {
    match result {
        Ok((i, status)) => {
            // SAFETY: the caller passes a valid index pointer.
            unsafe { *p_index = i };
            status
        }
        Err(r) => r,
    }
}
