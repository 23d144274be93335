//! Image commands that can name a layer swapchain through the structures
//! chained to them (`VkImageSwapchainCreateInfoKHR`,
//! `VkBindImageMemorySwapchainInfoKHR`): the WSI core makes and binds such
//! images itself (`wsi::swapchain::alias`); every other image goes down
//! untouched.

use std::ffi::c_void;

use ash::vk;

use super::{device_of, Scope};
use crate::vulkan::array;
use crate::vulkan::device::DeviceState;
use crate::wsi::swapchain::{alias, device as wsi_device};

pub(super) fn lookup(name: &[u8]) -> Option<(Scope, *const c_void)> {
    let f = match name {
        b"vkCreateImage" => create_image as *const c_void,
        b"vkDestroyImage" => destroy_image as *const c_void,
        b"vkBindImageMemory2" => bind_image_memory2 as *const c_void,
        b"vkBindImageMemory2KHR" => bind_image_memory2_khr as *const c_void,
        b"vkGetDeviceImageMemoryRequirements" => image_memory_requirements as *const c_void,
        b"vkGetDeviceImageMemoryRequirementsKHR" => image_memory_requirements_khr as *const c_void,
        b"vkGetDeviceImageSparseMemoryRequirements" => {
            image_sparse_memory_requirements as *const c_void
        }
        b"vkGetDeviceImageSparseMemoryRequirementsKHR" => {
            image_sparse_memory_requirements_khr as *const c_void
        }
        b"vkGetDeviceImageSubresourceLayoutKHR" => image_subresource_layout_khr as *const c_void,
        _ => return None,
    };
    Some((Scope::Owned, f))
}

/// `vkBindImageMemory2` through `next` (the core command or its KHR alias).
///
/// # Safety
/// The application's arguments.
unsafe fn bind2(
    name: &str,
    device: vk::Device,
    count: u32,
    p_infos: *const vk::BindImageMemoryInfo<'_>,
    next: impl FnOnce(&DeviceState) -> vk::PFN_vkBindImageMemory2,
) -> vk::Result {
    // SAFETY: the application's device, alive for the command.
    let Some(d) = (unsafe { device_of(name, device) }) else {
        return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
    };
    let next = next(d);
    // SAFETY: as above.
    let Some(wsi) = (unsafe { wsi_device::of(device) }) else {
        // SAFETY: the application's arguments, for the next entity.
        return unsafe { next(device, count, p_infos) };
    };
    // SAFETY: the application passes `count` bind infos.
    let infos = unsafe { array(p_infos, count) };
    // SAFETY: the application's arguments.
    unsafe { alias::bind_image_memory2(d, wsi, next, infos) }
}

/// The info structures of the commands that ask about an image before it
/// exists: they carry its create info.
trait ImageQuery: Copy {
    fn create_info(&self) -> *const vk::ImageCreateInfo<'_>;
    fn with_create_info(self, info: *const vk::ImageCreateInfo<'_>) -> Self;
}

impl ImageQuery for vk::DeviceImageMemoryRequirements<'_> {
    fn create_info(&self) -> *const vk::ImageCreateInfo<'_> {
        self.p_create_info
    }
    fn with_create_info(mut self, info: *const vk::ImageCreateInfo<'_>) -> Self {
        self.p_create_info = info.cast();
        self
    }
}

impl ImageQuery for vk::DeviceImageSubresourceInfoKHR<'_> {
    fn create_info(&self) -> *const vk::ImageCreateInfo<'_> {
        self.p_create_info
    }
    fn with_create_info(mut self, info: *const vk::ImageCreateInfo<'_>) -> Self {
        self.p_create_info = info.cast();
        self
    }
}

/// `vkGetDeviceImageMemoryRequirements` and its sparse and layout kin:
/// calls `down` with the application's info, or with a copy whose image
/// create info is rewritten when it names a layer swapchain.
///
/// # Safety
/// The application's device and valid info.
unsafe fn query<I: ImageQuery>(
    name: &str,
    device: vk::Device,
    p_info: *const I,
    down: impl Fn(&DeviceState, *const I),
) {
    // SAFETY: the application's device, alive for the command.
    let Some(d) = (unsafe { device_of(name, device) }) else {
        return;
    };
    // SAFETY: the caller's valid info and create info.
    let rewritten = unsafe {
        (*p_info)
            .create_info()
            .as_ref()
            .and_then(|ci| alias::rewrite(ci, |copy| down(d, &(*p_info).with_create_info(copy))))
    };
    match rewritten {
        Some(Ok(())) => {}
        Some(Err(r)) => {
            tracing::error!("{name}: asking about a swapchain image's alias failed: {r}")
        }
        None => down(d, p_info),
    }
}

entry! {
    fn create_image(
        device: vk::Device,
        p_info: *const vk::ImageCreateInfo<'_>,
        p_allocator: *const vk::AllocationCallbacks<'_>,
        p_image: *mut vk::Image,
    ) -> vk::Result, "vkCreateImage", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's device, alive for the command.
        let Some(d) = (unsafe { device_of("vkCreateImage", device) }) else {
            return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
        };
        // SAFETY: the application passes a valid create info.
        let info = unsafe { &*p_info };
        if !info.p_next.is_null() {
            // SAFETY: as above.
            if let Some(wsi) = unsafe { wsi_device::of(device) } {
                // SAFETY: the application's arguments.
                if let Some(r) = unsafe { alias::create_image(d, wsi, info, p_allocator, p_image) } {
                    return r;
                }
            }
        }
        // SAFETY: the application's arguments, for the next entity.
        unsafe { (d.fns.fp_v1_0().create_image)(device, p_info, p_allocator, p_image) }
    }

    fn destroy_image(
        device: vk::Device,
        image: vk::Image,
        p_allocator: *const vk::AllocationCallbacks<'_>,
    ), "vkDestroyImage", on panic (), {
        // SAFETY: the application's device, alive for the command.
        let Some(d) = (unsafe { device_of("vkDestroyImage", device) }) else {
            return;
        };
        // SAFETY: the application's arguments.
        unsafe { alias::destroy_image(d, wsi_device::of(device), image, p_allocator) }
    }

    fn bind_image_memory2(
        device: vk::Device,
        count: u32,
        p_infos: *const vk::BindImageMemoryInfo<'_>,
    ) -> vk::Result, "vkBindImageMemory2", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe { bind2("vkBindImageMemory2", device, count, p_infos, |d| d.fns.fp_v1_1().bind_image_memory2) }
    }

    fn bind_image_memory2_khr(
        device: vk::Device,
        count: u32,
        p_infos: *const vk::BindImageMemoryInfo<'_>,
    ) -> vk::Result, "vkBindImageMemory2KHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe { bind2("vkBindImageMemory2KHR", device, count, p_infos, |d| d.aliases.bind_memory2.bind_image_memory2_khr) }
    }

    fn image_memory_requirements(
        device: vk::Device,
        p_info: *const vk::DeviceImageMemoryRequirements<'_>,
        p_reqs: *mut vk::MemoryRequirements2<'_>,
    ), "vkGetDeviceImageMemoryRequirements", on panic (), {
        // SAFETY: the application's arguments, the info perhaps rewritten.
        unsafe {
            query("vkGetDeviceImageMemoryRequirements", device, p_info, |d, info| {
                (d.fns.fp_v1_3().get_device_image_memory_requirements)(device, info, p_reqs)
            })
        }
    }

    fn image_memory_requirements_khr(
        device: vk::Device,
        p_info: *const vk::DeviceImageMemoryRequirements<'_>,
        p_reqs: *mut vk::MemoryRequirements2<'_>,
    ), "vkGetDeviceImageMemoryRequirementsKHR", on panic (), {
        // SAFETY: the application's arguments, the info perhaps rewritten.
        unsafe {
            query("vkGetDeviceImageMemoryRequirementsKHR", device, p_info, |d, info| {
                (d.aliases.maintenance4.get_device_image_memory_requirements_khr)(device, info, p_reqs)
            })
        }
    }

    fn image_sparse_memory_requirements(
        device: vk::Device,
        p_info: *const vk::DeviceImageMemoryRequirements<'_>,
        p_count: *mut u32,
        p_reqs: *mut vk::SparseImageMemoryRequirements2<'_>,
    ), "vkGetDeviceImageSparseMemoryRequirements", on panic (), {
        // SAFETY: the application's arguments, the info perhaps rewritten.
        unsafe {
            query("vkGetDeviceImageSparseMemoryRequirements", device, p_info, |d, info| {
                (d.fns.fp_v1_3().get_device_image_sparse_memory_requirements)(device, info, p_count, p_reqs)
            })
        }
    }

    fn image_sparse_memory_requirements_khr(
        device: vk::Device,
        p_info: *const vk::DeviceImageMemoryRequirements<'_>,
        p_count: *mut u32,
        p_reqs: *mut vk::SparseImageMemoryRequirements2<'_>,
    ), "vkGetDeviceImageSparseMemoryRequirementsKHR", on panic (), {
        // SAFETY: the application's arguments, the info perhaps rewritten.
        unsafe {
            query("vkGetDeviceImageSparseMemoryRequirementsKHR", device, p_info, |d, info| {
                (d.aliases.maintenance4.get_device_image_sparse_memory_requirements_khr)(device, info, p_count, p_reqs)
            })
        }
    }

    fn image_subresource_layout_khr(
        device: vk::Device,
        p_info: *const vk::DeviceImageSubresourceInfoKHR<'_>,
        p_layout: *mut vk::SubresourceLayout2KHR<'_>,
    ), "vkGetDeviceImageSubresourceLayoutKHR", on panic (), {
        // SAFETY: the application's arguments, the info perhaps rewritten.
        unsafe {
            query("vkGetDeviceImageSubresourceLayoutKHR", device, p_info, |d, info| {
                (d.aliases.maintenance5.get_device_image_subresource_layout_khr)(device, info, p_layout)
            })
        }
    }
}
