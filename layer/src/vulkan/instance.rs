//! Instances: creation through the loader's chain (adding the instance
//! extensions a Vulkan 1.0 application lacks), the settings each one reads,
//! and the per-physical-device facts the layer caches on them.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

use ash::vk;

use crate::dispatch::{self, KeyMap};
use crate::entry::{self, fault, guard, try_guard};
use crate::error::Error;
use crate::extensions::{self, Support, INSTANCE_FOR_1_0};
use crate::formats::PhysicalDeviceFns;
use crate::loader::InstanceChain;
use crate::settings::Settings;
use crate::stats::{self, Counter};

/// Every live instance's state, by dispatch key (shared by its physical
/// devices).
pub static INSTANCES: KeyMap<InstanceState> = KeyMap::new();

pub struct InstanceState {
    pub handle: vk::Instance,
    pub next_get_instance_proc_addr: vk::PFN_vkGetInstanceProcAddr,
    /// The next entity's instance commands.
    pub fns: ash::Instance,
    /// The next entity's VK_KHR_surface and VK_KHR_get_surface_capabilities2
    /// commands, for the surfaces the layer passes through.
    pub surface: ash::khr::surface::InstanceFn,
    pub surface2: ash::khr::get_surface_capabilities2::InstanceFn,
    /// The version the application asked for (1.0 when it did not say).
    pub api_version: u32,
    /// For applications of Vulkan 1.0: whether every extension of
    /// [`INSTANCE_FOR_1_0`] is enabled (by the application or the layer).
    pub has_1_0_additions: bool,
    /// The 1.1 physical-device commands the layer calls, if it can.
    pub pd_fns: Option<PhysicalDeviceFns>,
    pub settings: Settings,
    physical_devices: Mutex<HashMap<vk::PhysicalDevice, PhysicalDeviceState>>,
}

/// What the layer learnt about one physical device of an instance.
struct PhysicalDeviceState {
    support: Support,
    /// Whether the log already says why the layer passes it through.
    reported: bool,
}

impl InstanceState {
    /// Whether the layer could own swapchains on devices of `pd`, probed
    /// once; `report` is called with the reason the first time it cannot.
    pub fn support(&self, pd: vk::PhysicalDevice, report: impl FnOnce(&str)) -> Support {
        let mut map = self
            .physical_devices
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(pd).or_insert_with(|| PhysicalDeviceState {
            support: Support::probe(self, pd),
            reported: false,
        });
        if let Support::Missing(why) = &entry.support {
            if !entry.reported {
                entry.reported = true;
                report(why);
            }
        }
        entry.support.clone()
    }
}

/// The commands the layer answers even without an instance.
pub fn global(name: &[u8]) -> Option<*const c_void> {
    Some(match name {
        b"vkGetInstanceProcAddr" => entry::get_instance_proc_addr as *const c_void,
        b"vkCreateInstance" => create_instance as *const c_void,
        _ => return None,
    })
}

/// The instance-level commands the layer intercepts.
pub fn intercepted(name: &[u8]) -> Option<*const c_void> {
    Some(match name {
        b"vkDestroyInstance" => destroy_instance as *const c_void,
        b"vkCreateDevice" => crate::device::create_device as *const c_void,
        b"vkGetDeviceProcAddr" => entry::get_device_proc_addr as *const c_void,
        _ => return crate::surface::intercepted(name),
    })
}

unsafe extern "system" fn create_instance(
    p_create_info: *const vk::InstanceCreateInfo<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_instance: *mut vk::Instance,
) -> vk::Result {
    entry::install_panic_hook();
    guard(
        "vkCreateInstance",
        vk::Result::ERROR_INITIALIZATION_FAILED,
        || {
            // SAFETY: the loader passes valid create-info and handle pointers.
            match unsafe { create(p_create_info, p_allocator, p_instance) } {
                Ok(()) => vk::Result::SUCCESS,
                Err(e) => {
                    if !matches!(e, Error::Vulkan(..)) {
                        tracing::error!("vkCreateInstance: {e}");
                    }
                    e.result()
                }
            }
        },
    )
}

unsafe fn create(
    p_create_info: *const vk::InstanceCreateInfo<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_instance: *mut vk::Instance,
) -> Result<(), Error> {
    // SAFETY: the loader passes a valid create info.
    let info = unsafe { &*p_create_info };
    // SAFETY: as above.
    let chain = unsafe { InstanceChain::advance(info) }.ok_or(Error::NoLoaderLink)?;
    let next_gipa = chain.next_get_instance_proc_addr;
    // SAFETY: vkCreateInstance is a global command of the next entity.
    let next_create: vk::PFN_vkCreateInstance = unsafe {
        std::mem::transmute(
            next_gipa(vk::Instance::null(), c"vkCreateInstance".as_ptr())
                .ok_or(Error::MissingCommand("vkCreateInstance"))?,
        )
    };

    let (settings, warnings) = Settings::from_process();
    crate::log::configure(&settings.log);
    warn_once(warnings);
    stats::configure(&settings);
    fault("create_instance");

    // SAFETY: the application info, when given, is valid.
    let api_version = unsafe { info.p_application_info.as_ref() }
        .map(|a| a.api_version)
        .filter(|&v| v != 0)
        .unwrap_or(vk::API_VERSION_1_0);
    // SAFETY: the create info's extension list is valid.
    let app = unsafe {
        extensions::names(
            info.pp_enabled_extension_names,
            info.enabled_extension_count,
        )
    };
    // A layer cannot list the driver's instance extensions (the layers
    // below answer vkEnumerateInstanceExtensionProperties only for
    // themselves, and some crash when asked without an instance), so the
    // layer adds all it needs: the loader's terminator passes each driver
    // only those it has, and the physical-device probe finds out the rest.
    let added = if settings.platforms.is_empty() {
        Vec::new()
    } else {
        extensions::instance_additions(api_version, &app)
    };
    let has_1_0_additions = INSTANCE_FOR_1_0
        .iter()
        .all(|n| app.contains(n) || added.contains(n));

    // The application's structures stay untouched: the layer passes a copy
    // with its own extension list.
    let mut names: Vec<_> = app.iter().map(|n| n.as_ptr()).collect();
    names.extend(added.iter().map(|n| n.as_ptr()));
    let mut modified = *info;
    modified.enabled_extension_count = names.len() as u32;
    modified.pp_enabled_extension_names = names.as_ptr();

    let reservation = INSTANCES.reserve()?;
    // SAFETY: the caller's pointers, with the chain advanced for the next
    // entity, and the copied create info.
    let result = unsafe { next_create(&modified, p_allocator, p_instance) };
    if result != vk::Result::SUCCESS {
        return Err(Error::Vulkan("vkCreateInstance", result));
    }
    // From here on nothing may fail: loaders disagree on cleaning up after a
    // layer that fails once the chain below succeeded (1.3.239 double-frees
    // if the layer destroys the instance, 1.4.309 crashes if it does not),
    // so the instance must work.
    // SAFETY: the next entity succeeded, so it wrote the instance.
    let handle = unsafe { *p_instance };
    // SAFETY: the instance was just created by the next entity, whose
    // vkGetInstanceProcAddr answers for it.
    let fns = unsafe {
        ash::Instance::load_with(
            |name| std::mem::transmute(next_gipa(handle, name.as_ptr())),
            handle,
        )
    };
    let khr = api_version < vk::API_VERSION_1_1;
    let pd_fns = (!khr || has_1_0_additions)
        .then(|| {
            // SAFETY: the instance is alive and these are instance commands.
            PhysicalDeviceFns::load(khr, |name| unsafe { next_gipa(handle, name.as_ptr()) })
        })
        .flatten();
    // SAFETY: the instance is alive; each name's command has the type of
    // the field it goes in.
    let load = |name: &std::ffi::CStr| unsafe {
        std::mem::transmute::<vk::PFN_vkVoidFunction, *const c_void>(next_gipa(
            handle,
            name.as_ptr(),
        ))
    };
    let state = InstanceState {
        handle,
        next_get_instance_proc_addr: next_gipa,
        fns,
        surface: ash::khr::surface::InstanceFn::load(load),
        surface2: ash::khr::get_surface_capabilities2::InstanceFn::load(load),
        api_version,
        has_1_0_additions,
        pd_fns,
        settings,
        physical_devices: Mutex::new(HashMap::new()),
    };
    // SAFETY: the instance is alive; its first word is the loader's dispatch
    // pointer.
    let key = unsafe { dispatch::key(handle) };
    let (platforms, sync) = (state.settings.platforms, state.settings.sync);
    reservation.insert(key, Box::new(state));
    stats::count(Counter::InstancesCreated);
    try_guard("vkCreateInstance", "the instance works", || {
        fault("instance_created");
        tracing::info!(
            "instance created; platforms {platforms}, sync {}{}",
            sync.name(),
            if added.is_empty() {
                String::new()
            } else {
                format!(
                    "; enabled [{}] for an application of Vulkan 1.0",
                    added
                        .iter()
                        .map(|n| n.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
    });
    Ok(())
}

/// Logs each settings warning once per process, however many instances
/// read the same settings.
fn warn_once(warnings: Vec<String>) {
    static WARNED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    for w in warnings {
        if !warned.contains(&w) {
            tracing::warn!("{w}");
            stats::count(Counter::SettingsWarnings);
            warned.push(w);
        }
    }
}

unsafe extern "system" fn destroy_instance(
    instance: vk::Instance,
    p_allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard("vkDestroyInstance", (), || {
        if instance == vk::Instance::null() {
            return;
        }
        // SAFETY: the instance is valid until the next entity destroys it.
        let Some(state) = INSTANCES.remove(unsafe { dispatch::key(instance) }) else {
            tracing::error!("vkDestroyInstance: unknown instance; cannot call down");
            return;
        };
        // SAFETY: the application hands the instance over for destruction.
        unsafe { (state.fns.fp_v1_0().destroy_instance)(instance, p_allocator) };
        stats::count(Counter::InstancesDestroyed);
        fault("destroy_instance");
    })
}
