//! The Vulkan programs the tests run in child processes (see
//! `common::Scratch::child`). Each prints one JSON line as its result.

use ash::vk;
use serde_json::{json, Value};

use crate::common::child::{create_instance, Result};
use crate::common::validation::{self, leak_a_semaphore, validation_errors};

/// Set: `lifecycle` makes one mistake per device, to prove that the
/// validation layer's messages reach the messenger.
pub const CANARY: &str = "SYNCFILE_TEST_CANARY";

pub fn run(scenario: &str) -> Result<Value> {
    match scenario {
        "describe" => describe(),
        "lifecycle" => lifecycle(),
        "app" => app(),
        other => Err(format!("unknown scenario {other}").into()),
    }
}

fn entry() -> Result<ash::Entry> {
    // SAFETY: loading the system's Vulkan loader, as any application does.
    Ok(unsafe { ash::Entry::load()? })
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

/// Instances, devices (two at once, from two threads) and queues created
/// and destroyed under a debug-utils messenger that counts errors.
fn lifecycle() -> Result<Value> {
    let entry = entry()?;
    let mut devices = 0;
    for _ in 0..2 {
        let mut messenger_info = validation::messenger_info(Some(validation::on_message));
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
                        leak_a_semaphore(&device)?;
                    }
                    device.destroy_device(None);
                    devices += 1;
                }
            }
            utils.destroy_debug_utils_messenger(messenger, None);
            instance.destroy_instance(None);
        }
    }
    let (errors, messages) = validation_errors();
    Ok(json!({ "errors": errors, "devices": devices, "messages": messages }))
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
