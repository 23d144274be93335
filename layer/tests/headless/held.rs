//! "Acquire waits for the consumer", in the child process: a consumer still
//! reading an image (a pending vgem fence imported with READ access into
//! every swapchain image's dma-buf) must hold back the application's
//! rendering into it until the read is done — through the acquire fence and
//! semaphore, with no CPU wait.
//!
//! The images' dma-bufs are reached through this process's descriptor
//! table: the layer runs in this process, so the buffers it made for the
//! swapchain are the dma-bufs that appeared during `vkCreateSwapchainKHR`.
//! The fence goes into all of them because which image the next acquire
//! picks is the layer's choice, and it must be in place before the acquire
//! that exports the buffer's fences.

use std::time::Instant;

use ash::vk;
use serde_json::{json, Value};
use syncfile::sources::vgem::Vgem;
use syncfile::Access;

use crate::client::{Chain, Vk};
use crate::common::child::Result;
use crate::fds;
use crate::record::{
    barrier, colour_range, AFTER_TRANSFER_WRITE, FROM_UNDEFINED, TO_PRESENT, TO_TRANSFER_DST,
};

const SIZE: u32 = 64;
/// How long the test watches the held-back submission not run. Longer only
/// makes the check stricter; it must stay well under vgem's 10 s, after
/// which vgem signals its fences by itself.
const HOLD_NS: u64 = 1_500_000_000;
const SENTINEL: u8 = 0xab;

/// Red as the image's bytes: B8G8R8A8 or R8G8B8A8 (UNORM or SRGB alike).
fn red(format: vk::Format) -> [u8; 4] {
    match format {
        vk::Format::B8G8R8A8_UNORM | vk::Format::B8G8R8A8_SRGB => [0, 0, 255, 255],
        _ => [255, 0, 0, 255],
    }
}

pub fn acquire_waits() -> Result<Value> {
    let vk = Vk::new(false)?;
    let before = fds::dma_bufs()?;
    let chain = Chain::new(
        &vk,
        vk::PresentModeKHR::FIFO,
        SIZE,
        0,
        vk::SwapchainKHR::null(),
    )?;
    let images = fds::made_between(&before, fds::dma_bufs()?);
    drop(before);
    let red = red(chain.format);
    let pixels = (chain.extent.width * chain.extent.height) as usize;

    let vgem = Vgem::open()?;
    let (reader, sync_file) = vgem.pending_sync_file()?;
    for f in &images {
        f.dma_buf.import_sync_file(&sync_file, Access::Read)?;
    }
    // The import took: a writer would now have to wait, a reader not.
    let imported = images.iter().all(|f| {
        f.dma_buf.is_ready(Access::Write) == Ok(false)
            && f.dma_buf.is_ready(Access::Read) == Ok(true)
    });

    let (acquired, acquire_fence, done) = (vk.semaphore()?, vk.fence(false)?, vk.fence(false)?);
    let t = Instant::now();
    let index = chain.acquire(u64::MAX, acquired, acquire_fence)?;
    let acquire_ms = t.elapsed().as_secs_f64() * 1e3;
    // SAFETY: a live fence.
    let fence_pending_after_acquire =
        unsafe { vk.device.get_fence_status(acquire_fence) } == Ok(false);

    let buffer = vk.host_buffer(pixels as u64 * 4)?;
    buffer.fill(SENTINEL);
    let cmd = record_clear_and_copy(&vk, &chain, index, buffer.buffer)?;
    let waits = [acquired];
    let stages = [vk::PipelineStageFlags::TRANSFER];
    let cmds = [cmd];
    let signals = [chain.rendered[index as usize]];
    let submit = vk::SubmitInfo::default()
        .wait_semaphores(&waits)
        .wait_dst_stage_mask(&stages)
        .command_buffers(&cmds)
        .signal_semaphores(&signals);
    // SAFETY: a recorded command buffer of live objects, waiting on the
    // acquire semaphore as an application does.
    unsafe { vk.device.queue_submit(vk.queue, &[submit], done)? };

    // While the reader's fence is pending: nothing may have run.
    // SAFETY: live fences; the waits are bounded.
    let held =
        unsafe { vk.device.wait_for_fences(&[done], true, HOLD_NS) } == Err(vk::Result::TIMEOUT);
    let buffer_untouched = buffer.bytes().iter().all(|&b| b == SENTINEL);
    // SAFETY: a live fence.
    let acquire_fence_pending = unsafe { vk.device.get_fence_status(acquire_fence) } == Ok(false);
    let red_while_held: usize = images
        .iter()
        .map(|f| fds::count_pixels(&f.dma_buf, red))
        .sum::<Result<usize>>()?;

    let t = Instant::now();
    reader.signal()?;
    // SAFETY: live fences; bounded waits so a broken layer fails, not hangs.
    let ran = unsafe { vk.device.wait_for_fences(&[done], true, 10_000_000_000) }.is_ok();
    let ran_ms = t.elapsed().as_secs_f64() * 1e3;
    // SAFETY: as above.
    let acquire_fence_signalled = unsafe {
        vk.device
            .wait_for_fences(&[acquire_fence], true, 10_000_000_000)
    }
    .is_ok();
    let buffer_red = buffer.bytes().chunks_exact(4).all(|p| p == red);
    // The image's own buffer now holds the clear: one of the dma-bufs has
    // a whole image of red pixels.
    let mut red_after = Vec::new();
    for f in &images {
        red_after.push(fds::count_pixels(&f.dma_buf, red)?);
    }
    let image_red = red_after.iter().any(|&n| n >= pixels);

    chain.present(index, &[chain.rendered[index as usize]])?;
    chain.wait_idle()?;
    // SAFETY: the device is idle; nothing uses these any more.
    unsafe {
        vk.device.free_command_buffers(vk.pool, &[cmd]);
        vk.device.destroy_semaphore(acquired, None);
        vk.device.destroy_fence(acquire_fence, None);
        vk.device.destroy_fence(done, None);
    }
    Ok(json!({
        "images": chain.images.len(),
        "new_dma_buf_fds": images.len(),
        "new_dma_bufs": fds::distinct(&images),
        "imported": imported,
        "acquire_ms": acquire_ms,
        "fence_pending_after_acquire": fence_pending_after_acquire,
        "held": held,
        "buffer_untouched": buffer_untouched,
        "acquire_fence_pending": acquire_fence_pending,
        "red_pixels_while_held": red_while_held,
        "ran_after_signal": ran,
        "ran_ms_after_signal": ran_ms,
        "acquire_fence_signalled": acquire_fence_signalled,
        "buffer_red": buffer_red,
        "red_pixels_after": red_after,
        "image_red": image_red,
    }))
}

/// UNDEFINED → clear to red → copy into `buffer` → PRESENT_SRC.
fn record_clear_and_copy(
    vk: &Vk,
    chain: &Chain<'_>,
    index: u32,
    buffer: vk::Buffer,
) -> Result<vk::CommandBuffer> {
    let image = chain.images[index as usize];
    let d = &vk.device;
    // SAFETY: a new command buffer of the live device, recording commands on
    // the acquired image and the caller's buffer.
    unsafe {
        let cmd = d.allocate_command_buffers(
            &vk::CommandBufferAllocateInfo::default()
                .command_pool(vk.pool)
                .level(vk::CommandBufferLevel::PRIMARY)
                .command_buffer_count(1),
        )?[0];
        d.begin_command_buffer(cmd, &vk::CommandBufferBeginInfo::default())?;
        barrier(d, cmd, image, FROM_UNDEFINED, TO_TRANSFER_DST);
        d.cmd_clear_color_image(
            cmd,
            image,
            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            &vk::ClearColorValue {
                float32: [1.0, 0.0, 0.0, 1.0],
            },
            &[colour_range()],
        );
        barrier(
            d,
            cmd,
            image,
            AFTER_TRANSFER_WRITE,
            (
                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                vk::PipelineStageFlags::TRANSFER,
                vk::AccessFlags::TRANSFER_READ,
            ),
        );
        let region = vk::BufferImageCopy::default()
            .image_subresource(
                vk::ImageSubresourceLayers::default()
                    .aspect_mask(vk::ImageAspectFlags::COLOR)
                    .layer_count(1),
            )
            .image_extent(vk::Extent3D {
                width: chain.extent.width,
                height: chain.extent.height,
                depth: 1,
            });
        d.cmd_copy_image_to_buffer(
            cmd,
            image,
            vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
            buffer,
            &[region],
        );
        barrier(
            d,
            cmd,
            image,
            (
                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                vk::PipelineStageFlags::TRANSFER,
                vk::AccessFlags::empty(),
            ),
            TO_PRESENT,
        );
        // The copy's writes, visible to the host once `done` signals.
        let host = vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(vk::AccessFlags::HOST_READ);
        d.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::TRANSFER,
            vk::PipelineStageFlags::HOST,
            vk::DependencyFlags::empty(),
            &[host],
            &[],
            &[],
        );
        d.end_command_buffer(cmd)?;
        Ok(cmd)
    }
}
