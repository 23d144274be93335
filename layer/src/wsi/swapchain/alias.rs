//! Images that alias a swapchain's (`VkImageSwapchainCreateInfoKHR` at
//! creation, `VkBindImageMemorySwapchainInfoKHR` at binding): the driver
//! never sees the layer's swapchain handle. An aliasing image is made as
//! the swapchain's images are (the same modifier and plane layout, memory
//! a dma-buf), and bound to memory imported from the swapchain image's own
//! dma-buf, dedicated to it and freed with it.

use std::collections::HashMap;
use std::os::fd::{AsFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ash::vk;

use super::device::WsiDevice;
use super::image::{Image, ImageSpec};
use crate::plumbing::stats::{self, Counter};
use crate::vulkan::chain::{self, Edited};
use crate::vulkan::device::DeviceState;

/// What an image that aliases one of a swapchain's is made of.
pub struct AliasSpec {
    modifier: u64,
    layout: vk::SubresourceLayout,
    memory: vk::PhysicalDeviceMemoryProperties,
}

impl AliasSpec {
    pub fn new(spec: &ImageSpec<'_>, first: &Image) -> Self {
        AliasSpec {
            modifier: first.modifier,
            layout: first.layout,
            memory: *spec.memory,
        }
    }
}

/// The aliasing images of one device and the memory each was bound to.
#[derive(Default)]
pub struct Aliases {
    images: Mutex<HashMap<vk::Image, Option<vk::DeviceMemory>>>,
    /// `images.len()`, read without the lock by every `vkDestroyImage`.
    count: AtomicUsize,
}

/// The layer's swapchain a create info's `VkImageSwapchainCreateInfoKHR`
/// names, if it names one of the layer's.
///
/// # Safety
/// `p_next` is a valid input chain.
unsafe fn named_swapchain(p_next: *const std::ffi::c_void) -> Option<&'static super::Swapchain> {
    // SAFETY: the caller's valid chain.
    let info = unsafe { chain::find::<vk::ImageSwapchainCreateInfoKHR<'_>>(p_next) }?;
    // SAFETY: the application keeps the swapchain alive while it makes an
    // image from it.
    unsafe { super::get(info.swapchain) }
}

/// Calls `f` with `info` rewritten for the driver when it names one of the
/// layer's swapchains: an image with the swapchain images' modifier and
/// plane layout whose memory is a dma-buf, without the swapchain. `None`
/// when it names none (the caller passes `info` down as it is).
///
/// # Safety
/// `info` is the application's valid create info.
pub unsafe fn rewrite<R>(
    info: &vk::ImageCreateInfo<'_>,
    f: impl FnOnce(&vk::ImageCreateInfo<'_>) -> R,
) -> Option<Result<R, vk::Result>> {
    // SAFETY: the caller's valid chain.
    let s = unsafe { named_swapchain(info.p_next) }?;
    // SAFETY: as above.
    let rest = match unsafe {
        Edited::without(
            info.p_next,
            &[
                vk::StructureType::IMAGE_SWAPCHAIN_CREATE_INFO_KHR,
                vk::StructureType::EXTERNAL_MEMORY_IMAGE_CREATE_INFO,
                vk::StructureType::IMAGE_DRM_FORMAT_MODIFIER_EXPLICIT_CREATE_INFO_EXT,
                vk::StructureType::IMAGE_DRM_FORMAT_MODIFIER_LIST_CREATE_INFO_EXT,
            ],
        )
    } {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("vkCreateImage for a swapchain image's alias: {e}");
            return Some(Err(vk::Result::ERROR_INITIALIZATION_FAILED));
        }
    };
    let spec = &s.alias;
    let mut external = vk::ExternalMemoryImageCreateInfo::default()
        .handle_types(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
    external.p_next = rest.head();
    let mut explicit = vk::ImageDrmFormatModifierExplicitCreateInfoEXT::default()
        .drm_format_modifier(spec.modifier)
        .plane_layouts(std::slice::from_ref(&spec.layout));
    explicit.p_next = (&external as *const vk::ExternalMemoryImageCreateInfo<'_>).cast();
    let mut copy = *info;
    copy.tiling = vk::ImageTiling::DRM_FORMAT_MODIFIER_EXT;
    copy.p_next = (&explicit as *const vk::ImageDrmFormatModifierExplicitCreateInfoEXT<'_>).cast();
    Some(Ok(f(&copy)))
}

/// `vkCreateImage` of an image that aliases a layer swapchain's; `None`
/// when `info` names no swapchain of the layer's.
///
/// # Safety
/// The application's arguments.
pub unsafe fn create_image(
    device: &DeviceState,
    wsi: &WsiDevice,
    info: &vk::ImageCreateInfo<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_image: *mut vk::Image,
) -> Option<vk::Result> {
    // SAFETY: the application's arguments, with the rewritten create info.
    let r = unsafe {
        rewrite(info, |copy| {
            (device.fns.fp_v1_0().create_image)(device.handle, copy, p_allocator, p_image)
        })
    }?;
    let r = r.unwrap_or_else(|e| e);
    if r == vk::Result::SUCCESS {
        let mut images = wsi.aliases.images.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the driver wrote the new image.
        images.insert(unsafe { *p_image }, None);
        wsi.aliases.count.store(images.len(), Ordering::Release);
    }
    Some(r)
}

/// `vkBindImageMemory2`: binds images that alias a layer swapchain's to
/// memory imported from that swapchain image's dma-buf, the others as the
/// application asks.
///
/// # Safety
/// The application's arguments; `bind2` is the next entity's
/// `vkBindImageMemory2` (or its KHR alias).
pub unsafe fn bind_image_memory2(
    device: &DeviceState,
    wsi: &WsiDevice,
    bind2: vk::PFN_vkBindImageMemory2,
    infos: &[vk::BindImageMemoryInfo<'_>],
) -> vk::Result {
    let mut copies: Vec<vk::BindImageMemoryInfo<'_>> = infos.to_vec();
    let mut chains: Vec<Edited> = Vec::new();
    let mut imported: Vec<(vk::Image, vk::DeviceMemory)> = Vec::new();
    for copy in copies.iter_mut() {
        // SAFETY: the application's valid chain.
        let Some(bind) =
            (unsafe { chain::find::<vk::BindImageMemorySwapchainInfoKHR<'_>>(copy.p_next) })
        else {
            continue;
        };
        // SAFETY: the application keeps the swapchain alive while it binds.
        let Some(s) = (unsafe { super::get(bind.swapchain) }) else {
            continue;
        };
        let memory = match import(device, wsi, s, bind.image_index, copy.image) {
            Ok(m) => m,
            Err(r) => {
                free(device, &imported);
                return r;
            }
        };
        imported.push((copy.image, memory));
        // SAFETY: as above.
        let rest = match unsafe {
            Edited::without(
                copy.p_next,
                &[vk::StructureType::BIND_IMAGE_MEMORY_SWAPCHAIN_INFO_KHR],
            )
        } {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("vkBindImageMemory2 for a swapchain image's alias: {e}");
                free(device, &imported);
                return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
            }
        };
        copy.p_next = rest.head();
        copy.memory = memory;
        copy.memory_offset = 0;
        chains.push(rest);
    }
    if imported.is_empty() {
        // SAFETY: the application's arguments, for the driver.
        return unsafe { bind2(device.handle, infos.len() as u32, infos.as_ptr()) };
    }
    // SAFETY: the application's binds, the aliasing ones to fresh imports.
    let r = unsafe { bind2(device.handle, copies.len() as u32, copies.as_ptr()) };
    if r != vk::Result::SUCCESS {
        free(device, &imported);
        return r;
    }
    let mut images = wsi.aliases.images.lock().unwrap_or_else(|e| e.into_inner());
    for (image, memory) in imported {
        images.insert(image, Some(memory));
        stats::count(Counter::AliasesBound);
    }
    wsi.aliases.count.store(images.len(), Ordering::Release);
    r
}

/// Memory imported from image `index` of `s`, dedicated to `image`.
fn import(
    device: &DeviceState,
    wsi: &WsiDevice,
    s: &super::Swapchain,
    index: u32,
    image: vk::Image,
) -> Result<vk::DeviceMemory, vk::Result> {
    let dma_buf = s
        .images
        .get(index as usize)
        .and_then(|i| i.dma_buf.get())
        .ok_or(vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)?;
    let d = &device.fns;
    let fd = rustix::io::fcntl_dupfd_cloexec(dma_buf.as_fd(), 0)
        .map_err(|_| vk::Result::ERROR_TOO_MANY_OBJECTS)?;
    let mut props = vk::MemoryFdPropertiesKHR::default();
    // SAFETY: a live dma-buf descriptor, only read.
    let r = unsafe {
        (wsi.ext.memory_fd.get_memory_fd_properties_khr)(
            device.handle,
            vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &mut props,
        )
    };
    if r != vk::Result::SUCCESS {
        return Err(r);
    }
    // SAFETY: a live image of this device.
    let reqs = unsafe { d.get_image_memory_requirements(image) };
    let bits = reqs.memory_type_bits & props.memory_type_bits;
    let spec = &s.alias;
    let type_index = (0..spec.memory.memory_type_count)
        .find(|i| bits & (1 << i) != 0)
        .ok_or(vk::Result::ERROR_OUT_OF_DEVICE_MEMORY)?;
    let raw = fd.into_raw_fd();
    let mut import = vk::ImportMemoryFdInfoKHR::default()
        .handle_type(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT)
        .fd(raw);
    let mut dedicated = vk::MemoryDedicatedAllocateInfo::default().image(image);
    let alloc = vk::MemoryAllocateInfo::default()
        .allocation_size(reqs.size)
        .memory_type_index(type_index)
        .push_next(&mut import)
        .push_next(&mut dedicated);
    // SAFETY: a valid import of a dma-buf for this image.
    unsafe { d.allocate_memory(&alloc, None) }.inspect_err(|_| {
        // SAFETY: a failed import leaves the descriptor ours.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
    })
}

fn free(device: &DeviceState, imported: &[(vk::Image, vk::DeviceMemory)]) {
    for &(_, m) in imported {
        // SAFETY: memory this call imported and bound to nothing.
        unsafe { device.fns.free_memory(m, None) };
    }
}

/// `vkDestroyImage`: an aliasing image's imported memory goes with it.
///
/// # Safety
/// The application's arguments.
pub unsafe fn destroy_image(
    device: &DeviceState,
    wsi: Option<&WsiDevice>,
    image: vk::Image,
    p_allocator: *const vk::AllocationCallbacks<'_>,
) {
    // SAFETY: the application's arguments, for the driver.
    unsafe { (device.fns.fp_v1_0().destroy_image)(device.handle, image, p_allocator) };
    let Some(wsi) = wsi.filter(|w| w.aliases.count.load(Ordering::Acquire) != 0) else {
        return;
    };
    let memory = {
        let mut images = wsi.aliases.images.lock().unwrap_or_else(|e| e.into_inner());
        let m = images.remove(&image);
        wsi.aliases.count.store(images.len(), Ordering::Release);
        m
    };
    if let Some(Some(m)) = memory {
        // SAFETY: the image bound to it is gone, and nothing else uses it.
        unsafe { device.fns.free_memory(m, None) };
    }
}

impl Aliases {
    /// Frees the memory of aliasing images the application left alive,
    /// when the device is destroyed.
    pub fn free_all(&self, fns: &ash::Device) {
        let mut images = self.images.lock().unwrap_or_else(|e| e.into_inner());
        for (_, memory) in images.drain() {
            if let Some(m) = memory {
                // SAFETY: the device is idle before its destruction.
                unsafe { fns.free_memory(m, None) };
            }
        }
        self.count.store(0, Ordering::Release);
    }
}
