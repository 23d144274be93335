//! The extensions the layer needs from instances and devices, which it adds
//! to the application's where the driver has them, and whether a physical
//! device has everything.
//!
//! Applications that ask for Vulkan 1.0 (vkmark and vkcube do) get the 1.1
//! functionality the layer uses as the KHR extensions that 1.1 promoted: the
//! layer adds them to a copy of the create info and calls their
//! KHR-named commands. The loader fills its set of enabled instance
//! extensions from the list that reaches its terminator, so layer-added
//! instance extensions work there too.

use std::ffi::{c_char, CStr};
use std::sync::Arc;

use ash::vk;

use crate::formats::{self, SwapchainCaps};
use crate::instance::InstanceState;

/// A device extension the layer needs to own a device's swapchains.
pub struct Needed {
    pub name: &'static CStr,
    /// The core version that makes the extension unnecessary, if any.
    core_in: Option<u32>,
    /// Its commands, which the application must not get unless it enabled
    /// the extension itself.
    commands: &'static [&'static CStr],
}

const V1_1: Option<u32> = Some(vk::API_VERSION_1_1);

/// Exportable dma-buf memory with explicit modifiers, and sync_file
/// semaphores and fences: everything a dma-buf swapchain is made of; and,
/// for devices of Vulkan 1.0, the extensions those depend on.
pub const DEVICE: [Needed; 14] = [
    Needed {
        name: c"VK_KHR_external_memory_fd",
        core_in: None,
        commands: &[c"vkGetMemoryFdKHR", c"vkGetMemoryFdPropertiesKHR"],
    },
    Needed {
        name: c"VK_EXT_external_memory_dma_buf",
        core_in: None,
        commands: &[],
    },
    Needed {
        name: c"VK_EXT_image_drm_format_modifier",
        core_in: None,
        commands: &[c"vkGetImageDrmFormatModifierPropertiesEXT"],
    },
    Needed {
        name: c"VK_KHR_image_format_list",
        core_in: Some(vk::API_VERSION_1_2),
        commands: &[],
    },
    Needed {
        name: c"VK_KHR_external_semaphore_fd",
        core_in: None,
        commands: &[c"vkImportSemaphoreFdKHR", c"vkGetSemaphoreFdKHR"],
    },
    Needed {
        name: c"VK_KHR_external_fence_fd",
        core_in: None,
        commands: &[c"vkImportFenceFdKHR", c"vkGetFenceFdKHR"],
    },
    Needed {
        name: c"VK_KHR_external_memory",
        core_in: V1_1,
        commands: &[],
    },
    Needed {
        name: c"VK_KHR_external_semaphore",
        core_in: V1_1,
        commands: &[],
    },
    Needed {
        name: c"VK_KHR_external_fence",
        core_in: V1_1,
        commands: &[],
    },
    Needed {
        name: c"VK_KHR_dedicated_allocation",
        core_in: V1_1,
        commands: &[],
    },
    Needed {
        name: c"VK_KHR_get_memory_requirements2",
        core_in: V1_1,
        commands: &[
            c"vkGetImageMemoryRequirements2KHR",
            c"vkGetBufferMemoryRequirements2KHR",
            c"vkGetImageSparseMemoryRequirements2KHR",
        ],
    },
    Needed {
        name: c"VK_KHR_bind_memory2",
        core_in: V1_1,
        commands: &[c"vkBindBufferMemory2KHR", c"vkBindImageMemory2KHR"],
    },
    Needed {
        name: c"VK_KHR_sampler_ycbcr_conversion",
        core_in: V1_1,
        commands: &[
            c"vkCreateSamplerYcbcrConversionKHR",
            c"vkDestroySamplerYcbcrConversionKHR",
        ],
    },
    Needed {
        name: c"VK_KHR_maintenance1",
        core_in: V1_1,
        commands: &[c"vkTrimCommandPoolKHR"],
    },
];

/// The instance extensions that Vulkan 1.1 promoted and the device
/// extensions above build on.
pub const INSTANCE_FOR_1_0: [&CStr; 4] = [
    c"VK_KHR_get_physical_device_properties2",
    c"VK_KHR_external_memory_capabilities",
    c"VK_KHR_external_semaphore_capabilities",
    c"VK_KHR_external_fence_capabilities",
];

pub const SWAPCHAIN: &CStr = c"VK_KHR_swapchain";

/// Swapchain extensions the layer does not implement (yet). A device whose
/// application enables one is passed through, so that the driver's own WSI,
/// which has them, serves it.
pub const NOT_IMPLEMENTED: [&CStr; 12] = [
    c"VK_EXT_swapchain_maintenance1",
    c"VK_KHR_swapchain_maintenance1",
    c"VK_KHR_present_id",
    c"VK_KHR_present_id2",
    c"VK_KHR_present_wait",
    c"VK_KHR_present_wait2",
    c"VK_GOOGLE_display_timing",
    c"VK_EXT_display_control",
    c"VK_EXT_hdr_metadata",
    c"VK_KHR_shared_presentable_image",
    c"VK_EXT_full_screen_exclusive",
    c"VK_NV_present_barrier",
];

/// The names in a create info's extension list.
///
/// # Safety
/// `names` points to `count` NUL-terminated strings, or is null.
pub unsafe fn names<'a>(names: *const *const c_char, count: u32) -> Vec<&'a CStr> {
    if names.is_null() {
        return Vec::new();
    }
    // SAFETY: the caller passes a list of `count` valid names.
    unsafe { std::slice::from_raw_parts(names, count as usize) }
        .iter()
        // SAFETY: as above.
        .map(|&n| unsafe { CStr::from_ptr(n) })
        .collect()
}

/// The instance extensions to add for an application asking for
/// `api_version`: for 1.0, those of [`INSTANCE_FOR_1_0`] the application
/// did not enable.
pub fn instance_additions(api_version: u32, app: &[&CStr]) -> Vec<&'static CStr> {
    if api_version >= vk::API_VERSION_1_1 {
        return Vec::new();
    }
    INSTANCE_FOR_1_0
        .into_iter()
        .filter(|n| !app.contains(n))
        .collect()
}

pub fn lists(list: &[vk::ExtensionProperties], name: &CStr) -> bool {
    list.iter().any(|e| e.extension_name_as_c_str() == Ok(name))
}

/// Whether a physical device has what the layer needs.
#[derive(Clone, Debug)]
pub enum Support {
    /// It has: these are the device extensions to enable (those the
    /// effective version needs), and what its swapchains can be made of.
    Ready {
        enable: Vec<&'static CStr>,
        caps: Arc<SwapchainCaps>,
        /// Whether the driver has VK_KHR_swapchain itself.
        driver_swapchain: bool,
    },
    /// It has not, for this reason.
    Missing(String),
}

impl Support {
    /// Asks the driver (through the layers below) about `pd`.
    pub fn probe(instance: &InstanceState, pd: vk::PhysicalDevice) -> Self {
        // SAFETY: pd is a physical device of this instance, alive with it.
        let props = unsafe { instance.fns.get_physical_device_properties(pd) };
        let version = props.api_version.min(instance.api_version);
        if version < vk::API_VERSION_1_1 && !instance.has_1_0_additions {
            return Support::Missing(format!(
                "the application asked for Vulkan {}.{} without {}",
                vk::api_version_major(version),
                vk::api_version_minor(version),
                INSTANCE_FOR_1_0.map(|n| n.to_string_lossy()).join(", ")
            ));
        }
        // SAFETY: as above.
        let listed = match unsafe { instance.fns.enumerate_device_extension_properties(pd) } {
            Ok(l) => l,
            Err(e) => return Support::Missing(format!("listing its extensions failed: {e}")),
        };
        let mut enable = Vec::new();
        let mut lacking = Vec::new();
        for n in &DEVICE {
            let needed = n.core_in.is_none_or(|v| version < v);
            if !needed {
                continue;
            }
            if lists(&listed, n.name) {
                enable.push(n.name);
            } else {
                lacking.push(n.name.to_string_lossy());
            }
        }
        if !lacking.is_empty() {
            return Support::Missing(format!("the driver lacks {}", lacking.join(", ")));
        }
        let Some(fns) = &instance.pd_fns else {
            return Support::Missing(
                "the driver offers no vkGetPhysicalDeviceFormatProperties2 and its kin".into(),
            );
        };
        match formats::probe(fns, pd, &props) {
            Ok(caps) => Support::Ready {
                enable,
                caps: Arc::new(caps),
                driver_swapchain: lists(&listed, SWAPCHAIN),
            },
            Err(why) => Support::Missing(why),
        }
    }
}

/// Whether `name` is a command of one of the extensions in `added` (which
/// the layer enabled and the application did not).
pub fn hides(added: &[&CStr], name: &CStr) -> bool {
    DEVICE
        .iter()
        .filter(|n| added.contains(&n.name))
        .any(|n| n.commands.contains(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additions_only_for_1_0() {
        assert!(instance_additions(vk::API_VERSION_1_1, &[]).is_empty());
        let added = instance_additions(vk::API_VERSION_1_0, &[INSTANCE_FOR_1_0[0]]);
        assert_eq!(added, INSTANCE_FOR_1_0[1..].to_vec());
    }

    #[test]
    fn hides_only_added_extensions() {
        let added = [c"VK_KHR_bind_memory2", c"VK_KHR_external_semaphore_fd"];
        assert!(hides(&added, c"vkBindImageMemory2KHR"));
        assert!(hides(&added, c"vkGetSemaphoreFdKHR"));
        assert!(!hides(&added, c"vkGetMemoryFdKHR"));
        assert!(!hides(&added, c"vkBindImageMemory2"));
    }
}
