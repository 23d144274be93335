//! Devices: creation through the loader's chain, the extensions the layer
//! enables on devices whose swapchains it will own, and their queues.

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};

use ash::vk;
use ash::vk::Handle;

use crate::dispatch::{self, KeyMap};
use crate::entry::{fault, guard, try_guard};
use crate::error::Error;
use crate::instance::{InstanceState, INSTANCES};
use crate::loader::DeviceChain;
use crate::stats::{self, Counter};

/// Every live device's state, by dispatch key (shared by its queues).
pub static DEVICES: KeyMap<DeviceState> = KeyMap::new();

/// A device extension the layer needs to own a device's swapchains.
struct Needed {
    name: &'static CStr,
    /// The core version that makes the extension unnecessary, if any.
    core_in: Option<u32>,
    /// Its commands, which the application must not get unless it enabled
    /// the extension itself.
    commands: &'static [&'static CStr],
}

/// Exportable dma-buf memory with explicit modifiers, and sync_file
/// semaphores and fences: everything a dma-buf swapchain is made of.
const NEEDED: [Needed; 6] = [
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
];

/// Whether a physical device has what the layer needs.
#[derive(Clone, Debug)]
pub enum Support {
    /// It has: these are the extensions to enable (those it lists).
    Ready(Vec<&'static CStr>),
    /// It has not, for this reason.
    Missing(String),
}

impl Support {
    /// Asks the driver (through the layers below) about `pd`.
    pub fn probe(instance: &InstanceState, pd: vk::PhysicalDevice) -> Self {
        // SAFETY: pd is a physical device of this instance, alive with it.
        let props = unsafe { instance.fns.get_physical_device_properties(pd) };
        let version = props.api_version.min(instance.api_version);
        // The extensions depend on Vulkan 1.1 instance functionality, which
        // the loader only provides if the application asked for it.
        if version < vk::API_VERSION_1_1 {
            return Support::Missing(format!(
                "it needs Vulkan 1.1 and the application asked for {}.{}",
                vk::api_version_major(version),
                vk::api_version_minor(version)
            ));
        }
        // SAFETY: as above.
        let listed = match unsafe { instance.fns.enumerate_device_extension_properties(pd) } {
            Ok(l) => l,
            Err(e) => return Support::Missing(format!("listing its extensions failed: {e}")),
        };
        let has = |n: &CStr| listed.iter().any(|e| e.extension_name_as_c_str() == Ok(n));
        let mut enable = Vec::new();
        let mut lacking = Vec::new();
        for n in &NEEDED {
            if has(n.name) {
                enable.push(n.name);
            } else if n.core_in.map_or(true, |v| version < v) {
                lacking.push(n.name.to_string_lossy());
            }
        }
        if lacking.is_empty() {
            Support::Ready(enable)
        } else {
            Support::Missing(format!("the driver lacks {}", lacking.join(", ")))
        }
    }
}

/// Whether the layer owns the swapchains of a device.
pub enum Ownership {
    /// It does, with these extensions enabled by the layer and not by the
    /// application.
    Owned { added: Vec<&'static CStr> },
    /// Everything goes to the driver's own WSI.
    PassThrough,
}

pub struct DeviceState {
    pub next_get_device_proc_addr: vk::PFN_vkGetDeviceProcAddr,
    /// The next entity's device commands.
    pub fns: ash::Device,
    pub ownership: Ownership,
    queues: Queues,
}

impl DeviceState {
    /// Whether `name` is a command of an extension the application did not
    /// enable (the layer did), which it must not be given.
    pub fn hides(&self, name: &CStr) -> bool {
        let Ownership::Owned { added } = &self.ownership else {
            return false;
        };
        NEEDED
            .iter()
            .filter(|n| added.contains(&n.name))
            .any(|n| n.commands.contains(&name))
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
/// `vkGetDeviceProcAddr`), handed out only where the next entity has them.
pub fn intercepted(name: &[u8]) -> Option<*const c_void> {
    Some(match name {
        b"vkDestroyDevice" => destroy_device as *const c_void,
        b"vkGetDeviceQueue" => get_device_queue as *const c_void,
        b"vkGetDeviceQueue2" => get_device_queue2 as *const c_void,
        _ => return None,
    })
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
) -> Ownership {
    if instance.settings.platforms.is_empty() {
        return Ownership::PassThrough;
    }
    // Swapchains need command buffers of the layer's own, which only the
    // loader can make dispatchable.
    if chain.set_device_loader_data.is_none() {
        tracing::warn!("passing devices through: the loader offers no loader-data callback");
        return Ownership::PassThrough;
    }
    let report = |why: &str| {
        tracing::warn!("not owning the swapchains of this physical device, {why}: the driver's own WSI serves them");
    };
    match instance.support(pd, report) {
        Support::Ready(enable) => Ownership::Owned {
            added: enable
                .into_iter()
                .filter(|n| !app_extensions.contains(n))
                .collect(),
        },
        Support::Missing(_) => Ownership::PassThrough,
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

    let app_names: &[*const c_char] = if info.pp_enabled_extension_names.is_null() {
        &[]
    } else {
        // SAFETY: the create info holds this many extension names.
        unsafe {
            std::slice::from_raw_parts(
                info.pp_enabled_extension_names,
                info.enabled_extension_count as usize,
            )
        }
    };
    let app_extensions: Vec<&CStr> = app_names
        .iter()
        // SAFETY: each is a NUL-terminated extension name.
        .map(|&n| unsafe { CStr::from_ptr(n) })
        .collect();
    let mut ownership = try_guard("vkCreateDevice", "passing the device through", || {
        fault("create_device");
        plan(instance, pd, &app_extensions, &chain)
    })
    .unwrap_or(Ownership::PassThrough);

    // The application's structures stay untouched: the layer passes a copy
    // with its own extension list.
    let mut names = app_names.to_vec();
    if let Ownership::Owned { added } = &ownership {
        names.extend(added.iter().map(|n| n.as_ptr()));
    }
    let mut modified = *info;
    modified.enabled_extension_count = names.len() as u32;
    modified.pp_enabled_extension_names = names.as_ptr();

    let reservation = DEVICES.reserve()?;
    // SAFETY: the caller's pointers, with the chain advanced for the next entity.
    let mut result = unsafe { next_create(pd, &modified, p_allocator, p_device) };
    if result == vk::Result::ERROR_EXTENSION_NOT_PRESENT
        && matches!(ownership, Ownership::Owned { .. })
    {
        tracing::warn!("the driver refused the extensions it lists; passing the device through");
        ownership = Ownership::PassThrough;
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
    stats::count(match ownership {
        Ownership::Owned { .. } => Counter::DevicesOwned,
        Ownership::PassThrough => Counter::DevicesPassedThrough,
    });
    let enabled: Option<Vec<_>> = match &ownership {
        Ownership::Owned { added } => Some(added.iter().map(|n| n.to_string_lossy()).collect()),
        Ownership::PassThrough => None,
    };
    let state = DeviceState {
        next_get_device_proc_addr: next_gdpa,
        fns,
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
