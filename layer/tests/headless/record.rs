//! Command recording shared by the scenarios: layout transitions of a
//! swapchain image and the clear every frame of the client does.

use ash::vk;

use crate::common::child::Result;

pub fn colour_range() -> vk::ImageSubresourceRange {
    vk::ImageSubresourceRange::default()
        .aspect_mask(vk::ImageAspectFlags::COLOR)
        .level_count(1)
        .layer_count(1)
}

/// A layout transition of a whole colour image.
pub fn barrier(
    device: &ash::Device,
    cmd: vk::CommandBuffer,
    image: vk::Image,
    (from, src_stage, src_access): (vk::ImageLayout, vk::PipelineStageFlags, vk::AccessFlags),
    (to, dst_stage, dst_access): (vk::ImageLayout, vk::PipelineStageFlags, vk::AccessFlags),
) {
    let b = vk::ImageMemoryBarrier::default()
        .old_layout(from)
        .new_layout(to)
        .src_access_mask(src_access)
        .dst_access_mask(dst_access)
        .src_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
        .dst_queue_family_index(vk::QUEUE_FAMILY_IGNORED)
        .image(image)
        .subresource_range(colour_range());
    // SAFETY: a command buffer in the recording state, a live image.
    unsafe {
        device.cmd_pipeline_barrier(
            cmd,
            src_stage,
            dst_stage,
            vk::DependencyFlags::empty(),
            &[],
            &[],
            &[b],
        )
    }
}

/// From the acquire semaphore's wait (TRANSFER stage) to a transfer write.
pub const TO_TRANSFER_DST: (vk::ImageLayout, vk::PipelineStageFlags, vk::AccessFlags) = (
    vk::ImageLayout::TRANSFER_DST_OPTIMAL,
    vk::PipelineStageFlags::TRANSFER,
    vk::AccessFlags::TRANSFER_WRITE,
);
pub const FROM_UNDEFINED: (vk::ImageLayout, vk::PipelineStageFlags, vk::AccessFlags) = (
    vk::ImageLayout::UNDEFINED,
    vk::PipelineStageFlags::TRANSFER,
    vk::AccessFlags::empty(),
);
/// To presentation: the semaphore signalled at the end makes the writes
/// available, so no destination access.
pub const TO_PRESENT: (vk::ImageLayout, vk::PipelineStageFlags, vk::AccessFlags) = (
    vk::ImageLayout::PRESENT_SRC_KHR,
    vk::PipelineStageFlags::BOTTOM_OF_PIPE,
    vk::AccessFlags::empty(),
);

/// Records: UNDEFINED → TRANSFER_DST, clear to `colour`, → PRESENT_SRC.
pub fn record_clear(
    device: &ash::Device,
    cmd: vk::CommandBuffer,
    image: vk::Image,
    colour: [f32; 4],
) -> Result<()> {
    // SAFETY: a fresh command buffer of the live device, recorded once and
    // submitted only while its image is acquired.
    unsafe {
        device.begin_command_buffer(
            cmd,
            &vk::CommandBufferBeginInfo::default()
                .flags(vk::CommandBufferUsageFlags::SIMULTANEOUS_USE),
        )?;
        barrier(device, cmd, image, FROM_UNDEFINED, TO_TRANSFER_DST);
        device.cmd_clear_color_image(
            cmd,
            image,
            vk::ImageLayout::TRANSFER_DST_OPTIMAL,
            &vk::ClearColorValue { float32: colour },
            &[colour_range()],
        );
        barrier(device, cmd, image, AFTER_TRANSFER_WRITE, TO_PRESENT);
        device.end_command_buffer(cmd)?;
    }
    Ok(())
}

/// The state a transfer write leaves the image in.
pub const AFTER_TRANSFER_WRITE: (vk::ImageLayout, vk::PipelineStageFlags, vk::AccessFlags) = (
    vk::ImageLayout::TRANSFER_DST_OPTIMAL,
    vk::PipelineStageFlags::TRANSFER,
    vk::AccessFlags::TRANSFER_WRITE,
);
