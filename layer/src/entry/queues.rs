//! Queue submission, on devices the layer owns: a submission that waits on
//! an acquire semaphore of the layer's swapchains first takes the image
//! back from its consumer (`wsi::swapchain::ownership`); every other one
//! goes down after one atomic load.

use std::ffi::c_void;

use ash::vk;

use super::Scope;
use crate::vulkan::device::{self, DeviceState};
use crate::wsi::swapchain::{device as wsi_device, ownership};

pub(super) fn lookup(name: &[u8]) -> Option<(Scope, *const c_void)> {
    let f = match name {
        b"vkQueueSubmit" => queue_submit as *const c_void,
        b"vkQueueSubmit2" => queue_submit2 as *const c_void,
        b"vkQueueSubmit2KHR" => queue_submit2_khr as *const c_void,
        _ => return None,
    };
    Some((Scope::Owned, f))
}

/// # Safety
/// `ptr` points to `n` items, or `n` is 0.
unsafe fn slice<'a, T>(ptr: *const T, n: u32) -> &'a [T] {
    if n == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: as the caller promises.
        unsafe { std::slice::from_raw_parts(ptr, n as usize) }
    }
}

/// `vkQueueSubmit2` through `next` (the core command or its KHR alias).
///
/// # Safety
/// The application's arguments.
unsafe fn submit2(
    queue: vk::Queue,
    count: u32,
    p_submits: *const vk::SubmitInfo2<'_>,
    fence: vk::Fence,
    next: impl FnOnce(&DeviceState) -> vk::PFN_vkQueueSubmit2,
) -> vk::Result {
    // SAFETY: the queue is alive for the command.
    let Some(d) = (unsafe { device::of(queue) }) else {
        tracing::error!("vkQueueSubmit2: unknown queue");
        return vk::Result::ERROR_DEVICE_LOST;
    };
    let next = next(d);
    // SAFETY: as above.
    match unsafe { wsi_device::of(queue) } {
        // SAFETY: the application's arguments.
        Some(w) if w.has_pending() => unsafe {
            ownership::queue_submit2(
                w,
                next,
                queue,
                d.queues.family(queue),
                slice(p_submits, count),
                fence,
            )
        },
        // SAFETY: the application's arguments, for the next entity.
        _ => unsafe { next(queue, count, p_submits, fence) },
    }
}

entry! {
    fn queue_submit(
        queue: vk::Queue,
        count: u32,
        p_submits: *const vk::SubmitInfo<'_>,
        fence: vk::Fence,
    ) -> vk::Result, "vkQueueSubmit", on panic vk::Result::ERROR_DEVICE_LOST, {
        // SAFETY: the queue is alive for the command.
        let Some(d) = (unsafe { device::of(queue) }) else {
            tracing::error!("vkQueueSubmit: unknown queue");
            return vk::Result::ERROR_DEVICE_LOST;
        };
        // SAFETY: as above.
        match unsafe { wsi_device::of(queue) } {
            // SAFETY: the application's arguments.
            Some(w) if w.has_pending() => unsafe {
                ownership::queue_submit(w, queue, d.queues.family(queue), slice(p_submits, count), fence)
            },
            // SAFETY: the application's arguments, for the next entity.
            _ => unsafe { (d.fns.fp_v1_0().queue_submit)(queue, count, p_submits, fence) },
        }
    }

    fn queue_submit2(
        queue: vk::Queue,
        count: u32,
        p_submits: *const vk::SubmitInfo2<'_>,
        fence: vk::Fence,
    ) -> vk::Result, "vkQueueSubmit2", on panic vk::Result::ERROR_DEVICE_LOST, {
        // SAFETY: the application's arguments.
        unsafe { submit2(queue, count, p_submits, fence, |d| d.fns.fp_v1_3().queue_submit2) }
    }

    fn queue_submit2_khr(
        queue: vk::Queue,
        count: u32,
        p_submits: *const vk::SubmitInfo2<'_>,
        fence: vk::Fence,
    ) -> vk::Result, "vkQueueSubmit2KHR", on panic vk::Result::ERROR_DEVICE_LOST, {
        // SAFETY: the application's arguments.
        unsafe { submit2(queue, count, p_submits, fence, |d| d.aliases.synchronization2.queue_submit2_khr) }
    }
}
