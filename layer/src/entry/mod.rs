//! The entry points: the library's three exported symbols, the two
//! `vkGet*ProcAddr` that hand out every other command the layer
//! intercepts, and those commands themselves, one file per kind of object.
//! Each is written once through [`entry!`], which runs its body under the
//! panic guard; each body only finds the objects it is about and hands
//! them to the core.
//!
//! The exported symbols only forward to private functions, and only private
//! functions are handed to the loader: the application's own
//! `vkGetInstanceProcAddr` (the loader's) has the same name, and the dynamic
//! linker could bind a reference to the exported name to the loader's.

use std::ffi::{c_char, c_void, CStr};

use ash::vk;

use crate::plumbing::guard::{guard, install_panic_hook};
use crate::plumbing::loader::{self, NegotiateLayerInterface};
use crate::vulkan::{device, instance};

/// Defines entry points: `extern "system"` functions whose body runs under
/// the panic guard, which turns a panic into `fallback` (a result legal for
/// the command) with one log line naming the command.
macro_rules! entry {
    ($(
        $(#[$doc:meta])*
        fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?,
            $command:literal, on panic $fallback:expr, $body:block
    )*) => {$(
        $(#[$doc])*
        pub(super) unsafe extern "system" fn $name($($arg: $ty),*) $(-> $ret)? {
            $crate::plumbing::guard::guard($command, $fallback, || $body)
        }
    )*};
}

mod devices;
mod display_acquire;
mod displays;
mod images;
mod instances;
mod objects;
mod presents;
mod queues;
mod surfaces;
mod swapchains;

/// To whom `vkGet*ProcAddr` hands an intercepted command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// Always, even without an instance.
    Global,
    /// Every instance and device, where the next entity has the command.
    Everyone,
    /// Devices whose swapchains the layer owns, where the next entity has
    /// the command; other devices get the next entity's.
    Owned,
    /// Devices whose swapchains the layer owns, even where the driver has
    /// no VK_KHR_swapchain; other devices get the next entity's.
    Swapchain,
    /// Every instance, even where the next entity lacks the command: the
    /// instance commands of an extension the layer provides itself
    /// (`VK_KHR_display` over KMS).
    Provided,
}

/// The layer's own function for `name`, and who gets it.
fn lookup(name: &[u8]) -> Option<(Scope, *const c_void)> {
    instances::lookup(name)
        .or_else(|| devices::lookup(name))
        .or_else(|| surfaces::lookup(name))
        .or_else(|| displays::lookup(name))
        .or_else(|| display_acquire::lookup(name))
        .or_else(|| swapchains::lookup(name))
        .or_else(|| presents::lookup(name))
        .or_else(|| objects::lookup(name))
        .or_else(|| images::lookup(name))
        .or_else(|| queues::lookup(name))
}

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

/// The device of a command's dispatchable handle (a device, queue or
/// command buffer), logged when the layer does not know it (which cannot
/// happen through the loader).
///
/// # Safety
/// `handle` is alive for the command.
unsafe fn device_of<H: vk::Handle>(
    command: &str,
    handle: H,
) -> Option<&'static device::DeviceState> {
    // SAFETY: as the caller promises.
    let d = unsafe { device::of(handle) };
    if d.is_none() {
        tracing::error!("{command}: unknown device");
    }
    d
}

/// Turns a function into the pointer `vkGet*ProcAddr` returns.
fn void_fn(f: *const c_void) -> vk::PFN_vkVoidFunction {
    // SAFETY: callers pass the address of an `extern "system"` function; the
    // loader casts it back to the command's real type before calling it.
    unsafe { std::mem::transmute::<*const c_void, vk::PFN_vkVoidFunction>(f) }
}

entry! {
    /// The layer's `vkGetInstanceProcAddr`: its own function for what it
    /// intercepts (where the next entity has it, or for the swapchain
    /// commands, always), the next entity's for
    /// everything else. Device commands asked for here get the layer's
    /// function whatever the device: each one passes devices the layer does
    /// not own through.
    fn get_instance_proc_addr(instance: vk::Instance, name: *const c_char) -> vk::PFN_vkVoidFunction,
        "vkGetInstanceProcAddr", on panic None, {
        if name.is_null() {
            return None;
        }
        // SAFETY: the caller passes a NUL-terminated command name.
        let name = unsafe { CStr::from_ptr(name) };
        let ours = lookup(name.to_bytes());
        if let Some((Scope::Global, f)) = ours {
            return void_fn(f);
        }
        if instance == vk::Instance::null() {
            return None;
        }
        // SAFETY: a non-null instance passed to vkGetInstanceProcAddr is alive.
        let Some(state) = (unsafe { instance::of(instance) }) else {
            tracing::error!("vkGetInstanceProcAddr: unknown instance; returning NULL");
            return None;
        };
        // SAFETY: the instance is the next entity's too.
        let next = unsafe { (state.next_get_instance_proc_addr)(instance, name.as_ptr()) };
        match ours {
            // The swapchain commands of extensions the layer provides may
            // be the layer's alone.
            Some((Scope::Swapchain | Scope::Provided, f)) => void_fn(f),
            Some((_, f)) if next.is_some() => void_fn(f),
            _ => next,
        }
    }

    /// The layer's `vkGetDeviceProcAddr`: its own function for what it
    /// intercepts on this device, the next entity's for everything else,
    /// and nothing for the commands of extensions only the layer enabled.
    fn get_device_proc_addr(device: vk::Device, name: *const c_char) -> vk::PFN_vkVoidFunction,
        "vkGetDeviceProcAddr", on panic None, {
        if device == vk::Device::null() || name.is_null() {
            return None;
        }
        // SAFETY: the caller passes a NUL-terminated command name.
        let name = unsafe { CStr::from_ptr(name) };
        // SAFETY: a non-null device passed to vkGetDeviceProcAddr is alive.
        let Some(state) = (unsafe { device::of(device) }) else {
            tracing::error!("vkGetDeviceProcAddr: unknown device; returning NULL");
            return None;
        };
        if name.to_bytes() == b"vkGetDeviceProcAddr" {
            return void_fn(get_device_proc_addr as *const c_void);
        }
        if state.hides(name) {
            return None;
        }
        // SAFETY: the device is the next entity's too.
        let next = unsafe { (state.next_get_device_proc_addr)(device, name.as_ptr()) };
        let owned = state.owned().is_some();
        match lookup(name.to_bytes()) {
            Some((Scope::Swapchain, f)) if owned => void_fn(f),
            Some((Scope::Owned, f)) if owned && next.is_some() => void_fn(f),
            Some((Scope::Everyone, f)) if next.is_some() => void_fn(f),
            _ => next,
        }
    }
}

#[cfg(test)]
mod tests;
