//! Each Vulkan physical device as its driver offers it (the system loader,
//! with this layer kept out of the instance), and whether the layer could
//! own swapchains on it: the layer's own probe answers that.

use std::ffi::{c_void, CStr};

use ash::vk;
use serde_json::{json, Value};
use VkLayer_syncfile_wsi::doctor::{self, Ready};

use crate::report::{row, Mark, Section};

#[derive(Debug, thiserror::Error)]
pub enum VulkanError {
    #[error("the Vulkan loader (libvulkan.so.1) cannot be loaded")]
    NoLoader,
    #[error("{0} failed: {1}")]
    Call(&'static str, vk::Result),
}

/// A physical device and what the layer makes of it.
pub struct Device {
    pub name: String,
    /// The layer's verdict: `Err` says why it leaves the device alone.
    pub support: Result<Ready, String>,
}

/// The system loader's `vkGetInstanceProcAddr`, by `dlopen`: the doctor
/// links no Vulkan library, so it runs (and says so) where none is.
fn loader() -> Result<vk::PFN_vkGetInstanceProcAddr, VulkanError> {
    // SAFETY: a constant, NUL-terminated name; the handle is never closed,
    // so the commands it gives stay valid for the process.
    let lib = unsafe {
        libc::dlopen(
            c"libvulkan.so.1".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        )
    };
    if lib.is_null() {
        return Err(VulkanError::NoLoader);
    }
    // SAFETY: the live handle and a NUL-terminated name.
    let sym: *mut c_void = unsafe { libc::dlsym(lib, c"vkGetInstanceProcAddr".as_ptr()) };
    if sym.is_null() {
        return Err(VulkanError::NoLoader);
    }
    // SAFETY: the loader exports vkGetInstanceProcAddr with this signature.
    Ok(unsafe { std::mem::transmute::<*mut c_void, vk::PFN_vkGetInstanceProcAddr>(sym) })
}

fn has(list: &[vk::ExtensionProperties], name: &CStr) -> bool {
    list.iter().any(|e| e.extension_name_as_c_str() == Ok(name))
}

fn sync_fd_semaphore(
    i: &ash::Instance,
    pd: vk::PhysicalDevice,
) -> vk::ExternalSemaphoreFeatureFlags {
    let info = vk::PhysicalDeviceExternalSemaphoreInfo::default()
        .handle_type(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD);
    let mut props = vk::ExternalSemaphoreProperties::default();
    // SAFETY: a device of the live instance, a Vulkan 1.1 command.
    unsafe { i.get_physical_device_external_semaphore_properties(pd, &info, &mut props) };
    props.external_semaphore_features
}

fn sync_fd_fence(i: &ash::Instance, pd: vk::PhysicalDevice) -> vk::ExternalFenceFeatureFlags {
    let info = vk::PhysicalDeviceExternalFenceInfo::default()
        .handle_type(vk::ExternalFenceHandleTypeFlags::SYNC_FD);
    let mut props = vk::ExternalFenceProperties::default();
    // SAFETY: as above.
    unsafe { i.get_physical_device_external_fence_properties(pd, &info, &mut props) };
    props.external_fence_features
}

fn version_text(v: u32) -> String {
    format!(
        "{}.{}.{}",
        vk::api_version_major(v),
        vk::api_version_minor(v),
        vk::api_version_patch(v)
    )
}

fn export_import(export: bool, import: bool) -> String {
    match (export, import) {
        (true, true) => "export and import".into(),
        (true, false) => "export only".into(),
        (false, true) => "import only".into(),
        (false, false) => "no".into(),
    }
}

/// One device's rows and JSON.
fn describe(
    gipa: vk::PFN_vkGetInstanceProcAddr,
    i: &ash::Instance,
    version: u32,
    pd: vk::PhysicalDevice,
    n: usize,
) -> (Device, Vec<crate::report::Row>, Value) {
    // SAFETY: a device of the live instance.
    let props = unsafe { i.get_physical_device_properties(pd) };
    let name = props
        .device_name_as_c_str()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // SAFETY: as above.
    let exts = unsafe { i.enumerate_device_extension_properties(pd) }.unwrap_or_default();
    let dma_buf = has(&exts, ash::ext::external_memory_dma_buf::NAME);
    let modifiers = has(&exts, ash::ext::image_drm_format_modifier::NAME);
    let sem_fd = has(&exts, ash::khr::external_semaphore_fd::NAME);
    let fence_fd = has(&exts, ash::khr::external_fence_fd::NAME);
    let sem = sync_fd_semaphore(i, pd);
    let fence = sync_fd_fence(i, pd);
    let sem_export = sem_fd && sem.contains(vk::ExternalSemaphoreFeatureFlags::EXPORTABLE);
    let sem_import = sem_fd && sem.contains(vk::ExternalSemaphoreFeatureFlags::IMPORTABLE);
    let fence_export = fence_fd && fence.contains(vk::ExternalFenceFeatureFlags::EXPORTABLE);
    let fence_import = fence_fd && fence.contains(vk::ExternalFenceFeatureFlags::IMPORTABLE);
    // SAFETY: as above.
    let families = unsafe { i.get_physical_device_queue_family_properties(pd) };
    let families_text: Vec<String> = families
        .iter()
        .map(|f| format!("{}x {:?}", f.queue_count, f.queue_flags))
        .collect();
    // SAFETY: the loader's lookup, its live instance and one of its devices.
    let support = unsafe { doctor::device_support(gipa, i, version, pd) };
    let key = |what: &str| format!("[{n}] {what}");
    let rows = vec![
        row(
            key("device"),
            Mark::Info,
            format!(
                "{name} ({:?}, Vulkan {})",
                props.device_type,
                version_text(props.api_version)
            ),
        ),
        row(
            key("dma-buf export"),
            Mark::of(dma_buf),
            if dma_buf {
                "VK_EXT_external_memory_dma_buf"
            } else {
                "no VK_EXT_external_memory_dma_buf"
            },
        ),
        row(
            key("DRM format modifiers"),
            Mark::of(modifiers),
            if modifiers {
                "VK_EXT_image_drm_format_modifier"
            } else {
                "no VK_EXT_image_drm_format_modifier"
            },
        ),
        row(
            key("SYNC_FD semaphores"),
            Mark::of(sem_export && sem_import),
            export_import(sem_export, sem_import),
        ),
        row(
            key("SYNC_FD fences"),
            Mark::of(fence_export && fence_import),
            export_import(fence_export, fence_import),
        ),
        row(key("queue families"), Mark::Info, families_text.join(", ")),
        match &support {
            Ok(r) => row(
                key("layer can own"),
                Mark::Yes,
                format!(
                    "yes: {} formats, semaphore export {}",
                    r.formats.len(),
                    if r.semaphore_export {
                        "yes"
                    } else {
                        "no (present-thread fallback)"
                    }
                ),
            ),
            Err(why) => row(key("layer can own"), Mark::No, format!("no: {why}")),
        },
    ];
    let json = json!({
        "name": name,
        "api_version": version_text(props.api_version),
        "dma_buf_export": dma_buf,
        "drm_format_modifiers": modifiers,
        "sync_fd_semaphore": { "export": sem_export, "import": sem_import },
        "sync_fd_fence": { "export": fence_export, "import": fence_import },
        "queue_families": families.iter().map(|f| json!({ "count": f.queue_count, "flags": format!("{:?}", f.queue_flags) })).collect::<Vec<_>>(),
        "layer": match &support {
            Ok(r) => json!({ "owns": true, "formats": r.formats.iter().map(|f| format!("{f:?}")).collect::<Vec<_>>(), "semaphore_export": r.semaphore_export, "queue_family_foreign": r.queue_family_foreign }),
            Err(why) => json!({ "owns": false, "reason": why }),
        },
    });
    (Device { name, support }, rows, json)
}

/// The devices, on an instance the layer is kept out of (the caller has
/// set `DISABLE_SYNCFILE_WSI` and filtered the layer's name out before).
pub fn check() -> (Vec<Device>, Section) {
    match devices() {
        Ok((devices, rows, json)) => (
            devices,
            Section {
                name: "vulkan",
                rows,
                json: Value::Array(json),
            },
        ),
        Err(e) => (
            Vec::new(),
            Section {
                name: "vulkan",
                rows: vec![row("devices", Mark::No, e.to_string())],
                json: json!({ "error": e.to_string() }),
            },
        ),
    }
}

type Devices = (Vec<Device>, Vec<crate::report::Row>, Vec<Value>);

fn devices() -> Result<Devices, VulkanError> {
    let gipa = loader()?;
    // SAFETY: the loader's own vkGetInstanceProcAddr.
    let entry = unsafe {
        ash::Entry::from_static_fn(ash::StaticFn {
            get_instance_proc_addr: gipa,
        })
    };
    // SAFETY: a global command of the loaded loader.
    let loader_version = unsafe { entry.try_enumerate_instance_version() }
        .map_err(|e| VulkanError::Call("vkEnumerateInstanceVersion", e))?
        .unwrap_or(vk::API_VERSION_1_0);
    if loader_version < vk::API_VERSION_1_1 {
        return Err(VulkanError::Call(
            "the loader's Vulkan 1.1",
            vk::Result::ERROR_INCOMPATIBLE_DRIVER,
        ));
    }
    let version = loader_version.min(vk::API_VERSION_1_3);
    let app = vk::ApplicationInfo::default()
        .application_name(c"syncfile-wsi doctor")
        .api_version(version);
    let info = vk::InstanceCreateInfo::default().application_info(&app);
    // SAFETY: a valid create info that lives across the call.
    let instance = unsafe { entry.create_instance(&info, None) }
        .map_err(|e| VulkanError::Call("vkCreateInstance", e))?;
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    // SAFETY: the live instance.
    let pds = unsafe { instance.enumerate_physical_devices() }.unwrap_or_default();
    if pds.is_empty() {
        out.1.push(row(
            "devices",
            Mark::No,
            "the loader reports no physical device",
        ));
    }
    for (n, pd) in pds.into_iter().enumerate() {
        let (d, rows, json) = describe(gipa, &instance, version, pd, n);
        out.0.push(d);
        out.1.extend(rows);
        out.2.push(json);
    }
    // SAFETY: nothing made on it is alive any more.
    unsafe { instance.destroy_instance(None) };
    Ok(out)
}

/// The system loader's own version (`vkEnumerateInstanceVersion`), if a
/// loader is there.
pub fn loader_version() -> Option<u32> {
    let gipa = loader().ok()?;
    // SAFETY: the loader's own vkGetInstanceProcAddr.
    let entry = unsafe {
        ash::Entry::from_static_fn(ash::StaticFn {
            get_instance_proc_addr: gipa,
        })
    };
    // SAFETY: a global command of the loaded loader.
    unsafe { entry.try_enumerate_instance_version() }
        .ok()
        .map(|v| v.unwrap_or(vk::API_VERSION_1_0))
}
