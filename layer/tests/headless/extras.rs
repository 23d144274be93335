//! What the modern swapchain extensions add to a [`Chain`]'s creation and
//! presents: the modes it may switch among, its creation flags, and the
//! structures chained to one present.

use ash::vk;

use super::{Chain, COLOURS};
use crate::common::child::Result;
use crate::record::record_clear;

/// `VK_STRUCTURE_TYPE_PRESENT_ID_2_KHR` (vk.xml; newer than ash).
pub const PRESENT_ID_2: vk::StructureType = vk::StructureType::from_raw(1_000_479_001);

/// What a swapchain may switch among, and its creation flags.
#[derive(Default)]
pub struct Switch<'a> {
    pub modes: &'a [vk::PresentModeKHR],
    pub flags: vk::SwapchainCreateFlagsKHR,
    /// The `pAllocator` of `vkCreateSwapchainKHR`.
    pub host: Option<&'a vk::AllocationCallbacks<'a>>,
}

/// Structures chained to one present, each for its one swapchain.
#[derive(Default, Clone, Copy)]
pub struct Extras {
    /// `VkPresentIdKHR` (or `VkPresentId2KHR` with `id2`).
    pub id: Option<u64>,
    pub id2: bool,
    /// `VkSwapchainPresentFenceInfoEXT`.
    pub fence: Option<vk::Fence>,
    /// `VkSwapchainPresentModeInfoEXT`.
    pub mode: Option<vk::PresentModeKHR>,
    /// `VkPresentTimesInfoGOOGLE`.
    pub time: Option<vk::PresentTimeGOOGLE>,
    /// `VkPresentRegionsKHR`, one rectangle.
    pub damage: Option<vk::RectLayerKHR>,
}

impl Chain<'_> {
    /// Presents `index` after `wait`, with `extras` chained.
    pub fn present_with(
        &self,
        index: u32,
        wait: &[vk::Semaphore],
        extras: &Extras,
    ) -> std::result::Result<(), vk::Result> {
        let swapchains = [self.swapchain];
        let indices = [index];
        let ids = [extras.id.unwrap_or(0)];
        let fences = [extras.fence.unwrap_or_default()];
        let modes = [extras.mode.unwrap_or_default()];
        let times = [extras.time.unwrap_or_default()];
        let rects = extras.damage.map(|r| [r]);
        let regions = [match &rects {
            Some(r) => vk::PresentRegionKHR::default().rectangles(r),
            None => vk::PresentRegionKHR::default(),
        }];
        let mut id_info = vk::PresentIdKHR::default().present_ids(&ids);
        let mut fence_info = vk::SwapchainPresentFenceInfoEXT::default().fences(&fences);
        let mut mode_info = vk::SwapchainPresentModeInfoEXT::default().present_modes(&modes);
        let mut time_info = vk::PresentTimesInfoGOOGLE::default().times(&times);
        let mut region_info = vk::PresentRegionsKHR::default().regions(&regions);
        let mut info = vk::PresentInfoKHR::default()
            .wait_semaphores(wait)
            .swapchains(&swapchains)
            .image_indices(&indices);
        if extras.id2 {
            // VkPresentId2KHR: VkPresentIdKHR's layout, its own sType.
            id_info.s_type = PRESENT_ID_2;
        }
        if extras.id.is_some() {
            info = info.push_next(&mut id_info);
        }
        if extras.fence.is_some() {
            info = info.push_next(&mut fence_info);
        }
        if extras.mode.is_some() {
            info = info.push_next(&mut mode_info);
        }
        if extras.time.is_some() {
            info = info.push_next(&mut time_info);
        }
        if extras.damage.is_some() {
            info = info.push_next(&mut region_info);
        }
        // SAFETY: an image this application acquired, whose rendering
        // signals (or signalled) `wait`.
        unsafe { self.vk.swapchain_fn.queue_present(self.vk.queue, &info) }.map(|_| ())
    }
}

impl Chain<'_> {
    /// Records image `index`'s clear.
    pub(super) fn record(&mut self, index: u32) -> Result<()> {
        let i = index as usize;
        record_clear(
            &self.vk.device,
            self.cmds[i],
            self.images[i],
            COLOURS[i % COLOURS.len()],
        )?;
        self.recorded[i] = true;
        Ok(())
    }

    /// Submits image `index`'s clear, waiting for `wait` (an acquire
    /// semaphore), signalling its `rendered` semaphore and `fence`.
    pub fn submit_clear(&self, index: u32, wait: vk::Semaphore, fence: vk::Fence) -> Result<()> {
        let waits = [wait];
        let stages = [vk::PipelineStageFlags::TRANSFER];
        let cmds = [self.cmds[index as usize]];
        let signals = [self.rendered[index as usize]];
        let mut submit = vk::SubmitInfo::default()
            .command_buffers(&cmds)
            .signal_semaphores(&signals);
        if wait != vk::Semaphore::null() {
            submit = submit.wait_semaphores(&waits).wait_dst_stage_mask(&stages);
        }
        // SAFETY: recorded command buffers (simultaneous use) of live objects.
        unsafe {
            self.vk
                .device
                .queue_submit(self.vk.queue, &[submit], fence)?
        };
        Ok(())
    }
}
