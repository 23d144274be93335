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
use crate::plumbing::stats::{self, Counter};
use crate::vulkan::array;

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
pub struct Handback {
    /// The application's acquire semaphore.
    semaphore: vk::Semaphore,
    cmd: vk::CommandBuffer,
    /// The image's semaphore the application's batch waits on instead.
    handback: vk::Semaphore,
}

/// The hand-backs for the pending acquires `taken` on queue family
/// `family` (those still valid: the image is still acquired by that
/// acquire and was handed to its consumer before).
fn handbacks(wsi: &WsiDevice, family: u32, taken: &[PendingAcquire]) -> Few<Handback> {
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
            Ok(t) => {
                stats::count(Counter::OwnershipTakenBack);
                out.push(Handback {
                    semaphore: p.semaphore,
                    cmd: t.acquire,
                    handback: image.handback,
                });
            }
            Err(r) => tracing::error!(
                "cannot record the command buffer that takes an image back from its consumer ({r}); the application's use takes it implicitly"
            ),
        }
    }
    out
}

/// A batch of `vkQueueSubmit` or `vkQueueSubmit2`, as the hand-back
/// rewrites it.
pub trait Batch: Copy {
    /// One wait of the batch.
    type Wait: Copy;
    /// The storage of the layer's batch that takes an image back.
    type Ours;
    /// The batch's waits.
    ///
    /// # Safety
    /// The batch is valid.
    unsafe fn waits(&self) -> &[Self::Wait];
    fn semaphore(wait: &Self::Wait) -> vk::Semaphore;
    /// Makes `wait` wait on `semaphore` (a binary semaphore) instead.
    fn redirect(wait: &mut Self::Wait, semaphore: vk::Semaphore);
    /// The layer's batch for `back`, in place of this batch's wait `i`.
    ///
    /// # Safety
    /// The batch is valid and has a wait `i`.
    unsafe fn ours(&self, i: usize, back: &Handback) -> Self::Ours;
    /// The layer's batch, pointing into `ours`.
    fn layer_batch(ours: &Self::Ours) -> Self;
    /// This batch waiting on `waits` instead, pointing into it.
    fn waiting_on(self, waits: &[Self::Wait]) -> Self;
}

impl Batch for vk::SubmitInfo<'_> {
    type Wait = vk::Semaphore;
    type Ours = (
        vk::Semaphore,
        vk::PipelineStageFlags,
        vk::CommandBuffer,
        vk::Semaphore,
    );

    unsafe fn waits(&self) -> &[vk::Semaphore] {
        // SAFETY: a valid batch holds this many wait semaphores.
        unsafe { array(self.p_wait_semaphores, self.wait_semaphore_count) }
    }

    fn semaphore(wait: &vk::Semaphore) -> vk::Semaphore {
        *wait
    }

    fn redirect(wait: &mut vk::Semaphore, semaphore: vk::Semaphore) {
        *wait = semaphore;
    }

    unsafe fn ours(&self, i: usize, back: &Handback) -> Self::Ours {
        // SAFETY: a valid batch holds a stage per wait semaphore.
        let stage = unsafe { *self.p_wait_dst_stage_mask.add(i) };
        (back.semaphore, stage, back.cmd, back.handback)
    }

    fn layer_batch(ours: &Self::Ours) -> Self {
        let (wait, stage, cmd, signal) = ours;
        vk::SubmitInfo {
            wait_semaphore_count: 1,
            p_wait_semaphores: wait,
            p_wait_dst_stage_mask: stage,
            command_buffer_count: 1,
            p_command_buffers: cmd,
            signal_semaphore_count: 1,
            p_signal_semaphores: signal,
            ..Default::default()
        }
    }

    fn waiting_on(mut self, waits: &[vk::Semaphore]) -> Self {
        self.p_wait_semaphores = waits.as_ptr();
        self
    }
}

impl<'a> Batch for vk::SubmitInfo2<'a> {
    type Wait = vk::SemaphoreSubmitInfo<'a>;
    type Ours = (Self::Wait, vk::CommandBufferSubmitInfo<'a>, Self::Wait);

    unsafe fn waits(&self) -> &[Self::Wait] {
        // SAFETY: a valid batch holds this many wait infos.
        unsafe { array(self.p_wait_semaphore_infos, self.wait_semaphore_info_count) }
    }

    fn semaphore(wait: &Self::Wait) -> vk::Semaphore {
        wait.semaphore
    }

    fn redirect(wait: &mut Self::Wait, semaphore: vk::Semaphore) {
        wait.semaphore = semaphore;
        wait.value = 0;
    }

    unsafe fn ours(&self, i: usize, back: &Handback) -> Self::Ours {
        (
            // SAFETY: the caller's batch has a wait `i`.
            unsafe { self.waits()[i] },
            vk::CommandBufferSubmitInfo::default().command_buffer(back.cmd),
            vk::SemaphoreSubmitInfo::default()
                .semaphore(back.handback)
                .stage_mask(vk::PipelineStageFlags2::ALL_COMMANDS),
        )
    }

    fn layer_batch(ours: &Self::Ours) -> Self {
        let (wait, cmd, signal) = ours;
        vk::SubmitInfo2 {
            wait_semaphore_info_count: 1,
            p_wait_semaphore_infos: wait,
            command_buffer_info_count: 1,
            p_command_buffer_infos: cmd,
            signal_semaphore_info_count: 1,
            p_signal_semaphore_infos: signal,
            ..Default::default()
        }
    }

    fn waiting_on(mut self, waits: &[Self::Wait]) -> Self {
        self.p_wait_semaphore_infos = waits.as_ptr();
        self
    }
}

/// A submission on a device with pending acquires, on a queue of family
/// `family`: the batches that wait on one take the image back first.
/// `next` submits the batches it is given.
///
/// # Safety
/// The application's batches, valid for the duration of the call.
pub unsafe fn submit<B: Batch>(
    wsi: &WsiDevice,
    family: Option<u32>,
    submits: &[B],
    next: impl FnOnce(&[B]) -> vk::Result,
) -> vk::Result {
    // SAFETY: the caller's batches are valid.
    let waits_on =
        |b: &B, s: vk::Semaphore| unsafe { b.waits() }.iter().any(|w| B::semaphore(w) == s);
    let backs = match family {
        Some(f) => {
            let taken = wsi.take_pending(|s| submits.iter().any(|b| waits_on(b, s)));
            handbacks(wsi, f, &taken)
        }
        None => Few::new(),
    };
    if backs.is_empty() {
        return next(submits);
    }
    // The layer's batches and the application's, in order; the arrays they
    // point to live until `next` returns.
    let mut wait_lists: Vec<Vec<B::Wait>> = Vec::with_capacity(submits.len());
    let mut ours: Vec<B::Ours> = Vec::new();
    let mut plan: Vec<(Option<usize>, usize)> = Vec::new();
    for (k, b) in submits.iter().enumerate() {
        // SAFETY: as above.
        let mut replaced = unsafe { b.waits() }.to_vec();
        for back in &backs {
            if let Some(i) = replaced
                .iter()
                .position(|w| B::semaphore(w) == back.semaphore)
            {
                // SAFETY: as above; `i` is one of the batch's waits.
                ours.push(unsafe { b.ours(i, back) });
                B::redirect(&mut replaced[i], back.handback);
                plan.push((Some(ours.len() - 1), k));
            }
        }
        wait_lists.push(replaced);
        plan.push((None, k));
    }
    let batches: Vec<B> = plan
        .iter()
        .map(|&(layer, k)| match layer {
            Some(i) => B::layer_batch(&ours[i]),
            None => submits[k].waiting_on(&wait_lists[k]),
        })
        .collect();
    next(&batches)
}
