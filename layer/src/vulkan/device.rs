//! Devices: creation through the loader's chain, the extensions the layer
//! enables on devices whose swapchains it will own, what it keeps for
//! making those swapchains, and their queues.

use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ash::vk;
use ash::vk::Handle;

use crate::dispatch::{self, KeyMap};
use crate::entry::{fault, guard, try_guard};
use crate::error::Error;
use crate::extensions::{self, Support, NOT_IMPLEMENTED, SWAPCHAIN};
use crate::formats::{PhysicalDeviceFns, SwapchainCaps};
use crate::instance::{InstanceState, INSTANCES};
use crate::loader::DeviceChain;
use crate::present::Handoff;
use crate::settings::Settings;
use crate::stats::{self, Counter};

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
    pub ext: ExtFns,
    pub memory: vk::PhysicalDeviceMemoryProperties,
    /// The settings of the device's instance.
    pub settings: Settings,
    /// Whether the driver has VK_KHR_swapchain for the swapchains the layer
    /// passes to it.
    pub driver_swapchain: bool,
    /// Semaphores that hand a present's waits on to the driver's part of a
    /// present that mixes both kinds of swapchain.
    pub handoff: Handoff,
}

/// The extension commands the layer calls on the devices it owns.
#[derive(Clone, Copy)]
pub struct ExtFns {
    pub get_memory_fd: vk::PFN_vkGetMemoryFdKHR,
    pub get_semaphore_fd: vk::PFN_vkGetSemaphoreFdKHR,
    pub import_semaphore_fd: vk::PFN_vkImportSemaphoreFdKHR,
    pub import_fence_fd: vk::PFN_vkImportFenceFdKHR,
    pub get_image_drm_format_modifier_properties: vk::PFN_vkGetImageDrmFormatModifierPropertiesEXT,
}

impl ExtFns {
    /// Loads them through `get`; `None` if one is missing.
    fn load(get: impl Fn(&CStr) -> vk::PFN_vkVoidFunction) -> Option<Self> {
        type Void = unsafe extern "system" fn();
        // SAFETY: each name's command has the signature of its field.
        unsafe {
            Some(ExtFns {
                get_memory_fd: std::mem::transmute::<Void, vk::PFN_vkGetMemoryFdKHR>(get(
                    c"vkGetMemoryFdKHR",
                )?),
                get_semaphore_fd: std::mem::transmute::<Void, vk::PFN_vkGetSemaphoreFdKHR>(get(
                    c"vkGetSemaphoreFdKHR",
                )?),
                import_semaphore_fd: std::mem::transmute::<Void, vk::PFN_vkImportSemaphoreFdKHR>(
                    get(c"vkImportSemaphoreFdKHR")?,
                ),
                import_fence_fd: std::mem::transmute::<Void, vk::PFN_vkImportFenceFdKHR>(get(
                    c"vkImportFenceFdKHR",
                )?),
                get_image_drm_format_modifier_properties: std::mem::transmute::<
                    Void,
                    vk::PFN_vkGetImageDrmFormatModifierPropertiesEXT,
                >(get(
                    c"vkGetImageDrmFormatModifierPropertiesEXT",
                )?),
            })
        }
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
    pub ownership: Ownership,
    queues: Queues,
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

/// The queues a device was created with, filled in as the application
/// retrieves them. Its shape is fixed at creation, so recording a queue is a
/// short scan and an atomic store.
struct Queues {
    groups: Box<[QueueGroup]>,
    handles: Box<[AtomicU64]>,
}

/// The queues of one `VkDeviceQueueCreateInfo`.
struct QueueGroup {
    family: u32,
    flags: vk::DeviceQueueCreateFlags,
    count: u32,
    /// Where its handles start in `Queues::handles`.
    first: usize,
}

impl Queues {
    /// # Safety
    /// `info` is a valid `VkDeviceCreateInfo`.
    unsafe fn new(info: &vk::DeviceCreateInfo<'_>) -> Self {
        let creates = if info.p_queue_create_infos.is_null() {
            &[][..]
        } else {
            // SAFETY: the create info holds this many queue create infos.
            unsafe {
                std::slice::from_raw_parts(
                    info.p_queue_create_infos,
                    info.queue_create_info_count as usize,
                )
            }
        };
        let mut first = 0;
        let groups = creates
            .iter()
            .map(|c| {
                let g = QueueGroup {
                    family: c.queue_family_index,
                    flags: c.flags,
                    count: c.queue_count,
                    first,
                };
                first += c.queue_count as usize;
                g
            })
            .collect();
        Self {
            groups,
            handles: (0..first).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline(always)]
    fn record(&self, family: u32, flags: vk::DeviceQueueCreateFlags, index: u32, q: vk::Queue) {
        for g in self.groups.iter() {
            if g.family == family && g.flags == flags && index < g.count {
                if let Some(slot) = self.handles.get(g.first + index as usize) {
                    // Queues are retrieved again and again: only the first
                    // time writes (and counts).
                    if slot.load(Ordering::Relaxed) == 0
                        && slot.swap(q.as_raw(), Ordering::Relaxed) == 0
                    {
                        stats::count(Counter::Queues);
                    }
                }
                return;
            }
        }
    }

    fn retrieved(&self) -> usize {
        self.handles
            .iter()
            .filter(|h| h.load(Ordering::Relaxed) != 0)
            .count()
    }
}

/// The device-level commands the layer intercepts (besides
/// `vkGetDeviceProcAddr` and the swapchain's), handed out only where the
/// next entity has them.
pub fn intercepted(name: &[u8]) -> Option<*const c_void> {
    Some(match name {
        b"vkDestroyDevice" => destroy_device as *const c_void,
        b"vkGetDeviceQueue" => get_device_queue as *const c_void,
        b"vkGetDeviceQueue2" => get_device_queue2 as *const c_void,
        _ => return None,
    })
}

/// What `plan` decided: whether the layer owns the device, and if so what
/// it learnt on the way.
enum Plan {
    Own {
        added: Vec<&'static CStr>,
        caps: Arc<SwapchainCaps>,
        driver_swapchain: bool,
    },
    PassThrough,
}

pub(crate) unsafe extern "system" fn create_device(
    pd: vk::PhysicalDevice,
    p_create_info: *const vk::DeviceCreateInfo<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_device: *mut vk::Device,
) -> vk::Result {
    guard(
        "vkCreateDevice",
        vk::Result::ERROR_INITIALIZATION_FAILED,
        || {
            // SAFETY: the loader passes valid pointers and a physical device.
            match unsafe { create(pd, p_create_info, p_allocator, p_device) } {
                Ok(()) => vk::Result::SUCCESS,
                Err(e) => {
                    if !matches!(e, Error::Vulkan(..)) {
                        tracing::error!("vkCreateDevice: {e}");
                    }
                    e.result()
                }
            }
        },
    )
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
    if chain.set_device_loader_data.is_none() {
        tracing::warn!("passing devices through: the loader offers no loader-data callback");
        return Plan::PassThrough;
    }
    if let Some(n) = NOT_IMPLEMENTED.iter().find(|n| app_extensions.contains(n)) {
        tracing::warn!(
            "passing this device through: the application enables {}, which the layer does not implement",
            n.to_string_lossy()
        );
        return Plan::PassThrough;
    }
    let report = |why: &str| {
        tracing::warn!("not owning the swapchains of this physical device, {why}: the driver's own WSI serves them");
    };
    match instance.support(pd, report) {
        Support::Ready {
            enable,
            caps,
            driver_swapchain,
        } => Plan::Own {
            added: enable
                .into_iter()
                .filter(|n| !app_extensions.contains(n))
                .collect(),
            caps,
            driver_swapchain,
        },
        Support::Missing(_) => Plan::PassThrough,
    }
}

unsafe fn create(
    pd: vk::PhysicalDevice,
    p_create_info: *const vk::DeviceCreateInfo<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_device: *mut vk::Device,
) -> Result<(), Error> {
    // SAFETY: the loader passes a valid create info.
    let info = unsafe { &*p_create_info };
    // SAFETY: as above.
    let chain = unsafe { DeviceChain::advance(info) }.ok_or(Error::NoLoaderLink)?;
    // SAFETY: the physical device belongs to a live instance.
    let instance = unsafe { INSTANCES.get(dispatch::key(pd)) }
        .ok_or(Error::UnknownHandle("physical device"))?;
    // SAFETY: vkCreateDevice is an instance command of the next entity.
    let next_create: vk::PFN_vkCreateDevice = unsafe {
        std::mem::transmute(
            (chain.next_get_instance_proc_addr)(instance.handle, c"vkCreateDevice".as_ptr())
                .ok_or(Error::MissingCommand("vkCreateDevice"))?,
        )
    };

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
    // with its own extension list. VK_KHR_swapchain, which the layer's
    // manifest offers, reaches the driver only if it has it.
    let mut names: Vec<_> = app_extensions
        .iter()
        .filter(|&&n| {
            !matches!(
                plan,
                Plan::Own {
                    driver_swapchain: false,
                    ..
                }
            ) || n != SWAPCHAIN
        })
        .map(|n| n.as_ptr())
        .collect();
    if let Plan::Own { added, .. } = &plan {
        names.extend(added.iter().map(|n| n.as_ptr()));
    }
    let mut modified = *info;
    modified.enabled_extension_count = names.len() as u32;
    modified.pp_enabled_extension_names = names.as_ptr();

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
            next_create(pd, p_create_info, p_allocator, p_device)
        };
    }
    if result != vk::Result::SUCCESS {
        return Err(Error::Vulkan("vkCreateDevice", result));
    }
    // From here on nothing may fail, as in vkCreateInstance.
    // SAFETY: the next entity succeeded, so it wrote the device.
    let handle = unsafe { *p_device };
    let next_gdpa = chain.next_get_device_proc_addr;
    // SAFETY: the device was just created by the next entity, whose
    // vkGetDeviceProcAddr answers for it.
    let fns = unsafe {
        ash::Device::load_with(
            |name| std::mem::transmute(next_gdpa(handle, name.as_ptr())),
            handle,
        )
    };
    let ownership = match plan {
        Plan::Own {
            added,
            caps,
            driver_swapchain,
        } => {
            // SAFETY: the device is alive and these are its commands.
            let ext = ExtFns::load(|name| unsafe { next_gdpa(handle, name.as_ptr()) });
            match (ext, instance.pd_fns) {
                (Some(ext), Some(pd_fns)) => Ownership::Owned(Box::new(Owned {
                    added,
                    physical_device: pd,
                    caps,
                    pd_fns,
                    ext,
                    // SAFETY: pd is a physical device of this instance.
                    memory: unsafe { instance.fns.get_physical_device_memory_properties(pd) },
                    settings: instance.settings.clone(),
                    driver_swapchain,
                    handoff: Handoff::new(),
                })),
                _ => {
                    tracing::warn!("the driver gives no command for an extension it enabled; passing the device through");
                    Ownership::PassThrough
                }
            }
        }
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
    let state = DeviceState {
        handle,
        next_get_device_proc_addr: next_gdpa,
        fns,
        // SAFETY: the device is alive; each name's command has the type of
        // the field it goes in.
        swapchain: ash::khr::swapchain::DeviceFn::load(|name| unsafe {
            std::mem::transmute::<vk::PFN_vkVoidFunction, *const c_void>(next_gdpa(
                handle,
                name.as_ptr(),
            ))
        }),
        ownership,
        // SAFETY: the create info is valid.
        queues: unsafe { Queues::new(info) },
    };
    // SAFETY: the device is alive; its first word is the loader's dispatch
    // pointer.
    reservation.insert(unsafe { dispatch::key(handle) }, Box::new(state));
    stats::count(Counter::DevicesCreated);
    try_guard("vkCreateDevice", "the device works", || {
        fault("device_created");
        match enabled {
            Some(names) => tracing::info!(
                "device created; owning its swapchains; enabled [{}]",
                names.join(", ")
            ),
            None => tracing::info!("device created; passing it through"),
        }
    });
    Ok(())
}

unsafe extern "system" fn destroy_device(
    device: vk::Device,
    p_allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard("vkDestroyDevice", (), || {
        if device == vk::Device::null() {
            return;
        }
        // SAFETY: the device is valid until the next entity destroys it.
        let Some(state) = DEVICES.remove(unsafe { dispatch::key(device) }) else {
            tracing::error!("vkDestroyDevice: unknown device; cannot call down");
            return;
        };
        if let Some(o) = state.owned() {
            o.handoff.destroy(&state.fns);
        }
        // SAFETY: the application hands the device over for destruction.
        unsafe { (state.fns.fp_v1_0().destroy_device)(device, p_allocator) };
        stats::count(Counter::DevicesDestroyed);
        fault("destroy_device");
        tracing::debug!(
            "device destroyed; the application used {} of its queues",
            state.queues.retrieved()
        );
    })
}

/// The answer for a device the layer does not know, which cannot happen
/// through the loader; kept out of line, off the hot path.
///
/// # Safety
/// `p_queue` is valid for writing.
#[cold]
#[inline(never)]
unsafe fn no_queue(command: &str, p_queue: *mut vk::Queue) {
    tracing::error!("{command}: unknown device; returning no queue");
    // SAFETY: the caller passes a valid queue pointer.
    unsafe { *p_queue = vk::Queue::null() };
}

unsafe extern "system" fn get_device_queue(
    device: vk::Device,
    family: u32,
    index: u32,
    p_queue: *mut vk::Queue,
) {
    guard("vkGetDeviceQueue", (), || {
        // SAFETY: the device is alive for the duration of the command.
        let Some(state) = (unsafe { DEVICES.get(dispatch::key(device)) }) else {
            // SAFETY: the caller passes a valid queue pointer.
            return unsafe { no_queue("vkGetDeviceQueue", p_queue) };
        };
        // SAFETY: the caller's arguments, valid for the next entity too.
        unsafe { (state.fns.fp_v1_0().get_device_queue)(device, family, index, p_queue) };
        fault("get_device_queue");
        // SAFETY: the next entity wrote the queue.
        state
            .queues
            .record(family, vk::DeviceQueueCreateFlags::empty(), index, unsafe {
                *p_queue
            });
    })
}

unsafe extern "system" fn get_device_queue2(
    device: vk::Device,
    p_info: *const vk::DeviceQueueInfo2<'_>,
    p_queue: *mut vk::Queue,
) {
    guard("vkGetDeviceQueue2", (), || {
        // SAFETY: the device is alive for the duration of the command.
        let Some(state) = (unsafe { DEVICES.get(dispatch::key(device)) }) else {
            // SAFETY: the caller passes a valid queue pointer.
            return unsafe { no_queue("vkGetDeviceQueue2", p_queue) };
        };
        // SAFETY: the caller's arguments, valid for the next entity too.
        unsafe { (state.fns.fp_v1_1().get_device_queue2)(device, p_info, p_queue) };
        // SAFETY: the caller passes a valid queue info, and the next entity
        // wrote the queue.
        unsafe {
            let i = &*p_info;
            state
                .queues
                .record(i.queue_family_index, i.flags, i.queue_index, *p_queue);
        }
    })
}
