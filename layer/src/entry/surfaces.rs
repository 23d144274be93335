//! Surface commands: creating surfaces by calling down (the loader owns
//! the handle) and recording the ones the layer owns, destroying them, and
//! the surface queries, which the layer answers for the surfaces it owns on
//! the physical devices it serves and the driver answers for the rest.

use std::ffi::c_void;
use std::sync::Arc;

use ash::vk;
use ash::vk::Handle;

use super::Scope;
use crate::platform::x11::{self, AppConnection};
use crate::platform::{headless, wayland};
use crate::plumbing::settings::Platform;
use crate::plumbing::stats::{self, Counter};
use crate::vulkan::caps::SwapchainCaps;
use crate::vulkan::instance::{self, InstanceState};
use crate::vulkan::objects;
use crate::wsi::platform::PlatformSurface;
use crate::wsi::surface::{self, queries, Answer, Surface};

pub(super) fn lookup(name: &[u8]) -> Option<(Scope, *const c_void)> {
    let f = match name {
        b"vkCreateHeadlessSurfaceEXT" => create_headless_surface as *const c_void,
        b"vkCreateWaylandSurfaceKHR" => create_wayland_surface as *const c_void,
        b"vkGetPhysicalDeviceWaylandPresentationSupportKHR" => {
            wayland_presentation_support as *const c_void
        }
        b"vkCreateXcbSurfaceKHR" => create_xcb_surface as *const c_void,
        b"vkCreateXlibSurfaceKHR" => create_xlib_surface as *const c_void,
        b"vkGetPhysicalDeviceXcbPresentationSupportKHR" => {
            xcb_presentation_support as *const c_void
        }
        b"vkGetPhysicalDeviceXlibPresentationSupportKHR" => {
            xlib_presentation_support as *const c_void
        }
        b"vkDestroySurfaceKHR" => destroy_surface as *const c_void,
        b"vkGetPhysicalDeviceSurfaceSupportKHR" => surface_support as *const c_void,
        b"vkGetPhysicalDeviceSurfaceCapabilitiesKHR" => surface_capabilities as *const c_void,
        b"vkGetPhysicalDeviceSurfaceCapabilities2KHR" => surface_capabilities2 as *const c_void,
        b"vkGetPhysicalDeviceSurfaceCapabilities2EXT" => surface_capabilities2_ext as *const c_void,
        b"vkGetPhysicalDeviceSurfaceFormatsKHR" => surface_formats as *const c_void,
        b"vkGetPhysicalDeviceSurfaceFormats2KHR" => surface_formats2 as *const c_void,
        b"vkGetPhysicalDeviceSurfacePresentModesKHR" => surface_present_modes as *const c_void,
        b"vkGetPhysicalDevicePresentRectanglesKHR" => present_rectangles as *const c_void,
        _ => return None,
    };
    Some((Scope::Everyone, f))
}

/// Creates a surface with `call_down` (the next entity's command), and
/// owns it too when the settings allow `platform` and `probe` gives what
/// the platform makes of it.
///
/// # Safety
/// `instance` is the application's; `p_surface` is what `call_down` writes.
unsafe fn create(
    instance: vk::Instance,
    platform: Platform,
    p_surface: *mut vk::SurfaceKHR,
    call_down: impl FnOnce(&InstanceState) -> vk::Result,
    probe: impl FnOnce() -> Option<Arc<dyn PlatformSurface>>,
) -> vk::Result {
    // SAFETY: the application passes a live instance.
    let Some(state) = (unsafe { instance::of(instance) }) else {
        tracing::error!("creating a surface on an unknown instance");
        return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
    };
    let result = call_down(state);
    if result != vk::Result::SUCCESS {
        return result;
    }
    stats::count(Counter::SurfacesCreated);
    if state.settings.platforms.contains(platform) {
        if let Some(p) = probe() {
            // SAFETY: the next entity wrote the surface.
            let handle = unsafe { *p_surface };
            surface::own(
                handle,
                Surface {
                    instance,
                    platform: p,
                    layer_made: false,
                },
            );
        }
    }
    vk::Result::SUCCESS
}

/// Answers a query about `handle` on `pd`: `layer` for an owned surface
/// on a device the layer serves, `driver` for everything else but the
/// layer's own surfaces, which no other device can present to (lost).
///
/// # Safety
/// `pd` is a live physical device.
unsafe fn query(
    pd: vk::PhysicalDevice,
    handle: vk::SurfaceKHR,
    layer: impl FnOnce(&Surface, &SwapchainCaps, &InstanceState) -> vk::Result,
    driver: impl FnOnce(&InstanceState) -> vk::Result,
) -> vk::Result {
    // SAFETY: the caller passes a live physical device.
    match unsafe { surface::answer(pd, handle) } {
        Answer::Layer {
            surface,
            caps,
            instance,
        } => layer(&surface, &caps, instance),
        Answer::Driver(i) => driver(i),
        Answer::Lost | Answer::Nobody => vk::Result::ERROR_SURFACE_LOST_KHR,
    }
}

/// The layer's answer for an X server it presents to, else the driver's.
///
/// # Safety
/// `pd` is a live physical device, `connection` the application's.
unsafe fn x11_presentation_support(
    pd: vk::PhysicalDevice,
    family: u32,
    connection: AppConnection,
    driver: impl FnOnce(&InstanceState) -> vk::Bool32,
) -> vk::Bool32 {
    // SAFETY: the caller passes a live physical device.
    let Some(state) = (unsafe { instance::of(pd) }) else {
        return vk::FALSE;
    };
    if state.settings.platforms.contains(Platform::X11)
        && state.serves(pd)
        && x11::serves(connection)
    {
        return queries::family_supports_present(state, pd, family).into();
    }
    driver(state)
}

entry! {
    fn create_headless_surface(
        instance: vk::Instance,
        p_info: *const vk::HeadlessSurfaceCreateInfoEXT<'_>,
        p_allocator: *const vk::AllocationCallbacks<'_>,
        p_surface: *mut vk::SurfaceKHR,
    ) -> vk::Result, "vkCreateHeadlessSurfaceEXT", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments, for the next entity.
        unsafe {
            create(instance, Platform::Headless, p_surface, |i| {
                (i.headless.create_headless_surface_ext)(instance, p_info, p_allocator, p_surface)
            }, || Some(headless::surface()))
        }
    }

    fn create_wayland_surface(
        instance: vk::Instance,
        p_info: *const vk::WaylandSurfaceCreateInfoKHR<'_>,
        p_allocator: *const vk::AllocationCallbacks<'_>,
        p_surface: *mut vk::SurfaceKHR,
    ) -> vk::Result, "vkCreateWaylandSurfaceKHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments, for the next entity; the
        // create info is valid (the call down accepted it).
        unsafe {
            create(instance, Platform::Wayland, p_surface, |i| {
                (i.wayland.create_wayland_surface_khr)(instance, p_info, p_allocator, p_surface)
            }, || wayland::probe((*p_info).display, (*p_info).surface))
        }
    }

    /// Where the layer may own a device's swapchains, the queue families
    /// that can run its present submission; otherwise the driver's answer.
    fn wayland_presentation_support(
        pd: vk::PhysicalDevice,
        family: u32,
        display: *mut vk::wl_display,
    ) -> vk::Bool32, "vkGetPhysicalDeviceWaylandPresentationSupportKHR", on panic vk::FALSE, {
        // SAFETY: the application passes a live physical device.
        let Some(state) = (unsafe { instance::of(pd) }) else {
            return vk::FALSE;
        };
        if state.settings.platforms.contains(Platform::Wayland) && state.serves(pd) {
            return queries::family_supports_present(state, pd, family).into();
        }
        // SAFETY: the application's arguments, for the next entity.
        unsafe {
            (state.wayland.get_physical_device_wayland_presentation_support_khr)(
                pd, family, display,
            )
        }
    }

    fn create_xcb_surface(
        instance: vk::Instance,
        p_info: *const vk::XcbSurfaceCreateInfoKHR<'_>,
        p_allocator: *const vk::AllocationCallbacks<'_>,
        p_surface: *mut vk::SurfaceKHR,
    ) -> vk::Result, "vkCreateXcbSurfaceKHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments, for the next entity; the
        // create info is valid (the call down accepted it).
        unsafe {
            create(instance, Platform::X11, p_surface, |i| {
                (i.xcb.create_xcb_surface_khr)(instance, p_info, p_allocator, p_surface)
            }, || x11::probe(AppConnection::Xcb((*p_info).connection.cast()), (*p_info).window))
        }
    }

    fn create_xlib_surface(
        instance: vk::Instance,
        p_info: *const vk::XlibSurfaceCreateInfoKHR<'_>,
        p_allocator: *const vk::AllocationCallbacks<'_>,
        p_surface: *mut vk::SurfaceKHR,
    ) -> vk::Result, "vkCreateXlibSurfaceKHR", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: as for xcb; an Xlib window is an X11 window id (an XID
        // the server gave, which fits its 32 bits).
        unsafe {
            create(instance, Platform::X11, p_surface, |i| {
                (i.xlib.create_xlib_surface_khr)(instance, p_info, p_allocator, p_surface)
            }, || x11::probe(AppConnection::Xlib((*p_info).dpy.cast()), (*p_info).window as u32))
        }
    }

    /// Where the layer may own a device's swapchains on this server, the
    /// queue families that can run its present submission; otherwise the
    /// driver's answer.
    fn xcb_presentation_support(
        pd: vk::PhysicalDevice,
        family: u32,
        connection: *mut vk::xcb_connection_t,
        visual: vk::xcb_visualid_t,
    ) -> vk::Bool32, "vkGetPhysicalDeviceXcbPresentationSupportKHR", on panic vk::FALSE, {
        // SAFETY: the application's arguments, for the next entity.
        unsafe {
            x11_presentation_support(pd, family, AppConnection::Xcb(connection.cast()), |i| {
                (i.xcb.get_physical_device_xcb_presentation_support_khr)(pd, family, connection, visual)
            })
        }
    }

    fn xlib_presentation_support(
        pd: vk::PhysicalDevice,
        family: u32,
        dpy: *mut vk::Display,
        visual: vk::VisualID,
    ) -> vk::Bool32, "vkGetPhysicalDeviceXlibPresentationSupportKHR", on panic vk::FALSE, {
        // SAFETY: the application's arguments, for the next entity.
        unsafe {
            x11_presentation_support(pd, family, AppConnection::Xlib(dpy.cast()), |i| {
                (i.xlib.get_physical_device_xlib_presentation_support_khr)(pd, family, dpy, visual)
            })
        }
    }

    fn destroy_surface(
        instance: vk::Instance,
        handle: vk::SurfaceKHR,
        p_allocator: *const vk::AllocationCallbacks<'_>,
    ), "vkDestroySurfaceKHR", on panic (), {
        if surface::forget(handle).is_some_and(|s| s.layer_made) {
            objects::forget(vk::ObjectType::SURFACE_KHR, handle.as_raw());
            return;
        }
        // SAFETY: the application passes a live instance.
        let Some(state) = (unsafe { instance::of(instance) }) else {
            tracing::error!("vkDestroySurfaceKHR: unknown instance; cannot call down");
            return;
        };
        // SAFETY: the application's arguments, for the next entity.
        unsafe { (state.surface.destroy_surface_khr)(instance, handle, p_allocator) };
    }

    fn surface_support(
        pd: vk::PhysicalDevice,
        family: u32,
        handle: vk::SurfaceKHR,
        p_supported: *mut vk::Bool32,
    ) -> vk::Result, "vkGetPhysicalDeviceSurfaceSupportKHR", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the application's arguments; a surface of the layer's
        // is not supported on a device it does not serve.
        unsafe {
            match surface::answer(pd, handle) {
                Answer::Layer { instance, .. } => {
                    *p_supported = queries::family_supports_present(instance, pd, family).into();
                    vk::Result::SUCCESS
                }
                Answer::Nobody => {
                    *p_supported = vk::FALSE;
                    vk::Result::SUCCESS
                }
                Answer::Driver(i) => (i.surface.get_physical_device_surface_support_khr)(pd, family, handle, p_supported),
                Answer::Lost => vk::Result::ERROR_SURFACE_LOST_KHR,
            }
        }
    }

    fn surface_capabilities(
        pd: vk::PhysicalDevice,
        handle: vk::SurfaceKHR,
        p_caps: *mut vk::SurfaceCapabilitiesKHR,
    ) -> vk::Result, "vkGetPhysicalDeviceSurfaceCapabilitiesKHR", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the application's arguments.
        unsafe {
            query(pd, handle, |s, caps, _| {
                *p_caps = s.platform.capabilities(caps, None);
                vk::Result::SUCCESS
            }, |i| (i.surface.get_physical_device_surface_capabilities_khr)(pd, handle, p_caps))
        }
    }

    fn surface_capabilities2(
        pd: vk::PhysicalDevice,
        p_info: *const vk::PhysicalDeviceSurfaceInfo2KHR<'_>,
        p_caps: *mut vk::SurfaceCapabilities2KHR<'_>,
    ) -> vk::Result, "vkGetPhysicalDeviceSurfaceCapabilities2KHR", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the application's valid structures and arguments.
        unsafe {
            let info = &*p_info;
            query(pd, info.surface, |s, caps, _| {
                queries::capabilities2(s, caps, info, &mut *p_caps);
                vk::Result::SUCCESS
            }, |i| (i.surface2.get_physical_device_surface_capabilities2_khr)(pd, p_info, p_caps))
        }
    }

    fn surface_capabilities2_ext(
        pd: vk::PhysicalDevice,
        handle: vk::SurfaceKHR,
        p_caps: *mut vk::SurfaceCapabilities2EXT<'_>,
    ) -> vk::Result, "vkGetPhysicalDeviceSurfaceCapabilities2EXT", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the application's arguments.
        unsafe {
            query(pd, handle, |s, caps, _| {
                queries::capabilities2_ext(s, caps, &mut *p_caps);
                vk::Result::SUCCESS
            }, |i| (i.surface_counter.get_physical_device_surface_capabilities2_ext)(pd, handle, p_caps))
        }
    }

    fn surface_formats(
        pd: vk::PhysicalDevice,
        handle: vk::SurfaceKHR,
        p_count: *mut u32,
        p_formats: *mut vk::SurfaceFormatKHR,
    ) -> vk::Result, "vkGetPhysicalDeviceSurfaceFormatsKHR", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the application's arguments.
        unsafe {
            query(pd, handle, |s, caps, _| {
                crate::vulkan::fill(&queries::formats(s, caps), p_count, p_formats)
            }, |i| (i.surface.get_physical_device_surface_formats_khr)(pd, handle, p_count, p_formats))
        }
    }

    fn surface_formats2(
        pd: vk::PhysicalDevice,
        p_info: *const vk::PhysicalDeviceSurfaceInfo2KHR<'_>,
        p_count: *mut u32,
        p_formats: *mut vk::SurfaceFormat2KHR<'_>,
    ) -> vk::Result, "vkGetPhysicalDeviceSurfaceFormats2KHR", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the application's arguments.
        unsafe {
            query(pd, (*p_info).surface, |s, caps, _| {
                queries::fill_formats2(&queries::formats(s, caps), p_count, p_formats)
            }, |i| (i.surface2.get_physical_device_surface_formats2_khr)(pd, p_info, p_count, p_formats))
        }
    }

    fn surface_present_modes(
        pd: vk::PhysicalDevice,
        handle: vk::SurfaceKHR,
        p_count: *mut u32,
        p_modes: *mut vk::PresentModeKHR,
    ) -> vk::Result, "vkGetPhysicalDeviceSurfacePresentModesKHR", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the application's arguments.
        unsafe {
            query(pd, handle, |s, _, _| {
                crate::vulkan::fill(s.platform.present_modes(), p_count, p_modes)
            }, |i| (i.surface.get_physical_device_surface_present_modes_khr)(pd, handle, p_count, p_modes))
        }
    }

    fn present_rectangles(
        pd: vk::PhysicalDevice,
        handle: vk::SurfaceKHR,
        p_count: *mut u32,
        p_rects: *mut vk::Rect2D,
    ) -> vk::Result, "vkGetPhysicalDevicePresentRectanglesKHR", on panic vk::Result::ERROR_SURFACE_LOST_KHR, {
        // SAFETY: the application's arguments.
        unsafe {
            query(pd, handle, |s, caps, _| {
                crate::vulkan::fill(&[queries::present_rectangle(s, caps)], p_count, p_rects)
            }, |i| (i.swapchain_instance.get_physical_device_present_rectangles_khr)(pd, handle, p_count, p_rects))
        }
    }
}
