//! Device-level commands of every device: creation (the one ownership
//! decision), destruction (with whatever the application left alive), and
//! queue retrieval (the layer needs each queue's family).

use std::ffi::c_void;

use ash::vk;

use super::Scope;
use crate::plumbing::dispatch;
use crate::plumbing::guard::fault;
use crate::vulkan::device;
use crate::vulkan::instance::CreateError;
use crate::wsi::swapchain;

pub(super) fn lookup(name: &[u8]) -> Option<(Scope, *const c_void)> {
    Some(match name {
        b"vkCreateDevice" => (Scope::Everyone, create_device as *const c_void),
        b"vkDestroyDevice" => (Scope::Everyone, destroy_device as *const c_void),
        b"vkGetDeviceQueue" => (Scope::Everyone, get_device_queue as *const c_void),
        b"vkGetDeviceQueue2" => (Scope::Everyone, get_device_queue2 as *const c_void),
        _ => return None,
    })
}

/// The answer for a device the layer does not know, which cannot happen
/// through the loader; kept out of line, off the hot path.
///
/// # Safety
/// `p_queue` is valid for writing.
#[cold]
#[inline(never)]
unsafe fn no_queue(command: &str, p_queue: *mut vk::Queue) {
    tracing::error!("{command}: unknown device; returning no queue");
    // SAFETY: the caller passes a valid queue pointer.
    unsafe { *p_queue = vk::Queue::null() };
}

entry! {
    fn create_device(
        pd: vk::PhysicalDevice,
        p_create_info: *const vk::DeviceCreateInfo<'_>,
        p_allocator: *const vk::AllocationCallbacks<'_>,
        p_device: *mut vk::Device,
    ) -> vk::Result, "vkCreateDevice", on panic vk::Result::ERROR_INITIALIZATION_FAILED, {
        // SAFETY: the loader passes valid pointers and a physical device.
        match unsafe { device::create(pd, &*p_create_info, p_allocator, p_device) } {
            Ok(_) => vk::Result::SUCCESS,
            Err(e) => {
                if !matches!(e, CreateError::Vulkan(..)) {
                    tracing::error!("vkCreateDevice: {e}");
                }
                e.result()
            }
        }
    }

    /// Destroys what the layer made on the device (and the swapchains the
    /// application left alive, with one log line), then the device.
    fn destroy_device(device: vk::Device, p_allocator: *const vk::AllocationCallbacks<'_>),
        "vkDestroyDevice", on panic (), {
        if device == vk::Device::null() {
            return;
        }
        // SAFETY: the device is valid until the next entity destroys it.
        swapchain::forget_device(unsafe { dispatch::key(device) });
        // SAFETY: the application's arguments.
        unsafe { device::destroy(device, p_allocator) }
    }

    fn get_device_queue(device: vk::Device, family: u32, index: u32, p_queue: *mut vk::Queue),
        "vkGetDeviceQueue", on panic (), {
        // SAFETY: the device is alive for the duration of the command.
        let Some(state) = (unsafe { device::of(device) }) else {
            // SAFETY: the caller passes a valid queue pointer.
            return unsafe { no_queue("vkGetDeviceQueue", p_queue) };
        };
        // SAFETY: the caller's arguments, valid for the next entity too.
        unsafe { (state.fns.fp_v1_0().get_device_queue)(device, family, index, p_queue) };
        fault("get_device_queue");
        // SAFETY: the next entity wrote the queue.
        state
            .queues
            .record(family, vk::DeviceQueueCreateFlags::empty(), index, unsafe {
                *p_queue
            });
    }

    fn get_device_queue2(
        device: vk::Device,
        p_info: *const vk::DeviceQueueInfo2<'_>,
        p_queue: *mut vk::Queue,
    ), "vkGetDeviceQueue2", on panic (), {
        // SAFETY: the device is alive for the duration of the command.
        let Some(state) = (unsafe { device::of(device) }) else {
            // SAFETY: the caller passes a valid queue pointer.
            return unsafe { no_queue("vkGetDeviceQueue2", p_queue) };
        };
        // SAFETY: the caller's arguments, valid for the next entity too.
        unsafe { (state.fns.fp_v1_1().get_device_queue2)(device, p_info, p_queue) };
        // SAFETY: the caller passes a valid queue info, and the next entity
        // wrote the queue.
        unsafe {
            let i = &*p_info;
            state
                .queues
                .record(i.queue_family_index, i.flags, i.queue_index, *p_queue);
        }
    }
}
