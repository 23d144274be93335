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

use ash::vk;

pub use crate::plumbing::manifest::REFUSED_DEVICE_EXTENSIONS;

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

impl Needed {
    /// Whether a device of `version` needs it as an extension.
    pub fn needed_below(&self, version: u32) -> bool {
        self.core_in.is_none_or(|v| version < v)
    }
}

/// The instance extensions that Vulkan 1.1 promoted and the device
/// extensions above build on.
pub const INSTANCE_FOR_1_0: [&CStr; 4] = [
    c"VK_KHR_get_physical_device_properties2",
    c"VK_KHR_external_memory_capabilities",
    c"VK_KHR_external_semaphore_capabilities",
    c"VK_KHR_external_fence_capabilities",
];

/// Whether the layer refuses `name` (see [`REFUSED_DEVICE_EXTENSIONS`]),
/// and why.
pub fn refused(name: &CStr) -> Option<&'static str> {
    REFUSED_DEVICE_EXTENSIONS
        .iter()
        .find(|(n, _)| n.as_bytes() == name.to_bytes())
        .map(|(_, why)| *why)
}

/// The names in a create info's extension list.
///
/// # Safety
/// `names` points to `count` NUL-terminated strings, or is null.
pub unsafe fn names<'a>(names: *const *const c_char, count: u32) -> Vec<&'a CStr> {
    // SAFETY: the caller passes a list of `count` valid names.
    unsafe { super::array(names, count) }
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
    fn refused_extensions_are_listed_once() {
        for (i, (name, why)) in REFUSED_DEVICE_EXTENSIONS.iter().enumerate() {
            assert!(!why.is_empty());
            let c = std::ffi::CString::new(*name).unwrap();
            assert_eq!(refused(&c), Some(*why));
            let earlier = &REFUSED_DEVICE_EXTENSIONS[..i];
            assert!(earlier.iter().all(|(n, _)| n != name), "{name} twice");
        }
        assert_eq!(refused(ash::khr::swapchain::NAME), None);
    }

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
