//! Surfaces: which ones the layer owns, and who answers the queries about
//! each ([`queries`] has the layer's answers).
//!
//! Surfaces are created by calling down, so that the loader owns the
//! handle (it unwraps it for the drivers); the layer only records, for the
//! surfaces of a platform it serves, what that platform made of it. It
//! answers the queries about an owned surface on the physical devices whose
//! swapchains it can own; everything else is the driver's. The one
//! exception is a surface on a display of the layer's (`VK_KHR_display`
//! over KMS): the layer makes that handle itself, and it never goes down. That is the one
//! ownership decision: a physical device whose device was passed through
//! for an extension the layer refuses is the driver's for every query from
//! then on (`InstanceState::support`).

pub mod queries;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use ash::vk;
use ash::vk::Handle;

use super::platform::PlatformSurface;
use crate::plumbing::stats::{self, Counter};
use crate::vulkan::caps::SwapchainCaps;
use crate::vulkan::instance::{self, InstanceState};
use crate::vulkan::support::Support;

/// A surface the layer owns.
#[derive(Clone)]
pub struct Surface {
    /// The instance it was made on.
    pub instance: vk::Instance,
    pub platform: Arc<dyn PlatformSurface>,
    /// Made by the layer itself (a display plane's surface, on a display
    /// of the layer's): the loader and the driver never saw the handle, so
    /// nothing about it may go down the chain.
    pub layer_made: bool,
}

/// Owned surfaces by handle. Surface commands are not on the frame path, so
/// a lock is fine here.
static SURFACES: LazyLock<Mutex<HashMap<u64, Surface>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn lock() -> MutexGuard<'static, HashMap<u64, Surface>> {
    SURFACES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The owned surface `handle`, if it is one.
pub fn lookup(handle: vk::SurfaceKHR) -> Option<Surface> {
    lock().get(&handle.as_raw()).cloned()
}

/// Records that the layer owns the surface `handle`.
pub fn own(handle: vk::SurfaceKHR, surface: Surface) {
    lock().insert(handle.as_raw(), surface);
    stats::count(Counter::SurfacesOwned);
}

/// Forgets a surface being destroyed; what it was, if the layer owned it.
pub fn forget(handle: vk::SurfaceKHR) -> Option<Surface> {
    lock().remove(&handle.as_raw())
}

/// Forgets the surfaces of an instance being destroyed (which the
/// application should have destroyed first); returns how many there were.
pub fn forget_instance(instance: vk::Instance) -> usize {
    let mut map = lock();
    let before = map.len();
    map.retain(|_, s| s.instance != instance);
    before - map.len()
}

/// Who answers a query about a surface on a physical device.
pub enum Answer {
    /// The layer, for an owned surface on a device it serves.
    Layer {
        surface: Surface,
        caps: Arc<SwapchainCaps>,
        instance: &'static InstanceState,
    },
    /// The driver.
    Driver(&'static InstanceState),
    /// Nobody: a surface the layer made, on a physical device the layer
    /// does not serve (which cannot present to it).
    Nobody,
    /// `VK_ERROR_SURFACE_LOST_KHR`: the surface's window-system connection
    /// is gone, or the physical device is unknown to the layer.
    Lost,
}

/// Decides who answers queries about `surface` on `pd`.
///
/// # Safety
/// `pd` is a live physical device.
pub unsafe fn answer(pd: vk::PhysicalDevice, surface: vk::SurfaceKHR) -> Answer {
    // SAFETY: the caller passes a live physical device.
    let Some(instance) = (unsafe { instance::of(pd) }) else {
        return Answer::Lost;
    };
    let Some(surface) = lookup(surface) else {
        return Answer::Driver(instance);
    };
    if surface.platform.is_lost() {
        return Answer::Lost;
    }
    match instance.support(pd) {
        Support::Ready { caps, .. } => Answer::Layer {
            surface,
            caps,
            instance,
        },
        Support::Missing(_) if surface.layer_made => Answer::Nobody,
        Support::Missing(_) => Answer::Driver(instance),
    }
}
