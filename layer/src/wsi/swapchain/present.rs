//! `vkQueuePresentKHR`: one present may name swapchains of the layer and
//! of the driver together.
//!
//! The layer consumes the present's wait semaphores with one empty
//! submission on the present queue (waiting at ALL_COMMANDS), which
//! signals the present semaphore of each of its images (see the swapchain
//! and the sync bridge for what follows) and, when the driver has
//! swapchains in the same present, a hand-off semaphore that the driver's
//! part then waits on instead. Results are reported per swapchain.
//!
//! Nothing here allocates for presents of up to four swapchains, and no
//! lock is taken unless the present mixes both kinds.

use std::sync::Mutex;

use ash::vk;
use smallvec::SmallVec;

use crate::device::{DeviceState, DEVICES};
use crate::dispatch;
use crate::entry::guard;
use crate::stats::{CpuTimer, PRESENT_CPU};
use crate::swapchain::{self, Swapchain};

type Few<T> = SmallVec<[T; 4]>;

/// Semaphores that carry a mixed present's waits to the driver's part,
/// used in turn. A binary semaphore may be signalled again once the
/// present that waited on it has executed that wait; cycling through
/// several keeps each one's reuse presents apart.
pub struct Handoff {
    ring: Mutex<(Vec<vk::Semaphore>, usize)>,
}

const HANDOFF_RING: usize = 8;

impl Handoff {
    pub fn new() -> Self {
        Self {
            ring: Mutex::new((Vec::new(), 0)),
        }
    }

    fn next(&self, fns: &ash::Device) -> Result<vk::Semaphore, vk::Result> {
        let mut g = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let (ring, next) = &mut *g;
        if ring.len() < HANDOFF_RING {
            // SAFETY: a plain binary semaphore of this device.
            let s = unsafe { fns.create_semaphore(&vk::SemaphoreCreateInfo::default(), None) }?;
            ring.push(s);
            return Ok(s);
        }
        *next = (*next + 1) % ring.len();
        Ok(ring[*next])
    }

    /// Destroys the semaphores, when their device is destroyed.
    pub fn destroy(&self, fns: &ash::Device) {
        let mut g = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        for s in g.0.drain(..) {
            // SAFETY: the device is idle before its destruction, as Vulkan
            // requires, so no present waits on these any more.
            unsafe { fns.destroy_semaphore(s, None) };
        }
    }
}

/// # Safety
/// `ptr` points to `n` items, or `n` is 0.
unsafe fn slice<'a, T>(ptr: *const T, n: usize) -> &'a [T] {
    if n == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: as the caller promises.
        unsafe { std::slice::from_raw_parts(ptr, n) }
    }
}

pub(crate) unsafe extern "system" fn queue_present(
    queue: vk::Queue,
    p_info: *const vk::PresentInfoKHR<'_>,
) -> vk::Result {
    guard(
        "vkQueuePresentKHR",
        vk::Result::ERROR_OUT_OF_DATE_KHR,
        || {
            // SAFETY: the queue is alive for the command.
            let Some(device) = (unsafe { DEVICES.get(dispatch::key(queue)) }) else {
                tracing::error!("vkQueuePresentKHR: unknown queue");
                return vk::Result::ERROR_DEVICE_LOST;
            };
            // SAFETY: the application passes a valid present info.
            let info = unsafe { &*p_info };
            let n = info.swapchain_count as usize;
            // SAFETY: the present info holds n swapchains and indices.
            let (swapchains, indices) =
                unsafe { (slice(info.p_swapchains, n), slice(info.p_image_indices, n)) };
            let ours: Few<(usize, &Swapchain)> = swapchains
                .iter()
                .enumerate()
                // SAFETY: the swapchains are alive for the command.
                .filter_map(|(pos, &h)| Some((pos, unsafe { swapchain::get(h) }?)))
                .collect();
            if ours.is_empty() {
                // SAFETY: the application's arguments, for the driver.
                return unsafe { (device.swapchain.queue_present_khr)(queue, p_info) };
            }
            let _timer = CpuTimer::start(&PRESENT_CPU);
            let mut results: Few<vk::Result> = SmallVec::from_elem(vk::Result::SUCCESS, n);
            // SAFETY: the application's present info and queue.
            let overall = unsafe { present(device, queue, info, indices, &ours, &mut results) };
            if !info.p_results.is_null() {
                // SAFETY: the application's array has room for n results.
                unsafe { std::ptr::copy_nonoverlapping(results.as_ptr(), info.p_results, n) };
            }
            overall
        },
    )
}

/// The present itself, once it is known to name some of the layer's
/// swapchains (`ours`, with their positions).
///
/// # Safety
/// The application's present info and queue, for the duration of the call.
unsafe fn present(
    device: &DeviceState,
    queue: vk::Queue,
    info: &vk::PresentInfoKHR<'_>,
    indices: &[u32],
    ours: &[(usize, &Swapchain)],
    results: &mut [vk::Result],
) -> vk::Result {
    let n = results.len();
    let mut signals: SmallVec<[vk::Semaphore; 5]> = SmallVec::new();
    let mut accepted: Few<(usize, &Swapchain)> = SmallVec::new();
    for &(pos, s) in ours {
        match s.begin_present(indices[pos]) {
            Ok(()) => {
                signals.push(s.present_semaphore(indices[pos]));
                accepted.push((pos, s));
            }
            Err(r) => results[pos] = r,
        }
    }
    let theirs: Few<usize> = (0..n).filter(|p| !ours.iter().any(|o| o.0 == *p)).collect();
    let handoff = match (theirs.is_empty(), device.owned()) {
        (false, Some(o)) => match o.handoff.next(&device.fns) {
            Ok(s) => Some(s),
            Err(r) => {
                for &(pos, s) in &accepted {
                    s.abort_present(indices[pos]);
                }
                return r;
            }
        },
        _ => None,
    };
    signals.extend(handoff);

    // SAFETY: the present info holds this many wait semaphores.
    let waits = unsafe { slice(info.p_wait_semaphores, info.wait_semaphore_count as usize) };
    if !waits.is_empty() || !signals.is_empty() {
        let stages: Few<vk::PipelineStageFlags> =
            SmallVec::from_elem(vk::PipelineStageFlags::ALL_COMMANDS, waits.len());
        let submit = vk::SubmitInfo::default()
            .wait_semaphores(waits)
            .wait_dst_stage_mask(&stages)
            .signal_semaphores(&signals);
        // SAFETY: the application gave the layer the queue for this
        // command; the present semaphores are unsignalled (their last
        // signal was consumed by an export or a wait).
        if let Err(r) = unsafe { device.fns.queue_submit(queue, &[submit], vk::Fence::null()) } {
            for &(pos, s) in &accepted {
                s.abort_present(indices[pos]);
            }
            return r;
        }
    }
    for &(pos, s) in &accepted {
        results[pos] = s.finish_present(device, queue, indices[pos]);
    }

    let mut driver = vk::Result::SUCCESS;
    if let Some(h) = handoff {
        // SAFETY: the application's arguments, for the driver.
        driver = unsafe { present_theirs(device, queue, info, indices, &theirs, h, results) };
    }
    overall(results, driver)
}

/// Presents the driver's swapchains of a mixed present, waiting on the
/// hand-off semaphore instead of the application's. Structures chained to
/// the present info describe every swapchain by position, so they are not
/// passed on.
///
/// # Safety
/// As [`present`].
unsafe fn present_theirs(
    device: &DeviceState,
    queue: vk::Queue,
    info: &vk::PresentInfoKHR<'_>,
    indices: &[u32],
    theirs: &[usize],
    handoff: vk::Semaphore,
    results: &mut [vk::Result],
) -> vk::Result {
    // SAFETY: the present info holds this many swapchains.
    let all = unsafe { slice(info.p_swapchains, results.len()) };
    let swapchains: Few<vk::SwapchainKHR> = theirs.iter().map(|&p| all[p]).collect();
    let their_indices: Few<u32> = theirs.iter().map(|&p| indices[p]).collect();
    let mut their_results: Few<vk::Result> = SmallVec::from_elem(vk::Result::SUCCESS, theirs.len());
    let waits = [handoff];
    let mut part = vk::PresentInfoKHR::default()
        .wait_semaphores(&waits)
        .swapchains(&swapchains)
        .image_indices(&their_indices);
    part.p_results = their_results.as_mut_ptr();
    // SAFETY: the application's queue and swapchains, with the copied info.
    let r = unsafe { (device.swapchain.queue_present_khr)(queue, &part) };
    for (k, &p) in theirs.iter().enumerate() {
        results[p] = their_results[k];
    }
    r
}

/// The present's result: the first error among the swapchains' (and the
/// driver part's), else SUBOPTIMAL if any was, else SUCCESS.
fn overall(results: &[vk::Result], driver: vk::Result) -> vk::Result {
    let severity = |r: &vk::Result| match *r {
        r if r.as_raw() < 0 => 0,
        vk::Result::SUBOPTIMAL_KHR => 1,
        _ => 2,
    };
    results
        .iter()
        .copied()
        .chain(std::iter::once(driver))
        .min_by_key(severity)
        .unwrap_or(driver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_win_then_suboptimal() {
        let pick = |rs: &[vk::Result]| overall(rs, vk::Result::SUCCESS);
        use vk::Result as R;
        assert_eq!(pick(&[R::SUCCESS, R::SUBOPTIMAL_KHR]), R::SUBOPTIMAL_KHR);
        assert_eq!(
            pick(&[
                R::SUBOPTIMAL_KHR,
                R::ERROR_OUT_OF_DATE_KHR,
                R::ERROR_SURFACE_LOST_KHR
            ]),
            R::ERROR_OUT_OF_DATE_KHR
        );
        assert_eq!(pick(&[R::SUCCESS]), R::SUCCESS);
        assert_eq!(
            overall(&[R::SUBOPTIMAL_KHR], R::ERROR_DEVICE_LOST),
            R::ERROR_DEVICE_LOST
        );
    }
}
