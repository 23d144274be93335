//! The Vulkan programs the tests run in child processes (this same binary
//! with `SYNCFILE_WSI_TEST_CHILD=<scenario>`), so that each run gets its own
//! environment and loader, and a crash cannot take the test runner with it.
//! Each prints one JSON line as its result.

use std::ffi::{c_void, CStr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ash::vk;
use serde_json::{json, Value};

/// Layers the child enables in its own `VkInstanceCreateInfo`.
pub const APP_LAYERS: &str = "SYNCFILE_TEST_APP_LAYERS";

/// Set: `lifecycle` makes one mistake per device, to prove that the
/// validation layer's messages reach the messenger.
pub const CANARY: &str = "SYNCFILE_TEST_CANARY";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub fn run(scenario: &str) -> ExitCode {
    let result = match scenario {
        "describe" => describe(),
        "lifecycle" => lifecycle(),
        "app" => app(),
        other => Err(format!("unknown scenario {other}").into()),
    };
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("child {scenario}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn entry() -> Result<ash::Entry> {
    // SAFETY: loading the system's Vulkan loader, as any application does.
    Ok(unsafe { ash::Entry::load()? })
}

fn create_instance(
    entry: &ash::Entry,
    extensions: &[&CStr],
    p_next: Option<&mut vk::DebugUtilsMessengerCreateInfoEXT<'_>>,
) -> std::result::Result<ash::Instance, vk::Result> {
    let app = vk::ApplicationInfo::default()
        .application_name(c"syncfile-wsi-test")
        .api_version(vk::API_VERSION_1_1);
    let names: Vec<_> = extensions.iter().map(|e| e.as_ptr()).collect();
    // Layers the application itself enables, for tests that need them
    // chained differently from those in VK_INSTANCE_LAYERS.
    let layers: Vec<std::ffi::CString> = std::env::var(APP_LAYERS)
        .unwrap_or_default()
        .split(':')
        .filter(|l| !l.is_empty())
        .filter_map(|l| std::ffi::CString::new(l).ok())
        .collect();
    let layer_names: Vec<_> = layers.iter().map(|l| l.as_ptr()).collect();
    let mut info = vk::InstanceCreateInfo::default()
        .application_info(&app)
        .enabled_layer_names(&layer_names)
        .enabled_extension_names(&names);
    if let Some(n) = p_next {
        info = info.push_next(n);
    }
    // SAFETY: a valid create info.
    unsafe { entry.create_instance(&info, None) }
}

pub fn count_devices(entry: &ash::Entry) -> Result<usize> {
    let instance = create_instance(entry, &[], None)?;
    // SAFETY: a live instance, destroyed right after.
    let n = unsafe { instance.enumerate_physical_devices() }.map(|d| d.len());
    // SAFETY: as above.
    unsafe { instance.destroy_instance(None) };
    Ok(n?)
}

fn names(list: &[vk::ExtensionProperties]) -> Vec<String> {
    let mut v: Vec<String> = list
        .iter()
        .filter_map(|e| {
            Some(
                e.extension_name_as_c_str()
                    .ok()?
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// A device with one queue of every family.
fn create_device(
    instance: &ash::Instance,
    pd: vk::PhysicalDevice,
) -> std::result::Result<ash::Device, vk::Result> {
    // SAFETY: pd belongs to the live instance.
    let families = unsafe { instance.get_physical_device_queue_family_properties(pd) };
    let priorities = [1.0f32];
    let queues: Vec<_> = (0..families.len() as u32)
        .map(|f| {
            vk::DeviceQueueCreateInfo::default()
                .queue_family_index(f)
                .queue_priorities(&priorities)
        })
        .collect();
    let info = vk::DeviceCreateInfo::default().queue_create_infos(&queues);
    // SAFETY: a valid create info for this physical device.
    unsafe { instance.create_device(pd, &info, None) }
}

/// What an application sees of the devices: properties, features, memory,
/// queue families and extensions; then a device, its queues and whether a
/// command of an extension it did not enable is withheld.
fn describe() -> Result<Value> {
    let entry = entry()?;
    // SAFETY: global queries.
    let instance_extensions =
        names(&unsafe { entry.enumerate_instance_extension_properties(None) }?);
    let instance = create_instance(&entry, &[], None)?;
    let mut devices = Vec::new();
    // SAFETY: every call below is on the live instance and its physical
    // devices and device, destroyed at the end.
    unsafe {
        for pd in instance.enumerate_physical_devices()? {
            let props = instance.get_physical_device_properties(pd);
            let device = create_device(&instance, pd)?;
            let families = instance.get_physical_device_queue_family_properties(pd);
            let mut queues = 0;
            for f in 0..families.len() as u32 {
                let q = device.get_device_queue(f, 0);
                let q2 = device
                    .get_device_queue2(&vk::DeviceQueueInfo2::default().queue_family_index(f));
                if q != vk::Queue::null() && q == q2 {
                    queues += 1;
                }
            }
            device.device_wait_idle()?;
            let withheld = (instance.fp_v1_0().get_device_proc_addr)(
                device.handle(),
                c"vkGetSemaphoreFdKHR".as_ptr(),
            )
            .is_none();
            device.destroy_device(None);
            devices.push(json!({
                "properties": format!("{props:?}"),
                "features": format!("{:?}", instance.get_physical_device_features(pd)),
                "memory": format!("{:?}", instance.get_physical_device_memory_properties(pd)),
                "queue_families": format!("{families:?}"),
                "format_b8g8r8a8": format!("{:?}", instance.get_physical_device_format_properties(pd, vk::Format::B8G8R8A8_UNORM)),
                "extensions": names(&instance.enumerate_device_extension_properties(pd)?),
                "api_version": props.api_version,
                "queues_retrieved": queues,
                "semaphore_fd_withheld": withheld,
            }));
        }
        instance.destroy_instance(None);
    }
    Ok(json!({ "instance_extensions": instance_extensions, "devices": devices }))
}

static ERRORS: AtomicUsize = AtomicUsize::new(0);
static MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

unsafe extern "system" fn on_message(
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    _types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    _user: *mut c_void,
) -> vk::Bool32 {
    if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::ERROR) {
        ERRORS.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: the callback data is valid during the call.
    let text = unsafe { data.as_ref().and_then(|d| d.message_as_c_str()) }
        .map(|m| m.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Ok(mut m) = MESSAGES.lock() {
        m.push(format!("{severity:?}: {text}"));
    }
    vk::FALSE
}

/// Instances, devices (two at once, from two threads) and queues created
/// and destroyed under a debug-utils messenger that counts errors.
fn lifecycle() -> Result<Value> {
    let entry = entry()?;
    let mut devices = 0;
    for _ in 0..2 {
        let mut messenger_info = vk::DebugUtilsMessengerCreateInfoEXT::default()
            .message_severity(
                vk::DebugUtilsMessageSeverityFlagsEXT::ERROR
                    | vk::DebugUtilsMessageSeverityFlagsEXT::WARNING,
            )
            .message_type(
                vk::DebugUtilsMessageTypeFlagsEXT::GENERAL
                    | vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION
                    | vk::DebugUtilsMessageTypeFlagsEXT::PERFORMANCE,
            )
            .pfn_user_callback(Some(on_message));
        let instance = create_instance(
            &entry,
            &[ash::ext::debug_utils::NAME],
            Some(&mut messenger_info),
        )?;
        let utils = ash::ext::debug_utils::Instance::new(&entry, &instance);
        // SAFETY: the live instance, its physical devices and devices, all
        // destroyed before it.
        unsafe {
            let messenger = utils.create_debug_utils_messenger(&messenger_info, None)?;
            for pd in instance.enumerate_physical_devices()? {
                let made: Vec<std::result::Result<ash::Device, vk::Result>> =
                    std::thread::scope(|s| {
                        let workers: Vec<_> = (0..2)
                            .map(|_| s.spawn(|| create_device(&instance, pd)))
                            .collect();
                        workers
                            .into_iter()
                            .map(|w| w.join().unwrap_or(Err(vk::Result::ERROR_UNKNOWN)))
                            .collect()
                    });
                let families = instance.get_physical_device_queue_family_properties(pd);
                for device in made {
                    let device = device?;
                    for f in 0..families.len() as u32 {
                        let q = device.get_device_queue(f, 0);
                        device.queue_wait_idle(q)?;
                        let _ = device.get_device_queue2(
                            &vk::DeviceQueueInfo2::default().queue_family_index(f),
                        );
                    }
                    if std::env::var_os(CANARY).is_some() {
                        // Left alive on purpose: validation must report it.
                        device.create_semaphore(&vk::SemaphoreCreateInfo::default(), None)?;
                    }
                    device.destroy_device(None);
                    devices += 1;
                }
            }
            utils.destroy_debug_utils_messenger(messenger, None);
            instance.destroy_instance(None);
        }
    }
    let messages = MESSAGES.lock().map(|m| m.clone()).unwrap_or_default();
    Ok(
        json!({ "errors": ERRORS.load(Ordering::Relaxed), "devices": devices, "messages": messages }),
    )
}

/// Every step an application takes, each result recorded rather than
/// stopping at the first failure, under whatever fault the parent injected.
fn app() -> Result<Value> {
    let entry = entry()?;
    let instance = match create_instance(&entry, &[], None) {
        Ok(i) => i,
        Err(e) => {
            let second = count_devices(&entry).is_ok();
            return Ok(json!({ "instance": format!("{e:?}"), "second_instance": second }));
        }
    };
    let mut out = json!({ "instance": "SUCCESS" });
    // SAFETY: the live instance and what is made from it, destroyed in order.
    unsafe {
        let pd = instance.enumerate_physical_devices()?[0];
        match create_device(&instance, pd) {
            Ok(device) => {
                out["device"] = json!("SUCCESS");
                let q = device.get_device_queue(0, 0);
                out["queue"] = json!(q != vk::Queue::null());
                if q != vk::Queue::null() {
                    out["queue_wait_idle"] =
                        json!(format!("{:?}", device.queue_wait_idle(q).err()));
                }
                device.destroy_device(None);
            }
            Err(e) => out["device"] = json!(format!("{e:?}")),
        }
        instance.destroy_instance(None);
    }
    // Still alive, and Vulkan still works in this process.
    out["second_instance"] = json!(count_devices(&entry).is_ok());
    Ok(out)
}
