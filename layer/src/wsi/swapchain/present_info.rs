//! What the structures chained to a `VkPresentInfoKHR` say about each of
//! its swapchains: present ids (`VK_KHR_present_id`, `…id2`), present fences
//! and modes (swapchain maintenance), changed regions
//! (`VK_KHR_incremental_present`) and desired times
//! (`VK_GOOGLE_display_timing`). Each is an array with one entry per
//! swapchain of the present, by position.

use std::ffi::c_void;

use ash::vk;

use crate::vulkan::array;
use crate::vulkan::newer;

/// The present's chained arrays; each empty when not chained.
#[derive(Default)]
pub struct Chained<'a> {
    ids: &'a [u64],
    fences: &'a [vk::Fence],
    modes: &'a [vk::PresentModeKHR],
    regions: &'a [vk::PresentRegionKHR<'a>],
    times: &'a [vk::PresentTimeGOOGLE],
}

/// What the present asks of one of its swapchains.
#[derive(Clone, Copy, Default)]
pub struct ForSwapchain<'a> {
    /// 0: none.
    pub id: u64,
    /// Null: none.
    pub fence: vk::Fence,
    /// The mode from this present on, if it switches.
    pub mode: Option<vk::PresentModeKHR>,
    /// The changed rectangles; `None`: the whole image.
    pub damage: Option<&'a [vk::RectLayerKHR]>,
    pub timing: Option<vk::PresentTimeGOOGLE>,
}

impl<'a> Chained<'a> {
    /// Reads the chain at `p_next`.
    ///
    /// # Safety
    /// `p_next` is a valid input chain that outlives `'a`.
    pub unsafe fn read(p_next: *const c_void) -> Self {
        let mut c = Chained::default();
        let mut p = p_next.cast::<vk::BaseInStructure<'_>>();
        while !p.is_null() {
            // SAFETY: a valid chain: each node is the structure its sType
            // names, and its arrays hold the counts they give.
            unsafe {
                match (*p).s_type {
                    vk::StructureType::PRESENT_ID_KHR => {
                        let s = &*p.cast::<vk::PresentIdKHR<'_>>();
                        c.ids = array(s.p_present_ids, s.swapchain_count);
                    }
                    // The same layout, for swapchains made for present id 2.
                    newer::STRUCTURE_TYPE_PRESENT_ID_2 => {
                        let s = &*p.cast::<newer::PresentId2>();
                        c.ids = array(s.p_present_ids, s.swapchain_count);
                    }
                    vk::StructureType::SWAPCHAIN_PRESENT_FENCE_INFO_EXT => {
                        let s = &*p.cast::<vk::SwapchainPresentFenceInfoEXT<'_>>();
                        c.fences = array(s.p_fences, s.swapchain_count);
                    }
                    vk::StructureType::SWAPCHAIN_PRESENT_MODE_INFO_EXT => {
                        let s = &*p.cast::<vk::SwapchainPresentModeInfoEXT<'_>>();
                        c.modes = array(s.p_present_modes, s.swapchain_count);
                    }
                    vk::StructureType::PRESENT_REGIONS_KHR => {
                        let s = &*p.cast::<vk::PresentRegionsKHR<'_>>();
                        c.regions = array(s.p_regions, s.swapchain_count);
                    }
                    vk::StructureType::PRESENT_TIMES_INFO_GOOGLE => {
                        let s = &*p.cast::<vk::PresentTimesInfoGOOGLE<'_>>();
                        c.times = array(s.p_times, s.swapchain_count);
                    }
                    _ => {}
                }
                p = (*p).p_next;
            }
        }
        c
    }

    /// What the present asks of its swapchain at `pos`.
    pub fn at(&self, pos: usize) -> ForSwapchain<'a> {
        let region = self.regions.get(pos);
        ForSwapchain {
            id: self.ids.get(pos).copied().unwrap_or(0),
            fence: self.fences.get(pos).copied().unwrap_or_default(),
            mode: self.modes.get(pos).copied(),
            damage: region.and_then(|r| {
                // SAFETY: a valid region holds this many rectangles; none
                // (or a null array) means the whole image changed.
                let rects = unsafe { array(r.p_rectangles, r.rectangle_count) };
                (!rects.is_empty()).then_some(rects)
            }),
            timing: self.times.get(pos).copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_swapchains_entries() {
        let ids = [0u64, 9];
        let fences = [vk::Fence::null(), vk::Fence::null()];
        let rects = [vk::RectLayerKHR {
            offset: vk::Offset2D { x: 1, y: 2 },
            extent: vk::Extent2D {
                width: 3,
                height: 4,
            },
            layer: 0,
        }];
        let regions = [
            vk::PresentRegionKHR::default(),
            vk::PresentRegionKHR::default().rectangles(&rects),
        ];
        let mut regions_info = vk::PresentRegionsKHR::default().regions(&regions);
        let mut id_info = vk::PresentIdKHR::default().present_ids(&ids);
        let mut fence_info = vk::SwapchainPresentFenceInfoEXT::default().fences(&fences);
        let info = vk::PresentInfoKHR::default()
            .push_next(&mut regions_info)
            .push_next(&mut id_info)
            .push_next(&mut fence_info);
        // SAFETY: a valid chain, alive for the test.
        let c = unsafe { Chained::read(info.p_next) };
        let (first, second) = (c.at(0), c.at(1));
        assert_eq!((first.id, second.id), (0, 9));
        assert!(first.damage.is_none(), "no rectangles: the whole image");
        assert_eq!(second.damage.map(|d| d[0].extent.height), Some(4));
        assert!(first.mode.is_none() && first.timing.is_none());
        assert_eq!(c.at(5).id, 0, "beyond the arrays: nothing asked");
    }
}
