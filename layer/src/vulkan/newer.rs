//! The registry's definitions that ash 0.38 (Vulkan 1.3.281) predates,
//! which the layer implements: present ids and waits "2"
//! (`VK_KHR_present_id2`, `VK_KHR_present_wait2`, Vulkan-Headers 1.4.317),
//! the KHR names of the maintenance extensions (1.4.321, every value the
//! EXT one's) and FIFO latest-ready (EXT 1.3.297, KHR 1.4.321). Layouts and
//! numbers are vk.xml's; ash's own types are used wherever it has them.

use std::ffi::{c_void, CStr};

use ash::vk;

pub const KHR_PRESENT_ID2: &CStr = c"VK_KHR_present_id2";
pub const KHR_PRESENT_WAIT2: &CStr = c"VK_KHR_present_wait2";
pub const KHR_SWAPCHAIN_MAINTENANCE1: &CStr = c"VK_KHR_swapchain_maintenance1";
pub const EXT_FIFO_LATEST_READY: &CStr = c"VK_EXT_present_mode_fifo_latest_ready";
pub const KHR_FIFO_LATEST_READY: &CStr = c"VK_KHR_present_mode_fifo_latest_ready";

/// `VK_PRESENT_MODE_FIFO_LATEST_READY_KHR` (and `_EXT`).
pub const PRESENT_MODE_FIFO_LATEST_READY: vk::PresentModeKHR =
    vk::PresentModeKHR::from_raw(1_000_361_000);

pub const STRUCTURE_TYPE_FIFO_LATEST_READY_FEATURES: vk::StructureType =
    vk::StructureType::from_raw(1_000_361_000);
pub const STRUCTURE_TYPE_SURFACE_CAPABILITIES_PRESENT_ID_2: vk::StructureType =
    vk::StructureType::from_raw(1_000_479_000);
pub const STRUCTURE_TYPE_PRESENT_ID_2: vk::StructureType =
    vk::StructureType::from_raw(1_000_479_001);
pub const STRUCTURE_TYPE_PRESENT_ID_2_FEATURES: vk::StructureType =
    vk::StructureType::from_raw(1_000_479_002);
pub const STRUCTURE_TYPE_SURFACE_CAPABILITIES_PRESENT_WAIT_2: vk::StructureType =
    vk::StructureType::from_raw(1_000_480_000);
pub const STRUCTURE_TYPE_PRESENT_WAIT_2_FEATURES: vk::StructureType =
    vk::StructureType::from_raw(1_000_480_001);

/// `VK_SWAPCHAIN_CREATE_PRESENT_ID_2_BIT_KHR`.
pub const SWAPCHAIN_CREATE_PRESENT_ID_2: vk::SwapchainCreateFlagsKHR =
    vk::SwapchainCreateFlagsKHR::from_raw(0x40);
/// `VK_SWAPCHAIN_CREATE_PRESENT_WAIT_2_BIT_KHR`.
pub const SWAPCHAIN_CREATE_PRESENT_WAIT_2: vk::SwapchainCreateFlagsKHR =
    vk::SwapchainCreateFlagsKHR::from_raw(0x80);
/// `VK_SWAPCHAIN_CREATE_DEFERRED_MEMORY_ALLOCATION_BIT_KHR` (and `_EXT`),
/// which ash names only through the EXT extension's flag set.
pub const SWAPCHAIN_CREATE_DEFERRED_MEMORY_ALLOCATION: vk::SwapchainCreateFlagsKHR =
    vk::SwapchainCreateFlagsKHR::from_raw(0x8);

/// One `VkBool32` feature or capability behind a header: the shape of
/// `VkPhysicalDevicePresentId2FeaturesKHR`, `…PresentWait2FeaturesKHR`,
/// `…PresentModeFifoLatestReadyFeaturesKHR`,
/// `VkSurfaceCapabilitiesPresentId2KHR` and `…PresentWait2KHR`.
#[repr(C)]
pub struct OneBool {
    pub s_type: vk::StructureType,
    pub p_next: *mut c_void,
    pub value: vk::Bool32,
}

/// `VkPresentId2KHR`, the layout of `VkPresentIdKHR`.
pub type PresentId2 = vk::PresentIdKHR<'static>;

/// `VkPresentWait2InfoKHR`.
#[repr(C)]
pub struct PresentWait2Info {
    pub s_type: vk::StructureType,
    pub p_next: *const c_void,
    pub present_id: u64,
    pub timeout: u64,
}

/// `PFN_vkWaitForPresent2KHR`.
pub type WaitForPresent2 =
    unsafe extern "system" fn(vk::Device, vk::SwapchainKHR, *const PresentWait2Info) -> vk::Result;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_registry() {
        // Offsets as a C compiler lays the registry's structs out on LP64.
        assert_eq!(std::mem::size_of::<OneBool>(), 24);
        assert_eq!(std::mem::offset_of!(OneBool, value), 16);
        assert_eq!(std::mem::size_of::<PresentWait2Info>(), 32);
        assert_eq!(std::mem::offset_of!(PresentWait2Info, timeout), 24);
    }
}
