//! Display commands (`VK_KHR_display`, `VK_KHR_get_display_properties2`;
//! taking displays over is `display_acquire.rs`): the layer answers them
//! with the KMS outputs of the display platform on the physical devices it
//! serves, unless the driver has displays of its own there; every display,
//! mode and surface handle it answers with is its own and goes no further
//! down.

use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use ash::vk;
use ash::vk::Handle;

use super::Scope;
use crate::platform::display::{self, Display, DisplaySurface, Mode, Outputs};
use crate::plumbing::settings::Platform;
use crate::plumbing::stats::{self, Counter};
use crate::vulkan::instance::{self, InstanceState};
use crate::vulkan::{fill_in_place, objects};
use crate::wsi::surface::{self, Surface};

pub(super) fn lookup(name: &[u8]) -> Option<(Scope, *const c_void)> {
    let provided = |f: *const c_void| Some((Scope::Provided, f));
    match name {
        b"vkGetPhysicalDeviceDisplayPropertiesKHR" => provided(display_properties as _),
        b"vkGetPhysicalDeviceDisplayProperties2KHR" => provided(display_properties2 as _),
        b"vkGetPhysicalDeviceDisplayPlanePropertiesKHR" => provided(plane_properties as _),
        b"vkGetPhysicalDeviceDisplayPlaneProperties2KHR" => provided(plane_properties2 as _),
        b"vkGetDisplayPlaneSupportedDisplaysKHR" => provided(plane_supported_displays as _),
        b"vkGetDisplayModePropertiesKHR" => provided(mode_properties as _),
        b"vkGetDisplayModeProperties2KHR" => provided(mode_properties2 as _),
        b"vkCreateDisplayModeKHR" => provided(create_display_mode as _),
        b"vkGetDisplayPlaneCapabilitiesKHR" => provided(plane_capabilities as _),
        b"vkGetDisplayPlaneCapabilities2KHR" => provided(plane_capabilities2 as _),
        b"vkCreateDisplayPlaneSurfaceKHR" => provided(create_plane_surface as _),
        _ => None,
    }
}

/// Whether the layer answers for the displays of `pd`: it serves `pd`,
/// the display platform is on, the KMS devices have outputs, and the
/// driver has no display of its own there (a driver with real displays
/// keeps them, and its own `VK_KHR_display`). Decided once per physical
/// device, and said once in the log.
pub(super) fn ours(state: &InstanceState, pd: vk::PhysicalDevice) -> Option<&'static Outputs> {
    static DECIDED: Mutex<Vec<(vk::Instance, vk::PhysicalDevice, bool)>> = Mutex::new(Vec::new());
    if !state.settings.platforms.contains(Platform::Display) || !state.serves(pd) {
        tracing::debug!("display platform: not for this physical device (switched off, or the layer does not serve it)");
        return None;
    }
    let mut decided = DECIDED.lock().unwrap_or_else(|e| e.into_inner());
    let known = decided
        .iter()
        .find(|(i, p, _)| *i == state.handle && *p == pd)
        .map(|d| d.2);
    let yes = known.unwrap_or_else(|| {
        let drivers = driver_displays(state, pd);
        let outputs = display::outputs(&state.settings);
        let yes = drivers == 0 && !outputs.displays.is_empty();
        if drivers > 0 {
            tracing::info!("display platform: the driver has {drivers} displays of its own; they stay the driver's");
        } else if yes {
            tracing::info!(
                "display platform: the layer answers for this device's displays ({} KMS outputs)",
                outputs.displays.len()
            );
        }
        decided.push((state.handle, pd, yes));
        yes
    });
    yes.then(|| display::outputs(&state.settings))
}

/// How many displays the driver itself has on `pd`.
fn driver_displays(state: &InstanceState, pd: vk::PhysicalDevice) -> u32 {
    let Some(d) = &state.display else {
        return 0;
    };
    let mut n = 0;
    // SAFETY: a count query on a live physical device.
    let r =
        unsafe { (d.get_physical_device_display_properties_khr)(pd, &mut n, std::ptr::null_mut()) };
    if r == vk::Result::SUCCESS {
        n
    } else {
        0
    }
}

/// The instance of a physical device, logged when unknown.
///
/// # Safety
/// `pd` is a live physical device.
pub(super) unsafe fn instance_of(
    command: &str,
    pd: vk::PhysicalDevice,
) -> Option<&'static InstanceState> {
    // SAFETY: as the caller promises.
    let state = unsafe { instance::of(pd) };
    if state.is_none() {
        tracing::error!("{command}: unknown physical device");
    }
    state
}

/// The display or mode `handle` if it is one of the layer's (the outputs
/// are found only once some instance asked for the layer's displays).
pub(super) fn layer_display(handle: vk::DisplayKHR) -> Option<&'static Display> {
    display::found()?.display(handle)
}

fn layer_mode(handle: vk::DisplayModeKHR) -> Option<(&'static Display, Arc<Mode>)> {
    display::found()?.mode(handle)
}

fn display_properties_of(d: &Display) -> vk::DisplayPropertiesKHR<'static> {
    objects::register_once(vk::ObjectType::DISPLAY_KHR, d.handle().as_raw());
    let preferred = d.modes().first().map(|m| m.extent()).unwrap_or_default();
    vk::DisplayPropertiesKHR {
        display: d.handle(),
        display_name: d.name.as_ptr(),
        physical_dimensions: vk::Extent2D {
            width: d.mm.0,
            height: d.mm.1,
        },
        physical_resolution: preferred,
        supported_transforms: vk::SurfaceTransformFlagsKHR::IDENTITY,
        plane_reorder_possible: vk::FALSE,
        persistent_content: vk::FALSE,
        ..Default::default()
    }
}

fn mode_properties_of(m: &Mode) -> vk::DisplayModePropertiesKHR {
    objects::register_once(vk::ObjectType::DISPLAY_MODE_KHR, m.handle().as_raw());
    vk::DisplayModePropertiesKHR {
        display_mode: m.handle(),
        parameters: vk::DisplayModeParametersKHR {
            visible_region: m.extent(),
            refresh_rate: m.refresh_mhz,
        },
    }
}

/// A plane shows a whole mode: the primary plane, unscaled, at the
/// origin.
fn plane_capabilities_of(m: &Mode) -> vk::DisplayPlaneCapabilitiesKHR {
    let e = m.extent();
    vk::DisplayPlaneCapabilitiesKHR {
        supported_alpha: vk::DisplayPlaneAlphaFlagsKHR::OPAQUE,
        min_src_extent: e,
        max_src_extent: e,
        min_dst_extent: e,
        max_dst_extent: e,
        ..Default::default()
    }
}

/// The displays plane `index` can show.
fn plane_displays(outputs: &'static Outputs, index: u32) -> Vec<vk::DisplayKHR> {
    let Some(plane) = outputs.planes.get(index as usize) else {
        return Vec::new();
    };
    outputs
        .displays
        .iter()
        .filter(|d| d.shown_by(plane))
        .map(Display::handle)
        .collect()
}

entry! {
    fn display_properties(
        pd: vk::PhysicalDevice,
        p_count: *mut u32,
        p_props: *mut vk::DisplayPropertiesKHR<'_>,
    ) -> vk::Result, "vkGetPhysicalDeviceDisplayPropertiesKHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe {
            let Some(state) = instance_of("vkGetPhysicalDeviceDisplayPropertiesKHR", pd) else {
                return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
            };
            if let Some(o) = ours(state, pd) {
                return fill_in_place(o.displays.len(), p_count, p_props, |i, p| {
                    *p = display_properties_of(&o.displays[i]);
                });
            }
            match &state.display {
                Some(d) => (d.get_physical_device_display_properties_khr)(pd, p_count, p_props),
                None => fill_in_place(0, p_count, p_props, |_, _: &mut vk::DisplayPropertiesKHR<'_>| {}),
            }
        }
    }

    fn display_properties2(
        pd: vk::PhysicalDevice,
        p_count: *mut u32,
        p_props: *mut vk::DisplayProperties2KHR<'_>,
    ) -> vk::Result, "vkGetPhysicalDeviceDisplayProperties2KHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe {
            let Some(state) = instance_of("vkGetPhysicalDeviceDisplayProperties2KHR", pd) else {
                return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
            };
            if let Some(o) = ours(state, pd) {
                return fill_in_place(o.displays.len(), p_count, p_props, |i, p| {
                    p.display_properties = display_properties_of(&o.displays[i]);
                });
            }
            match &state.display2 {
                Some(d) => (d.get_physical_device_display_properties2_khr)(pd, p_count, p_props),
                None => fill_in_place(0, p_count, p_props, |_, _: &mut vk::DisplayProperties2KHR<'_>| {}),
            }
        }
    }

    /// The planes: the primary planes of the KMS devices. None shows a
    /// display of the layer's before one of its swapchains does.
    fn plane_properties(
        pd: vk::PhysicalDevice,
        p_count: *mut u32,
        p_props: *mut vk::DisplayPlanePropertiesKHR,
    ) -> vk::Result, "vkGetPhysicalDeviceDisplayPlanePropertiesKHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe {
            let Some(state) = instance_of("vkGetPhysicalDeviceDisplayPlanePropertiesKHR", pd) else {
                return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
            };
            if let Some(o) = ours(state, pd) {
                return fill_in_place(o.planes.len(), p_count, p_props, |_, p| {
                    *p = vk::DisplayPlanePropertiesKHR::default();
                });
            }
            match &state.display {
                Some(d) => (d.get_physical_device_display_plane_properties_khr)(pd, p_count, p_props),
                None => fill_in_place(0, p_count, p_props, |_, _: &mut vk::DisplayPlanePropertiesKHR| {}),
            }
        }
    }

    fn plane_properties2(
        pd: vk::PhysicalDevice,
        p_count: *mut u32,
        p_props: *mut vk::DisplayPlaneProperties2KHR<'_>,
    ) -> vk::Result, "vkGetPhysicalDeviceDisplayPlaneProperties2KHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe {
            let Some(state) = instance_of("vkGetPhysicalDeviceDisplayPlaneProperties2KHR", pd) else {
                return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
            };
            if let Some(o) = ours(state, pd) {
                return fill_in_place(o.planes.len(), p_count, p_props, |_, p| {
                    p.display_plane_properties = vk::DisplayPlanePropertiesKHR::default();
                });
            }
            match &state.display2 {
                Some(d) => (d.get_physical_device_display_plane_properties2_khr)(pd, p_count, p_props),
                None => fill_in_place(0, p_count, p_props, |_, _: &mut vk::DisplayPlaneProperties2KHR<'_>| {}),
            }
        }
    }

    fn plane_supported_displays(
        pd: vk::PhysicalDevice,
        plane: u32,
        p_count: *mut u32,
        p_displays: *mut vk::DisplayKHR,
    ) -> vk::Result, "vkGetDisplayPlaneSupportedDisplaysKHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe {
            let Some(state) = instance_of("vkGetDisplayPlaneSupportedDisplaysKHR", pd) else {
                return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
            };
            if let Some(o) = ours(state, pd) {
                return crate::vulkan::fill(&plane_displays(o, plane), p_count, p_displays);
            }
            match &state.display {
                Some(d) => (d.get_display_plane_supported_displays_khr)(pd, plane, p_count, p_displays),
                None => crate::vulkan::fill(&[], p_count, p_displays),
            }
        }
    }

    fn mode_properties(
        pd: vk::PhysicalDevice,
        display: vk::DisplayKHR,
        p_count: *mut u32,
        p_props: *mut vk::DisplayModePropertiesKHR,
    ) -> vk::Result, "vkGetDisplayModePropertiesKHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe {
            if let Some(d) = layer_display(display) {
                let modes = d.modes();
                return fill_in_place(modes.len(), p_count, p_props, |i, p| {
                    *p = mode_properties_of(&modes[i]);
                });
            }
            let Some(state) = instance_of("vkGetDisplayModePropertiesKHR", pd) else {
                return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
            };
            match &state.display {
                Some(t) => (t.get_display_mode_properties_khr)(pd, display, p_count, p_props),
                None => vk::Result::ERROR_INITIALIZATION_FAILED,
            }
        }
    }

    fn mode_properties2(
        pd: vk::PhysicalDevice,
        display: vk::DisplayKHR,
        p_count: *mut u32,
        p_props: *mut vk::DisplayModeProperties2KHR<'_>,
    ) -> vk::Result, "vkGetDisplayModeProperties2KHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe {
            if let Some(d) = layer_display(display) {
                let modes = d.modes();
                return fill_in_place(modes.len(), p_count, p_props, |i, p| {
                    p.display_mode_properties = mode_properties_of(&modes[i]);
                });
            }
            let Some(state) = instance_of("vkGetDisplayModeProperties2KHR", pd) else {
                return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
            };
            match &state.display2 {
                Some(t) => (t.get_display_mode_properties2_khr)(pd, display, p_count, p_props),
                None => vk::Result::ERROR_INITIALIZATION_FAILED,
            }
        }
    }

    /// A mode the connector offers, by its size and refresh: KMS drives no
    /// mode the connector did not list.
    fn create_display_mode(
        pd: vk::PhysicalDevice,
        display: vk::DisplayKHR,
        p_info: *const vk::DisplayModeCreateInfoKHR<'_>,
        p_allocator: *const vk::AllocationCallbacks<'_>,
        p_mode: *mut vk::DisplayModeKHR,
    ) -> vk::Result, "vkCreateDisplayModeKHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe {
            if let Some(d) = layer_display(display) {
                let p = (*p_info).parameters;
                let Some(m) = d.create_mode(p.visible_region, p.refresh_rate) else {
                    tracing::warn!(
                        "vkCreateDisplayModeKHR: {} offers no {}x{} mode at {} mHz",
                        d.name.to_string_lossy(),
                        p.visible_region.width,
                        p.visible_region.height,
                        p.refresh_rate
                    );
                    return vk::Result::ERROR_INITIALIZATION_FAILED;
                };
                objects::register_once(vk::ObjectType::DISPLAY_MODE_KHR, m.handle().as_raw());
                *p_mode = m.handle();
                return vk::Result::SUCCESS;
            }
            let Some(state) = instance_of("vkCreateDisplayModeKHR", pd) else {
                return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
            };
            match &state.display {
                Some(t) => (t.create_display_mode_khr)(pd, display, p_info, p_allocator, p_mode),
                None => vk::Result::ERROR_INITIALIZATION_FAILED,
            }
        }
    }

    fn plane_capabilities(
        pd: vk::PhysicalDevice,
        mode: vk::DisplayModeKHR,
        plane: u32,
        p_caps: *mut vk::DisplayPlaneCapabilitiesKHR,
    ) -> vk::Result, "vkGetDisplayPlaneCapabilitiesKHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe {
            if let Some((_, m)) = layer_mode(mode) {
                *p_caps = plane_capabilities_of(&m);
                return vk::Result::SUCCESS;
            }
            let Some(state) = instance_of("vkGetDisplayPlaneCapabilitiesKHR", pd) else {
                return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
            };
            match &state.display {
                Some(t) => (t.get_display_plane_capabilities_khr)(pd, mode, plane, p_caps),
                None => vk::Result::ERROR_INITIALIZATION_FAILED,
            }
        }
    }

    fn plane_capabilities2(
        pd: vk::PhysicalDevice,
        p_info: *const vk::DisplayPlaneInfo2KHR<'_>,
        p_caps: *mut vk::DisplayPlaneCapabilities2KHR<'_>,
    ) -> vk::Result, "vkGetDisplayPlaneCapabilities2KHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe {
            if let Some((_, m)) = layer_mode((*p_info).mode) {
                (*p_caps).capabilities = plane_capabilities_of(&m);
                return vk::Result::SUCCESS;
            }
            let Some(state) = instance_of("vkGetDisplayPlaneCapabilities2KHR", pd) else {
                return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
            };
            match &state.display2 {
                Some(t) => (t.get_display_plane_capabilities2_khr)(pd, p_info, p_caps),
                None => vk::Result::ERROR_INITIALIZATION_FAILED,
            }
        }
    }

    /// A surface on a layer's mode is the layer's own (the loader would
    /// hand the mode to every driver); on a driver's mode, the driver's.
    fn create_plane_surface(
        instance: vk::Instance,
        p_info: *const vk::DisplaySurfaceCreateInfoKHR<'_>,
        p_allocator: *const vk::AllocationCallbacks<'_>,
        p_surface: *mut vk::SurfaceKHR,
    ) -> vk::Result, "vkCreateDisplayPlaneSurfaceKHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application passes a live instance and valid
        // structures.
        unsafe {
            let Some(state) = instance::of(instance) else {
                tracing::error!("vkCreateDisplayPlaneSurfaceKHR: unknown instance");
                return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
            };
            let info = &*p_info;
            let Some((d, mode)) = layer_mode(info.display_mode) else {
                return match &state.display {
                    Some(t) => (t.create_display_plane_surface_khr)(instance, p_info, p_allocator, p_surface),
                    None => vk::Result::ERROR_INITIALIZATION_FAILED,
                };
            };
            match plane_surface(d, mode, info) {
                Ok(made) => {
                    let handle = Arc::as_ptr(&made).cast::<()>() as u64;
                    surface::own(
                        vk::SurfaceKHR::from_raw(handle),
                        Surface { instance, platform: made, layer_made: true },
                    );
                    objects::register(vk::ObjectType::SURFACE_KHR, handle);
                    stats::count(Counter::SurfacesCreated);
                    *p_surface = vk::SurfaceKHR::from_raw(handle);
                    vk::Result::SUCCESS
                }
                Err(why) => {
                    tracing::error!("vkCreateDisplayPlaneSurfaceKHR: {why}");
                    vk::Result::ERROR_INITIALIZATION_FAILED
                }
            }
        }
    }

}

/// Checks a plane surface's create info against what the layer's planes
/// do (the whole mode, unscaled, opaque) and makes the surface.
fn plane_surface(
    d: &'static Display,
    mode: Arc<Mode>,
    info: &vk::DisplaySurfaceCreateInfoKHR<'_>,
) -> Result<Arc<DisplaySurface>, String> {
    let outputs = display::found().ok_or("no display was found")?;
    let plane = outputs
        .planes
        .get(info.plane_index as usize)
        .ok_or(format!("there is no plane {}", info.plane_index))?;
    if !d.shown_by(plane) {
        return Err(format!(
            "plane {} cannot show {}",
            info.plane_index,
            d.name.to_string_lossy()
        ));
    }
    if info.transform != vk::SurfaceTransformFlagsKHR::IDENTITY
        || info.alpha_mode != vk::DisplayPlaneAlphaFlagsKHR::OPAQUE
        || info.image_extent != mode.extent()
    {
        return Err(format!(
            "the plane shows the whole {}x{} mode, opaque and untransformed; asked for {}x{}, {:?}, {:?}",
            mode.extent().width,
            mode.extent().height,
            info.image_extent.width,
            info.image_extent.height,
            info.alpha_mode,
            info.transform
        ));
    }
    Ok(Arc::new(DisplaySurface::new(d, mode, plane)))
}
