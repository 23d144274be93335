//! What `syncfile-wsi doctor` asks of the layer: its own settings, probes
//! and rules, reached through the rlib, so that the report says what the
//! layer would do rather than restating it.

use std::ffi::CStr;
use std::path::PathBuf;

use ash::vk;

pub use crate::platform::wayland::{explicit as wayland_explicit, serves as wayland_serves};
pub use crate::platform::x11::server as x11;
pub use crate::plumbing::settings::{self, Platform, Settings, StatsSink, SyncMode};
pub use crate::plumbing::stats::Fallback;
pub use crate::wsi::swapchain::sync_path;

use crate::platform::display;
use crate::vulkan::caps::PhysicalDeviceFns;
use crate::vulkan::support::{self, Support};
use crate::vulkan::Next;

/// The settings the layer would read in an application called `exe`
/// (in this process when `None`) with this environment, and its warnings.
pub fn settings(exe: Option<&str>) -> (Settings, Vec<String>) {
    match exe {
        Some(name) => Settings::for_executable(Some(name)),
        None => Settings::from_process(),
    }
}

/// What the layer found a physical device to offer its swapchains.
#[derive(Clone, Debug)]
pub struct Ready {
    /// The surface formats it would offer, in order of preference.
    pub formats: Vec<vk::Format>,
    /// SYNC_FD semaphore export: without it, presents take a fallback.
    pub semaphore_export: bool,
    /// VK_EXT_queue_family_foreign, which names a dma-buf's consumer.
    pub queue_family_foreign: bool,
}

/// Whether the layer can own swapchains on `pd`, and if not, why: the
/// layer's own probe (`vulkan::support`), on an instance made without it.
///
/// # Safety
/// `get_instance_proc_addr` is the loader's, `instance` a live instance of
/// Vulkan 1.1 or later made through it, and `pd` one of its devices.
pub unsafe fn device_support(
    get_instance_proc_addr: vk::PFN_vkGetInstanceProcAddr,
    instance: &ash::Instance,
    api_version: u32,
    pd: vk::PhysicalDevice,
) -> Result<Ready, String> {
    let handle = instance.handle();
    let lookup = |name: &CStr| {
        // SAFETY: the caller's live instance and its loader's lookup.
        unsafe { get_instance_proc_addr(handle, name.as_ptr()) }
    };
    let pd_fns = PhysicalDeviceFns::load(false, &Next(&lookup));
    let probe = support::Instance {
        fns: instance,
        api_version,
        has_1_0_additions: false,
        pd_fns: pd_fns.as_ref(),
    };
    match Support::probe(&probe, pd) {
        Support::Ready {
            caps,
            queue_family_foreign,
            ..
        } => Ok(Ready {
            formats: caps.formats.iter().map(|f| f.vk).collect(),
            semaphore_export: caps.semaphore_export,
            queue_family_foreign,
        }),
        Support::Missing(why) => Err(why),
    }
}

/// A KMS output the display platform would offer as a display.
#[derive(Clone, Debug)]
pub struct Output {
    pub card: PathBuf,
    /// The connector's name (`Virtual-1`).
    pub name: String,
    /// Its preferred (first) mode, `WIDTHxHEIGHT@mHz`.
    pub mode: Option<(u32, u32, u32)>,
}

/// The outputs the display platform finds with `settings`, as it finds
/// them (connected connectors of atomic-capable cards).
pub fn outputs(settings: &Settings) -> Vec<Output> {
    display::outputs(settings)
        .displays
        .iter()
        .map(|d| Output {
            card: d.card.clone(),
            name: d.name.to_string_lossy().into_owned(),
            mode: d.modes().first().map(|m| {
                let e = m.extent();
                (e.width, e.height, m.refresh_mhz)
            }),
        })
        .collect()
}
