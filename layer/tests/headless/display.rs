//! The child's side of the display tests: a display plane's surface on the
//! first display (as vkcube finds one), and the frame the kernel must hold
//! back while a foreign write fence in the image's dma-buf is pending.

use std::time::{Duration, Instant};

use ash::vk;
use serde_json::{json, Value};

use crate::client::{Chain, Extras, Options, Vk};
use crate::common::child::Result;
use crate::fds;

/// How long the test leaves the foreign fence pending after the present:
/// far longer than a flip that did not wait takes.
const PENDING: Duration = Duration::from_millis(500);
/// The held frame's `VkPresentTimeGOOGLE` id.
const HELD_ID: u32 = 77;

/// A surface on the first display, in its first mode, on the first plane
/// that can show it, opaque and untransformed.
pub fn plane_surface(entry: &ash::Entry, instance: &ash::Instance) -> Result<vk::SurfaceKHR> {
    let d = ash::khr::display::Instance::new(entry, instance);
    // SAFETY: queries on the live instance; the surface is the caller's
    // to destroy.
    unsafe {
        for pd in instance.enumerate_physical_devices()? {
            let Some(display) = d
                .get_physical_device_display_properties(pd)?
                .first()
                .copied()
            else {
                continue;
            };
            let mode = *d
                .get_display_mode_properties(pd, display.display)?
                .first()
                .ok_or("the display has no mode")?;
            let planes = d.get_physical_device_display_plane_properties(pd)?;
            let mut index = None;
            for i in 0..planes.len() as u32 {
                if d.get_display_plane_supported_displays(pd, i)?
                    .contains(&display.display)
                {
                    index = Some(i);
                    break;
                }
            }
            let index = index.ok_or("no plane can show the display")?;
            let info = vk::DisplaySurfaceCreateInfoKHR::default()
                .display_mode(mode.display_mode)
                .plane_index(index)
                .plane_stack_index(planes[index as usize].current_stack_index)
                .transform(vk::SurfaceTransformFlagsKHR::IDENTITY)
                .global_alpha(1.0)
                .alpha_mode(vk::DisplayPlaneAlphaFlagsKHR::OPAQUE)
                .image_extent(mode.parameters.visible_region);
            return Ok(d.create_display_plane_surface(&info, None)?);
        }
    }
    Err("no physical device has a display".into())
}

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// A few frames on the display; then one whose render is complete but
/// whose image's dma-buf (every one of the layer's dma-bufs, in fact: the
/// layer picks the image) holds a pending vgem write fence, presented; the
/// fence signalled [`PENDING`] later. The layer reports, with the flip
/// event's kernel timestamp, when that frame reached the screen.
pub fn held_frame() -> Result<Value> {
    let vk = Vk::with(&Options {
        display: true,
        device_extensions: &[ash::google::display_timing::NAME],
        ..Options::default()
    })?;
    let timing = ash::google::display_timing::Device::new(&vk.instance, &vk.device);
    let mut chain = Chain::new(
        &vk,
        vk::PresentModeKHR::FIFO,
        0,
        0,
        vk::SwapchainKHR::null(),
    )?;
    for _ in 0..4 {
        chain.frame()?;
    }
    chain.wait_idle()?;
    std::thread::sleep(Duration::from_millis(300));
    let index = chain.render_unpresented()?;
    let (fence, dma_bufs) = fds::fence_every_dma_buf()?;
    let presented = monotonic_ns();
    chain
        .present_with(
            index,
            &[chain.rendered[index as usize]],
            &Extras {
                time: Some(vk::PresentTimeGOOGLE {
                    present_id: HELD_ID,
                    desired_present_time: 0,
                }),
                ..Extras::default()
            },
        )
        .map_err(|e| format!("vkQueuePresentKHR: {e:?}"))?;
    std::thread::sleep(PENDING);
    let signalled = monotonic_ns();
    fence.signal()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut shown = None;
    while shown.is_none() && Instant::now() < deadline {
        // SAFETY: the live swapchain.
        let past = unsafe { timing.get_past_presentation_timing(chain.swapchain)? };
        shown = past
            .iter()
            .find(|t| t.present_id == HELD_ID)
            .map(|t| t.actual_present_time);
        std::thread::sleep(Duration::from_millis(10));
    }
    chain.wait_idle()?;
    drop(chain);
    Ok(json!({
        "dma_bufs": dma_bufs,
        "presented_ns": presented,
        "signalled_ns": signalled,
        "shown_ns": shown,
    }))
}
