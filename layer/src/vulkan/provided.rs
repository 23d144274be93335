//! The device extensions the layer implements itself, for the swapchains
//! it owns (the manifest's `DEVICE_EXTENSIONS`): on the physical devices it
//! serves they are listed whether the driver has them or not, their
//! features are the layer's to answer, and a device gets from the driver
//! only those the driver lists itself (the loader's terminator would drop
//! the others anyway, but a layer below would see them enabled with nobody
//! implementing them).

use std::ffi::{c_void, CStr};

use ash::vk;

use super::chain::{Edited, UnknownStructure};
use super::extensions::lists;
use super::newer::{self, OneBool};
use super::Next;
use crate::plumbing::manifest::DEVICE_EXTENSIONS;

/// One extension the layer implements, and the feature structure (all of
/// one `VkBool32`) whose feature it answers `VK_TRUE`.
struct Provided {
    name: &'static CStr,
    feature: Option<vk::StructureType>,
}

const PROVIDED: [Provided; 12] = [
    Provided {
        name: ash::khr::swapchain::NAME,
        feature: None,
    },
    Provided {
        name: ash::khr::present_id::NAME,
        feature: Some(vk::StructureType::PHYSICAL_DEVICE_PRESENT_ID_FEATURES_KHR),
    },
    Provided {
        name: ash::khr::present_wait::NAME,
        feature: Some(vk::StructureType::PHYSICAL_DEVICE_PRESENT_WAIT_FEATURES_KHR),
    },
    Provided {
        name: newer::KHR_PRESENT_ID2,
        feature: Some(newer::STRUCTURE_TYPE_PRESENT_ID_2_FEATURES),
    },
    Provided {
        name: newer::KHR_PRESENT_WAIT2,
        feature: Some(newer::STRUCTURE_TYPE_PRESENT_WAIT_2_FEATURES),
    },
    Provided {
        name: ash::ext::swapchain_maintenance1::NAME,
        feature: Some(vk::StructureType::PHYSICAL_DEVICE_SWAPCHAIN_MAINTENANCE_1_FEATURES_EXT),
    },
    Provided {
        name: newer::KHR_SWAPCHAIN_MAINTENANCE1,
        feature: Some(vk::StructureType::PHYSICAL_DEVICE_SWAPCHAIN_MAINTENANCE_1_FEATURES_EXT),
    },
    Provided {
        name: newer::EXT_FIFO_LATEST_READY,
        feature: Some(newer::STRUCTURE_TYPE_FIFO_LATEST_READY_FEATURES),
    },
    Provided {
        name: newer::KHR_FIFO_LATEST_READY,
        feature: Some(newer::STRUCTURE_TYPE_FIFO_LATEST_READY_FEATURES),
    },
    Provided {
        name: ash::khr::incremental_present::NAME,
        feature: None,
    },
    Provided {
        name: ash::google::display_timing::NAME,
        feature: None,
    },
    Provided {
        name: ash::ext::hdr_metadata::NAME,
        feature: None,
    },
];

/// Whether the layer implements `name` itself on the devices it serves.
pub fn is_provided(name: &CStr) -> bool {
    PROVIDED.iter().any(|p| p.name == name)
}

/// Which of the layer's extensions the driver lists itself.
pub fn driver_lists(listed: &[vk::ExtensionProperties]) -> Vec<&'static CStr> {
    PROVIDED
        .iter()
        .filter(|p| lists(listed, p.name))
        .map(|p| p.name)
        .collect()
}

/// The device extension list of a served physical device: the driver's,
/// and the layer's own where the driver lacks them.
pub fn with_provided(mut listed: Vec<vk::ExtensionProperties>) -> Vec<vk::ExtensionProperties> {
    for e in DEVICE_EXTENSIONS {
        let mut p = vk::ExtensionProperties {
            spec_version: e.spec_version,
            ..Default::default()
        };
        let name = e.name.as_bytes();
        if listed.iter().any(|l| {
            l.extension_name_as_c_str()
                .is_ok_and(|n| n.to_bytes() == name)
        }) {
            continue;
        }
        for (d, &s) in p.extension_name.iter_mut().zip(name) {
            *d = s as std::ffi::c_char;
        }
        listed.push(p);
    }
    listed
}

/// Answers the features of the layer's extensions in a
/// `vkGetPhysicalDeviceFeatures2` output chain.
///
/// # Safety
/// `p_next` is null or a valid output chain.
pub unsafe fn answer_features(p_next: *mut c_void) {
    let mut p = p_next.cast::<vk::BaseOutStructure<'_>>();
    while !p.is_null() {
        // SAFETY: a valid output chain: each node starts with sType and pNext.
        let ty = unsafe { (*p).s_type };
        if PROVIDED.iter().any(|e| e.feature == Some(ty)) {
            // SAFETY: each of these structures is one VkBool32 after its header.
            unsafe { (*p.cast::<OneBool>()).value = vk::TRUE };
        }
        // SAFETY: as above.
        p = unsafe { (*p).p_next };
    }
}

/// What of the application's device create info the driver gets, given
/// the layer's extensions the driver lists (`driver`): the application's
/// extensions without the layer's that the driver lacks, and the chain
/// without the feature structures of those.
pub struct ForDriver {
    /// The application's extensions the layer keeps from the driver.
    pub withheld: Vec<&'static CStr>,
    pub chain: Edited,
}

/// # Safety
/// `p_next` is the application's valid `VkDeviceCreateInfo` chain, alive
/// while the result is used.
pub unsafe fn for_driver(
    app: &[&CStr],
    driver: &[&'static CStr],
    p_next: *const c_void,
) -> Result<ForDriver, UnknownStructure> {
    let enabled = |p: &&Provided| app.contains(&p.name);
    let withheld: Vec<&'static CStr> = PROVIDED
        .iter()
        .filter(enabled)
        .filter(|p| !driver.contains(&p.name))
        .map(|p| p.name)
        .collect();
    // A feature structure stays if an extension the driver gets needs it.
    let kept = |ty: vk::StructureType| {
        PROVIDED
            .iter()
            .filter(enabled)
            .any(|p| p.feature == Some(ty) && driver.contains(&p.name))
    };
    let leave_out: Vec<vk::StructureType> = PROVIDED
        .iter()
        .filter(|p| withheld.contains(&p.name))
        .filter_map(|p| p.feature)
        .filter(|&ty| !kept(ty))
        .collect();
    // SAFETY: the caller's valid chain.
    let chain = unsafe { Edited::without(p_next, &leave_out) }?;
    Ok(ForDriver { withheld, chain })
}

/// The next entity's commands of the layer's extensions, for the
/// driver's own swapchains; `None` where it lacks them.
pub struct DriverFns {
    pub present_wait: Option<ash::khr::present_wait::DeviceFn>,
    pub present_wait2: Option<newer::WaitForPresent2>,
    /// `vkReleaseSwapchainImagesEXT`, or its KHR alias.
    pub release_images: Option<ash::ext::swapchain_maintenance1::DeviceFn>,
    pub display_timing: Option<ash::google::display_timing::DeviceFn>,
    pub hdr_metadata: Option<ash::ext::hdr_metadata::DeviceFn>,
}

impl DriverFns {
    pub fn load(next: &Next<'_>) -> Self {
        const RELEASE: &CStr = c"vkReleaseSwapchainImagesEXT";
        let release_khr = |n: &CStr| match n == RELEASE {
            true => (next.0)(c"vkReleaseSwapchainImagesKHR"),
            false => (next.0)(n),
        };
        let wait2 = next.ptr(c"vkWaitForPresent2KHR");
        Self {
            present_wait: next.table(&[c"vkWaitForPresentKHR"], |f| {
                ash::khr::present_wait::DeviceFn::load(f)
            }),
            // SAFETY: the next entity's vkWaitForPresent2KHR, of that
            // command's type (ash 0.38 has no loader for it).
            present_wait2: (!wait2.is_null()).then(|| unsafe {
                std::mem::transmute::<*const c_void, newer::WaitForPresent2>(wait2)
            }),
            release_images: next
                .table(&[RELEASE], |f| {
                    ash::ext::swapchain_maintenance1::DeviceFn::load(f)
                })
                .or_else(|| {
                    Next(&release_khr).table(&[RELEASE], |f| {
                        ash::ext::swapchain_maintenance1::DeviceFn::load(f)
                    })
                }),
            display_timing: next.table(
                &[
                    c"vkGetRefreshCycleDurationGOOGLE",
                    c"vkGetPastPresentationTimingGOOGLE",
                ],
                |f| ash::google::display_timing::DeviceFn::load(f),
            ),
            hdr_metadata: next.table(&[c"vkSetHdrMetadataEXT"], |f| {
                ash::ext::hdr_metadata::DeviceFn::load(f)
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_lists_what_the_layer_provides() {
        let manifest: Vec<&str> = DEVICE_EXTENSIONS.iter().map(|e| e.name).collect();
        let provided: Vec<&str> = PROVIDED.iter().map(|p| p.name.to_str().unwrap()).collect();
        assert_eq!(manifest, provided);
    }

    #[test]
    fn spec_versions_are_the_registrys() {
        let ash_versions = [
            (ash::khr::swapchain::NAME, ash::khr::swapchain::SPEC_VERSION),
            (
                ash::khr::present_id::NAME,
                ash::khr::present_id::SPEC_VERSION,
            ),
            (
                ash::khr::present_wait::NAME,
                ash::khr::present_wait::SPEC_VERSION,
            ),
            (
                ash::ext::swapchain_maintenance1::NAME,
                ash::ext::swapchain_maintenance1::SPEC_VERSION,
            ),
            (
                ash::khr::incremental_present::NAME,
                ash::khr::incremental_present::SPEC_VERSION,
            ),
            (
                ash::google::display_timing::NAME,
                ash::google::display_timing::SPEC_VERSION,
            ),
            (
                ash::ext::hdr_metadata::NAME,
                ash::ext::hdr_metadata::SPEC_VERSION,
            ),
        ];
        for (name, version) in ash_versions {
            let e = DEVICE_EXTENSIONS
                .iter()
                .find(|e| e.name.as_bytes() == name.to_bytes())
                .unwrap();
            assert_eq!(e.spec_version, version, "{name:?}");
        }
    }

    #[test]
    fn lists_the_layers_extensions_once() {
        let mut swapchain = vk::ExtensionProperties {
            spec_version: 70,
            ..Default::default()
        };
        for (d, &s) in swapchain.extension_name.iter_mut().zip(b"VK_KHR_swapchain") {
            *d = s as std::ffi::c_char;
        }
        let all = with_provided(vec![swapchain]);
        assert_eq!(all.len(), PROVIDED.len());
        assert!(PROVIDED.iter().all(|p| lists(&all, p.name)));
        assert_eq!(driver_lists(&all).len(), PROVIDED.len());
    }

    #[test]
    fn withholds_what_the_driver_lacks_with_its_features() {
        let mut wait = vk::PhysicalDevicePresentWaitFeaturesKHR::default().present_wait(true);
        let mut maint = vk::PhysicalDeviceSwapchainMaintenance1FeaturesEXT::default()
            .swapchain_maintenance1(true);
        maint.p_next = (&mut wait as *mut vk::PhysicalDevicePresentWaitFeaturesKHR<'_>).cast();
        let app = [
            ash::khr::present_wait::NAME,
            ash::ext::swapchain_maintenance1::NAME,
            newer::KHR_SWAPCHAIN_MAINTENANCE1,
        ];
        let driver = [ash::ext::swapchain_maintenance1::NAME];
        let head = (&maint as *const vk::PhysicalDeviceSwapchainMaintenance1FeaturesEXT<'_>).cast();
        // SAFETY: a valid chain of two structures, alive for the test.
        let out = unsafe { for_driver(&app, &driver, head) }.unwrap();
        assert_eq!(
            out.withheld,
            vec![
                ash::khr::present_wait::NAME,
                newer::KHR_SWAPCHAIN_MAINTENANCE1
            ]
        );
        // SAFETY: the edited chain: a copy of the first structure, alone.
        let first = unsafe { &*out.chain.head().cast::<vk::BaseInStructure<'_>>() };
        assert_eq!(
            first.s_type,
            vk::StructureType::PHYSICAL_DEVICE_SWAPCHAIN_MAINTENANCE_1_FEATURES_EXT
        );
        assert!(
            first.p_next.is_null(),
            "the present-wait features are left out"
        );
    }
}
