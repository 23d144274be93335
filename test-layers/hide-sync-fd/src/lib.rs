//! A test-only Vulkan layer that turns the driver below it into one
//! without SYNC_FD semaphore export, and changes nothing else: a real
//! driver (lavapipe) for syncfile-wsi's `no_semaphore_export` fallback,
//! which no driver the tests can run lacks.
//!
//! * `vkGetPhysicalDeviceExternalSemaphoreProperties(KHR)`: SYNC_FD loses
//!   `EXPORTABLE` and leaves every `exportFromImportedHandleTypes` and
//!   `compatibleHandleTypes` (import stays: the acquire side needs it).
//! * `vkGetSemaphoreFdKHR` with SYNC_FD is refused, as the driver now
//!   says it would be.
//! * With `SYNCFILE_TEST_HIDE_DMA_BUF=1`, `vkEnumerateDeviceExtensionProperties`
//!   also leaves out `VK_EXT_external_memory_dma_buf`: a driver that cannot
//!   export memory as a dma-buf, which `syncfile-wsi doctor`'s tests need
//!   and no driver they can run is.
//!
//! It is the oracle below the layer under test: at `vkDestroyDevice` it
//! writes to stderr how many property queries it answered, how many
//! SYNC_FD exports it refused and how many semaphores were still created
//! SYNC_FD-exportable (both must stay 0 for a layer that took the
//! fallback).

#![allow(non_snake_case)]

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ash::vk;

// The loader's side of the interface, as syncfile-wsi reads it.
#[allow(dead_code)]
#[path = "../../../layer/src/plumbing/loader.rs"]
mod loader;

use loader::{DeviceChain, InstanceChain, NegotiateLayerInterface};

/// The next layer's (or the loader's) entry points, per instance and
/// device. Physical-device calls dispatch on the handle itself, so any
/// instance's pointer serves them.
struct Next {
    instances: Vec<(vk::Instance, vk::PFN_vkGetInstanceProcAddr)>,
    devices: Vec<(vk::Device, vk::PFN_vkGetDeviceProcAddr)>,
    semaphore_properties: Option<vk::PFN_vkGetPhysicalDeviceExternalSemaphoreProperties>,
    device_extensions: Option<vk::PFN_vkEnumerateDeviceExtensionProperties>,
    semaphore_fd: Option<vk::PFN_vkGetSemaphoreFdKHR>,
    create_semaphore: Option<vk::PFN_vkCreateSemaphore>,
}

static NEXT: Mutex<Next> = Mutex::new(Next {
    instances: Vec::new(),
    devices: Vec::new(),
    semaphore_properties: None,
    device_extensions: None,
    semaphore_fd: None,
    create_semaphore: None,
});

static HIDDEN: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);
static EXPORTABLE_ASKED: AtomicU64 = AtomicU64::new(0);

fn next() -> std::sync::MutexGuard<'static, Next> {
    NEXT.lock().unwrap_or_else(|e| e.into_inner())
}

/// `name` as a function pointer of ours, if this layer has one.
fn ours(name: &CStr) -> vk::PFN_vkVoidFunction {
    let f = match name.to_bytes() {
        b"vkGetInstanceProcAddr" => get_instance_proc_addr as *const c_void,
        b"vkGetDeviceProcAddr" => get_device_proc_addr as *const c_void,
        b"vkCreateInstance" => create_instance as *const c_void,
        b"vkCreateDevice" => create_device as *const c_void,
        b"vkDestroyDevice" => destroy_device as *const c_void,
        b"vkGetPhysicalDeviceExternalSemaphoreProperties"
        | b"vkGetPhysicalDeviceExternalSemaphorePropertiesKHR" => {
            semaphore_properties as *const c_void
        }
        b"vkGetSemaphoreFdKHR" => get_semaphore_fd as *const c_void,
        b"vkEnumerateDeviceExtensionProperties" => device_extensions as *const c_void,
        b"vkCreateSemaphore" => create_semaphore as *const c_void,
        _ => return None,
    };
    // SAFETY: an `extern "system"` function of the type its name says,
    // which the caller casts back to by that name.
    Some(unsafe { std::mem::transmute::<*const c_void, unsafe extern "system" fn()>(f) })
}

/// The loader's first call.
///
/// # Safety
/// `interface` is the loader's negotiation struct.
#[no_mangle]
pub unsafe extern "system" fn vkNegotiateLoaderLayerInterfaceVersion(
    interface: *mut NegotiateLayerInterface,
) -> vk::Result {
    // SAFETY: the loader's struct, writable for this call.
    let Some(i) = (unsafe { interface.as_mut() }) else {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    };
    i.loader_layer_interface_version = i.loader_layer_interface_version.min(2);
    i.pfn_get_instance_proc_addr = Some(get_instance_proc_addr);
    i.pfn_get_device_proc_addr = Some(get_device_proc_addr);
    i.pfn_get_physical_device_proc_addr = None;
    vk::Result::SUCCESS
}

unsafe extern "system" fn get_instance_proc_addr(
    instance: vk::Instance,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    // SAFETY: the caller's NUL-terminated name.
    let name_c = unsafe { CStr::from_ptr(name) };
    if let Some(f) = ours(name_c) {
        return Some(f);
    }
    let gipa = next()
        .instances
        .iter()
        .find(|(i, _)| *i == instance)
        .map(|(_, g)| *g)?;
    // SAFETY: the next layer's vkGetInstanceProcAddr for this instance.
    unsafe { gipa(instance, name) }
}

unsafe extern "system" fn get_device_proc_addr(
    device: vk::Device,
    name: *const c_char,
) -> vk::PFN_vkVoidFunction {
    // SAFETY: the caller's NUL-terminated name.
    let name_c = unsafe { CStr::from_ptr(name) };
    if let Some(f) = ours(name_c) {
        return Some(f);
    }
    let gdpa = next()
        .devices
        .iter()
        .find(|(d, _)| *d == device)
        .map(|(_, g)| *g)?;
    // SAFETY: the next layer's vkGetDeviceProcAddr for this device.
    unsafe { gdpa(device, name) }
}

unsafe extern "system" fn create_instance(
    info: *const vk::InstanceCreateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    instance: *mut vk::Instance,
) -> vk::Result {
    // SAFETY: the loader's create info, with this layer's link in it.
    let Some(chain) = (unsafe { info.as_ref().and_then(|i| InstanceChain::advance(i)) }) else {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    };
    let gipa = chain.next_get_instance_proc_addr;
    // SAFETY: a global command of the next layer.
    let Some(create) = (unsafe { gipa(vk::Instance::null(), c"vkCreateInstance".as_ptr()) }) else {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    };
    // SAFETY: the pointer the next layer gave for that name.
    let create: vk::PFN_vkCreateInstance = unsafe { std::mem::transmute(create) };
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { create(info, allocator, instance) };
    if r != vk::Result::SUCCESS {
        return r;
    }
    // SAFETY: the instance just made.
    let made = unsafe { *instance };
    let mut n = next();
    n.instances.push((made, gipa));
    for name in [
        c"vkGetPhysicalDeviceExternalSemaphoreProperties",
        c"vkGetPhysicalDeviceExternalSemaphorePropertiesKHR",
    ] {
        if n.semaphore_properties.is_none() {
            // SAFETY: a query of the next layer on its new instance; the
            // pointer it gives has the type its name says, and is cast
            // back to it.
            n.semaphore_properties = unsafe {
                gipa(made, name.as_ptr()).map(|f| {
                    std::mem::transmute::<
                        unsafe extern "system" fn(),
                        vk::PFN_vkGetPhysicalDeviceExternalSemaphoreProperties,
                    >(f)
                })
            };
        }
    }
    if n.device_extensions.is_none() {
        // SAFETY: as above.
        n.device_extensions = unsafe {
            gipa(made, c"vkEnumerateDeviceExtensionProperties".as_ptr()).map(|f| {
                std::mem::transmute::<
                    unsafe extern "system" fn(),
                    vk::PFN_vkEnumerateDeviceExtensionProperties,
                >(f)
            })
        };
    }
    vk::Result::SUCCESS
}

unsafe extern "system" fn create_device(
    physical_device: vk::PhysicalDevice,
    info: *const vk::DeviceCreateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    device: *mut vk::Device,
) -> vk::Result {
    // SAFETY: the loader's create info, with this layer's link in it.
    let Some(chain) = (unsafe { info.as_ref().and_then(|i| DeviceChain::advance(i)) }) else {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    };
    let instance = next().instances.last().map(|(i, _)| *i).unwrap_or_default();
    let gipa = chain.next_get_instance_proc_addr;
    // SAFETY: an instance command of the next layer.
    let Some(create) = (unsafe { gipa(instance, c"vkCreateDevice".as_ptr()) }) else {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    };
    // SAFETY: the pointer the next layer gave for that name.
    let create: vk::PFN_vkCreateDevice = unsafe { std::mem::transmute(create) };
    // SAFETY: the caller's arguments, passed on.
    let r = unsafe { create(physical_device, info, allocator, device) };
    if r != vk::Result::SUCCESS {
        return r;
    }
    // SAFETY: the device just made.
    let made = unsafe { *device };
    let gdpa = chain.next_get_device_proc_addr;
    let mut n = next();
    n.devices.push((made, gdpa));
    // SAFETY: queries of the next layer on its new device; each pointer
    // has the type its name says.
    unsafe {
        n.semaphore_fd = gdpa(made, c"vkGetSemaphoreFdKHR".as_ptr())
            .map(|f| std::mem::transmute(f))
            .or(n.semaphore_fd);
        n.create_semaphore = gdpa(made, c"vkCreateSemaphore".as_ptr())
            .map(|f| std::mem::transmute(f))
            .or(n.create_semaphore);
    }
    vk::Result::SUCCESS
}

unsafe extern "system" fn destroy_device(
    device: vk::Device,
    allocator: *const vk::AllocationCallbacks<'_>,
) {
    let gdpa = {
        let mut n = next();
        let found = n.devices.iter().position(|(d, _)| *d == device);
        found.map(|at| n.devices.remove(at).1)
    };
    if let Some(gdpa) = gdpa {
        // SAFETY: the next layer's vkDestroyDevice for its device.
        if let Some(f) = unsafe { gdpa(device, c"vkDestroyDevice".as_ptr()) } {
            // SAFETY: the pointer the next layer gave for that name.
            let destroy: vk::PFN_vkDestroyDevice = unsafe { std::mem::transmute(f) };
            // SAFETY: the caller's arguments, passed on.
            unsafe { destroy(device, allocator) };
        }
    }
    eprintln!(
        "hide-sync-fd: {} semaphore property queries answered without SYNC_FD export, {} SYNC_FD exports refused, {} semaphores created SYNC_FD-exportable",
        HIDDEN.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
        EXPORTABLE_ASKED.load(Ordering::Relaxed),
    );
}

unsafe extern "system" fn semaphore_properties(
    physical_device: vk::PhysicalDevice,
    info: *const vk::PhysicalDeviceExternalSemaphoreInfo<'_>,
    properties: *mut vk::ExternalSemaphoreProperties<'_>,
) {
    let Some(below) = next().semaphore_properties else {
        return;
    };
    // SAFETY: the caller's arguments, passed on.
    unsafe { below(physical_device, info, properties) };
    // SAFETY: the caller's structs, valid for this call.
    let (Some(info), Some(p)) = (unsafe { info.as_ref() }, unsafe { properties.as_mut() }) else {
        return;
    };
    let sync_fd = vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD;
    p.export_from_imported_handle_types &= !sync_fd;
    p.compatible_handle_types &= !sync_fd;
    if info.handle_type == sync_fd {
        p.external_semaphore_features &= !vk::ExternalSemaphoreFeatureFlags::EXPORTABLE;
        HIDDEN.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe extern "system" fn get_semaphore_fd(
    device: vk::Device,
    info: *const vk::SemaphoreGetFdInfoKHR<'_>,
    fd: *mut i32,
) -> vk::Result {
    // SAFETY: the caller's struct, valid for this call.
    let asked = unsafe { info.as_ref() }.map(|i| i.handle_type);
    if asked == Some(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD) {
        REFUSED.fetch_add(1, Ordering::Relaxed);
        return vk::Result::ERROR_TOO_MANY_OBJECTS;
    }
    let Some(below) = next().semaphore_fd else {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    };
    // SAFETY: the caller's arguments, passed on.
    unsafe { below(device, info, fd) }
}

unsafe extern "system" fn create_semaphore(
    device: vk::Device,
    info: *const vk::SemaphoreCreateInfo<'_>,
    allocator: *const vk::AllocationCallbacks<'_>,
    semaphore: *mut vk::Semaphore,
) -> vk::Result {
    // SAFETY: the caller's create info and its pNext chain, valid for
    // this call.
    unsafe {
        let mut node = info.as_ref().map_or(std::ptr::null(), |i| i.p_next);
        while let Some(base) = node.cast::<vk::BaseInStructure<'_>>().as_ref() {
            if base.s_type == vk::StructureType::EXPORT_SEMAPHORE_CREATE_INFO {
                let export = &*node.cast::<vk::ExportSemaphoreCreateInfo<'_>>();
                if export
                    .handle_types
                    .contains(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD)
                {
                    EXPORTABLE_ASKED.fetch_add(1, Ordering::Relaxed);
                }
            }
            node = base.p_next.cast();
        }
    }
    let Some(below) = next().create_semaphore else {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    };
    // SAFETY: the caller's arguments, passed on.
    unsafe { below(device, info, allocator, semaphore) }
}

/// The driver's device extensions, without `VK_EXT_external_memory_dma_buf`
/// when `SYNCFILE_TEST_HIDE_DMA_BUF=1`.
unsafe extern "system" fn device_extensions(
    physical_device: vk::PhysicalDevice,
    layer_name: *const c_char,
    count: *mut u32,
    properties: *mut vk::ExtensionProperties,
) -> vk::Result {
    let Some(below) = next().device_extensions else {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    };
    let hide = std::env::var("SYNCFILE_TEST_HIDE_DMA_BUF").is_ok_and(|v| v == "1");
    if !hide || !layer_name.is_null() {
        // SAFETY: the caller's arguments, passed on.
        return unsafe { below(physical_device, layer_name, count, properties) };
    }
    let mut n = 0;
    // SAFETY: a count query of the driver's extensions.
    let r = unsafe { below(physical_device, layer_name, &mut n, std::ptr::null_mut()) };
    if r != vk::Result::SUCCESS {
        return r;
    }
    let mut all = vec![vk::ExtensionProperties::default(); n as usize];
    // SAFETY: room for the `n` extensions just counted.
    let r = unsafe { below(physical_device, layer_name, &mut n, all.as_mut_ptr()) };
    if r != vk::Result::SUCCESS {
        return r;
    }
    all.truncate(n as usize);
    all.retain(|e| e.extension_name_as_c_str() != Ok(ash::ext::external_memory_dma_buf::NAME));
    // SAFETY: the caller's count, valid for this call.
    let Some(count) = (unsafe { count.as_mut() }) else {
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    };
    if properties.is_null() {
        *count = all.len() as u32;
        return vk::Result::SUCCESS;
    }
    let fits = (*count as usize).min(all.len());
    // SAFETY: the caller's array has room for `*count` entries.
    unsafe { std::ptr::copy_nonoverlapping(all.as_ptr(), properties, fits) };
    *count = fits as u32;
    if fits < all.len() {
        vk::Result::INCOMPLETE
    } else {
        vk::Result::SUCCESS
    }
}
