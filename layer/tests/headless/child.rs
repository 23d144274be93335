//! The Vulkan programs the tests run in child processes (see
//! `common::Scratch::child`). Each prints one JSON line as its result; the
//! parent (`tests.rs`) judges it.

use std::time::{Duration, Instant};

use ash::vk;
use serde_json::{json, Value};

use crate::client::{mode_name, parse_mode, Chain, Options, Vk, ALL_MODES};
use crate::common::child::Result;
use crate::common::validation::{leak_a_semaphore, validation_errors};
use crate::fds;
use crate::messenger::excused_errors;

/// The scenario's parameter (a present mode, a count), if it takes one.
pub const PARAM: &str = "SYNCFILE_TEST_PARAM";

/// Small images: the guest renders on an emulated CPU.
const SIZE: u32 = 64;

pub fn run(scenario: &str) -> Result<Value> {
    match scenario {
        "frames" => frames(),
        "validation" => validation(),
        "acquire_waits" => crate::held::acquire_waits(),
        "timeouts" => timeouts(),
        "leaks" => leaks(),
        "soak" => crate::soak::child(),
        "descriptors" => crate::exhaustion::child(),
        "host_memory" => crate::host_memory::child(),
        "bad_create_infos" => crate::create_infos::child(),
        "objects" => crate::objects::objects(),
        "refused" => crate::objects::refused(),
        "refusable" => crate::objects::refusable(),
        "device_with_live_swapchain" => crate::lifetimes::device_with_live_swapchain(),
        "instance_with_live_surface" => crate::lifetimes::instance_with_live_surface(),
        "fork" => crate::lifetimes::fork(),
        "unfinished" => crate::lifetimes::unfinished(),
        "modern" => crate::modern::modern(),
        "display_held" => crate::display::held_frame(),
        "x11_frames" => {
            let p = param()?;
            let (mode, n) = p.split_once(':').ok_or("PARAM is MODE:N")?;
            crate::x11::frames(parse_mode(mode)?, n.parse()?)
        }
        "x11_held" => crate::x11::held(),
        "export_refused" => crate::faults::export_refused_child(),
        "x11_until_lost" => crate::x11::until_lost(),
        "x11_resized" => crate::x11::resized(),
        other => Err(format!("unknown scenario {other}").into()),
    }
}

fn param() -> Result<String> {
    std::env::var(PARAM).map_err(|_| format!("{PARAM} is not set").into())
}

/// `PARAM` = `MODE:N`: N frames in that present mode.
fn frames() -> Result<Value> {
    let p = param()?;
    let (mode, n) = p.split_once(':').ok_or("PARAM is MODE:N")?;
    let (mode, n): (_, u32) = (parse_mode(mode)?, n.parse()?);
    let vk = Vk::new(false)?;
    let mut chain = Chain::new(&vk, mode, SIZE, 0, vk::SwapchainKHR::null())?;
    let mut indices = Vec::new();
    for _ in 0..n {
        indices.push(chain.frame()?);
    }
    chain.wait_idle()?;
    let (images, format) = (chain.images.len(), chain.format);
    drop(chain);
    Ok(json!({
        "mode": mode_name(mode),
        "frames": n,
        "images": images,
        "format": format!("{format:?}"),
        "indices": indices,
    }))
}

/// 300 frames in each present mode under a messenger (with `PARAM` =
/// `display`, 120 in each mode a display offers, on a display plane's
/// surface), then one deliberate mistake: the errors before it are the
/// run's, the ones after prove the messenger hears the validation layer.
fn validation() -> Result<Value> {
    let on = std::env::var(PARAM).unwrap_or_default();
    let (display, x11) = (on == "display", on == "x11");
    let vk = Vk::with(&Options {
        messenger: true,
        display,
        x11,
        ..Options::default()
    })?;
    let (modes, frames) = if display || x11 {
        let offered = vk.present_modes()?;
        let modes: Vec<_> = ALL_MODES
            .into_iter()
            .filter(|m| offered.contains(m))
            .collect();
        (modes, 120)
    } else {
        (vk.test_modes()?, 300)
    };
    let features2_missing = vk.modifier_features2_missing(vk::Format::B8G8R8A8_UNORM);
    let mut per_mode = serde_json::Map::new();
    for &mode in &modes {
        let before = validation_errors().0;
        let mut chain = Chain::new(&vk, mode, SIZE, 0, vk::SwapchainKHR::null())?;
        for _ in 0..frames {
            chain.frame()?;
        }
        chain.wait_idle()?;
        drop(chain);
        per_mode.insert(
            mode_name(mode).into(),
            json!(validation_errors().0 - before),
        );
    }
    let (errors, messages) = validation_errors();
    leak_a_semaphore(&vk.device)?;
    drop(vk);
    let (after, all) = validation_errors();
    Ok(json!({
        "errors": errors,
        "frames": frames * modes.len(),
        "per_mode": per_mode,
        "messages": messages,
        "driver_lacks_modifier_features2": features2_missing,
        "excused": excused_errors(),
        "canary_errors": after - errors,
        "canary_messages": all[messages.len()..],
    }))
}

fn result_name(r: std::result::Result<u32, vk::Result>) -> String {
    match r {
        Ok(_) => "SUCCESS".into(),
        Err(e) => format!("{e:?}"),
    }
}

/// For each present mode: acquire every image the swapchain gives with a
/// zero timeout, then with no image left a zero timeout, a finite one and
/// (after presenting them all, so that the consumer releases some) an
/// infinite one, with a fence that must be untouched by the failures.
fn timeouts() -> Result<Value> {
    let vk = Vk::new(false)?;
    let mut out = serde_json::Map::new();
    for mode in vk.test_modes()? {
        out.insert(mode_name(mode).into(), timeouts_in(&vk, mode)?);
    }
    Ok(Value::Object(out))
}

const FINITE: Duration = Duration::from_millis(100);

fn timeouts_in(vk: &Vk, mode: vk::PresentModeKHR) -> Result<Value> {
    let chain = Chain::new(vk, mode, SIZE, 0, vk::SwapchainKHR::null())?;
    let images = chain.images.len();
    let mut held = Vec::new();
    let free = loop {
        let s = vk.semaphore()?;
        match chain.acquire(0, s, vk::Fence::null()) {
            Ok(i) => held.push((i, s)),
            Err(e) => {
                // SAFETY: the failed acquire left the semaphore untouched.
                unsafe { vk.device.destroy_semaphore(s, None) };
                break format!("{e:?}");
            }
        }
        if held.len() > images {
            return Err(format!("acquired more than the {images} images").into());
        }
    };
    let acquired = held.len();
    let (s, f) = (vk.semaphore()?, vk.fence(false)?);
    let zero = result_name(chain.acquire(0, s, f));
    let t = Instant::now();
    let finite = result_name(chain.acquire(FINITE.as_nanos() as u64, s, f));
    let finite_ms = t.elapsed().as_secs_f64() * 1e3;
    // SAFETY: a live fence with no pending signal but the acquires'.
    let untouched = unsafe { vk.device.get_fence_status(f) } == Ok(false);
    for &(i, acquired) in &held {
        chain.submit_clear(i, acquired, vk::Fence::null())?;
        chain.present(i, &[chain.rendered[i as usize]])?;
    }
    let t = Instant::now();
    let infinite = chain.acquire(u64::MAX, s, f);
    let infinite_ms = t.elapsed().as_secs_f64() * 1e3;
    // SAFETY: the fence of the acquire above; bounded so that a broken
    // layer fails the test instead of hanging it.
    let signalled = unsafe { vk.device.wait_for_fences(&[f], true, 10_000_000_000) }.is_ok();
    if let Ok(i) = infinite {
        chain.submit_clear(i, s, vk::Fence::null())?;
        chain.present(i, &[chain.rendered[i as usize]])?;
    }
    chain.wait_idle()?;
    // SAFETY: the device is idle; nothing uses these any more.
    unsafe {
        for (_, acquired) in held.drain(..) {
            vk.device.destroy_semaphore(acquired, None);
        }
        vk.device.destroy_semaphore(s, None);
        vk.device.destroy_fence(f, None);
    }
    Ok(json!({
        "images": images,
        "min_image_count": chain.min_image_count,
        "acquired_with_zero_timeout": acquired,
        "first_refusal": free,
        "zero": zero,
        "finite": finite,
        "finite_ms": finite_ms,
        "fence_untouched_by_failures": untouched,
        "infinite": result_name(infinite),
        "infinite_ms": infinite_ms,
        "fence_signalled": signalled,
    }))
}

/// Open descriptors and resident memory after a warm-up and after 200
/// swapchain create/destroy cycles (each new swapchain replacing the last
/// through `oldSwapchain`) with 25 presents each: 5 000 presents.
fn leaks() -> Result<Value> {
    let vk = Vk::new(false)?;
    let mode = vk.fast_mode()?;
    let cycle = |cycles: u32, presents: u32| -> Result<()> {
        let mut old: Option<Chain> = None;
        for _ in 0..cycles {
            let handle = old
                .as_ref()
                .map_or(vk::SwapchainKHR::null(), |c| c.swapchain);
            let mut chain = Chain::new(&vk, mode, 128, 0, handle)?;
            drop(old.take());
            for _ in 0..presents {
                chain.frame()?;
            }
            old = Some(chain);
        }
        Ok(())
    };
    cycle(10, 25)?;
    let (fds_before, rss_before) = (fds::count()?, fds::vm_rss_kib()?);
    // Resident memory every 50 cycles: a leak grows with the cycles, the
    // allocator's and driver's warm-up levels off.
    let mut rss = vec![rss_before];
    for _ in 0..4 {
        cycle(50, 25)?;
        rss.push(fds::vm_rss_kib()?);
    }
    let (fds_after, rss_after) = (fds::count()?, fds::vm_rss_kib()?);
    Ok(json!({
        "mode": mode_name(mode),
        "cycles": 200,
        "presents": 200 * 25,
        "fds_before": fds_before,
        "fds_after": fds_after,
        "rss_kib_before": rss_before,
        "rss_kib_after": rss_after,
        "rss_kib_every_50_cycles": rss,
    }))
}
