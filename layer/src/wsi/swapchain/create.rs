//! Making and destroying swapchains: checking a create info against what
//! the surface and device offer, the images, the sync path, the backend's
//! presenter, and `oldSwapchain` retirement.

use std::os::fd::AsFd;
use std::sync::Arc;

use ash::vk;
use ash::vk::Handle;
use syncfile::probe::Support as Kernel;
use syncfile::DmaBuf;

use super::image::{Ctx, Image, ImageSpec};
use super::pool::Pool;
use super::present_thread::PresentThread;
use super::{PresentPath, Swapchain, SWAPCHAINS};
use crate::backend::{self, Backend, BackendImage, PresenterConfig};
use crate::device::{DeviceState, Owned, DEVICES};
use crate::dispatch;
use crate::entry::guard;
use crate::error::SwapchainError;
use crate::formats::{self, ImageParams};
use crate::settings::SyncMode;
use crate::stats::{self, Counter, Fallback};
use crate::surface::{self, Surface};

pub(super) unsafe extern "system" fn create_swapchain(
    device: vk::Device,
    p_info: *const vk::SwapchainCreateInfoKHR<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_swapchain: *mut vk::SwapchainKHR,
) -> vk::Result {
    guard(
        "vkCreateSwapchainKHR",
        vk::Result::ERROR_INITIALIZATION_FAILED,
        || {
            // SAFETY: the device is alive for the command.
            let Some(state) = (unsafe { DEVICES.get(dispatch::key(device)) }) else {
                tracing::error!("vkCreateSwapchainKHR: unknown device");
                return vk::Result::ERROR_INITIALIZATION_FAILED;
            };
            // SAFETY: the application passes a valid create info.
            let info = unsafe { &*p_info };
            // The old swapchain is retired whatever happens next.
            let old_is_ours = retire(info.old_swapchain);
            let owner = state
                .owned()
                .zip(surface::lookup(info.surface))
                .and_then(|(o, s)| Some((o, backend::for_platform(s.platform)?, s)));
            let Some((owned, backend, surface)) = owner else {
                // SAFETY: the application's arguments.
                return unsafe { pass_through(state, info, old_is_ours, p_allocator, p_swapchain) };
            };
            if surface.is_lost() {
                tracing::error!(
                    "vkCreateSwapchainKHR: the surface's window-system connection is lost"
                );
                stats::count(Counter::SwapchainsFailed);
                return vk::Result::ERROR_SURFACE_LOST_KHR;
            }
            match create(state, owned, &surface, backend, info) {
                Ok(s) => {
                    let handle = &*s as *const Swapchain as u64;
                    match SWAPCHAINS.reserve() {
                        Ok(r) => r.insert(handle as usize, s),
                        Err(e) => {
                            super::destroy(s);
                            tracing::error!("vkCreateSwapchainKHR: {e}");
                            return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
                        }
                    }
                    // SAFETY: the application passes a valid handle pointer.
                    unsafe { *p_swapchain = vk::SwapchainKHR::from_raw(handle) };
                    stats::count(Counter::SwapchainsCreated);
                    vk::Result::SUCCESS
                }
                Err(e) => {
                    tracing::error!("vkCreateSwapchainKHR: {e}");
                    stats::count(Counter::SwapchainsFailed);
                    e.result()
                }
            }
        },
    )
}

/// Retires `old` if the layer made it; says whether it did.
fn retire(old: vk::SwapchainKHR) -> bool {
    if old == vk::SwapchainKHR::null() {
        return false;
    }
    let key = old.as_raw() as usize;
    // Taking the state out gives the exclusive access that retirement
    // needs; the application may not use `old` meanwhile (it is externally
    // synchronized), so no reader misses it.
    let Some(mut s) = SWAPCHAINS.remove(key) else {
        return false;
    };
    s.retire();
    // The removal made room, unless other threads took it meanwhile.
    match SWAPCHAINS.reserve() {
        Ok(room) => room.insert(key, s),
        Err(e) => {
            tracing::error!("vkCreateSwapchainKHR: {e}; destroying the retired swapchain now");
            super::destroy(s);
        }
    }
    true
}

/// Hands the swapchain to the driver, without an `oldSwapchain` the driver
/// never saw.
///
/// # Safety
/// The application's arguments.
unsafe fn pass_through(
    state: &DeviceState,
    info: &vk::SwapchainCreateInfoKHR<'_>,
    old_is_ours: bool,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_swapchain: *mut vk::SwapchainKHR,
) -> vk::Result {
    if state.owned().is_some_and(|o| !o.driver_swapchain) {
        tracing::error!("vkCreateSwapchainKHR: the driver has no swapchains for this surface");
        return vk::Result::ERROR_INITIALIZATION_FAILED;
    }
    let mut copy = *info;
    if old_is_ours {
        copy.old_swapchain = vk::SwapchainKHR::null();
    }
    stats::count(Counter::SwapchainsPassedThrough);
    tracing::info!(
        "swapchain passed to the driver's WSI: {} images of {:?} {}x{}, {:?}",
        info.min_image_count,
        info.image_format,
        info.image_extent.width,
        info.image_extent.height,
        info.present_mode
    );
    // SAFETY: the caller's arguments, with the copied create info.
    unsafe { (state.swapchain.create_swapchain_khr)(state.handle, &copy, p_allocator, p_swapchain) }
}

fn unsupported(what: String) -> SwapchainError {
    SwapchainError::Unsupported(what)
}

/// The formats a mutable-format swapchain's views may have.
fn view_formats(info: &vk::SwapchainCreateInfoKHR<'_>) -> Vec<vk::Format> {
    let mut p = info.p_next.cast::<vk::BaseInStructure>();
    while !p.is_null() {
        // SAFETY: a valid input chain; the node is the structure its sType names.
        unsafe {
            if (*p).s_type == vk::StructureType::IMAGE_FORMAT_LIST_CREATE_INFO {
                let list = &*p.cast::<vk::ImageFormatListCreateInfo<'_>>();
                if !list.p_view_formats.is_null() {
                    return std::slice::from_raw_parts(
                        list.p_view_formats,
                        list.view_format_count as usize,
                    )
                    .to_vec();
                }
            }
            p = (*p).p_next;
        }
    }
    Vec::new()
}

/// Checks `info` against what the surface offers on this device.
fn check(
    owned: &Owned,
    surface: &Surface,
    backend: &dyn Backend,
    info: &vk::SwapchainCreateInfoKHR<'_>,
) -> Result<(), SwapchainError> {
    let caps = backend.capabilities(surface, &owned.caps, Some(info.present_mode));
    if owned.caps.format(info.image_format).is_none()
        || info.image_color_space != vk::ColorSpaceKHR::SRGB_NONLINEAR
    {
        return Err(SwapchainError::Format(
            info.image_format,
            info.image_color_space,
        ));
    }
    if !backend.present_modes(surface).contains(&info.present_mode) {
        return Err(unsupported(format!(
            "present mode {:?} is not offered",
            info.present_mode
        )));
    }
    let count = info.min_image_count;
    if count < caps.min_image_count || (caps.max_image_count != 0 && count > caps.max_image_count) {
        return Err(unsupported(format!(
            "{count} images: the surface takes {} to {}",
            caps.min_image_count, caps.max_image_count
        )));
    }
    let e = info.image_extent;
    let (lo, hi) = (caps.min_image_extent, caps.max_image_extent);
    if e.width < lo.width || e.height < lo.height || e.width > hi.width || e.height > hi.height {
        return Err(unsupported(format!(
            "extent {}x{} is out of range",
            e.width, e.height
        )));
    }
    if info.image_array_layers == 0 || info.image_array_layers > caps.max_image_array_layers {
        return Err(unsupported(format!(
            "{} array layers",
            info.image_array_layers
        )));
    }
    if info.image_usage.is_empty() || !caps.supported_usage_flags.contains(info.image_usage) {
        return Err(unsupported(format!("usage {:?}", info.image_usage)));
    }
    if !caps.supported_transforms.contains(info.pre_transform) {
        return Err(unsupported(format!("transform {:?}", info.pre_transform)));
    }
    if !caps
        .supported_composite_alpha
        .contains(info.composite_alpha)
    {
        return Err(unsupported(format!(
            "composite alpha {:?}",
            info.composite_alpha
        )));
    }
    if !(info.flags & !vk::SwapchainCreateFlagsKHR::MUTABLE_FORMAT).is_empty() {
        return Err(unsupported(format!("flags {:?}", info.flags)));
    }
    Ok(())
}

fn create(
    state: &DeviceState,
    owned: &Owned,
    surface: &Surface,
    backend: &'static dyn Backend,
    info: &vk::SwapchainCreateInfoKHR<'_>,
) -> Result<Box<Swapchain>, SwapchainError> {
    check(owned, surface, backend, info)?;
    let format = owned
        .caps
        .format(info.image_format)
        .ok_or(SwapchainError::Format(
            info.image_format,
            info.image_color_space,
        ))?;
    let mutable = info
        .flags
        .contains(vk::SwapchainCreateFlagsKHR::MUTABLE_FORMAT);
    let views = if mutable {
        view_formats(info)
    } else {
        Vec::new()
    };
    let flags = if mutable {
        vk::ImageCreateFlags::MUTABLE_FORMAT | vk::ImageCreateFlags::EXTENDED_USAGE
    } else {
        vk::ImageCreateFlags::empty()
    };
    let families: &[u32] = if info.image_sharing_mode == vk::SharingMode::CONCURRENT
        && !info.p_queue_family_indices.is_null()
    {
        // SAFETY: the create info holds this many family indices.
        unsafe {
            std::slice::from_raw_parts(
                info.p_queue_family_indices,
                info.queue_family_index_count as usize,
            )
        }
    } else {
        &[]
    };
    let params = ImageParams {
        format: info.image_format,
        usage: info.image_usage,
        flags,
        sharing: info.image_sharing_mode,
        families,
        view_formats: &views,
        extent: info.image_extent,
        layers: info.image_array_layers,
    };
    let settings = &owned.settings;
    let modifiers = formats::modifiers(&owned.pd_fns, owned.physical_device, &params, |m| {
        backend.accepts_modifier(surface, format, m, settings)
    });
    if modifiers.is_empty() {
        return Err(SwapchainError::NoModifier(info.image_format));
    }
    let spec = ImageSpec {
        flags,
        format: info.image_format,
        extent: info.image_extent,
        layers: info.image_array_layers,
        usage: info.image_usage,
        sharing: info.image_sharing_mode,
        families,
        view_formats: &views,
        modifiers: &modifiers,
        memory: &owned.memory,
    };
    let ctx = Ctx {
        device: &state.fns,
        ext: &owned.ext,
        allocator: None,
    };
    let mut images = Images {
        ctx: &ctx,
        list: Vec::with_capacity(info.min_image_count as usize),
    };
    for _ in 0..info.min_image_count {
        images.list.push(Image::create(&ctx, &spec)?);
    }

    let fallback = fallback(owned, &images.list[0])?;
    for image in &mut images.list {
        image.add_sync(&ctx, fallback.is_none())?;
    }
    let pool = Arc::new(Pool::new(info.min_image_count));
    let mut backend_images = Vec::with_capacity(images.list.len());
    for image in &images.list {
        backend_images.push(backend_image(image, format, info.image_extent)?);
    }
    let presenter: Arc<dyn backend::Presenter> = Arc::from(backend.create_presenter(
        surface,
        PresenterConfig {
            images: backend_images,
            present_mode: info.present_mode,
            composite_alpha: info.composite_alpha,
            pool: pool.clone(),
            settings,
        },
    )?);
    let path = match fallback {
        None => PresentPath::Direct,
        Some(_) => PresentPath::Thread(
            PresentThread::start(
                state.fns.clone(),
                presenter.clone(),
                pool.clone(),
                images.list.len(),
            )
            .map_err(SwapchainError::Thread)?,
        ),
    };
    if let Some(f) = fallback {
        stats::fallback(f);
    }
    let list = std::mem::take(&mut images.list);
    tracing::info!(
        "swapchain created: {} images of {:?} {}x{}, modifier {:#x}, {:?}, sync {}",
        list.len(),
        info.image_format,
        info.image_extent.width,
        info.image_extent.height,
        list[0].modifier,
        info.present_mode,
        match fallback {
            None => "sync_file",
            Some(_) => "cpu",
        }
    );
    Ok(Box::new(Swapchain {
        device: state.handle,
        fns: state.fns.clone(),
        ext: owned.ext,
        handles: list.iter().map(|i| i.image).collect(),
        images: list.into_boxed_slice(),
        pool,
        presenter,
        path,
        acquire_polls: matches!(
            fallback,
            Some(Fallback::ForcedCpu | Fallback::NoKernelIoctls)
        ),
    }))
}

/// Images made so far, freed if creation fails halfway.
struct Images<'a> {
    ctx: &'a Ctx<'a>,
    list: Vec<Image>,
}

impl Drop for Images<'_> {
    fn drop(&mut self) {
        for image in &mut self.list {
            image.destroy(self.ctx);
        }
    }
}

/// Which fallback, if any, this swapchain's sync takes.
fn fallback(owned: &Owned, first: &Image) -> Result<Option<Fallback>, SwapchainError> {
    if owned.settings.sync == SyncMode::Cpu {
        return Ok(Some(Fallback::ForcedCpu));
    }
    let dma_buf = first.dma_buf.as_ref().ok_or(SwapchainError::Unsupported(
        "the image has no dma-buf".into(),
    ))?;
    if syncfile::probe::probe(dma_buf)? == Kernel::Unavailable {
        return Ok(Some(Fallback::NoKernelIoctls));
    }
    if !owned.caps.semaphore_export {
        return Ok(Some(Fallback::NoSemaphoreExport));
    }
    Ok(None)
}

/// The backend's view of `image`, with a descriptor of its own.
fn backend_image(
    image: &Image,
    format: formats::Format,
    extent: vk::Extent2D,
) -> Result<BackendImage, SwapchainError> {
    let fd = image.dma_buf.as_ref().ok_or(SwapchainError::Unsupported(
        "the image has no dma-buf".into(),
    ))?;
    let dup = rustix::io::fcntl_dupfd_cloexec(fd.as_fd(), 0)
        .map_err(|e| SwapchainError::Kernel(syncfile::Error::Os(e)))?;
    Ok(BackendImage {
        dma_buf: DmaBuf::from(dup),
        format,
        modifier: image.modifier,
        extent,
        offset: image.layout.offset,
        stride: image.layout.row_pitch,
        size: image.layout.size,
    })
}

pub(super) unsafe extern "system" fn destroy_swapchain(
    device: vk::Device,
    swapchain: vk::SwapchainKHR,
    p_allocator: *const vk::AllocationCallbacks<'_>,
) {
    guard("vkDestroySwapchainKHR", (), || {
        if swapchain == vk::SwapchainKHR::null() {
            return;
        }
        if let Some(s) = SWAPCHAINS.remove(swapchain.as_raw() as usize) {
            super::destroy(s);
            return;
        }
        // SAFETY: the device is alive for the command.
        match unsafe { DEVICES.get(dispatch::key(device)) } {
            // SAFETY: the application's arguments, for the driver.
            Some(d) => unsafe {
                (d.swapchain.destroy_swapchain_khr)(device, swapchain, p_allocator)
            },
            None => tracing::error!("vkDestroySwapchainKHR: unknown device"),
        }
    })
}

pub(super) unsafe extern "system" fn device_group_surface_present_modes(
    device: vk::Device,
    surface: vk::SurfaceKHR,
    p_modes: *mut vk::DeviceGroupPresentModeFlagsKHR,
) -> vk::Result {
    guard(
        "vkGetDeviceGroupSurfacePresentModesKHR",
        vk::Result::ERROR_SURFACE_LOST_KHR,
        || {
            // SAFETY: the device is alive for the command.
            let Some(state) = (unsafe { DEVICES.get(dispatch::key(device)) }) else {
                return vk::Result::ERROR_SURFACE_LOST_KHR;
            };
            if state.owned().is_some() && surface::lookup(surface).is_some() {
                // A group of one device presents its own images.
                // SAFETY: the application passes a valid output pointer.
                unsafe { *p_modes = vk::DeviceGroupPresentModeFlagsKHR::LOCAL };
                return vk::Result::SUCCESS;
            }
            // SAFETY: the application's arguments, for the driver.
            unsafe {
                (state.swapchain.get_device_group_surface_present_modes_khr)(
                    device, surface, p_modes,
                )
            }
        },
    )
}
