//! The library's exported entry points, the two `vkGet*ProcAddr` that hand
//! out every other one, and the panic guard every entry point runs under.
//!
//! The exported symbols only forward to private functions, and only private
//! functions are handed to the loader: the application's own
//! `vkGetInstanceProcAddr` (the loader's) has the same name, and the dynamic
//! linker could bind a reference to the exported name to the loader's.

use std::cell::RefCell;
use std::ffi::{c_char, CStr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use ash::vk;

use crate::dispatch::{self, void_fn};
use crate::instance::INSTANCES;
use crate::loader::{self, NegotiateLayerInterface};
use crate::stats::{self, Counter};
use crate::{device, instance, swapchain};

/// The loader's first call: agree on interface version 2 and hand over the
/// two `vkGet*ProcAddr`.
///
/// # Safety
/// `p` is null or points to the loader's negotiation struct.
#[no_mangle]
pub unsafe extern "system" fn vkNegotiateLoaderLayerInterfaceVersion(
    p: *mut NegotiateLayerInterface,
) -> vk::Result {
    install_panic_hook();
    guard(
        "vkNegotiateLoaderLayerInterfaceVersion",
        vk::Result::ERROR_INITIALIZATION_FAILED,
        || {
            // SAFETY: the loader passes its negotiation struct, or null.
            let Some(n) = (unsafe { p.as_mut() }) else {
                return vk::Result::ERROR_INITIALIZATION_FAILED;
            };
            if n.s_type != loader::NEGOTIATE_INTERFACE_STRUCT
                || n.loader_layer_interface_version < loader::INTERFACE_VERSION
            {
                return vk::Result::ERROR_INITIALIZATION_FAILED;
            }
            n.loader_layer_interface_version = loader::INTERFACE_VERSION;
            n.pfn_get_instance_proc_addr = Some(get_instance_proc_addr);
            n.pfn_get_device_proc_addr = Some(get_device_proc_addr);
            n.pfn_get_physical_device_proc_addr = None;
            vk::Result::SUCCESS
        },
    )
}

/// For loaders that look the layer's functions up by name.
///
/// # Safety
/// As `vkGetInstanceProcAddr`.
#[no_mangle]
pub unsafe extern "system" fn vkGetInstanceProcAddr(
    instance: vk::Instance,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    // SAFETY: same contract.
    unsafe { get_instance_proc_addr(instance, name) }
}

/// For loaders that look the layer's functions up by name.
///
/// # Safety
/// As `vkGetDeviceProcAddr`.
#[no_mangle]
pub unsafe extern "system" fn vkGetDeviceProcAddr(
    device: vk::Device,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    // SAFETY: same contract.
    unsafe { get_device_proc_addr(device, name) }
}

/// The layer's `vkGetInstanceProcAddr`: its own function for what it
/// intercepts, the next entity's for everything else.
pub(crate) unsafe extern "system" fn get_instance_proc_addr(
    instance: vk::Instance,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    guard("vkGetInstanceProcAddr", None, || {
        if name.is_null() {
            return None;
        }
        // SAFETY: the caller passes a NUL-terminated command name.
        let name = unsafe { CStr::from_ptr(name) };
        if let Some(f) = instance::global(name.to_bytes()) {
            return void_fn(f);
        }
        if instance == vk::Instance::null() {
            return None;
        }
        // SAFETY: a non-null instance passed to vkGetInstanceProcAddr is alive.
        let Some(state) = (unsafe { INSTANCES.get(dispatch::key(instance)) }) else {
            tracing::error!("vkGetInstanceProcAddr: unknown instance; returning NULL");
            return None;
        };
        if let Some(f) = instance::intercepted(name.to_bytes()) {
            return void_fn(f);
        }
        // SAFETY: the instance is the next entity's too.
        let next = unsafe { (state.next_get_instance_proc_addr)(instance, name.as_ptr()) };
        let ours = device::intercepted(name.to_bytes())
            .or_else(|| swapchain::intercepted(name.to_bytes()));
        match ours {
            Some(f) if next.is_some() => void_fn(f),
            _ => next,
        }
    })
}

/// The layer's `vkGetDeviceProcAddr`: its own function for what it
/// intercepts on this device, the next entity's for everything else, and
/// nothing for the commands of extensions only the layer enabled.
pub(crate) unsafe extern "system" fn get_device_proc_addr(
    device: vk::Device,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    guard("vkGetDeviceProcAddr", None, || {
        if device == vk::Device::null() || name.is_null() {
            return None;
        }
        // SAFETY: the caller passes a NUL-terminated command name.
        let name = unsafe { CStr::from_ptr(name) };
        // SAFETY: a non-null device passed to vkGetDeviceProcAddr is alive.
        let Some(state) = (unsafe { device::DEVICES.get(dispatch::key(device)) }) else {
            tracing::error!("vkGetDeviceProcAddr: unknown device; returning NULL");
            return None;
        };
        if name.to_bytes() == b"vkGetDeviceProcAddr" {
            return void_fn(get_device_proc_addr as *const _);
        }
        if state.hides(name) {
            return None;
        }
        // SAFETY: the device is the next entity's too.
        let next = unsafe { (state.next_get_device_proc_addr)(device, name.as_ptr()) };
        if let Some(f) = device::intercepted(name.to_bytes()) {
            return if next.is_some() { void_fn(f) } else { next };
        }
        // The swapchain commands are the layer's own on devices it owns,
        // even where the driver has none; devices it passes through get the
        // driver's, untouched.
        match swapchain::intercepted(name.to_bytes()) {
            Some(f) if state.owned().is_some() => void_fn(f),
            _ => next,
        }
    })
}

thread_local! {
    /// Where and why the last panic on this thread happened, for the guard's
    /// log line.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces the default panic message (several lines, and a backtrace hint)
/// with a note the guard turns into its one log line. The hook is this
/// library's own: a cdylib carries its own copy of the standard library.
pub(crate) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let location = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{message} at {location}")));
        }));
    });
}

/// Runs `f`; if it panics, logs one line and returns `fallback`, a result
/// legal for `command`, so that no unwinding ever reaches the caller.
/// Inlined: on the path of every intercepted command, it costs nothing
/// until something panics.
#[inline(always)]
pub(crate) fn guard<R: std::fmt::Debug>(command: &str, fallback: R, f: impl FnOnce() -> R) -> R {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            caught(command, &format!("returning {fallback:?}"));
            fallback
        }
    }
}

/// Runs `f`; if it panics, logs one line saying `recovery` and returns `None`.
pub(crate) fn try_guard<R>(command: &str, recovery: &str, f: impl FnOnce() -> R) -> Option<R> {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(_) => {
            caught(command, recovery);
            None
        }
    }
}

#[cold]
#[inline(never)]
fn caught(command: &str, recovery: &str) {
    stats::count(Counter::PanicsCaught);
    let what = LAST_PANIC
        .try_with(|p| p.borrow_mut().take())
        .ok()
        .flatten()
        .unwrap_or_else(|| "unknown panic".to_owned());
    tracing::error!("internal error in {command}: {what}; {recovery}");
}

/// Test builds only: panics the first time the site `SYNCFILE_WSI_FAULT`
/// names is reached, to prove that the guards hold.
#[cfg(debug_assertions)]
pub(crate) fn fault(site: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static FIRED: AtomicBool = AtomicBool::new(false);
    if std::env::var("SYNCFILE_WSI_FAULT").is_ok_and(|v| v == site)
        && !FIRED.swap(true, Ordering::Relaxed)
    {
        panic!("fault injected at {site}");
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub(crate) fn fault(_site: &str) {}
