//! The modern swapchain extensions on the layer's headless swapchains, as
//! an application enabling them uses them: present ids and waits in every
//! mode, present fences, present-mode switching, image release, deferred
//! allocation (`deferred.rs`), display timing, damage and HDR metadata, and the "2" versions of ids and waits.
//!
//! The child records what the spec lets it observe from outside the
//! layer: the driver's fences (the render's, the present's), its own
//! `CLOCK_MONOTONIC` readings around each call, and the results; the
//! parent (`tests.rs`) holds them against the spec. `PARAM` = `2` adds the
//! present id 2 / wait 2 part, which the validation layer of the guest
//! (1.4.309) predates, so it runs without one.

use std::ffi::c_void;
use std::time::Instant;

use ash::vk;
use serde_json::{json, Value};

use crate::client::{mode_name, Chain, Extras, Options, Switch, Vk, ALL_MODES, FIFO_LATEST_READY};
use crate::common::child::Result;
use crate::common::validation::{leak_a_semaphore, validation_errors};
use crate::messenger::excused_errors;

const SIZE: u32 = 64;
/// A wait that must end long before this unless the layer hangs.
const LONG: u64 = 10_000_000_000;

const FIFO_LATEST_READY_FEATURES: vk::StructureType = vk::StructureType::from_raw(1_000_361_000);
const PRESENT_ID_2_FEATURES: vk::StructureType = vk::StructureType::from_raw(1_000_479_002);
const PRESENT_WAIT_2_FEATURES: vk::StructureType = vk::StructureType::from_raw(1_000_480_001);
const PRESENT_WAIT_2_INFO: vk::StructureType = vk::StructureType::from_raw(1_000_480_002);
const CAPS_PRESENT_ID_2: vk::StructureType = vk::StructureType::from_raw(1_000_479_000);
const CAPS_PRESENT_WAIT_2: vk::StructureType = vk::StructureType::from_raw(1_000_480_000);
const CREATE_PRESENT_ID_2: vk::SwapchainCreateFlagsKHR =
    vk::SwapchainCreateFlagsKHR::from_raw(0x40);
const CREATE_PRESENT_WAIT_2: vk::SwapchainCreateFlagsKHR =
    vk::SwapchainCreateFlagsKHR::from_raw(0x80);

/// The registry's one-`VkBool32` structures ash 0.38 lacks.
#[repr(C)]
struct OneBool {
    s_type: vk::StructureType,
    p_next: *mut c_void,
    value: vk::Bool32,
}

#[repr(C)]
struct PresentWait2Info {
    s_type: vk::StructureType,
    p_next: *const c_void,
    present_id: u64,
    timeout: u64,
}

type WaitForPresent2 =
    unsafe extern "system" fn(vk::Device, vk::SwapchainKHR, *const PresentWait2Info) -> vk::Result;

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn name(r: std::result::Result<(), vk::Result>) -> String {
    match r {
        Ok(()) => "SUCCESS".into(),
        Err(e) => format!("{e:?}"),
    }
}

/// The extensions' command tables.
struct Fns {
    wait: ash::khr::present_wait::Device,
    maintenance: ash::ext::swapchain_maintenance1::Device,
    timing: ash::google::display_timing::Device,
    hdr: ash::ext::hdr_metadata::Device,
    caps2: ash::khr::get_surface_capabilities2::Instance,
}

pub fn modern() -> Result<Value> {
    let with2 = std::env::var(crate::child::PARAM).is_ok_and(|p| p == "2");
    let messenger = !with2;
    let mut id = vk::PhysicalDevicePresentIdFeaturesKHR::default().present_id(true);
    let mut wait = vk::PhysicalDevicePresentWaitFeaturesKHR::default().present_wait(true);
    let mut maintenance =
        vk::PhysicalDeviceSwapchainMaintenance1FeaturesEXT::default().swapchain_maintenance1(true);
    let mut id2 = OneBool {
        s_type: PRESENT_ID_2_FEATURES,
        p_next: std::ptr::null_mut(),
        value: vk::TRUE,
    };
    let mut latest_ready = OneBool {
        s_type: FIFO_LATEST_READY_FEATURES,
        p_next: std::ptr::null_mut(),
        value: vk::TRUE,
    };
    let mut wait2 = OneBool {
        s_type: PRESENT_WAIT_2_FEATURES,
        p_next: std::ptr::null_mut(),
        value: vk::TRUE,
    };
    let mut features: Vec<*mut vk::BaseOutStructure<'static>> = vec![
        (&mut id as *mut vk::PhysicalDevicePresentIdFeaturesKHR).cast(),
        (&mut wait as *mut vk::PhysicalDevicePresentWaitFeaturesKHR).cast(),
        (&mut maintenance as *mut vk::PhysicalDeviceSwapchainMaintenance1FeaturesEXT).cast(),
        (&mut latest_ready as *mut OneBool).cast(),
    ];
    let mut device_extensions = vec![
        ash::khr::present_id::NAME,
        ash::khr::present_wait::NAME,
        ash::ext::swapchain_maintenance1::NAME,
        ash::google::display_timing::NAME,
        ash::khr::incremental_present::NAME,
        ash::ext::hdr_metadata::NAME,
        c"VK_EXT_present_mode_fifo_latest_ready",
    ];
    if with2 {
        features.push((&mut id2 as *mut OneBool).cast());
        features.push((&mut wait2 as *mut OneBool).cast());
        device_extensions.extend([c"VK_KHR_present_id2", c"VK_KHR_present_wait2"]);
    }
    let vk = Vk::with(&Options {
        messenger,
        device_extensions: &device_extensions,
        features,
        instance_extensions: &[
            ash::khr::get_surface_capabilities2::NAME,
            ash::ext::surface_maintenance1::NAME,
        ],
        ..Options::default()
    })?;
    let fns = Fns {
        wait: ash::khr::present_wait::Device::new(&vk.instance, &vk.device),
        maintenance: ash::ext::swapchain_maintenance1::Device::new(&vk.instance, &vk.device),
        timing: ash::google::display_timing::Device::new(&vk.instance, &vk.device),
        hdr: ash::ext::hdr_metadata::Device::new(&vk.instance, &vk.device),
        caps2: ash::khr::get_surface_capabilities2::Instance::new(vk.entry(), &vk.instance),
    };
    // First: it decides which of the validation layer's messages about
    // lavapipe's own format features are not counted.
    let features2_missing = vk.modifier_features2_missing(vk::Format::B8G8R8A8_UNORM);
    let offered = vk.present_modes()?;
    let mut out = json!({
        "offered": offered.iter().map(|&m| mode_name(m)).collect::<Vec<_>>(),
        "features": queried_features(&vk),
    });
    let mut modes = serde_json::Map::new();
    for mode in ALL_MODES.into_iter().chain([FIFO_LATEST_READY]) {
        if offered.contains(&mode) {
            modes.insert(mode_name(mode).into(), ids_and_fences(&vk, &fns, mode)?);
        }
    }
    out["modes"] = Value::Object(modes);
    out["switching"] = switching(&vk, &fns)?;
    out["release"] = release(&vk, &fns)?;
    out["deferred"] = crate::deferred::deferred(&vk, &fns.maintenance)?;
    out["timing"] = timing(&vk, &fns)?;
    if with2 {
        out["two"] = two(&vk, &fns)?;
    }
    if messenger {
        let (errors, messages) = validation_errors();
        leak_a_semaphore(&vk.device)?;
        out["errors"] = json!(errors);
        out["messages"] = json!(messages);
        out["excused"] = json!(excused_errors());
        out["driver_lacks_modifier_features2"] = json!(features2_missing);
        drop(vk);
        let (after, _) = validation_errors();
        out["canary_errors"] = json!(after - errors);
    }
    Ok(out)
}

/// The features the physical device reports for the extensions.
fn queried_features(vk: &Vk) -> Value {
    let mut id = vk::PhysicalDevicePresentIdFeaturesKHR::default();
    let mut wait = vk::PhysicalDevicePresentWaitFeaturesKHR::default();
    let mut maintenance = vk::PhysicalDeviceSwapchainMaintenance1FeaturesEXT::default();
    let mut f = vk::PhysicalDeviceFeatures2::default()
        .push_next(&mut id)
        .push_next(&mut wait)
        .push_next(&mut maintenance);
    // SAFETY: a valid output chain on the live physical device.
    unsafe { vk.instance.get_physical_device_features2(vk.pd, &mut f) };
    json!({
        "present_id": id.present_id == vk::TRUE,
        "present_wait": wait.present_wait == vk::TRUE,
        "swapchain_maintenance1": maintenance.swapchain_maintenance1 == vk::TRUE,
    })
}

fn fence_signalled(vk: &Vk, f: vk::Fence) -> bool {
    // SAFETY: a live fence of the device.
    unsafe { vk.device.get_fence_status(f) }.unwrap_or(false)
}

fn destroy_fence(vk: &Vk, f: vk::Fence) {
    // SAFETY: the caller's fence, waited for (or never submitted).
    unsafe { vk.device.destroy_fence(f, None) };
}

/// In `mode`: frames with ids 1..=N and a present fence each, waiting for
/// each; a burst of three without waiting; and waits that cannot succeed.
/// (Waiting on a retired swapchain is the application's error, which the
/// validation layer reports; the history's unit tests cover what the layer
/// then answers.)
fn ids_and_fences(vk: &Vk, fns: &Fns, mode: vk::PresentModeKHR) -> Result<Value> {
    const N: u64 = 6;
    let mut chain = Chain::new(vk, mode, SIZE, 0, vk::SwapchainKHR::null())?;
    let mut frames = Vec::new();
    for k in 1..=N {
        let present_fence = vk.fence(false)?;
        let (_, render) = chain.frame_with(&Extras {
            id: Some(k),
            fence: Some(present_fence),
            ..Extras::default()
        })?;
        // SAFETY: the live swapchain.
        let waited = unsafe { fns.wait.wait_for_present(chain.swapchain, k, LONG) };
        let rendered_at_wait = fence_signalled(vk, render);
        // SAFETY: the application's fence, given to the present.
        let fenced = unsafe { vk.device.wait_for_fences(&[present_fence], true, LONG) };
        let rendered_at_fence = fence_signalled(vk, render);
        destroy_fence(vk, present_fence);
        frames.push(json!({
            "wait": name(waited),
            "rendered_when_wait_returned": rendered_at_wait,
            "present_fence": name(fenced),
            "rendered_when_present_fence_signalled": rendered_at_fence,
        }));
    }
    for k in N + 1..=N + 3 {
        chain.frame_with(&Extras {
            id: Some(k),
            ..Extras::default()
        })?;
    }
    // SAFETY: as above.
    let burst = unsafe {
        (
            fns.wait.wait_for_present(chain.swapchain, N + 1, LONG),
            fns.wait.wait_for_present(chain.swapchain, N + 3, LONG),
        )
    };
    // SAFETY: as above.
    let never_zero = unsafe { fns.wait.wait_for_present(chain.swapchain, N + 100, 0) };
    let start = Instant::now();
    // SAFETY: as above.
    let never_finite = unsafe {
        fns.wait
            .wait_for_present(chain.swapchain, N + 100, 30_000_000)
    };
    let finite_ms = start.elapsed().as_secs_f64() * 1e3;
    chain.wait_idle()?;
    Ok(json!({
        "frames": frames,
        "burst_first": name(burst.0),
        "burst_last": name(burst.1),
        "never_zero": name(never_zero),
        "never_finite": name(never_finite),
        "never_finite_ms": finite_ms,
    }))
}

/// A swapchain made for every offered mode, starting in IMMEDIATE: the
/// compatibility query, then IMMEDIATE frames, FIFO frames (paced by the
/// virtual refresh), MAILBOX and FIFO latest-ready ones, each waited for.
fn switching(vk: &Vk, fns: &Fns) -> Result<Value> {
    let offered = vk.present_modes()?;
    let mut mode_info = vk::SurfacePresentModeEXT::default().present_mode(vk::PresentModeKHR::FIFO);
    let mut compatible = [vk::PresentModeKHR::default(); 8];
    let mut compat =
        vk::SurfacePresentModeCompatibilityEXT::default().present_modes(&mut compatible);
    let info = vk::PhysicalDeviceSurfaceInfo2KHR::default()
        .surface(vk.surface)
        .push_next(&mut mode_info);
    let mut caps = vk::SurfaceCapabilities2KHR::default().push_next(&mut compat);
    // SAFETY: valid structures on the live physical device and surface.
    unsafe {
        fns.caps2
            .get_physical_device_surface_capabilities2(vk.pd, &info, &mut caps)?
    };
    let n = compat.present_mode_count as usize;
    let compatible: Vec<&str> = compatible[..n].iter().map(|&m| mode_name(m)).collect();

    let switch = Switch {
        modes: &offered,
        flags: vk::SwapchainCreateFlagsKHR::empty(),
        ..Switch::default()
    };
    let mut chain = Chain::create(
        vk,
        vk::PresentModeKHR::IMMEDIATE,
        SIZE,
        0,
        vk::SwapchainKHR::null(),
        &switch,
    )?;
    let mut id = 0;
    let mut run =
        |chain: &mut Chain<'_>, mode: vk::PresentModeKHR, frames: u32| -> Result<(String, u64)> {
            let before = now_ns();
            let mut last = "SUCCESS".to_string();
            for _ in 0..frames {
                id += 1;
                chain.frame_with(&Extras {
                    id: Some(id),
                    mode: Some(mode),
                    ..Extras::default()
                })?;
                // SAFETY: the live swapchain.
                last = name(unsafe { fns.wait.wait_for_present(chain.swapchain, id, LONG) });
            }
            Ok((last, now_ns() - before))
        };
    let mut phases = serde_json::Map::new();
    for mode in [
        vk::PresentModeKHR::IMMEDIATE,
        vk::PresentModeKHR::FIFO,
        vk::PresentModeKHR::MAILBOX,
        FIFO_LATEST_READY,
        vk::PresentModeKHR::FIFO_RELAXED,
    ] {
        if offered.contains(&mode) {
            let (wait, ns) = run(&mut chain, mode, 5)?;
            phases.insert(
                mode_name(mode).into(),
                json!({ "frames": 5, "last_wait": wait, "ns": ns }),
            );
        }
    }
    chain.wait_idle()?;
    Ok(json!({ "compatible_with_fifo": compatible, "phases": phases }))
}

/// Acquires every image it can (fences, no semaphores), releases one
/// unpresented, and acquires again.
fn release(vk: &Vk, fns: &Fns) -> Result<Value> {
    let chain = Chain::new(
        vk,
        vk::PresentModeKHR::IMMEDIATE,
        SIZE,
        0,
        vk::SwapchainKHR::null(),
    )?;
    let mut held = Vec::new();
    let refusal = loop {
        let f = vk.fence(false)?;
        match chain.acquire(0, vk::Semaphore::null(), f) {
            Ok(i) => {
                // SAFETY: the acquire's fence.
                unsafe { vk.device.wait_for_fences(&[f], true, LONG)? };
                held.push(i);
                destroy_fence(vk, f);
            }
            Err(e) => {
                destroy_fence(vk, f);
                break format!("{e:?}");
            }
        }
        if held.len() > chain.images.len() {
            break "more images than the swapchain has".into();
        }
    };
    let released = held[0];
    let indices = [released];
    let info = vk::ReleaseSwapchainImagesInfoEXT::default()
        .swapchain(chain.swapchain)
        .image_indices(&indices);
    // SAFETY: an acquired image, not in use by the device.
    let r = name(unsafe { fns.maintenance.release_swapchain_images(&info) });
    let f = vk.fence(false)?;
    let again = chain.acquire(0, vk::Semaphore::null(), f);
    if again.is_ok() {
        // SAFETY: the acquire's fence.
        unsafe { vk.device.wait_for_fences(&[f], true, LONG)? };
    }
    destroy_fence(vk, f);
    // Every image held now goes back at once.
    let mut all: Vec<u32> = held.iter().copied().filter(|&i| i != released).collect();
    all.extend(again.ok());
    let info = vk::ReleaseSwapchainImagesInfoEXT::default()
        .swapchain(chain.swapchain)
        .image_indices(&all);
    // SAFETY: as above.
    let r_all = name(unsafe { fns.maintenance.release_swapchain_images(&info) });
    Ok(json!({
        "images": chain.images.len(),
        "held": held.len(),
        "refusal": refusal,
        "released": released,
        "release": r,
        "reacquired": again.map_err(|e| format!("{e:?}")).map(|i| i as i64).unwrap_or(-1),
        "release_all": r_all,
    }))
}

/// Display timing in FIFO: the refresh, and a frame held back to a desired
/// time 150 ms out, among frames without one; then HDR metadata and damage
/// on the same swapchain.
fn timing(vk: &Vk, fns: &Fns) -> Result<Value> {
    let mut chain = Chain::new(
        vk,
        vk::PresentModeKHR::FIFO,
        SIZE,
        0,
        vk::SwapchainKHR::null(),
    )?;
    // SAFETY: the live swapchain.
    let refresh = unsafe { fns.timing.get_refresh_cycle_duration(chain.swapchain)? };
    let mut presented = Vec::new();
    for k in 1..=4u32 {
        let before = now_ns();
        let desired = if k == 3 { before + 150_000_000 } else { 0 };
        chain.frame_with(&Extras {
            id: Some(k.into()),
            time: Some(vk::PresentTimeGOOGLE {
                present_id: k,
                desired_present_time: desired,
            }),
            ..Extras::default()
        })?;
        // SAFETY: as above.
        let w = name(unsafe { fns.wait.wait_for_present(chain.swapchain, k.into(), LONG) });
        presented.push(
            json!({ "id": k, "before": before, "desired": desired, "after": now_ns(), "wait": w }),
        );
    }
    // SAFETY: as above.
    let past = unsafe { fns.timing.get_past_presentation_timing(chain.swapchain)? };
    // SAFETY: as above; read once, they are gone.
    let again = unsafe { fns.timing.get_past_presentation_timing(chain.swapchain)? };
    let metadata = vk::HdrMetadataEXT::default()
        .max_luminance(1000.0)
        .min_luminance(0.01)
        .white_point(vk::XYColorEXT {
            x: 0.3127,
            y: 0.329,
        });
    // SAFETY: the live swapchain and valid metadata.
    unsafe { fns.hdr.set_hdr_metadata(&[chain.swapchain], &[metadata]) };
    chain.frame_with(&Extras {
        damage: Some(vk::RectLayerKHR {
            offset: vk::Offset2D { x: 8, y: 8 },
            extent: vk::Extent2D {
                width: 16,
                height: 16,
            },
            layer: 0,
        }),
        ..Extras::default()
    })?;
    chain.wait_idle()?;
    Ok(json!({
        "refresh_ns": refresh.refresh_duration,
        "presented": presented,
        "past": past.iter().map(|p| json!({
            "id": p.present_id,
            "desired": p.desired_present_time,
            "actual": p.actual_present_time,
        })).collect::<Vec<_>>(),
        "past_again": again.len(),
    }))
}

/// Present id 2 and wait 2: the surface's capabilities, then a swapchain
/// made for them, presenting with `VkPresentId2KHR` and waiting with
/// `vkWaitForPresent2KHR`.
fn two(vk: &Vk, fns: &Fns) -> Result<Value> {
    let mut id_caps = OneBool {
        s_type: CAPS_PRESENT_ID_2,
        p_next: std::ptr::null_mut(),
        value: vk::FALSE,
    };
    let mut wait_caps = OneBool {
        s_type: CAPS_PRESENT_WAIT_2,
        p_next: (&mut id_caps as *mut OneBool).cast(),
        value: vk::FALSE,
    };
    let info = vk::PhysicalDeviceSurfaceInfo2KHR::default().surface(vk.surface);
    let mut caps = vk::SurfaceCapabilities2KHR {
        p_next: (&mut wait_caps as *mut OneBool).cast(),
        ..Default::default()
    };
    // SAFETY: a valid output chain on the live physical device and surface.
    unsafe {
        fns.caps2
            .get_physical_device_surface_capabilities2(vk.pd, &info, &mut caps)?
    };
    // SAFETY: the loader's vkGetDeviceProcAddr for a command of an enabled
    // extension; the pointer is of that command's type.
    let wait2: WaitForPresent2 = unsafe {
        let f = vk
            .instance
            .get_device_proc_addr(vk.device.handle(), c"vkWaitForPresent2KHR".as_ptr())
            .ok_or("no vkWaitForPresent2KHR")?;
        std::mem::transmute::<unsafe extern "system" fn(), WaitForPresent2>(f)
    };
    let switch = Switch {
        modes: &[],
        flags: CREATE_PRESENT_ID_2 | CREATE_PRESENT_WAIT_2,
        ..Switch::default()
    };
    let mut chain = Chain::create(
        vk,
        vk::PresentModeKHR::FIFO,
        SIZE,
        0,
        vk::SwapchainKHR::null(),
        &switch,
    )?;
    let mut waits = Vec::new();
    for k in 1..=3u64 {
        let (_, render) = chain.frame_with(&Extras {
            id: Some(k),
            id2: true,
            ..Extras::default()
        })?;
        let w = PresentWait2Info {
            s_type: PRESENT_WAIT_2_INFO,
            p_next: std::ptr::null(),
            present_id: k,
            timeout: LONG,
        };
        // SAFETY: the live swapchain and a valid wait info.
        let r = unsafe { wait2(vk.device.handle(), chain.swapchain, &w) };
        waits.push(json!({ "wait": format!("{r:?}"), "rendered": fence_signalled(vk, render) }));
    }
    let never = PresentWait2Info {
        s_type: PRESENT_WAIT_2_INFO,
        p_next: std::ptr::null(),
        present_id: 100,
        timeout: 0,
    };
    // SAFETY: as above.
    let r = unsafe { wait2(vk.device.handle(), chain.swapchain, &never) };
    chain.wait_idle()?;
    Ok(json!({
        "caps_present_id2": id_caps.value == vk::TRUE,
        "caps_present_wait2": wait_caps.value == vk::TRUE,
        "waits": waits,
        "never_zero": format!("{r:?}"),
    }))
}
