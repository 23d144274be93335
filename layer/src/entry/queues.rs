//! Queue submission, on devices the layer owns: a submission that waits on
//! an acquire semaphore of the layer's swapchains first takes the image
//! back from its consumer (`wsi::swapchain::ownership`); every other one
//! goes down after one atomic load.

use std::ffi::c_void;

use ash::vk;

use super::Scope;
use crate::vulkan::array;
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

/// A submission through `next` (`vkQueueSubmit`, `vkQueueSubmit2` or its
/// KHR alias), which first takes back the images whose acquire the batches
/// wait on.
///
/// # Safety
/// The application's arguments.
unsafe fn submit<B: ownership::Batch>(
    name: &str,
    queue: vk::Queue,
    count: u32,
    p_submits: *const B,
    fence: vk::Fence,
    next: impl FnOnce(
        &DeviceState,
    )
        -> unsafe extern "system" fn(vk::Queue, u32, *const B, vk::Fence) -> vk::Result,
) -> vk::Result {
    // SAFETY: the queue is alive for the command.
    let Some(d) = (unsafe { device::of(queue) }) else {
        tracing::error!("{name}: unknown queue");
        return vk::Result::ERROR_DEVICE_LOST;
    };
    let next = next(d);
    // SAFETY: as above.
    match unsafe { wsi_device::of(queue) } {
        // SAFETY: the application's arguments.
        Some(w) if w.has_pending() => unsafe {
            ownership::submit(
                w,
                d.queues.family(queue),
                array(p_submits, count),
                |batches| next(queue, batches.len() as u32, batches.as_ptr(), fence),
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
        // SAFETY: the application's arguments.
        unsafe { submit("vkQueueSubmit", queue, count, p_submits, fence, |d| d.fns.fp_v1_0().queue_submit) }
    }

    fn queue_submit2(
        queue: vk::Queue,
        count: u32,
        p_submits: *const vk::SubmitInfo2<'_>,
        fence: vk::Fence,
    ) -> vk::Result, "vkQueueSubmit2", on panic vk::Result::ERROR_DEVICE_LOST, {
        // SAFETY: the application's arguments.
        unsafe { submit("vkQueueSubmit2", queue, count, p_submits, fence, |d| d.fns.fp_v1_3().queue_submit2) }
    }

    fn queue_submit2_khr(
        queue: vk::Queue,
        count: u32,
        p_submits: *const vk::SubmitInfo2<'_>,
        fence: vk::Fence,
    ) -> vk::Result, "vkQueueSubmit2KHR", on panic vk::Result::ERROR_DEVICE_LOST, {
        // SAFETY: the application's arguments.
        unsafe {
            submit("vkQueueSubmit2KHR", queue, count, p_submits, fence, |d| {
                d.aliases.synchronization2.queue_submit2_khr
            })
        }
    }
}
