//! A small Vulkan application on the application's `wl_surface`, written by
//! the spec, for the child scenarios: an instance through the system loader,
//! a `VkSurfaceKHR` on [`App`]'s display and surface, a device whose queue
//! can present to it, and a swapchain whose frames are each cleared to a
//! colour of their own, with the synchronization a correct application uses.

use std::ffi::c_void;
use std::sync::Mutex;
use std::time::Instant;

use ash::vk;

use crate::common::child::{create_instance, Result};

#[path = "../headless/record.rs"]
mod record;

/// Frames in flight: a frame waits for the fence of the frame two back
/// before it reuses that slot's acquire semaphore and command buffer.
const SLOTS: usize = 2;

/// The newer extensions a child's application enables beyond the surface
/// and swapchain ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Newer {
    None,
    /// `VK_KHR_present_id`, `VK_KHR_present_wait` and
    /// `VK_KHR_incremental_present`.
    PresentWait,
    /// `VK_EXT_swapchain_maintenance1` (and `VK_EXT_surface_maintenance1`),
    /// for swapchains whose memory is deferred to the first acquire.
    Maintenance1,
}

/// Instance, Wayland surface, device and queue.
pub struct Vk {
    instance: ash::Instance,
    surface_fn: ash::khr::surface::Instance,
    surface: vk::SurfaceKHR,
    pd: vk::PhysicalDevice,
    device: ash::Device,
    swapchain_fn: ash::khr::swapchain::Device,
    /// With the present id and wait extensions enabled.
    present_wait: Option<ash::khr::present_wait::Device>,
    queue: vk::Queue,
    pool: vk::CommandPool,
    // Last: the loader must outlive everything made through it.
    _entry: ash::Entry,
}

impl Vk {
    /// # Safety
    /// `display` and `surface` are a live `wl_display*` and a `wl_surface*`
    /// of it, which outlive the returned value.
    pub unsafe fn new(display: *mut c_void, surface: *mut c_void) -> Result<Self> {
        // SAFETY: as the caller promises.
        unsafe { Self::with(display, surface, Newer::None) }
    }

    /// [`Vk::new`], with the `newer` extensions enabled.
    ///
    /// # Safety
    /// As [`Vk::new`].
    pub unsafe fn with(display: *mut c_void, surface: *mut c_void, newer: Newer) -> Result<Self> {
        // SAFETY: loading the system's Vulkan loader, as any application does.
        let entry = unsafe { ash::Entry::load()? };
        let mut exts = vec![ash::khr::surface::NAME, ash::khr::wayland_surface::NAME];
        if newer == Newer::Maintenance1 {
            exts.extend([
                ash::khr::get_surface_capabilities2::NAME,
                ash::ext::surface_maintenance1::NAME,
            ]);
        }
        let instance = create_instance(&entry, &exts, None)?;
        // SAFETY: everything below is made from this instance and destroyed
        // in `Drop` before it; the caller vouches for the Wayland handles.
        unsafe {
            let surface_fn = ash::khr::surface::Instance::new(&entry, &instance);
            let surface = ash::khr::wayland_surface::Instance::new(&entry, &instance)
                .create_wayland_surface(
                    &vk::WaylandSurfaceCreateInfoKHR::default()
                        .display(display)
                        .surface(surface),
                    None,
                )?;
            let (pd, family) = pick_device(&instance, &surface_fn, surface)?;
            let priorities = [1.0f32];
            let queues = [vk::DeviceQueueCreateInfo::default()
                .queue_family_index(family)
                .queue_priorities(&priorities)];
            let mut dev_exts = vec![ash::khr::swapchain::NAME.as_ptr()];
            let mut id = vk::PhysicalDevicePresentIdFeaturesKHR::default().present_id(true);
            let mut wait = vk::PhysicalDevicePresentWaitFeaturesKHR::default().present_wait(true);
            let mut maintenance = vk::PhysicalDeviceSwapchainMaintenance1FeaturesEXT::default()
                .swapchain_maintenance1(true);
            let mut info = vk::DeviceCreateInfo::default().queue_create_infos(&queues);
            if newer == Newer::Maintenance1 {
                dev_exts.push(ash::ext::swapchain_maintenance1::NAME.as_ptr());
                info = info.push_next(&mut maintenance);
            }
            if newer == Newer::PresentWait {
                dev_exts.extend(
                    [
                        ash::khr::present_id::NAME,
                        ash::khr::present_wait::NAME,
                        ash::khr::incremental_present::NAME,
                    ]
                    .map(|n| n.as_ptr()),
                );
                info = info.push_next(&mut id).push_next(&mut wait);
            }
            let info = info.enabled_extension_names(&dev_exts);
            let device = instance.create_device(pd, &info, None)?;
            let pool = device.create_command_pool(
                &vk::CommandPoolCreateInfo::default()
                    .queue_family_index(family)
                    .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER),
                None,
            )?;
            Ok(Self {
                swapchain_fn: ash::khr::swapchain::Device::new(&instance, &device),
                present_wait: (newer == Newer::PresentWait)
                    .then(|| ash::khr::present_wait::Device::new(&instance, &device)),
                queue: device.get_device_queue(family, 0),
                instance,
                surface_fn,
                surface,
                pd,
                device,
                pool,
                _entry: entry,
            })
        }
    }
}

impl Drop for Vk {
    fn drop(&mut self) {
        // SAFETY: every object made from this instance and device is gone
        // (a `Chain` borrows `Vk`, so it was dropped first).
        unsafe {
            let _ = self.device.device_wait_idle();
            self.device.destroy_command_pool(self.pool, None);
            self.device.destroy_device(None);
            self.surface_fn.destroy_surface(self.surface, None);
            self.instance.destroy_instance(None);
        }
    }
}

/// The first device with a queue family that has graphics and can present
/// to `surface`.
fn pick_device(
    instance: &ash::Instance,
    surface_fn: &ash::khr::surface::Instance,
    surface: vk::SurfaceKHR,
) -> Result<(vk::PhysicalDevice, u32)> {
    // SAFETY: queries on the live instance and surface.
    unsafe {
        for pd in instance.enumerate_physical_devices()? {
            let families = instance.get_physical_device_queue_family_properties(pd);
            for (i, f) in families.iter().enumerate() {
                let i = i as u32;
                if f.queue_flags.contains(vk::QueueFlags::GRAPHICS)
                    && surface_fn.get_physical_device_surface_support(pd, i, surface)?
                {
                    return Ok((pd, i));
                }
            }
        }
    }
    Err("no device can present to the Wayland surface".into())
}

/// What one present says beyond the image: its present id
/// (`VK_KHR_present_id`, 0 for none) and its one changed rectangle
/// (`VK_KHR_incremental_present`).
#[derive(Default, Clone, Copy)]
pub struct Extras {
    pub id: u64,
    pub damage: Option<vk::RectLayerKHR>,
}

/// A swapchain and what it takes to render and present frames to it.
pub struct Chain<'a> {
    vk: &'a Vk,
    swapchain: vk::SwapchainKHR,
    images: Vec<vk::Image>,
    /// Per image: signalled by its frame's submission, waited by its present.
    rendered: Vec<vk::Semaphore>,
    /// Per slot: the acquire semaphore, the clear and the fence that says
    /// both are free again.
    acquired: [vk::Semaphore; SLOTS],
    cmds: Vec<vk::CommandBuffer>,
    fences: [vk::Fence; SLOTS],
    frame: usize,
    /// The image the last frame was drawn into.
    pub last_image: u32,
    /// How long an acquire may wait, in ns (`u64::MAX` unless set).
    pub acquire_timeout: u64,
    /// When the last frame's `vkQueueSubmit` was called, in ns of `clock`.
    pub submit_called_ns: u64,
    /// When the last `vkQueuePresentKHR` was called, in ns of `clock`.
    pub present_called_ns: u64,
    pub clock: rustix::time::ClockId,
}

impl<'a> Chain<'a> {
    /// A swapchain of `size`×`size` pixels in `mode`, with the surface's
    /// minimum image count.
    pub fn new(vk: &'a Vk, mode: vk::PresentModeKHR, size: u32) -> Result<Self> {
        Self::with_flags(vk, mode, size, vk::SwapchainCreateFlagsKHR::empty())
    }

    /// [`Chain::new`], created with `flags`.
    pub fn with_flags(
        vk: &'a Vk,
        mode: vk::PresentModeKHR,
        size: u32,
        flags: vk::SwapchainCreateFlagsKHR,
    ) -> Result<Self> {
        // SAFETY: queries and objects of the live device; everything is
        // destroyed by `Drop`.
        unsafe {
            let caps = vk
                .surface_fn
                .get_physical_device_surface_capabilities(vk.pd, vk.surface)?;
            let modes = vk
                .surface_fn
                .get_physical_device_surface_present_modes(vk.pd, vk.surface)?;
            if !modes.contains(&mode) {
                return Err(format!("the surface does not offer {mode:?}").into());
            }
            let formats = vk
                .surface_fn
                .get_physical_device_surface_formats(vk.pd, vk.surface)?;
            let format = formats
                .iter()
                .find(|f| f.format == vk::Format::B8G8R8A8_UNORM)
                .or(formats.first())
                .copied()
                .ok_or("the surface offers no format")?;
            // Wayland leaves the size to the swapchain.
            let extent = if caps.current_extent.width == u32::MAX {
                vk::Extent2D {
                    width: size,
                    height: size,
                }
            } else {
                caps.current_extent
            };
            let alpha = if caps
                .supported_composite_alpha
                .contains(vk::CompositeAlphaFlagsKHR::OPAQUE)
            {
                vk::CompositeAlphaFlagsKHR::OPAQUE
            } else {
                vk::CompositeAlphaFlagsKHR::INHERIT
            };
            let swapchain = vk.swapchain_fn.create_swapchain(
                &vk::SwapchainCreateInfoKHR::default()
                    .flags(flags)
                    .surface(vk.surface)
                    .min_image_count(caps.min_image_count)
                    .image_format(format.format)
                    .image_color_space(format.color_space)
                    .image_extent(extent)
                    .image_array_layers(1)
                    .image_usage(vk::ImageUsageFlags::TRANSFER_DST)
                    .image_sharing_mode(vk::SharingMode::EXCLUSIVE)
                    .pre_transform(caps.current_transform)
                    .composite_alpha(alpha)
                    .present_mode(mode)
                    .clipped(true),
                None,
            )?;
            let mut chain = Chain {
                vk,
                swapchain,
                images: vk.swapchain_fn.get_swapchain_images(swapchain)?,
                rendered: Vec::new(),
                acquired: [vk::Semaphore::null(); SLOTS],
                cmds: Vec::new(),
                fences: [vk::Fence::null(); SLOTS],
                frame: 0,
                last_image: 0,
                acquire_timeout: u64::MAX,
                submit_called_ns: 0,
                present_called_ns: 0,
                clock: rustix::time::ClockId::Monotonic,
            };
            let semaphore = || vk.device.create_semaphore(&Default::default(), None);
            for _ in 0..chain.images.len() {
                chain.rendered.push(semaphore()?);
            }
            chain.cmds = vk.device.allocate_command_buffers(
                &vk::CommandBufferAllocateInfo::default()
                    .command_pool(vk.pool)
                    .level(vk::CommandBufferLevel::PRIMARY)
                    .command_buffer_count(SLOTS as u32),
            )?;
            for slot in 0..SLOTS {
                chain.acquired[slot] = semaphore()?;
                chain.fences[slot] = vk.device.create_fence(
                    &vk::FenceCreateInfo::default().flags(vk::FenceCreateFlags::SIGNALED),
                    None,
                )?;
            }
            Ok(chain)
        }
    }

    /// One frame: acquires an image, clears it to `colour` and presents it,
    /// holding `surface_lock` around `vkQueuePresentKHR` (the application's
    /// lock on its `wl_surface`, whose requests the layer makes inside the
    /// call), and adds how long the call took, in µs, to `present_us`.
    /// Returns the present's result, or the acquire's when it got no image
    /// (`VK_TIMEOUT` or `VK_NOT_READY` within [`Chain::acquire_timeout`],
    /// or an error).
    pub fn frame(
        &mut self,
        colour: [f32; 4],
        surface_lock: &Mutex<()>,
        present_us: &mut Vec<u64>,
    ) -> Result<vk::Result> {
        self.frame_with(colour, surface_lock, present_us, Extras::default())
    }

    /// [`Chain::frame`] with `extras` chained to the present.
    pub fn frame_with(
        &mut self,
        colour: [f32; 4],
        surface_lock: &Mutex<()>,
        present_us: &mut Vec<u64>,
        extras: Extras,
    ) -> Result<vk::Result> {
        let slot = self.frame % SLOTS;
        self.frame += 1;
        let d = &self.vk.device;
        let (fence, cmd, acquired) = (self.fences[slot], self.cmds[slot], self.acquired[slot]);
        // SAFETY: the slot's fence guards its semaphore and command buffer;
        // the image is this frame's until its present.
        unsafe {
            d.wait_for_fences(&[fence], true, u64::MAX)?;
            let acquire = self.vk.swapchain_fn.acquire_next_image(
                self.swapchain,
                self.acquire_timeout,
                acquired,
                vk::Fence::null(),
            );
            let index = match acquire {
                Ok((index, _suboptimal)) => index,
                // No image: the slot's semaphore and fence stay as they were.
                Err(e) => {
                    self.frame -= 1;
                    return Ok(e);
                }
            };
            d.reset_fences(&[fence])?;
            self.last_image = index;
            record::record_clear(d, cmd, self.images[index as usize], colour)?;
            let waits = [acquired];
            let stages = [vk::PipelineStageFlags::TRANSFER];
            let cmds = [cmd];
            let signals = [self.rendered[index as usize]];
            let submit = vk::SubmitInfo::default()
                .wait_semaphores(&waits)
                .wait_dst_stage_mask(&stages)
                .command_buffers(&cmds)
                .signal_semaphores(&signals);
            self.submit_called_ns = now_ns(self.clock);
            d.queue_submit(self.vk.queue, &[submit], fence)?;
            let swapchains = [self.swapchain];
            let indices = [index];
            let ids = [extras.id];
            let mut id_info = vk::PresentIdKHR::default().present_ids(&ids);
            let rects: Vec<vk::RectLayerKHR> = extras.damage.into_iter().collect();
            let regions = [vk::PresentRegionKHR::default().rectangles(&rects)];
            let mut region_info = vk::PresentRegionsKHR::default().regions(&regions);
            let mut info = vk::PresentInfoKHR::default()
                .wait_semaphores(&signals)
                .swapchains(&swapchains)
                .image_indices(&indices);
            if extras.id != 0 {
                info = info.push_next(&mut id_info);
            }
            if extras.damage.is_some() {
                info = info.push_next(&mut region_info);
            }
            let _surface = surface_lock.lock().unwrap_or_else(|e| e.into_inner());
            self.present_called_ns = now_ns(self.clock);
            let started = Instant::now();
            let result = self.vk.swapchain_fn.queue_present(self.vk.queue, &info);
            present_us.push(started.elapsed().as_micros() as u64);
            Ok(match result {
                Ok(false) => vk::Result::SUCCESS,
                Ok(true) => vk::Result::SUBOPTIMAL_KHR,
                Err(e) => e,
            })
        }
    }
}

impl Chain<'_> {
    pub fn image_count(&self) -> usize {
        self.images.len()
    }

    /// `vkWaitForPresentKHR` (the device must be made `modern`).
    pub fn wait_for_present(&self, id: u64, timeout: u64) -> Result<vk::Result> {
        let f = self
            .vk
            .present_wait
            .as_ref()
            .ok_or("present wait is not enabled")?;
        // SAFETY: the live swapchain.
        Ok(
            match unsafe { f.wait_for_present(self.swapchain, id, timeout) } {
                Ok(()) => vk::Result::SUCCESS,
                Err(e) => e,
            },
        )
    }
}

fn now_ns(clock: rustix::time::ClockId) -> u64 {
    let t = rustix::time::clock_gettime(clock);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Drop for Chain<'_> {
    fn drop(&mut self) {
        // SAFETY: after the device is idle nothing uses these objects; the
        // swapchain's images go with it.
        unsafe {
            let d = &self.vk.device;
            let _ = d.device_wait_idle();
            for &s in self.rendered.iter().chain(&self.acquired) {
                d.destroy_semaphore(s, None);
            }
            for &f in &self.fences {
                d.destroy_fence(f, None);
            }
            if !self.cmds.is_empty() {
                d.free_command_buffers(self.vk.pool, &self.cmds);
            }
            self.vk.swapchain_fn.destroy_swapchain(self.swapchain, None);
        }
    }
}
