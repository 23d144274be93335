//! Devices: creation through the loader's chain, the one decision whether
//! the layer owns a device's swapchains, the extensions it enables for
//! that, and what it keeps about the device.

use std::ffi::CStr;
use std::sync::Arc;

use ash::vk;

use super::caps::{PhysicalDeviceFns, SwapchainCaps};
use super::extensions;
use super::instance::{self, CreateError, InstanceState};
use super::provided;
use super::queues::Queues;
use super::support::Support;
use super::Next;
use crate::plumbing::dispatch::{self, KeyMap};
use crate::plumbing::guard::{fault, try_guard};
use crate::plumbing::loader::{DeviceChain, SetDeviceLoaderData};
use crate::plumbing::settings::Settings;
use crate::plumbing::stats::{self, Counter};

/// Every live device's state, by dispatch key (shared by its queues).
pub static DEVICES: KeyMap<DeviceState> = KeyMap::new();

/// Whether the layer owns the swapchains of a device.
pub enum Ownership {
    /// It does: what it needs for that.
    Owned(Box<Owned>),
    /// Everything goes to the driver's own WSI.
    PassThrough,
}

/// What the layer keeps about a device whose swapchains it owns.
pub struct Owned {
    /// The extensions the layer enabled and the application did not.
    pub added: Vec<&'static CStr>,
    pub physical_device: vk::PhysicalDevice,
    pub caps: Arc<SwapchainCaps>,
    pub pd_fns: PhysicalDeviceFns,
    pub ext: Arc<ExtFns>,
    pub memory: vk::PhysicalDeviceMemoryProperties,
    /// The queue family that stands for the consumer of a dma-buf in
    /// ownership transfers: `VK_QUEUE_FAMILY_FOREIGN_EXT` where the driver
    /// has it, else `VK_QUEUE_FAMILY_EXTERNAL` (Vulkan 1.1).
    pub foreign_family: u32,
    /// Gives the layer's own command buffers the loader's dispatch pointer.
    pub set_loader_data: SetDeviceLoaderData,
    /// The settings of the device's instance.
    pub settings: Settings,
    /// The extensions the layer implements that the driver has too (for
    /// the swapchains the layer passes to it, VK_KHR_swapchain).
    pub driver_has: Vec<&'static CStr>,
}

/// The extension commands the layer calls on the devices it owns.
pub struct ExtFns {
    pub memory_fd: ash::khr::external_memory_fd::DeviceFn,
    pub semaphore_fd: ash::khr::external_semaphore_fd::DeviceFn,
    pub fence_fd: ash::khr::external_fence_fd::DeviceFn,
    pub modifier: ash::ext::image_drm_format_modifier::DeviceFn,
}

impl ExtFns {
    /// Loads them from the next entity; `None` if one is missing.
    fn load(next: &Next<'_>) -> Option<Self> {
        Some(ExtFns {
            memory_fd: next.table(&[c"vkGetMemoryFdKHR", c"vkGetMemoryFdPropertiesKHR"], |f| {
                ash::khr::external_memory_fd::DeviceFn::load(f)
            })?,
            semaphore_fd: next
                .table(&[c"vkGetSemaphoreFdKHR", c"vkImportSemaphoreFdKHR"], |f| {
                    ash::khr::external_semaphore_fd::DeviceFn::load(f)
                })?,
            fence_fd: next.table(&[c"vkGetFenceFdKHR", c"vkImportFenceFdKHR"], |f| {
                ash::khr::external_fence_fd::DeviceFn::load(f)
            })?,
            modifier: next.table(&[c"vkGetImageDrmFormatModifierPropertiesEXT"], |f| {
                ash::ext::image_drm_format_modifier::DeviceFn::load(f)
            })?,
        })
    }
}

pub struct DeviceState {
    pub handle: vk::Device,
    pub next_get_device_proc_addr: vk::PFN_vkGetDeviceProcAddr,
    /// The next entity's device commands.
    pub fns: ash::Device,
    /// The next entity's VK_KHR_swapchain commands, for the swapchains the
    /// layer passes through.
    pub swapchain: ash::khr::swapchain::DeviceFn,
    /// The next entity's debug commands, for the objects that are not the
    /// layer's.
    pub debug_utils: ash::ext::debug_utils::DeviceFn,
    pub debug_marker: ash::ext::debug_marker::DeviceFn,
    /// The next entity's commands of the extensions the layer provides,
    /// for the driver's swapchains.
    pub provided: provided::DriverFns,
    /// The next entity's extension names of core commands the layer
    /// intercepts (their signatures are the core ones').
    pub aliases: AliasFns,
    pub ownership: Ownership,
    pub queues: Queues,
}

impl DeviceState {
    /// Whether `name` is a command of an extension the application did not
    /// enable (the layer did), which it must not be given.
    pub fn hides(&self, name: &CStr) -> bool {
        match &self.ownership {
            Ownership::Owned(o) => extensions::hides(&o.added, name),
            Ownership::PassThrough => false,
        }
    }

    pub fn owned(&self) -> Option<&Owned> {
        match &self.ownership {
            Ownership::Owned(o) => Some(o),
            Ownership::PassThrough => None,
        }
    }
}

/// The next entity's extension-named commands that the layer intercepts
/// under the core name too. Loaded whatever the device enables (a missing
/// one is a stub ash makes), and called only through the layer's functions
/// for those names, which `vkGetDeviceProcAddr` hands out only where the
/// next entity has them.
pub struct AliasFns {
    pub bind_memory2: ash::khr::bind_memory2::DeviceFn,
    pub synchronization2: ash::khr::synchronization2::DeviceFn,
    pub maintenance4: ash::khr::maintenance4::DeviceFn,
    pub maintenance5: ash::khr::maintenance5::DeviceFn,
    pub private_data: ash::ext::private_data::DeviceFn,
}

impl AliasFns {
    fn load(next: &Next<'_>) -> Self {
        AliasFns {
            bind_memory2: ash::khr::bind_memory2::DeviceFn::load(|n| next.ptr(n)),
            synchronization2: ash::khr::synchronization2::DeviceFn::load(|n| next.ptr(n)),
            maintenance4: ash::khr::maintenance4::DeviceFn::load(|n| next.ptr(n)),
            maintenance5: ash::khr::maintenance5::DeviceFn::load(|n| next.ptr(n)),
            private_data: ash::ext::private_data::DeviceFn::load(|n| next.ptr(n)),
        }
    }
}

/// The device of a live dispatchable handle (a device, queue or command
/// buffer), if the layer saw it created.
///
/// # Safety
/// `handle` is a live dispatchable handle, not destroyed while the
/// reference is used (Vulkan's external synchronization gives that for the
/// duration of a command on it).
#[inline(always)]
pub unsafe fn of<H: vk::Handle>(handle: H) -> Option<&'static DeviceState> {
    // SAFETY: as the caller promises.
    unsafe { DEVICES.get(dispatch::key(handle)) }
}

/// What `plan` decided: whether the layer owns the device, and if so what
/// it learnt on the way.
enum Plan {
    Own {
        added: Vec<&'static CStr>,
        caps: Arc<SwapchainCaps>,
        driver_has: Vec<&'static CStr>,
        queue_family_foreign: bool,
        set_loader_data: SetDeviceLoaderData,
    },
    PassThrough,
}

/// Decides whether the layer owns the new device's swapchains and which
/// extensions it must add to the application's for that.
fn plan(
    instance: &InstanceState,
    pd: vk::PhysicalDevice,
    app_extensions: &[&CStr],
    chain: &DeviceChain,
) -> Plan {
    if instance.settings.platforms.is_empty() {
        return Plan::PassThrough;
    }
    // A layer that makes dispatchable objects of its own needs the loader's
    // callback; loaders old enough to lack it predate what the layer needs.
    let Some(set_loader_data) = chain.set_device_loader_data else {
        tracing::warn!("passing devices through: the loader offers no loader-data callback");
        return Plan::PassThrough;
    };
    if let Some(&n) = app_extensions
        .iter()
        .find(|n| extensions::refused(n).is_some())
    {
        // The layer hid it, but the application knows it from elsewhere:
        // the driver's WSI serves this physical device from now on, so
        // that its swapchains are not made from the layer's answers.
        tracing::warn!(
            "passing this device through: the application enables {}, which the layer refuses ({}); the driver's WSI answers for this physical device from now on",
            n.to_string_lossy(),
            extensions::refused(n).unwrap_or_default()
        );
        instance.hand_to_driver(pd, n);
        return Plan::PassThrough;
    }
    match instance.support(pd) {
        Support::Ready {
            enable,
            caps,
            driver_has,
            queue_family_foreign,
        } => Plan::Own {
            added: enable
                .into_iter()
                .filter(|n| !app_extensions.contains(n))
                .collect(),
            caps,
            driver_has,
            queue_family_foreign,
            set_loader_data,
        },
        Support::Missing(_) => Plan::PassThrough,
    }
}

/// `vkCreateDevice` through the chain, owning the device's swapchains
/// where the layer can.
///
/// # Safety
/// The loader's arguments of `vkCreateDevice`.
pub unsafe fn create(
    pd: vk::PhysicalDevice,
    info: &vk::DeviceCreateInfo<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_device: *mut vk::Device,
) -> Result<&'static DeviceState, CreateError> {
    // SAFETY: the loader's create info.
    let chain = unsafe { DeviceChain::advance(info) }.ok_or(CreateError::NoLoaderLink)?;
    // SAFETY: the physical device belongs to a live instance.
    let instance =
        unsafe { instance::of(pd) }.ok_or(CreateError::UnknownHandle("physical device"))?;
    // SAFETY: instance commands of the next entity.
    let lookup = |name: &CStr| unsafe {
        (chain.next_get_instance_proc_addr)(instance.handle, name.as_ptr())
    };
    let next_create = Next(&lookup)
        .table(&[c"vkCreateDevice"], |f| ash::InstanceFnV1_0::load(f))
        .ok_or(CreateError::MissingCommand("vkCreateDevice"))?
        .create_device;

    // SAFETY: the create info holds this many extension names.
    let app_extensions = unsafe {
        extensions::names(
            info.pp_enabled_extension_names,
            info.enabled_extension_count,
        )
    };
    let mut plan = try_guard("vkCreateDevice", "passing the device through", || {
        fault("create_device");
        plan(instance, pd, &app_extensions, &chain)
    })
    .unwrap_or(Plan::PassThrough);

    // The application's structures stay untouched: the layer passes a copy
    // with its own extension list. The extensions the layer implements
    // (VK_KHR_swapchain among them) reach the driver only if it has them,
    // their feature structures likewise.
    let for_driver = match &plan {
        // SAFETY: the application's valid chain, alive for the call.
        Plan::Own { driver_has, .. } => {
            match unsafe { provided::for_driver(&app_extensions, driver_has, info.p_next) } {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!(
                        "vkCreateDevice: {e}; the driver gets the application's chain whole"
                    );
                    None
                }
            }
        }
        Plan::PassThrough => None,
    };
    let withheld = for_driver.as_ref().map_or(&[][..], |f| &f.withheld[..]);
    let mut names: Vec<_> = app_extensions
        .iter()
        .filter(|n| !withheld.contains(n))
        .map(|n| n.as_ptr())
        .collect();
    if let Plan::Own { added, .. } = &plan {
        names.extend(added.iter().map(|n| n.as_ptr()));
    }
    let mut modified = *info;
    modified.enabled_extension_count = names.len() as u32;
    modified.pp_enabled_extension_names = names.as_ptr();
    if let Some(f) = &for_driver {
        modified.p_next = f.chain.head();
    }

    let reservation = DEVICES.reserve()?;
    // SAFETY: the caller's pointers, with the chain advanced for the next entity.
    let mut result = unsafe { next_create(pd, &modified, p_allocator, p_device) };
    if result == vk::Result::ERROR_EXTENSION_NOT_PRESENT && matches!(plan, Plan::Own { .. }) {
        tracing::warn!("the driver refused the extensions it lists; passing the device through");
        plan = Plan::PassThrough;
        // SAFETY: as above, with the application's own create info and the
        // chain wound back to where this layer left it.
        result = unsafe {
            chain.rewind();
            next_create(pd, info, p_allocator, p_device)
        };
    }
    if result != vk::Result::SUCCESS {
        return Err(CreateError::Vulkan("vkCreateDevice", result));
    }
    // From here on nothing may fail, as in vkCreateInstance.
    // SAFETY: the next entity succeeded, so it wrote the device.
    let handle = unsafe { *p_device };
    let next_gdpa = chain.next_get_device_proc_addr;
    // SAFETY: the device was just created by the next entity, whose
    // vkGetDeviceProcAddr answers for it.
    let lookup = |name: &CStr| unsafe { next_gdpa(handle, name.as_ptr()) };
    let next = Next(&lookup);
    // SAFETY: as above.
    let fns = unsafe { ash::Device::load_with(|name| next.ptr(name), handle) };
    let ownership = match plan {
        Plan::Own {
            added,
            caps,
            driver_has,
            queue_family_foreign,
            set_loader_data,
        } => match (ExtFns::load(&next), instance.pd_fns) {
            (Some(ext), Some(pd_fns)) => Ownership::Owned(Box::new(Owned {
                added,
                physical_device: pd,
                caps,
                pd_fns,
                ext: Arc::new(ext),
                // SAFETY: pd is a physical device of this instance.
                memory: unsafe { instance.fns.get_physical_device_memory_properties(pd) },
                foreign_family: if queue_family_foreign {
                    vk::QUEUE_FAMILY_FOREIGN_EXT
                } else {
                    vk::QUEUE_FAMILY_EXTERNAL
                },
                set_loader_data,
                settings: instance.settings.clone(),
                driver_has,
            })),
            _ => {
                tracing::warn!("the driver gives no command for an extension it enabled; passing the device through");
                Ownership::PassThrough
            }
        },
        Plan::PassThrough => Ownership::PassThrough,
    };
    stats::count(match ownership {
        Ownership::Owned(_) => Counter::DevicesOwned,
        Ownership::PassThrough => Counter::DevicesPassedThrough,
    });
    let enabled: Option<Vec<_>> = match &ownership {
        Ownership::Owned(o) => Some(o.added.iter().map(|n| n.to_string_lossy()).collect()),
        Ownership::PassThrough => None,
    };
    let served: Vec<_> = app_extensions
        .iter()
        .filter(|n| provided::is_provided(n))
        .map(|n| n.to_string_lossy())
        .collect();
    let state = DeviceState {
        handle,
        next_get_device_proc_addr: next_gdpa,
        fns,
        swapchain: ash::khr::swapchain::DeviceFn::load(|n| next.ptr(n)),
        debug_utils: ash::ext::debug_utils::DeviceFn::load(|n| next.ptr(n)),
        debug_marker: ash::ext::debug_marker::DeviceFn::load(|n| next.ptr(n)),
        aliases: AliasFns::load(&next),
        provided: provided::DriverFns::load(&next),
        ownership,
        // SAFETY: the create info is valid.
        queues: unsafe { Queues::new(info) },
    };
    // SAFETY: the device is alive; its first word is the loader's dispatch
    // pointer.
    let key = unsafe { dispatch::key(handle) };
    reservation.insert(key, Box::new(state));
    stats::count(Counter::DevicesCreated);
    try_guard("vkCreateDevice", "the device works", || {
        fault("device_created");
        match enabled {
            Some(names) => tracing::info!(
                "device created; owning its swapchains; enabled [{}]; the application's swapchain extensions [{}]",
                names.join(", "),
                served.join(", ")
            ),
            None => tracing::info!("device created; passing it through"),
        }
    });
    // SAFETY: just inserted; the device lives until vkDestroyDevice.
    unsafe { DEVICES.get(key) }.ok_or(CreateError::UnknownHandle("device"))
}

/// `vkDestroyDevice`, once everything of the layer's on it is gone.
///
/// # Safety
/// The application's arguments of `vkDestroyDevice`, with a non-null device.
pub unsafe fn destroy(device: vk::Device, p_allocator: *const vk::AllocationCallbacks<'_>) {
    // SAFETY: the device is valid until the next entity destroys it.
    let Some(state) = DEVICES.remove(unsafe { dispatch::key(device) }) else {
        tracing::error!("vkDestroyDevice: unknown device; cannot call down");
        return;
    };
    // SAFETY: the application hands the device over for destruction.
    unsafe { (state.fns.fp_v1_0().destroy_device)(device, p_allocator) };
    stats::count(Counter::DevicesDestroyed);
    fault("destroy_device");
    tracing::debug!(
        "device destroyed; the application used {} of its queues",
        state.queues.retrieved()
    );
}
