//! Making swapchains: whether the layer owns a swapchain at all (its
//! surface and device), checking a create info against what the surface
//! and device offer, the images (allocated by the driver or by the
//! consumer), the sync path, the platform's presenter, and `oldSwapchain`
//! retirement.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicI32};
use std::sync::Arc;

use ash::vk;
use ash::vk::Handle;
use syncfile::DmaBuf;

use super::alias::AliasSpec;
use super::device::WsiDevice;
use super::error::SwapchainError;
use super::history::History;
use super::image::{Image, ImageSpec};
use super::pool::Pool;
use super::present_thread::PresentThread;
use super::sync_path;
use super::{retire, PresentPath, Returned, Swapchain, SWAPCHAINS};
use crate::plumbing::settings::SyncMode;
use crate::plumbing::stats::{self, Counter, Fallback};
use crate::vulkan::array;
use crate::vulkan::caps::{self, Format, ImageParams};
use crate::vulkan::chain::find;
use crate::vulkan::device::{DeviceState, Owned};
use crate::vulkan::host::HostAllocator;
use crate::vulkan::{newer, objects};
use crate::wsi::platform::{Buffer, ConsumerImage, ConsumerImages, PresenterConfig};
use crate::wsi::surface::{self, Surface};

/// `vkCreateSwapchainKHR`: the layer's own swapchain for a surface it owns
/// on a device it owns, else the driver's.
///
/// # Safety
/// The application's arguments.
pub unsafe fn create_swapchain(
    device: &DeviceState,
    info: &vk::SwapchainCreateInfoKHR<'_>,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    p_swapchain: *mut vk::SwapchainKHR,
) -> vk::Result {
    // The old swapchain is retired whatever happens next.
    let old_is_ours = retire(info.old_swapchain);
    let surface = surface::lookup(info.surface);
    if device.owned().is_none() && surface.as_ref().is_some_and(|s| s.layer_made) {
        tracing::error!("vkCreateSwapchainKHR: a display surface of the layer's on a device the layer passes through, which cannot present to it");
        stats::count(Counter::SwapchainsFailed);
        return vk::Result::ERROR_SURFACE_LOST_KHR;
    }
    let Some((owned, surface)) = device.owned().zip(surface) else {
        // SAFETY: the application's arguments.
        return unsafe { pass_through(device, info, old_is_ours, p_allocator, p_swapchain) };
    };
    if surface.platform.is_lost() {
        tracing::error!("vkCreateSwapchainKHR: the surface's window-system connection is lost");
        stats::count(Counter::SwapchainsFailed);
        return vk::Result::ERROR_SURFACE_LOST_KHR;
    }
    let made = WsiDevice::of(device, owned)
        .map_err(|r| SwapchainError::Vulkan("making the device's WSI state", r))
        // SAFETY: the application's callbacks, which the spec makes it keep
        // for as long as the swapchain lives.
        .and_then(|wsi| {
            create(device, owned, wsi, &surface, info, unsafe {
                HostAllocator::from_raw(p_allocator)
            })
        });
    let mut s = match made {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("vkCreateSwapchainKHR: {e}");
            stats::count(Counter::SwapchainsFailed);
            return e.result();
        }
    };
    let handle = &*s as *const Swapchain as u64;
    s.handle = handle;
    let wsi = s.wsi.clone();
    match SWAPCHAINS.reserve() {
        Ok(r) => r.insert(handle as usize, s),
        Err(e) => {
            super::destroy(s);
            tracing::error!("vkCreateSwapchainKHR: {e}");
            return vk::Result::ERROR_OUT_OF_HOST_MEMORY;
        }
    }
    objects::register(vk::ObjectType::SWAPCHAIN_KHR, handle);
    wsi.live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(handle);
    // SAFETY: the application passes a valid handle pointer.
    unsafe { *p_swapchain = vk::SwapchainKHR::from_raw(handle) };
    stats::count(Counter::SwapchainsCreated);
    vk::Result::SUCCESS
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
    if state
        .owned()
        .is_some_and(|o| !o.driver_has.contains(&ash::khr::swapchain::NAME))
    {
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

fn view_formats(info: &vk::SwapchainCreateInfoKHR<'_>) -> Vec<vk::Format> {
    // SAFETY: the application's valid input chain; the list holds its count.
    unsafe {
        find::<vk::ImageFormatListCreateInfo<'_>>(info.p_next)
            .map(|l| array(l.p_view_formats, l.view_format_count).to_vec())
            .unwrap_or_default()
    }
}

/// The present modes the swapchain may switch among
/// (`VkSwapchainPresentModesCreateInfoEXT`), its own mode alone otherwise.
fn present_modes(info: &vk::SwapchainCreateInfoKHR<'_>) -> Vec<vk::PresentModeKHR> {
    // SAFETY: as for `view_formats`.
    let listed = unsafe {
        find::<vk::SwapchainPresentModesCreateInfoEXT<'_>>(info.p_next)
            .map(|l| array(l.p_present_modes, l.present_mode_count).to_vec())
            .unwrap_or_default()
    };
    let mut modes = vec![info.present_mode];
    modes.extend(listed.into_iter().filter(|m| *m != info.present_mode));
    modes
}

/// The creation flags the layer's swapchains take. Memory is allocated at
/// creation even when it may be deferred (which the flag allows, not
/// requires): the consumer is given every buffer up front.
const FLAGS: vk::SwapchainCreateFlagsKHR = vk::SwapchainCreateFlagsKHR::from_raw(
    vk::SwapchainCreateFlagsKHR::MUTABLE_FORMAT.as_raw()
        | newer::SWAPCHAIN_CREATE_DEFERRED_MEMORY_ALLOCATION.as_raw()
        | newer::SWAPCHAIN_CREATE_PRESENT_ID_2.as_raw()
        | newer::SWAPCHAIN_CREATE_PRESENT_WAIT_2.as_raw(),
);

/// Checks `info` against what the surface offers on this device.
fn check(
    owned: &Owned,
    surface: &Surface,
    info: &vk::SwapchainCreateInfoKHR<'_>,
    modes: &[vk::PresentModeKHR],
) -> Result<(), SwapchainError> {
    let caps = surface
        .platform
        .capabilities(&owned.caps, Some(info.present_mode));
    if !owned
        .caps
        .format(info.image_format)
        .is_some_and(|f| surface.platform.accepts_format(f))
        || info.image_color_space != vk::ColorSpaceKHR::SRGB_NONLINEAR
    {
        return Err(SwapchainError::Format(
            info.image_format,
            info.image_color_space,
        ));
    }
    let offered = surface.platform.present_modes();
    if let Some(m) = modes.iter().find(|m| !offered.contains(m)) {
        return Err(unsupported(format!("present mode {m:?} is not offered")));
    }
    // Enough images for every mode it may switch to.
    let fewest = modes
        .iter()
        .map(|&m| {
            surface
                .platform
                .capabilities(&owned.caps, Some(m))
                .min_image_count
        })
        .max()
        .unwrap_or(caps.min_image_count);
    let count = info.min_image_count;
    if count < fewest || (caps.max_image_count != 0 && count > caps.max_image_count) {
        return Err(unsupported(format!(
            "{count} images: the surface takes {fewest} to {}",
            caps.max_image_count
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
    // Each is one bit (`contains` would take none for any).
    let one_bit = |raw: u32| raw.count_ones() == 1;
    if !one_bit(info.pre_transform.as_raw())
        || !caps.supported_transforms.contains(info.pre_transform)
    {
        return Err(unsupported(format!("transform {:?}", info.pre_transform)));
    }
    if !one_bit(info.composite_alpha.as_raw())
        || !caps
            .supported_composite_alpha
            .contains(info.composite_alpha)
    {
        return Err(unsupported(format!(
            "composite alpha {:?}",
            info.composite_alpha
        )));
    }
    if !(info.flags & !FLAGS).is_empty() {
        return Err(unsupported(format!("flags {:?}", info.flags)));
    }
    Ok(())
}

fn create(
    state: &DeviceState,
    owned: &Owned,
    wsi: Arc<WsiDevice>,
    surface: &Surface,
    info: &vk::SwapchainCreateInfoKHR<'_>,
    host: HostAllocator,
) -> Result<Box<Swapchain>, SwapchainError> {
    let modes = present_modes(info);
    check(owned, surface, info, &modes)?;
    wsi.reap(false);
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
    let families: &[u32] = if info.image_sharing_mode == vk::SharingMode::CONCURRENT {
        // SAFETY: the create info holds this many family indices.
        unsafe { array(info.p_queue_family_indices, info.queue_family_index_count) }
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
    let modifiers = caps::modifiers(&owned.pd_fns, owned.physical_device, &params, |m| {
        surface.platform.accepts_modifier(format, m, settings)
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
        host,
    };
    let allocator = surface.platform.allocator(settings);
    // Memory for the consumer's buffers comes with the buffers, so only
    // driver-allocated images can wait for their first acquire; the first
    // one binds now all the same if the kernel's sync_file ioctls are yet
    // to be probed, which takes a dma-buf.
    let deferred = allocator.is_none()
        && info
            .flags
            .contains(newer::SWAPCHAIN_CREATE_DEFERRED_MEMORY_ALLOCATION);
    let mut images = Images {
        wsi: &wsi,
        list: Vec::with_capacity(info.min_image_count as usize),
    };
    let ctx = wsi.ctx();
    for i in 0..info.min_image_count {
        // One modifier for every image, the one the driver chose first:
        // consumers and aliases take a swapchain's layout from one image.
        let chosen = images.list.first().map(|f: &Image| [f.modifier]);
        let spec = ImageSpec {
            modifiers: chosen.as_ref().map_or(spec.modifiers, |m| &m[..]),
            ..spec
        };
        let bind = !deferred || (i == 0 && syncfile::probe::cached().is_none());
        let image = match &allocator {
            None => Image::export(&ctx, &spec, bind)?,
            Some(a) => Image::import(
                &ctx,
                &spec,
                a.allocate(format, info.image_extent, &modifiers)?,
            )?,
        };
        images.list.push(image);
    }

    let fallback = fallback(owned, &images.list[0])?;
    let exportable = sync_path::exportable(fallback, owned.caps.semaphore_export);
    for image in &mut images.list {
        image.add_sync(&ctx, exportable, fallback.is_some())?;
    }
    let pool = Arc::new(Pool::new(info.min_image_count));
    let consumer = ConsumerImages::new(images.list.len());
    for (i, image) in (0..).zip(&images.list) {
        if image.dma_buf.get().is_some() {
            consumer.set(i, consumer_image(image, format, info.image_extent)?);
        }
    }
    let history = Arc::new(History::new());
    let returned = Arc::new(Returned {
        pool: pool.clone(),
        images: consumer.clone(),
        history: history.clone(),
    });
    let presenter: Arc<dyn crate::wsi::platform::Presenter> =
        Arc::from(surface.platform.create_presenter(PresenterConfig {
            images: consumer.clone(),
            format,
            modifier: images.list[0].modifier,
            present_mode: info.present_mode,
            composite_alpha: info.composite_alpha,
            returns: returned,
            settings,
        })?);
    history.set_refresh(presenter.refresh_ns());
    let kind = sync_path::Kind::of(
        fallback,
        exportable,
        presenter.carries_render_fence(),
        presenter.uses_application_objects(),
    );
    let path = match kind {
        sync_path::Kind::Direct => PresentPath::Direct,
        sync_path::Kind::Carried => PresentPath::Carried,
        sync_path::Kind::Wait => PresentPath::Wait,
        sync_path::Kind::Thread => PresentPath::Thread(
            PresentThread::start(
                wsi.fns.clone(),
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
        "swapchain created: {} images of {:?} {}x{}, modifier {:#x}, {}, {:?}, sync {}",
        list.len(),
        info.image_format,
        info.image_extent.width,
        info.image_extent.height,
        list[0].modifier,
        match (&allocator, deferred) {
            (Some(_), _) => "allocated by the consumer",
            (None, false) => "allocated by the driver",
            (None, true) => "allocated by the driver at each image's first acquire",
        },
        modes,
        kind.name()
    );
    let alias = AliasSpec::new(&spec, &list[0]);
    Ok(Box::new(Swapchain {
        handle: 0,
        device: state.handle,
        handles: list.iter().map(|i| i.image).collect(),
        images: list.into_boxed_slice(),
        wsi: wsi.clone(),
        pool,
        presenter,
        path,
        acquire_polls: matches!(
            fallback,
            Some(Fallback::ForcedCpu | Fallback::NoKernelIoctls)
        ),
        sharing: info.image_sharing_mode,
        alias,
        history,
        mode: AtomicI32::new(info.present_mode.as_raw()),
        modes: modes.into_boxed_slice(),
        bad_mode_logged: AtomicBool::new(false),
        consumer,
        format,
        extent: info.image_extent,
    }))
}

/// Images made so far, freed if creation fails halfway.
struct Images<'a> {
    wsi: &'a WsiDevice,
    list: Vec<Image>,
}

impl Drop for Images<'_> {
    fn drop(&mut self) {
        for image in &mut self.list {
            self.wsi.free(image);
        }
    }
}

/// Which fallback, if any, this swapchain's sync takes.
fn fallback(owned: &Owned, first: &Image) -> Result<Option<Fallback>, SwapchainError> {
    if owned.settings.sync == SyncMode::Cpu {
        return Ok(Some(Fallback::ForcedCpu));
    }
    let kernel = match (syncfile::probe::cached(), first.dma_buf.get()) {
        (Some(known), _) => known,
        (None, Some(dma_buf)) => syncfile::probe::probe(dma_buf)?,
        (None, None) => {
            return Err(SwapchainError::Unsupported(
                "the image has no dma-buf".into(),
            ))
        }
    };
    Ok(sync_path::fallback(
        owned.settings.sync,
        kernel,
        owned.caps.semaphore_export,
    ))
}

/// `image` as its consumer has it: its buffer, with a descriptor of its own.
pub fn consumer_image(
    image: &Image,
    format: Format,
    extent: vk::Extent2D,
) -> Result<ConsumerImage, SwapchainError> {
    Ok(ConsumerImage {
        buffer: buffer_of(image)?,
        format,
        extent,
    })
}

/// `image`'s buffer, with a descriptor of its own.
fn buffer_of(image: &Image) -> Result<Buffer, SwapchainError> {
    let fd = image.dma_buf.get().ok_or(SwapchainError::Unsupported(
        "the image has no dma-buf".into(),
    ))?;
    let dup = rustix::io::fcntl_dupfd_cloexec(fd.as_fd(), 0)
        .map_err(|e| SwapchainError::Kernel(syncfile::Error::Os(e)))?;
    Ok(Buffer {
        dma_buf: DmaBuf::from(dup),
        modifier: image.modifier,
        offset: image.layout.offset,
        stride: image.layout.row_pitch,
        size: image.layout.size,
    })
}
