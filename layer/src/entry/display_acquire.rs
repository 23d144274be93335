//! Taking displays over (`VK_EXT_acquire_drm_display`,
//! `VK_EXT_direct_mode_display`) and the driver's own mechanisms for its
//! displays (`VK_EXT_acquire_xlib_display`, `VK_NV_acquire_winrt_display`):
//! the layer's displays are driven through KMS, through a descriptor the
//! application hands over or the card the layer opens, and are no RandR
//! outputs or WinRT displays; the driver's displays stay the driver's.

use std::ffi::c_void;
use std::os::fd::BorrowedFd;

use ash::vk;

use super::displays::{instance_of, layer_display, ours};
use super::Scope;
use crate::platform::display;

pub(super) fn lookup(name: &[u8]) -> Option<(Scope, *const c_void)> {
    let f = match name {
        b"vkAcquireDrmDisplayEXT" => (Scope::Provided, acquire_drm_display as *const c_void),
        b"vkGetDrmDisplayEXT" => (Scope::Provided, get_drm_display as _),
        b"vkReleaseDisplayEXT" => (Scope::Provided, release_display as _),
        b"vkAcquireXlibDisplayEXT" => (Scope::Everyone, acquire_xlib_display as _),
        b"vkGetRandROutputDisplayEXT" => (Scope::Everyone, randr_output_display as _),
        b"vkAcquireWinrtDisplayNV" => (Scope::Everyone, acquire_winrt_display as _),
        b"vkGetWinrtDisplayNV" => (Scope::Everyone, winrt_display as _),
        _ => return None,
    };
    Some(f)
}

entry! {
    /// Drives the display through the application's DRM descriptor (from
    /// a lease, or a display server) rather than the card the layer opens.
    fn acquire_drm_display(
        pd: vk::PhysicalDevice,
        drm_fd: i32,
        display: vk::DisplayKHR,
    ) -> vk::Result, "vkAcquireDrmDisplayEXT", on panic vk::Result::ERROR_INITIALIZATION_FAILED, {
        let Some(d) = layer_display(display) else {
            // SAFETY: the application's arguments.
            return unsafe { driver_acquire_drm(pd, drm_fd, display) };
        };
        // SAFETY: the application's descriptor, open for the call if not negative.
        let Some(fd) = (unsafe { descriptor("vkAcquireDrmDisplayEXT", drm_fd) }) else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        let same = device_of(fd).is_some() && device_of(fd) == display::device_number(&d.card);
        let Ok(owned) = fd.try_clone_to_owned() else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        if !same || !d.acquire(syncfile::kms::Card::from(owned)) {
            tracing::error!("vkAcquireDrmDisplayEXT: the descriptor is not of {}'s card, or a swapchain drives it already", d.name.to_string_lossy());
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        }
        vk::Result::SUCCESS
    }

    fn get_drm_display(
        pd: vk::PhysicalDevice,
        drm_fd: i32,
        connector: u32,
        p_display: *mut vk::DisplayKHR,
    ) -> vk::Result, "vkGetDrmDisplayEXT", on panic vk::Result::ERROR_INITIALIZATION_FAILED, {
        // SAFETY: the application's arguments.
        unsafe {
            let Some(state) = instance_of("vkGetDrmDisplayEXT", pd) else {
                return vk::Result::ERROR_INITIALIZATION_FAILED;
            };
            let Some(o) = ours(state, pd) else {
                return match &state.drm_display {
                    Some(t) => (t.get_drm_display_ext)(pd, drm_fd, connector, p_display),
                    None => vk::Result::ERROR_INITIALIZATION_FAILED,
                };
            };
            let Some(fd) = descriptor("vkGetDrmDisplayEXT", drm_fd) else {
                *p_display = vk::DisplayKHR::null();
                return vk::Result::ERROR_INITIALIZATION_FAILED;
            };
            match device_of(fd).and_then(|r| o.by_connector(r, connector)) {
                Some(d) => {
                    *p_display = d.handle();
                    vk::Result::SUCCESS
                }
                None => {
                    *p_display = vk::DisplayKHR::null();
                    vk::Result::ERROR_INITIALIZATION_FAILED
                }
            }
        }
    }

    fn release_display(
        pd: vk::PhysicalDevice,
        display: vk::DisplayKHR,
    ) -> vk::Result, "vkReleaseDisplayEXT", on panic vk::Result::SUCCESS, {
        if let Some(d) = layer_display(display) {
            d.release();
            return vk::Result::SUCCESS;
        }
        // SAFETY: the application's arguments.
        unsafe {
            match instance_of("vkReleaseDisplayEXT", pd).and_then(|s| s.direct_display.as_ref()) {
                Some(t) => (t.release_display_ext)(pd, display),
                None => vk::Result::SUCCESS,
            }
        }
    }

    fn acquire_xlib_display(
        pd: vk::PhysicalDevice,
        dpy: *mut vk::Display,
        display: vk::DisplayKHR,
    ) -> vk::Result, "vkAcquireXlibDisplayEXT", on panic vk::Result::ERROR_INITIALIZATION_FAILED, {
        if layer_display(display).is_some() {
            tracing::error!("vkAcquireXlibDisplayEXT: the layer's displays are driven through KMS, not leased from an X server");
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        }
        // SAFETY: the application's arguments.
        unsafe {
            match instance_of("vkAcquireXlibDisplayEXT", pd).and_then(|s| s.xlib_display.as_ref()) {
                Some(t) => (t.acquire_xlib_display_ext)(pd, dpy, display),
                None => vk::Result::ERROR_INITIALIZATION_FAILED,
            }
        }
    }

    fn randr_output_display(
        pd: vk::PhysicalDevice,
        dpy: *mut vk::Display,
        output: vk::RROutput,
        p_display: *mut vk::DisplayKHR,
    ) -> vk::Result, "vkGetRandROutputDisplayEXT", on panic vk::Result::ERROR_INITIALIZATION_FAILED, {
        // SAFETY: the application's arguments.
        unsafe {
            match instance_of("vkGetRandROutputDisplayEXT", pd).and_then(|s| s.xlib_display.as_ref()) {
                Some(t) => (t.get_rand_r_output_display_ext)(pd, dpy, output, p_display),
                None => {
                    *p_display = vk::DisplayKHR::null();
                    vk::Result::SUCCESS
                }
            }
        }
    }

    fn acquire_winrt_display(
        pd: vk::PhysicalDevice,
        display: vk::DisplayKHR,
    ) -> vk::Result, "vkAcquireWinrtDisplayNV", on panic vk::Result::ERROR_INITIALIZATION_FAILED, {
        if layer_display(display).is_some() {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        }
        // SAFETY: the application's arguments.
        unsafe {
            match instance_of("vkAcquireWinrtDisplayNV", pd).and_then(|s| s.winrt_display.as_ref()) {
                Some(t) => (t.acquire_winrt_display_nv)(pd, display),
                None => vk::Result::ERROR_INITIALIZATION_FAILED,
            }
        }
    }

    fn winrt_display(
        pd: vk::PhysicalDevice,
        id: u32,
        p_display: *mut vk::DisplayKHR,
    ) -> vk::Result, "vkGetWinrtDisplayNV", on panic vk::Result::ERROR_INITIALIZATION_FAILED, {
        // SAFETY: the application's arguments.
        unsafe {
            match instance_of("vkGetWinrtDisplayNV", pd).and_then(|s| s.winrt_display.as_ref()) {
                Some(t) => (t.get_winrt_display_nv)(pd, id, p_display),
                None => vk::Result::ERROR_INITIALIZATION_FAILED,
            }
        }
    }
}

/// The application's DRM descriptor `fd`, or `None` (said once in the
/// log) for a negative number, which no descriptor has.
///
/// # Safety
/// `fd`, if not negative, is open for as long as the result is used.
unsafe fn descriptor<'a>(command: &str, fd: i32) -> Option<BorrowedFd<'a>> {
    if fd < 0 {
        tracing::error!("{command}: drmFd {fd} is no descriptor");
        return None;
    }
    // SAFETY: as the caller promises.
    Some(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// The device number of the node a DRM descriptor has open.
fn device_of(fd: BorrowedFd<'_>) -> Option<u64> {
    rustix::fs::fstat(fd).ok().map(|s| s.st_rdev)
}

/// `vkAcquireDrmDisplayEXT` on a display of the driver's.
///
/// # Safety
/// The application's arguments.
unsafe fn driver_acquire_drm(
    pd: vk::PhysicalDevice,
    fd: i32,
    display: vk::DisplayKHR,
) -> vk::Result {
    // SAFETY: as the caller promises.
    unsafe {
        match instance_of("vkAcquireDrmDisplayEXT", pd).and_then(|s| s.drm_display.as_ref()) {
            Some(t) => (t.acquire_drm_display_ext)(pd, fd, display),
            None => vk::Result::ERROR_INITIALIZATION_FAILED,
        }
    }
}
