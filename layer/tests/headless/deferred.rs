//! Deferred memory allocation (`VK_SWAPCHAIN_CREATE_DEFERRED_MEMORY_ALLOCATION_BIT_EXT`)
//! as an application of `VK_EXT_swapchain_maintenance1` sees it, with the
//! kernel's descriptor table as the oracle: every dma-buf the layer's
//! images have is a descriptor of this process. A swapchain made without
//! the flag has them all at once; one made with it has none until an image
//! is first acquired, then that image's, and no more when it is acquired
//! again (after a release, or a present).

use std::collections::BTreeSet;

use ash::vk;
use serde_json::{json, Value};

use crate::client::{Chain, Switch, Vk};
use crate::common::child::Result;

const SIZE: u32 = 64;
const LONG: u64 = 10_000_000_000;

/// The dma-bufs among this process's descriptors.
fn dma_bufs() -> Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir("/proc/self/fd")? {
        // A descriptor closed while listing (the directory's own) is no dma-buf.
        if let Ok(target) = std::fs::read_link(entry?.path()) {
            n += usize::from(target.to_string_lossy().contains("dmabuf"));
        }
    }
    Ok(n)
}

/// Acquires an image with a fence and waits for it.
fn acquire(vk: &Vk, chain: &Chain<'_>) -> Result<u32> {
    let f = vk.fence(false)?;
    let index = chain.acquire(LONG, vk::Semaphore::null(), f);
    if index.is_ok() {
        // SAFETY: the acquire's fence.
        unsafe { vk.device.wait_for_fences(&[f], true, LONG)? };
    }
    // SAFETY: waited for, or never submitted.
    unsafe { vk.device.destroy_fence(f, None) };
    Ok(index.map_err(|e| format!("vkAcquireNextImageKHR: {e:?}"))?)
}

/// Run after other swapchains of the process: the layer learns whether
/// the kernel has the sync_file ioctls from the first dma-buf it makes,
/// and a deferred swapchain made before any binds its first image at once.
pub fn deferred(vk: &Vk, maintenance: &ash::ext::swapchain_maintenance1::Device) -> Result<Value> {
    let before = dma_bufs()?;
    let eager = Chain::new(
        vk,
        vk::PresentModeKHR::IMMEDIATE,
        SIZE,
        0,
        vk::SwapchainKHR::null(),
    )?;
    let images = eager.images.len();
    let eager_count = dma_bufs()? - before;
    drop(eager);
    let base = dma_bufs()?;
    let flags = vk::SwapchainCreateFlagsKHR::DEFERRED_MEMORY_ALLOCATION_EXT;
    let switch = Switch {
        modes: &[],
        flags,
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
    let created = dma_bufs()? - base;
    let first = acquire(vk, &chain)?;
    let after_first = dma_bufs()? - base;
    let indices = [first];
    let info = vk::ReleaseSwapchainImagesInfoEXT::default()
        .swapchain(chain.swapchain)
        .image_indices(&indices);
    // SAFETY: an acquired image the device does not use.
    unsafe { maintenance.release_swapchain_images(&info)? };
    let mut acquired = BTreeSet::from([first]);
    let frames = 3 * images;
    for _ in 0..frames {
        acquired.insert(chain.frame()?);
    }
    chain.wait_idle()?;
    let after_frames = dma_bufs()? - base;
    Ok(json!({
        "images": images,
        "eager": eager_count,
        "left_by_eager": base - before,
        "created": created,
        "after_first": after_first,
        "acquired": acquired.len(),
        "after_frames": after_frames,
        "frames": frames,
    }))
}
