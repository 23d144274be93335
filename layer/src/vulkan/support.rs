//! Whether the layer can own the swapchains of a physical device: the
//! device extensions it needs, the formats it can export, and sync_file
//! semaphores and fences. Probed once per physical device (see
//! `InstanceState::support`).

use std::sync::Arc;

use ash::vk;

use super::caps::{self, PhysicalDeviceFns, SwapchainCaps};
use super::extensions::{lists, DEVICE, INSTANCE_FOR_1_0};
use super::provided;

/// What probing a physical device needs of its instance.
pub struct Instance<'a> {
    /// The next entity's instance commands.
    pub fns: &'a ash::Instance,
    /// The version the application asked for.
    pub api_version: u32,
    /// For Vulkan 1.0: whether the instance extensions 1.1 promoted are on.
    pub has_1_0_additions: bool,
    pub pd_fns: Option<&'a PhysicalDeviceFns>,
}

/// Whether a physical device has what the layer needs.
#[derive(Clone, Debug)]
pub enum Support {
    /// It has: these are the device extensions to enable (those the
    /// effective version needs), and what its swapchains can be made of.
    Ready {
        enable: Vec<&'static std::ffi::CStr>,
        caps: Arc<SwapchainCaps>,
        /// The extensions the layer implements that the driver lists
        /// itself (VK_KHR_swapchain, for one).
        driver_has: Vec<&'static std::ffi::CStr>,
        /// Whether the driver has VK_EXT_queue_family_foreign, which names
        /// the consumer of a dma-buf in ownership transfers.
        queue_family_foreign: bool,
    },
    /// It has not, for this reason.
    Missing(String),
}

impl Support {
    /// Asks the driver (through the layers below) about `pd`.
    pub fn probe(instance: &Instance<'_>, pd: vk::PhysicalDevice) -> Self {
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
            if !n.needed_below(version) {
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
        let Some(fns) = instance.pd_fns else {
            return Support::Missing(
                "the driver offers no vkGetPhysicalDeviceFormatProperties2 and its kin".into(),
            );
        };
        let queue_family_foreign = lists(&listed, ash::ext::queue_family_foreign::NAME);
        if queue_family_foreign {
            enable.push(ash::ext::queue_family_foreign::NAME);
        }
        match caps::probe(fns, pd, &props) {
            Ok(caps) => Support::Ready {
                enable,
                caps: Arc::new(caps),
                driver_has: provided::driver_lists(&listed),
                queue_family_foreign,
            },
            Err(why) => Support::Missing(why),
        }
    }
}
