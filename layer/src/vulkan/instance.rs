//! Instances: creation through the loader's chain (adding the instance
//! extensions a Vulkan 1.0 application lacks), the settings each one reads,
//! the next entity's commands, and what the layer learnt about each
//! physical device.

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::Mutex;

use ash::vk;

use super::caps::PhysicalDeviceFns;
use super::extensions::{self, INSTANCE_FOR_1_0};
use super::support::{self, Support};
use super::Next;
use crate::plumbing::dispatch::KeyMap;
use crate::plumbing::guard::{fault, try_guard};
use crate::plumbing::loader::InstanceChain;
use crate::plumbing::settings::{self, Settings};
use crate::plumbing::stats::{self, Counter};
use crate::plumbing::{dispatch, log};

/// Every live instance's state, by dispatch key (shared by its physical
/// devices).
pub static INSTANCES: KeyMap<InstanceState> = KeyMap::new();

pub struct InstanceState {
    pub handle: vk::Instance,
    pub next_get_instance_proc_addr: vk::PFN_vkGetInstanceProcAddr,
    /// The next entity's instance commands.
    pub fns: ash::Instance,
    /// The next entity's surface commands, for the surfaces the layer
    /// passes through and for creating every surface.
    pub surface: ash::khr::surface::InstanceFn,
    pub surface2: ash::khr::get_surface_capabilities2::InstanceFn,
    pub surface_counter: ash::ext::display_surface_counter::InstanceFn,
    /// VK_KHR_swapchain's instance command (present rectangles).
    pub swapchain_instance: ash::khr::swapchain::InstanceFn,
    pub headless: ash::ext::headless_surface::InstanceFn,
    /// The KHR names of the 1.1 physical-device queries the layer answers
    /// in part.
    pub properties2: ash::khr::get_physical_device_properties2::InstanceFn,
    pub wayland: ash::khr::wayland_surface::InstanceFn,
    pub xcb: ash::khr::xcb_surface::InstanceFn,
    pub xlib: ash::khr::xlib_surface::InstanceFn,
    /// The next entity's display commands, where it has them all (the
    /// layer provides these extensions itself, so they may be missing).
    pub display: Option<ash::khr::display::InstanceFn>,
    pub display2: Option<ash::khr::get_display_properties2::InstanceFn>,
    pub drm_display: Option<ash::ext::acquire_drm_display::InstanceFn>,
    pub direct_display: Option<ash::ext::direct_mode_display::InstanceFn>,
    pub xlib_display: Option<ash::ext::acquire_xlib_display::InstanceFn>,
    pub winrt_display: Option<ash::nv::acquire_winrt_display::InstanceFn>,
    pub debug_report: ash::ext::debug_report::InstanceFn,
    pub debug_utils: ash::ext::debug_utils::InstanceFn,
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
    /// Set once a device of it was passed through for an extension the
    /// layer refuses: from then on the driver answers for its surfaces.
    driver_wsi: Option<String>,
}

impl InstanceState {
    /// Whether the layer could own swapchains on devices of `pd`, probed
    /// once; the first time it cannot, says why in one warning.
    pub fn support(&self, pd: vk::PhysicalDevice) -> Support {
        self.probed(pd, true)
    }

    /// Whether the layer serves (would own the swapchains of) `pd`. Only
    /// asks: the warning is for the device or surface that meets it.
    pub fn serves(&self, pd: vk::PhysicalDevice) -> bool {
        !self.settings.platforms.is_empty()
            && matches!(self.probed(pd, false), Support::Ready { .. })
    }

    fn probed(&self, pd: vk::PhysicalDevice, report: bool) -> Support {
        let mut map = self.lock();
        let probe = support::Instance {
            fns: &self.fns,
            api_version: self.api_version,
            has_1_0_additions: self.has_1_0_additions,
            pd_fns: self.pd_fns.as_ref(),
        };
        let entry = map.entry(pd).or_insert_with(|| PhysicalDeviceState {
            support: Support::probe(&probe, pd),
            reported: false,
            driver_wsi: None,
        });
        if let Some(why) = &entry.driver_wsi {
            return Support::Missing(why.clone());
        }
        if let Support::Missing(why) = &entry.support {
            if report && !entry.reported {
                entry.reported = true;
                tracing::warn!("not owning the swapchains of this physical device, {why}: the driver's own WSI serves them");
            }
        }
        entry.support.clone()
    }

    /// Hands `pd`'s surfaces to the driver for good: a device of it was
    /// passed through because the application enabled `extension`, and
    /// the application must not make the driver's swapchains from the
    /// layer's answers.
    pub fn hand_to_driver(&self, pd: vk::PhysicalDevice, extension: &CStr) {
        let why = format!(
            "the application enabled {}, which the layer refuses",
            extension.to_string_lossy()
        );
        let mut map = self.lock();
        let entry = map.entry(pd).or_insert_with(|| PhysicalDeviceState {
            support: Support::Missing(why.clone()),
            reported: true,
            driver_wsi: None,
        });
        entry.driver_wsi = Some(why);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<vk::PhysicalDevice, PhysicalDeviceState>> {
        self.physical_devices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

const DISPLAY_COMMANDS: &[&CStr] = &[
    c"vkGetPhysicalDeviceDisplayPropertiesKHR",
    c"vkGetPhysicalDeviceDisplayPlanePropertiesKHR",
    c"vkGetDisplayPlaneSupportedDisplaysKHR",
    c"vkGetDisplayModePropertiesKHR",
    c"vkCreateDisplayModeKHR",
    c"vkGetDisplayPlaneCapabilitiesKHR",
    c"vkCreateDisplayPlaneSurfaceKHR",
];

const DISPLAY2_COMMANDS: &[&CStr] = &[
    c"vkGetPhysicalDeviceDisplayProperties2KHR",
    c"vkGetPhysicalDeviceDisplayPlaneProperties2KHR",
    c"vkGetDisplayModeProperties2KHR",
    c"vkGetDisplayPlaneCapabilities2KHR",
];

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the loader passed no layer link in the create info (not loaded by a Vulkan loader?)")]
    NoLoaderLink,
    #[error("the next layer or driver has no {0}")]
    MissingCommand(&'static str),
    #[error(transparent)]
    TooMany(#[from] dispatch::Full),
    #[error("the {0} is not one this layer has seen created")]
    UnknownHandle(&'static str),
    #[error("{0} failed: {1}")]
    Vulkan(&'static str, vk::Result),
}

impl CreateError {
    /// The result a creation command returns for this error.
    pub fn result(&self) -> vk::Result {
        match self {
            CreateError::NoLoaderLink
            | CreateError::MissingCommand(_)
            | CreateError::UnknownHandle(_) => vk::Result::ERROR_INITIALIZATION_FAILED,
            CreateError::TooMany(_) => vk::Result::ERROR_OUT_OF_HOST_MEMORY,
            CreateError::Vulkan(_, r) => *r,
        }
    }
}

/// `vkCreateInstance` through the chain, with the extensions the layer needs.
///
/// # Safety
/// The loader's arguments of `vkCreateInstance`.
pub unsafe fn create(
    info: &vk::InstanceCreateInfo<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_instance: *mut vk::Instance,
) -> Result<(), CreateError> {
    // SAFETY: the loader's create info.
    let chain = unsafe { InstanceChain::advance(info) }.ok_or(CreateError::NoLoaderLink)?;
    let next_gipa = chain.next_get_instance_proc_addr;
    // SAFETY: global commands of the next entity.
    let global = |name: &CStr| unsafe { next_gipa(vk::Instance::null(), name.as_ptr()) };
    let entry = Next(&global)
        .table(&[c"vkCreateInstance"], |f| ash::EntryFnV1_0::load(f))
        .ok_or(CreateError::MissingCommand("vkCreateInstance"))?;

    let (settings, warnings) = Settings::from_process();
    log::configure(&settings.log);
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
    let result = unsafe { (entry.create_instance)(&modified, p_allocator, p_instance) };
    if result != vk::Result::SUCCESS {
        return Err(CreateError::Vulkan("vkCreateInstance", result));
    }
    // From here on nothing may fail: loaders disagree on cleaning up after a
    // layer that fails once the chain below succeeded (1.3.239 double-frees
    // if the layer destroys the instance, 1.4.309 crashes if it does not),
    // so the instance must work.
    // SAFETY: the next entity succeeded, so it wrote the instance.
    let handle = unsafe { *p_instance };
    // SAFETY: the instance was just created by the next entity, whose
    // vkGetInstanceProcAddr answers for it.
    let lookup = |name: &CStr| unsafe { next_gipa(handle, name.as_ptr()) };
    let next = Next(&lookup);
    // SAFETY: as above.
    let fns = unsafe { ash::Instance::load_with(|name| next.ptr(name), handle) };
    let khr = api_version < vk::API_VERSION_1_1;
    let pd_fns = (!khr || has_1_0_additions)
        .then(|| PhysicalDeviceFns::load(khr, &next))
        .flatten();
    let state = InstanceState {
        handle,
        next_get_instance_proc_addr: next_gipa,
        fns,
        surface: ash::khr::surface::InstanceFn::load(|n| next.ptr(n)),
        surface2: ash::khr::get_surface_capabilities2::InstanceFn::load(|n| next.ptr(n)),
        surface_counter: ash::ext::display_surface_counter::InstanceFn::load(|n| next.ptr(n)),
        swapchain_instance: ash::khr::swapchain::InstanceFn::load(|n| next.ptr(n)),
        headless: ash::ext::headless_surface::InstanceFn::load(|n| next.ptr(n)),
        properties2: ash::khr::get_physical_device_properties2::InstanceFn::load(|n| next.ptr(n)),
        wayland: ash::khr::wayland_surface::InstanceFn::load(|n| next.ptr(n)),
        xcb: ash::khr::xcb_surface::InstanceFn::load(|n| next.ptr(n)),
        xlib: ash::khr::xlib_surface::InstanceFn::load(|n| next.ptr(n)),
        display: next.table(DISPLAY_COMMANDS, |f| ash::khr::display::InstanceFn::load(f)),
        display2: next.table(DISPLAY2_COMMANDS, |f| {
            ash::khr::get_display_properties2::InstanceFn::load(f)
        }),
        drm_display: next.table(&[c"vkAcquireDrmDisplayEXT", c"vkGetDrmDisplayEXT"], |f| {
            ash::ext::acquire_drm_display::InstanceFn::load(f)
        }),
        direct_display: next.table(&[c"vkReleaseDisplayEXT"], |f| {
            ash::ext::direct_mode_display::InstanceFn::load(f)
        }),
        xlib_display: next.table(
            &[c"vkAcquireXlibDisplayEXT", c"vkGetRandROutputDisplayEXT"],
            |f| ash::ext::acquire_xlib_display::InstanceFn::load(f),
        ),
        winrt_display: next.table(&[c"vkAcquireWinrtDisplayNV", c"vkGetWinrtDisplayNV"], |f| {
            ash::nv::acquire_winrt_display::InstanceFn::load(f)
        }),
        debug_report: ash::ext::debug_report::InstanceFn::load(|n| next.ptr(n)),
        debug_utils: ash::ext::debug_utils::InstanceFn::load(|n| next.ptr(n)),
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
    // A user who wonders why the layer passes everything through (a
    // `SYNCFILE_WSI_DISABLE_FOR` in some file, say) finds where it said so.
    let platforms_from = state
        .settings
        .source(settings::PLATFORMS)
        .map(ToString::to_string)
        .unwrap_or_default();
    reservation.insert(key, Box::new(state));
    stats::count(Counter::InstancesCreated);
    try_guard("vkCreateInstance", "the instance works", || {
        fault("instance_created");
        let additions = if added.is_empty() {
            String::new()
        } else {
            let names: Vec<_> = added.iter().map(|n| n.to_string_lossy()).collect();
            format!(
                "; enabled [{}] for an application of Vulkan 1.0",
                names.join(", ")
            )
        };
        tracing::info!(
            "instance created; platforms {platforms} ({platforms_from}), sync {}{additions}",
            sync.name()
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

/// The instance of a live dispatchable handle (an instance or one of its
/// physical devices), if the layer saw it created.
///
/// # Safety
/// `handle` is a live dispatchable handle.
pub unsafe fn of<H: vk::Handle>(handle: H) -> Option<&'static InstanceState> {
    // SAFETY: the caller passes a live handle; instances outlive their
    // physical devices, and the state lives until vkDestroyInstance.
    unsafe { INSTANCES.get(dispatch::key(handle)) }
}

/// `vkDestroyInstance`: takes the state out and calls down.
///
/// # Safety
/// The application's arguments of `vkDestroyInstance`, with a non-null
/// instance.
pub unsafe fn destroy(instance: vk::Instance, p_allocator: *const vk::AllocationCallbacks<'_>) {
    // SAFETY: the instance is valid until the next entity destroys it.
    let Some(state) = INSTANCES.remove(unsafe { dispatch::key(instance) }) else {
        tracing::error!("vkDestroyInstance: unknown instance; cannot call down");
        return;
    };
    // SAFETY: the application hands the instance over for destruction.
    unsafe { (state.fns.fp_v1_0().destroy_instance)(instance, p_allocator) };
    stats::count(Counter::InstancesDestroyed);
    fault("destroy_instance");
}
