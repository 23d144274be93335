//! Queue family ownership of the images: the present submission releases
//! an image to its consumer (`VK_QUEUE_FAMILY_FOREIGN_EXT` where the driver
//! has it, else `VK_QUEUE_FAMILY_EXTERNAL`), and the application's first
//! submission that waits on the acquire semaphore takes it back, on that
//! submission's queue family, before the application's own work. That is
//! the only correct hand-off of a modifier image to another device or
//! process: harmless with LINEAR, needed for compressed modifiers, whose
//! metadata the driver must make what the consumer reads.
//!
//! The barriers are recorded once per image and queue family, in the
//! layer's own command buffers. Taking an image back needs a queue, which
//! `vkAcquireNextImageKHR` does not have: the acquire records the
//! semaphore it signals, and the application's next `vkQueueSubmit(2)`
//! that waits on it runs the layer's batch first (waiting on the acquire
//! semaphore, taking the image back, signalling the image's hand-back
//! semaphore) and waits on that instead. A submission that waits on no
//! such semaphore costs one atomic load.
//!
//! An image the application takes without waiting on the acquire
//! semaphore (an acquire fence only) is taken back implicitly, as Vulkan
//! allows for exclusive images, with undefined contents.

use ash::vk;
use smallvec::SmallVec;

use super::device::{PendingAcquire, WsiDevice};
use super::image::{Image, Transfers};
use super::SWAPCHAINS;

type Few<T> = SmallVec<[T; 4]>;

/// The image's transfer command buffers for queue family `family`,
/// recorded on first use.
pub fn transfers(
    wsi: &WsiDevice,
    image: &Image,
    sharing: vk::SharingMode,
    family: u32,
) -> Result<Transfers, vk::Result> {
    let mut recorded = image.transfers.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = recorded.iter().find(|t| t.family == family) {
        return Ok(*t);
    }
    let (ours, theirs) = match sharing {
        // Concurrent images belong to every family of theirs at once.
        vk::SharingMode::CONCURRENT => (vk::QUEUE_FAMILY_IGNORED, wsi.foreign_family),
        _ => (family, wsi.foreign_family),
    };
    let release = record(wsi, family, image.image, ours, theirs)?;
    let acquire = match record(wsi, family, image.image, theirs, ours) {
        Ok(a) => a,
        Err(r) => {
            wsi.free_command_buffers(family, &[release]);
            return Err(r);
        }
    };
    let t = Transfers {
        family,
        release,
        acquire,
    };
    recorded.push(t);
    Ok(t)
}

/// A command buffer with one barrier that moves `image`, in the present
/// layout the application left it in, from queue family `from` to `to`.
fn record(
    wsi: &WsiDevice,
    family: u32,
    image: vk::Image,
    from: u32,
    to: u32,
) -> Result<vk::CommandBuffer, vk::Result> {
    let cmd = wsi.command_buffer(family)?;
    let releasing = to == wsi.foreign_family;
    let barrier = vk::ImageMemoryBarrier::default()
        // A release makes the render's writes available to the consumer;
        // an acquire makes them visible to what follows (the application's
        // own barrier then transitions the image as it needs).
        .src_access_mask(if releasing {
            vk::AccessFlags::MEMORY_WRITE
        } else {
            vk::AccessFlags::empty()
        })
        .dst_access_mask(if releasing {
            vk::AccessFlags::empty()
        } else {
            vk::AccessFlags::MEMORY_READ | vk::AccessFlags::MEMORY_WRITE
        })
        .old_layout(vk::ImageLayout::PRESENT_SRC_KHR)
        .new_layout(vk::ImageLayout::PRESENT_SRC_KHR)
        .src_queue_family_index(from)
        .dst_queue_family_index(to)
        .image(image)
        .subresource_range(vk::ImageSubresourceRange {
            aspect_mask: vk::ImageAspectFlags::COLOR,
            base_mip_level: 0,
            level_count: 1,
            base_array_layer: 0,
            layer_count: vk::REMAINING_ARRAY_LAYERS,
        });
    let begin =
        vk::CommandBufferBeginInfo::default().flags(vk::CommandBufferUsageFlags::SIMULTANEOUS_USE);
    let d = &wsi.fns;
    // SAFETY: a fresh command buffer of this device, recorded once here
    // and only submitted afterwards.
    let recorded = unsafe {
        d.begin_command_buffer(cmd, &begin).and_then(|()| {
            d.cmd_pipeline_barrier(
                cmd,
                vk::PipelineStageFlags::ALL_COMMANDS,
                if releasing {
                    vk::PipelineStageFlags::BOTTOM_OF_PIPE
                } else {
                    vk::PipelineStageFlags::ALL_COMMANDS
                },
                vk::DependencyFlags::empty(),
                &[],
                &[],
                &[barrier],
            );
            d.end_command_buffer(cmd)
        })
    };
    match recorded {
        Ok(()) => Ok(cmd),
        Err(r) => {
            wsi.free_command_buffers(family, &[cmd]);
            Err(r)
        }
    }
}

/// One image to take back before a batch, in place of its acquire
/// semaphore.
struct Handback {
    /// The application's acquire semaphore and the stage it waits at.
    semaphore: vk::Semaphore,
    stage: vk::PipelineStageFlags2,
    cmd: vk::CommandBuffer,
    /// The image's semaphore the application's batch waits on instead.
    handback: vk::Semaphore,
}

/// The hand-backs for the pending acquires `taken` on queue family
/// `family` (those still valid: the image is still acquired by that
/// acquire and was handed to its consumer before).
fn handbacks(
    wsi: &WsiDevice,
    family: u32,
    taken: &[PendingAcquire],
    stage_of: impl Fn(vk::Semaphore) -> vk::PipelineStageFlags2,
) -> Few<Handback> {
    let mut out = Few::new();
    for p in taken {
        // SAFETY: the application may not destroy a swapchain while it
        // submits work that uses its images.
        let Some(s) = (unsafe { SWAPCHAINS.get(p.swapchain as usize) }) else {
            continue;
        };
        if !s.pool.acquired_as(p.index, p.seq) {
            continue;
        }
        let image = &s.images[p.index as usize];
        match transfers(wsi, image, s.sharing, family) {
            Ok(t) => out.push(Handback {
                semaphore: p.semaphore,
                stage: stage_of(p.semaphore),
                cmd: t.acquire,
                handback: image.handback,
            }),
            Err(r) => tracing::error!(
                "cannot record the command buffer that takes an image back from its consumer ({r}); the application's use takes it implicitly"
            ),
        }
    }
    out
}

/// `vkQueueSubmit` on a device with pending acquires: the batches that wait
/// on one take the image back first.
///
/// # Safety
/// The application's arguments, for the duration of the call.
pub unsafe fn queue_submit(
    wsi: &WsiDevice,
    queue: vk::Queue,
    family: Option<u32>,
    submits: &[vk::SubmitInfo<'_>],
    fence: vk::Fence,
) -> vk::Result {
    let taken = match family {
        Some(_) => wsi.take_pending(|s| submits.iter().any(|b| waits(b).contains(&s))),
        None => Vec::new(),
    };
    let stage_of = |s: vk::Semaphore| {
        submits
            .iter()
            .find_map(|b| {
                let i = waits(b).iter().position(|&w| w == s)?;
                // SAFETY: the batch holds a stage per wait semaphore.
                let stages = unsafe { slice(b.p_wait_dst_stage_mask, b.wait_semaphore_count) };
                stages
                    .get(i)
                    .map(|m| vk::PipelineStageFlags2::from_raw(u64::from(m.as_raw())))
            })
            .unwrap_or(vk::PipelineStageFlags2::ALL_COMMANDS)
    };
    let backs = match family {
        Some(f) if !taken.is_empty() => handbacks(wsi, f, &taken, stage_of),
        _ => Few::new(),
    };
    if backs.is_empty() {
        // SAFETY: the application's arguments, for the driver.
        return unsafe {
            (wsi.fns.fp_v1_0().queue_submit)(queue, submits.len() as u32, submits.as_ptr(), fence)
        };
    }
    // The layer's batches and the application's, in order; the arrays they
    // point to live until the call returns.
    let mut wait_lists: Vec<Vec<vk::Semaphore>> = Vec::new();
    let mut ours: Vec<(
        vk::Semaphore,
        vk::PipelineStageFlags,
        vk::CommandBuffer,
        vk::Semaphore,
    )> = Vec::new();
    let mut plan: Vec<(Option<usize>, usize)> = Vec::new();
    for (k, b) in submits.iter().enumerate() {
        let mut replaced = waits(b).to_vec();
        for h in &backs {
            if let Some(slot) = replaced.iter_mut().find(|w| **w == h.semaphore) {
                *slot = h.handback;
                ours.push((
                    h.semaphore,
                    vk::PipelineStageFlags::from_raw(h.stage.as_raw() as u32),
                    h.cmd,
                    h.handback,
                ));
                plan.push((Some(ours.len() - 1), k));
            }
        }
        wait_lists.push(replaced);
        plan.push((None, k));
    }
    let mut batches: Vec<vk::SubmitInfo<'_>> = Vec::with_capacity(plan.len());
    for &(layer, k) in &plan {
        match layer {
            Some(i) => {
                let (wait, stage, cmd, signal) = &ours[i];
                batches.push(
                    vk::SubmitInfo::default()
                        .wait_semaphores(std::slice::from_ref(wait))
                        .wait_dst_stage_mask(std::slice::from_ref(stage))
                        .command_buffers(std::slice::from_ref(cmd))
                        .signal_semaphores(std::slice::from_ref(signal)),
                );
            }
            None => {
                let mut b = submits[k];
                b.p_wait_semaphores = wait_lists[k].as_ptr();
                batches.push(b);
            }
        }
    }
    // SAFETY: the application's queue and fence, its batches (with the
    // acquire semaphores they waited on replaced) after the layer's.
    unsafe {
        (wsi.fns.fp_v1_0().queue_submit)(queue, batches.len() as u32, batches.as_ptr(), fence)
    }
}

/// `vkQueueSubmit2` likewise.
///
/// # Safety
/// The application's arguments, for the duration of the call; `submit2`
/// is the next entity's `vkQueueSubmit2` (or its KHR alias).
pub unsafe fn queue_submit2(
    wsi: &WsiDevice,
    submit2: vk::PFN_vkQueueSubmit2,
    queue: vk::Queue,
    family: Option<u32>,
    submits: &[vk::SubmitInfo2<'_>],
    fence: vk::Fence,
) -> vk::Result {
    let taken = match family {
        Some(_) => wsi.take_pending(|s| {
            submits
                .iter()
                .any(|b| waits2(b).iter().any(|w| w.semaphore == s))
        }),
        None => Vec::new(),
    };
    let stage_of = |s: vk::Semaphore| {
        submits
            .iter()
            .flat_map(|b| waits2(b).iter())
            .find(|w| w.semaphore == s)
            .map_or(vk::PipelineStageFlags2::ALL_COMMANDS, |w| w.stage_mask)
    };
    let backs = match family {
        Some(f) if !taken.is_empty() => handbacks(wsi, f, &taken, stage_of),
        _ => Few::new(),
    };
    if backs.is_empty() {
        // SAFETY: the application's arguments, for the driver.
        return unsafe { submit2(queue, submits.len() as u32, submits.as_ptr(), fence) };
    }
    let mut wait_lists: Vec<Vec<vk::SemaphoreSubmitInfo<'_>>> = Vec::new();
    let mut ours: Vec<(
        vk::SemaphoreSubmitInfo<'_>,
        vk::CommandBufferSubmitInfo<'_>,
        vk::SemaphoreSubmitInfo<'_>,
    )> = Vec::new();
    let mut plan: Vec<(Option<usize>, usize)> = Vec::new();
    for (k, b) in submits.iter().enumerate() {
        let mut replaced = waits2(b).to_vec();
        for h in &backs {
            if let Some(slot) = replaced.iter_mut().find(|w| w.semaphore == h.semaphore) {
                let wait = *slot;
                slot.semaphore = h.handback;
                slot.value = 0;
                ours.push((
                    wait,
                    vk::CommandBufferSubmitInfo::default().command_buffer(h.cmd),
                    vk::SemaphoreSubmitInfo::default()
                        .semaphore(h.handback)
                        .stage_mask(vk::PipelineStageFlags2::ALL_COMMANDS),
                ));
                plan.push((Some(ours.len() - 1), k));
            }
        }
        wait_lists.push(replaced);
        plan.push((None, k));
    }
    let mut batches: Vec<vk::SubmitInfo2<'_>> = Vec::with_capacity(plan.len());
    for &(layer, k) in &plan {
        match layer {
            Some(i) => {
                let (wait, cmd, signal) = &ours[i];
                batches.push(
                    vk::SubmitInfo2::default()
                        .wait_semaphore_infos(std::slice::from_ref(wait))
                        .command_buffer_infos(std::slice::from_ref(cmd))
                        .signal_semaphore_infos(std::slice::from_ref(signal)),
                );
            }
            None => {
                let mut b = submits[k];
                b.p_wait_semaphore_infos = wait_lists[k].as_ptr();
                batches.push(b);
            }
        }
    }
    // SAFETY: as in `queue_submit`.
    unsafe { submit2(queue, batches.len() as u32, batches.as_ptr(), fence) }
}

/// A batch's wait semaphores.
fn waits<'a>(b: &vk::SubmitInfo<'a>) -> &'a [vk::Semaphore] {
    // SAFETY: a valid batch holds this many wait semaphores.
    unsafe { slice(b.p_wait_semaphores, b.wait_semaphore_count) }
}

/// A batch's wait semaphore infos.
fn waits2<'a>(b: &vk::SubmitInfo2<'a>) -> &'a [vk::SemaphoreSubmitInfo<'a>] {
    // SAFETY: a valid batch holds this many wait infos.
    unsafe { slice(b.p_wait_semaphore_infos, b.wait_semaphore_info_count) }
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
