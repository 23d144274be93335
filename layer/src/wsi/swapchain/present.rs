//! `vkQueuePresentKHR`, the sync bridge's present half: one present may
//! name swapchains of the layer and of the driver together.
//!
//! The layer consumes the present's wait semaphores with one submission on
//! the present queue (waiting at ALL_COMMANDS) whose command buffers hand
//! each image to its consumer (`ownership`), and which signals the present
//! semaphore of each of its images and, when the driver has swapchains in
//! the same present, a hand-off semaphore that the driver's part then waits
//! on instead. Each image's semaphore is then exported as a sync_file that
//! becomes its dma-buf's write fence, and the image goes to its presenter,
//! on this thread. Results are reported per swapchain.
//!
//! Nothing here allocates for presents of up to four swapchains, and no
//! lock is taken unless the present mixes both kinds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ash::vk;
use smallvec::SmallVec;

use super::image::Image;
use super::ownership;
use super::present_info::{Chained, ForSwapchain};
use super::{fell_back_once, PresentPath, Swapchain};
use crate::plumbing::stats::{self, Counter, CpuTimer, Wait, PRESENT_CPU};
use crate::vulkan::array;
use crate::vulkan::device::DeviceState;
use crate::wsi::bridge;
use crate::wsi::platform::{Frame, Shown};

type Few<T> = SmallVec<[T; 4]>;

/// Presents on owned swapchains since the process started: frame numbers.
static FRAMES: AtomicU64 = AtomicU64::new(0);

/// `vkQueuePresentKHR` on `device`'s `queue`.
///
/// # Safety
/// The application's present info and queue, for the duration of the call.
pub unsafe fn queue_present(
    device: &DeviceState,
    queue: vk::Queue,
    info: &vk::PresentInfoKHR<'_>,
) -> vk::Result {
    let n = info.swapchain_count;
    // SAFETY: the present info holds n swapchains and indices.
    let (swapchains, indices) =
        unsafe { (array(info.p_swapchains, n), array(info.p_image_indices, n)) };
    let ours: Few<(usize, &Swapchain)> = swapchains
        .iter()
        .enumerate()
        // SAFETY: the swapchains are alive for the command.
        .filter_map(|(pos, &h)| Some((pos, unsafe { super::get(h) }?)))
        .collect();
    if ours.is_empty() {
        // SAFETY: the application's arguments, for the driver.
        let r = unsafe { (device.swapchain.queue_present_khr)(queue, info) };
        return driver_fences(device, queue, info, r);
    }
    let _timer = CpuTimer::start(&PRESENT_CPU);
    let mut results: Few<vk::Result> = SmallVec::from_elem(vk::Result::SUCCESS, swapchains.len());
    // SAFETY: the application's present info and queue.
    let overall = unsafe { present(device, queue, info, indices, &ours, &mut results) };
    if !info.p_results.is_null() {
        // SAFETY: the application's array has room for n results.
        unsafe { std::ptr::copy_nonoverlapping(results.as_ptr(), info.p_results, results.len()) };
    }
    overall
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
    // SAFETY: the application's valid chain.
    let chained = unsafe { Chained::read(info.p_next) };
    let wsi = &ours[0].1.wsi;
    let family = device.queues.family(queue);
    let mut signals: SmallVec<[vk::Semaphore; 5]> = SmallVec::new();
    let mut cmds: Few<vk::CommandBuffer> = SmallVec::new();
    let mut accepted: Few<(usize, &Swapchain)> = SmallVec::new();
    for &(pos, s) in ours {
        let index = indices[pos];
        match s.begin_present(index) {
            Ok(()) => {
                let image = &s.images[index as usize];
                signals.push(image.semaphore);
                cmds.extend(s.release_command(image, family));
                accepted.push((pos, s));
            }
            Err(r) => results[pos] = r,
        }
    }
    let theirs: Few<usize> = (0..n).filter(|p| !ours.iter().any(|o| o.0 == *p)).collect();
    let handoff = if theirs.is_empty() {
        None
    } else {
        match wsi.handoff() {
            Ok(s) => Some(s),
            Err(r) => {
                abort(&accepted, indices);
                return r;
            }
        }
    };
    signals.extend(handoff);

    // SAFETY: the present info holds this many wait semaphores.
    let waits = unsafe { array(info.p_wait_semaphores, info.wait_semaphore_count) };
    if wsi.has_pending() {
        // Images acquired and presented without any work in between need
        // no taking back: this present hands them on again.
        wsi.take_pending(|s| waits.contains(&s));
    }
    // Present fences (swapchain maintenance) signal once the present's
    // waits are consumed: the first with the layer's submission, others
    // with empty submissions after it.
    let fences: Few<vk::Fence> = ours
        .iter()
        .map(|&(pos, _)| chained.at(pos).fence)
        .filter(|&f| f != vk::Fence::null())
        .collect();
    let mut fences_left = &fences[..];
    if !waits.is_empty() || !signals.is_empty() {
        let stages: Few<vk::PipelineStageFlags> =
            SmallVec::from_elem(vk::PipelineStageFlags::ALL_COMMANDS, waits.len());
        let submit = vk::SubmitInfo::default()
            .wait_semaphores(waits)
            .wait_dst_stage_mask(&stages)
            .command_buffers(&cmds)
            .signal_semaphores(&signals);
        let fence = fences.first().copied().unwrap_or_default();
        fences_left = fences.get(1..).unwrap_or_default();
        // SAFETY: the application gave the layer the queue for this
        // command; the present semaphores are unsignalled (their last
        // signal was consumed by an export or a wait); the fence is the
        // application's, unsignalled, for this present.
        if let Err(r) = unsafe { device.fns.queue_submit(queue, &[submit], fence) } {
            abort(&accepted, indices);
            return r;
        }
    }
    if let Err(r) = signal_after(device, queue, fences_left) {
        abort(&accepted, indices);
        return r;
    }
    for &(pos, s) in &accepted {
        results[pos] = s.finish_present(device, queue, indices[pos], chained.at(pos));
    }

    let mut driver = vk::Result::SUCCESS;
    if let Some(h) = handoff {
        // SAFETY: the application's arguments, for the driver.
        driver = unsafe { present_theirs(device, queue, info, indices, &theirs, h, results) };
        // The driver's part goes without the present's chain (its arrays
        // are by position): its present fences are signalled here.
        let theirs_fences: Few<vk::Fence> = theirs
            .iter()
            .map(|&pos| chained.at(pos).fence)
            .filter(|&f| f != vk::Fence::null())
            .collect();
        if let Err(r) = signal_after(device, queue, &theirs_fences) {
            driver = r;
        }
    }
    overall(results, driver)
}

/// Signals `fences` once everything submitted to `queue` so far is done:
/// a submission of no work per fence.
fn signal_after(
    device: &DeviceState,
    queue: vk::Queue,
    fences: &[vk::Fence],
) -> Result<(), vk::Result> {
    for &f in fences {
        // SAFETY: the application gave the layer the queue for this
        // command; the fence is the application's, unsignalled, for this
        // present.
        unsafe { device.fns.queue_submit(queue, &[], f) }?;
    }
    Ok(())
}

/// After a present of the driver's swapchains alone: present fences the
/// driver was not made to know (the layer provides swapchain maintenance
/// for its own swapchains; the driver lacks it) are signalled by the layer.
fn driver_fences(
    device: &DeviceState,
    queue: vk::Queue,
    info: &vk::PresentInfoKHR<'_>,
    result: vk::Result,
) -> vk::Result {
    let knows = |o: &crate::vulkan::device::Owned| {
        o.driver_has
            .contains(&ash::ext::swapchain_maintenance1::NAME)
    };
    if info.p_next.is_null() || device.owned().is_none_or(knows) {
        return result;
    }
    // SAFETY: the application's valid chain.
    let chained = unsafe { Chained::read(info.p_next) };
    let fences: Few<vk::Fence> = (0..info.swapchain_count as usize)
        .map(|pos| chained.at(pos).fence)
        .filter(|&f| f != vk::Fence::null())
        .collect();
    match signal_after(device, queue, &fences) {
        Ok(()) => result,
        Err(r) => r,
    }
}

/// Gives back the images of a present whose submission failed.
fn abort(accepted: &[(usize, &Swapchain)], indices: &[u32]) {
    for &(pos, s) in accepted {
        s.pool.release(indices[pos]);
    }
}

impl Swapchain {
    /// Whether `index` may be presented; marks it presented. Refusals
    /// leave nothing to undo.
    fn begin_present(&self, index: u32) -> Result<(), vk::Result> {
        match self.pool.present(index) {
            Ok(()) => Ok(()),
            Err(Some(r)) => {
                stats::count(Counter::FramesOutOfDate);
                Err(r)
            }
            Err(None) => {
                tracing::error!(
                    "vkQueuePresentKHR: image {index} of {} is not acquired; refusing it as out of date",
                    self.describe()
                );
                stats::count(Counter::FramesOutOfDate);
                Err(vk::Result::ERROR_OUT_OF_DATE_KHR)
            }
        }
    }

    /// The command buffer that hands `image` to its consumer on queues of
    /// `family`, if the layer knows the family and could record it.
    fn release_command(&self, image: &Image, family: Option<u32>) -> Option<vk::CommandBuffer> {
        let Some(family) = family else {
            fell_back_once("the present queue was not retrieved through the layer, so its family is unknown; images go to their consumer without an ownership transfer");
            return None;
        };
        match ownership::transfers(&self.wsi, image, self.sharing, family) {
            Ok(t) => {
                image.released.store(true, Ordering::Release);
                stats::count(Counter::OwnershipReleased);
                Some(t.release)
            }
            Err(r) => {
                fell_back_once(&format!("recording an ownership transfer failed ({r}); images go to their consumer without one"));
                None
            }
        }
    }

    /// The swapchain's part of a present, once the submission signalling
    /// its semaphore is queued on `queue`: the render's fence onto the
    /// dma-buf and the image to the consumer (or to the present thread),
    /// as the present asked (`asked`).
    fn finish_present(
        &self,
        device: &DeviceState,
        queue: vk::Queue,
        index: u32,
        asked: ForSwapchain<'_>,
    ) -> vk::Result {
        let frame = Frame {
            index,
            seq: FRAMES.fetch_add(1, Ordering::Relaxed),
            mode: self.switch_mode(asked.mode),
            not_before_ns: asked
                .timing
                .map(|t| t.desired_present_time)
                .filter(|&t| t > 0),
        };
        stats::count(Counter::FramesPresented);
        // Recorded before the consumer may report the frame.
        let id = self.history.check_id(asked.id);
        self.history.queued(frame.seq, id, asked.timing);
        let image = &self.images[index as usize];
        let result = match &self.path {
            PresentPath::Direct => {
                self.present_direct(device, queue, image, frame, asked.damage, true)
            }
            PresentPath::Carried => {
                self.present_direct(device, queue, image, frame, asked.damage, false)
            }
            PresentPath::Thread(t) => {
                self.present_via_thread(device, queue, image, frame, Some(t), None)
            }
            PresentPath::Wait => {
                self.present_via_thread(device, queue, image, frame, None, asked.damage)
            }
        };
        if result.as_raw() < 0 {
            self.pool.release(index);
            self.history.shown(frame.seq, Shown::Discarded);
        }
        result
    }

    fn present_direct(
        &self,
        device: &DeviceState,
        queue: vk::Queue,
        image: &Image,
        frame: Frame,
        damage: Option<&[vk::RectLayerKHR]>,
        write_fence: bool,
    ) -> vk::Result {
        // SAFETY: the semaphore is exportable and its signal was just submitted.
        let render = match unsafe {
            bridge::export_semaphore(self.device, &self.wsi.ext, image.semaphore)
        } {
            Ok(r) => r,
            Err(r) => {
                fell_back_once(&format!("exporting the render fence failed ({r})"));
                consume_and_wait(device, queue, image.semaphore);
                None
            }
        };
        let dma_buf = image.dma_buf.get().filter(|_| write_fence);
        if let (Some(render), Some(dma_buf)) = (&render, dma_buf) {
            if let Err(e) = bridge::attach_write_fence(dma_buf, render) {
                fell_back_once(&format!(
                    "attaching the render fence to a dma-buf failed ({e})"
                ));
                let start = Instant::now();
                // Without the write fence, the render must be done before
                // the consumer may look.
                let _ = render.wait(None);
                stats::waited(Wait::FailedImport, start.elapsed());
            }
        }
        self.presenter.present(frame, render.as_ref(), damage)
    }

    fn present_via_thread(
        &self,
        device: &DeviceState,
        queue: vk::Queue,
        image: &Image,
        frame: Frame,
        thread: Option<&super::PresentThread>,
        damage: Option<&[vk::RectLayerKHR]>,
    ) -> vk::Result {
        let semaphores = [image.semaphore];
        let stages = [vk::PipelineStageFlags::ALL_COMMANDS];
        let submit = vk::SubmitInfo::default()
            .wait_semaphores(&semaphores)
            .wait_dst_stage_mask(&stages);
        // SAFETY: the image came back from its consumer, which the present
        // thread gave it only once this fence signalled: nothing waits on
        // it. The application gave the layer the queue for this command,
        // and the semaphore's signal is queued before this wait.
        let submitted = unsafe {
            device
                .fns
                .reset_fences(&[image.fence])
                .and_then(|()| device.fns.queue_submit(queue, &[submit], image.fence))
        };
        if let Err(r) = submitted {
            return r;
        }
        let Some(thread) = thread else {
            let start = Instant::now();
            // SAFETY: the fence of the submission just made.
            let done = unsafe { device.fns.wait_for_fences(&[image.fence], true, u64::MAX) };
            stats::waited(Wait::AppRenderFence, start.elapsed());
            return match done {
                Ok(()) => self.presenter.present(frame, None, damage),
                Err(r) => r,
            };
        };
        if !thread.send(frame, image.fence) {
            return vk::Result::ERROR_OUT_OF_DATE_KHR;
        }
        // The image is the thread's now, so no error may release it here;
        // the consumer's answer comes later, and what it said last stands
        // in (errors reach the application at its next acquire).
        match self.pool.status() {
            vk::Result::SUBOPTIMAL_KHR => vk::Result::SUBOPTIMAL_KHR,
            _ => vk::Result::SUCCESS,
        }
    }
}

/// When the render fence cannot be exported: consumes the present
/// semaphore's signal on the queue (so it can be signalled again) and
/// waits until the render is done.
fn consume_and_wait(device: &DeviceState, queue: vk::Queue, semaphore: vk::Semaphore) {
    let semaphores = [semaphore];
    let stages = [vk::PipelineStageFlags::ALL_COMMANDS];
    let submit = vk::SubmitInfo::default()
        .wait_semaphores(&semaphores)
        .wait_dst_stage_mask(&stages);
    let start = Instant::now();
    // SAFETY: the application gave the layer the queue for this command,
    // and the semaphore's signal is queued before this wait.
    unsafe {
        let _ = device.fns.queue_submit(queue, &[submit], vk::Fence::null());
        let _ = device.fns.queue_wait_idle(queue);
    }
    stats::waited(Wait::FailedImport, start.elapsed());
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
    let all = unsafe { array(info.p_swapchains, info.swapchain_count) };
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
