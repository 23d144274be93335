//! A small Vulkan application on a `VK_EXT_headless_surface` (or a display
//! plane's surface), written by the spec: what the child scenarios drive through the layer (or Mesa's WSI).
//! Each frame clears the acquired image to a colour of its own and presents
//! it, with the synchronization a correct application uses, so that any
//! validation error is the layer's.

use ash::vk;

use crate::common::child::{create_instance, Result};
use crate::common::validation;
use crate::messenger::on_message;

#[path = "extras.rs"]
mod extras;
pub use extras::{Extras, Switch};
#[path = "host_buffer.rs"]
mod host_buffer;

/// Frames in flight: the application waits for the fence of the frame two
/// frames back before reusing its acquire semaphore.
const SLOTS: usize = 2;

/// Instance, headless surface, device and queue.
pub struct Vk {
    pub instance: ash::Instance,
    pub surface_fn: ash::khr::surface::Instance,
    pub surface: vk::SurfaceKHR,
    utils: Option<(ash::ext::debug_utils::Instance, vk::DebugUtilsMessengerEXT)>,
    pub pd: vk::PhysicalDevice,
    pub device: ash::Device,
    pub swapchain_fn: ash::khr::swapchain::Device,
    pub queue: vk::Queue,
    pub pool: vk::CommandPool,
    pub memory: vk::PhysicalDeviceMemoryProperties,
    /// The X11 window the surface is on, if it is on one.
    pub window: Option<crate::x11::Window>,
    // Last: the loader must outlive everything made through it.
    _entry: ash::Entry,
}

/// What a scenario asks of its device beyond a swapchain.
#[derive(Default)]
pub struct Options<'a> {
    /// A debug-utils messenger counts validation errors from instance
    /// creation on.
    pub messenger: bool,
    pub device_extensions: &'a [&'a std::ffi::CStr],
    /// Enables VK_EXT_private_data's feature (the extension must be listed).
    pub private_data: bool,
    /// Features chained to the device create info (the application's
    /// structures, linked in the order given).
    pub features: Vec<*mut vk::BaseOutStructure<'static>>,
    /// Instance extensions beyond the surface ones.
    pub instance_extensions: &'a [&'a std::ffi::CStr],
    /// A display plane's surface (`VK_KHR_display`) on the first display,
    /// instead of a headless one.
    pub display: bool,
    /// A surface on an X11 window of the child's own (`crate::x11`),
    /// instead of a headless one.
    pub x11: bool,
}

impl Vk {
    /// With `messenger`, a debug-utils messenger counts validation errors
    /// from instance creation on.
    pub fn new(messenger: bool) -> Result<Self> {
        Self::with(&Options {
            messenger,
            ..Options::default()
        })
    }

    pub fn with(options: &Options<'_>) -> Result<Self> {
        let messenger = options.messenger;
        // SAFETY: loading the system's Vulkan loader, as any application does.
        let entry = unsafe { ash::Entry::load()? };
        let platform = if options.display {
            ash::khr::display::NAME
        } else if options.x11 {
            ash::khr::xcb_surface::NAME
        } else {
            ash::ext::headless_surface::NAME
        };
        let mut exts = vec![ash::khr::surface::NAME, platform];
        exts.extend(options.instance_extensions);
        if messenger {
            exts.push(ash::ext::debug_utils::NAME);
        }
        let mut messenger_info = validation::messenger_info(Some(on_message));
        // Chained too, so that instance creation itself is validated.
        let instance = create_instance(&entry, &exts, messenger.then_some(&mut messenger_info))?;
        // SAFETY: everything below is made from this instance and destroyed
        // in `Drop` before it.
        unsafe {
            let utils = if messenger {
                let utils = ash::ext::debug_utils::Instance::new(&entry, &instance);
                let m = utils.create_debug_utils_messenger(&messenger_info, None)?;
                Some((utils, m))
            } else {
                None
            };
            let surface_fn = ash::khr::surface::Instance::new(&entry, &instance);
            let window = options.x11.then(crate::x11::Window::open).transpose()?;
            let surface = if options.display {
                crate::display::plane_surface(&entry, &instance)?
            } else if let Some(w) = &window {
                w.surface(&entry, &instance)?
            } else {
                ash::ext::headless_surface::Instance::new(&entry, &instance)
                    .create_headless_surface(&vk::HeadlessSurfaceCreateInfoEXT::default(), None)?
            };
            let (pd, family) = pick_device(&instance, &surface_fn, surface)?;
            let priorities = [1.0f32];
            let queues = [vk::DeviceQueueCreateInfo::default()
                .queue_family_index(family)
                .queue_priorities(&priorities)];
            let mut dev_exts = vec![ash::khr::swapchain::NAME.as_ptr()];
            dev_exts.extend(options.device_extensions.iter().map(|e| e.as_ptr()));
            let mut private_data =
                vk::PhysicalDevicePrivateDataFeatures::default().private_data(true);
            let mut device_info = vk::DeviceCreateInfo::default()
                .queue_create_infos(&queues)
                .enabled_extension_names(&dev_exts);
            if options.private_data {
                device_info = device_info.push_next(&mut private_data);
            }
            // The caller's features, linked in front of the rest.
            for &f in options.features.iter().rev() {
                (*f).p_next = device_info.p_next as *mut _;
                device_info.p_next = f as *const std::ffi::c_void;
            }
            let device = instance.create_device(pd, &device_info, None)?;
            let queue = device.get_device_queue(family, 0);
            let pool = device.create_command_pool(
                &vk::CommandPoolCreateInfo::default()
                    .queue_family_index(family)
                    .flags(vk::CommandPoolCreateFlags::RESET_COMMAND_BUFFER),
                None,
            )?;
            Ok(Self {
                swapchain_fn: ash::khr::swapchain::Device::new(&instance, &device),
                memory: instance.get_physical_device_memory_properties(pd),
                instance,
                surface_fn,
                surface,
                utils,
                pd,
                device,
                queue,
                pool,
                window,
                _entry: entry,
            })
        }
    }

    pub fn entry(&self) -> &ash::Entry {
        &self._entry
    }

    pub fn present_modes(&self) -> Result<Vec<vk::PresentModeKHR>> {
        // SAFETY: the live physical device and surface.
        Ok(unsafe {
            self.surface_fn
                .get_physical_device_surface_present_modes(self.pd, self.surface)?
        })
    }

    /// The present modes the tests run in: all four through the layer
    /// (which must offer them); those Mesa offers in the Mesa baseline.
    pub fn test_modes(&self) -> Result<Vec<vk::PresentModeKHR>> {
        if !crate::support::baseline() {
            return Ok(ALL_MODES.to_vec());
        }
        let offered = self.present_modes()?;
        Ok(ALL_MODES
            .into_iter()
            .filter(|m| offered.contains(m))
            .collect())
    }

    /// The fastest mode [`Vk::test_modes`] has (no virtual refresh).
    pub fn fast_mode(&self) -> Result<vk::PresentModeKHR> {
        Ok(*self.test_modes()?.first().ok_or("no present mode")?)
    }

    pub fn capabilities(&self) -> Result<vk::SurfaceCapabilitiesKHR> {
        // SAFETY: the live physical device and surface.
        Ok(unsafe {
            self.surface_fn
                .get_physical_device_surface_capabilities(self.pd, self.surface)?
        })
    }

    pub fn fence(&self, signalled: bool) -> Result<vk::Fence> {
        let flags = if signalled {
            vk::FenceCreateFlags::SIGNALED
        } else {
            vk::FenceCreateFlags::empty()
        };
        // SAFETY: the live device; callers destroy the fence.
        Ok(unsafe {
            self.device
                .create_fence(&vk::FenceCreateInfo::default().flags(flags), None)?
        })
    }

    pub fn semaphore(&self) -> Result<vk::Semaphore> {
        // SAFETY: the live device; callers destroy the semaphore.
        Ok(unsafe {
            self.device
                .create_semaphore(&vk::SemaphoreCreateInfo::default(), None)?
        })
    }

    /// Whether the driver lists DRM format modifiers for `format` in
    /// `VkDrmFormatModifierPropertiesListEXT` but none in its
    /// `VkFormatFeatureFlags2` twin, `VkDrmFormatModifierPropertiesList2EXT`
    /// (lavapipe in Mesa 25.0 leaves the latter untouched). The validation
    /// layer reads the second, so it then reports every use of a
    /// DRM-modifier image as lacking its format features; with this
    /// established, the messenger leaves exactly those messages uncounted.
    pub fn modifier_features2_missing(&self, format: vk::Format) -> bool {
        let mut v1 = vk::DrmFormatModifierPropertiesListEXT::default();
        let mut v2 = vk::DrmFormatModifierPropertiesList2EXT::default();
        // SAFETY: count-only queries (null arrays) on the live device.
        unsafe {
            let mut p = vk::FormatProperties2::default().push_next(&mut v1);
            self.instance
                .get_physical_device_format_properties2(self.pd, format, &mut p);
            let mut p = vk::FormatProperties2::default().push_next(&mut v2);
            self.instance
                .get_physical_device_format_properties2(self.pd, format, &mut p);
        }
        let missing = v1.drm_format_modifier_count > 0 && v2.drm_format_modifier_count == 0;
        crate::messenger::excuse_features2(missing);
        missing
    }
}

impl Drop for Vk {
    fn drop(&mut self) {
        // SAFETY: every object made from this instance and device is gone
        // (swapchains and buffers borrow `Vk`, so they were dropped first).
        unsafe {
            let _ = self.device.device_wait_idle();
            self.device.destroy_command_pool(self.pool, None);
            self.device.destroy_device(None);
            self.surface_fn.destroy_surface(self.surface, None);
            if let Some((utils, m)) = self.utils.take() {
                utils.destroy_debug_utils_messenger(m, None);
            }
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
    Err("no device can present to the surface".into())
}

pub fn mode_name(m: vk::PresentModeKHR) -> &'static str {
    match m {
        vk::PresentModeKHR::IMMEDIATE => "immediate",
        vk::PresentModeKHR::MAILBOX => "mailbox",
        vk::PresentModeKHR::FIFO => "fifo",
        vk::PresentModeKHR::FIFO_RELAXED => "fiforelaxed",
        FIFO_LATEST_READY => "fifolatestready",
        _ => "other",
    }
}

pub fn parse_mode(name: &str) -> Result<vk::PresentModeKHR> {
    Ok(match name {
        "immediate" => vk::PresentModeKHR::IMMEDIATE,
        "mailbox" => vk::PresentModeKHR::MAILBOX,
        "fifo" => vk::PresentModeKHR::FIFO,
        "fiforelaxed" => vk::PresentModeKHR::FIFO_RELAXED,
        other => return Err(format!("unknown present mode {other}").into()),
    })
}

/// `VK_PRESENT_MODE_FIFO_LATEST_READY_EXT` (vk.xml; newer than ash).
pub const FIFO_LATEST_READY: vk::PresentModeKHR = vk::PresentModeKHR::from_raw(1_000_361_000);

pub const ALL_MODES: [vk::PresentModeKHR; 4] = [
    vk::PresentModeKHR::IMMEDIATE,
    vk::PresentModeKHR::MAILBOX,
    vk::PresentModeKHR::FIFO,
    vk::PresentModeKHR::FIFO_RELAXED,
];

/// A swapchain with what it takes to render and present frames to it.
pub struct Chain<'a> {
    vk: &'a Vk,
    pub swapchain: vk::SwapchainKHR,
    pub images: Vec<vk::Image>,
    pub extent: vk::Extent2D,
    pub format: vk::Format,
    pub usage: vk::ImageUsageFlags,
    pub min_image_count: u32,
    /// Per image: clear to the image's colour, then to PRESENT_SRC;
    /// recorded at creation, or at the image's first acquire when its
    /// memory is bound then (a deferred allocation).
    cmds: Vec<vk::CommandBuffer>,
    recorded: Vec<bool>,
    /// Per image: signalled by its frame's submission, waited by its present
    /// (re-signalled only after the image came back from the consumer).
    pub rendered: Vec<vk::Semaphore>,
    acquired: [vk::Semaphore; SLOTS],
    fences: [vk::Fence; SLOTS],
    frame: usize,
}

/// Per-image clear colours: different images, different contents.
pub const COLOURS: [[f32; 4]; 4] = [
    [1.0, 0.0, 0.0, 1.0],
    [0.0, 1.0, 0.0, 1.0],
    [0.0, 0.0, 1.0, 1.0],
    [1.0, 1.0, 0.0, 1.0],
];

impl<'a> Chain<'a> {
    /// A swapchain on `vk`'s surface in `mode`, `size` pixels square, with
    /// at least `min_images` images (and the surface's minimum), replacing
    /// `old` if given.
    pub fn new(
        vk: &'a Vk,
        mode: vk::PresentModeKHR,
        size: u32,
        min_images: u32,
        old: vk::SwapchainKHR,
    ) -> Result<Self> {
        Self::create(vk, mode, size, min_images, old, &Switch::default())
    }

    /// As [`Chain::new`], able to switch among `switch.modes`
    /// (`VkSwapchainPresentModesCreateInfoEXT`) and made with
    /// `switch.flags`.
    pub fn create(
        vk: &'a Vk,
        mode: vk::PresentModeKHR,
        size: u32,
        min_images: u32,
        old: vk::SwapchainKHR,
        switch: &Switch<'_>,
    ) -> Result<Self> {
        let caps = vk.capabilities()?;
        if !vk.present_modes()?.contains(&mode) {
            return Err(format!("the surface does not offer present mode {mode:?}").into());
        }
        // SAFETY: queries and objects of the live device; everything is
        // destroyed by `Drop`.
        unsafe {
            let formats = vk
                .surface_fn
                .get_physical_device_surface_formats(vk.pd, vk.surface)?;
            let format = formats
                .iter()
                .find(|f| f.format == vk::Format::B8G8R8A8_UNORM)
                .or(formats.first())
                .copied()
                .ok_or("the surface offers no format")?;
            let mut count = caps.min_image_count.max(min_images);
            if caps.max_image_count > 0 {
                count = count.min(caps.max_image_count);
            }
            let extent = if caps.current_extent.width == u32::MAX {
                vk::Extent2D {
                    width: size,
                    height: size,
                }
            } else {
                caps.current_extent
            };
            let alpha = [
                vk::CompositeAlphaFlagsKHR::OPAQUE,
                vk::CompositeAlphaFlagsKHR::INHERIT,
                vk::CompositeAlphaFlagsKHR::PRE_MULTIPLIED,
                vk::CompositeAlphaFlagsKHR::POST_MULTIPLIED,
            ]
            .into_iter()
            .find(|a| caps.supported_composite_alpha.contains(*a))
            .ok_or("no composite alpha")?;
            let usage = (vk::ImageUsageFlags::COLOR_ATTACHMENT
                | vk::ImageUsageFlags::TRANSFER_DST
                | vk::ImageUsageFlags::TRANSFER_SRC)
                & caps.supported_usage_flags;
            let mut modes =
                vk::SwapchainPresentModesCreateInfoEXT::default().present_modes(switch.modes);
            let mut info = vk::SwapchainCreateInfoKHR::default()
                .flags(switch.flags)
                .surface(vk.surface)
                .min_image_count(count)
                .image_format(format.format)
                .image_color_space(format.color_space)
                .image_extent(extent)
                .image_array_layers(1)
                .image_usage(usage)
                .image_sharing_mode(vk::SharingMode::EXCLUSIVE)
                .pre_transform(caps.current_transform)
                .composite_alpha(alpha)
                .present_mode(mode)
                .clipped(true)
                .old_swapchain(old);
            if !switch.modes.is_empty() {
                info = info.push_next(&mut modes);
            }
            let swapchain = vk.swapchain_fn.create_swapchain(&info, switch.host)?;
            let images = vk.swapchain_fn.get_swapchain_images(swapchain)?;
            let mut chain = Chain {
                vk,
                swapchain,
                images,
                extent,
                format: format.format,
                usage,
                min_image_count: caps.min_image_count,
                cmds: Vec::new(),
                recorded: Vec::new(),
                rendered: Vec::new(),
                acquired: [vk::Semaphore::null(); SLOTS],
                fences: [vk::Fence::null(); SLOTS],
                frame: 0,
            };
            chain.cmds = vk.device.allocate_command_buffers(
                &vk::CommandBufferAllocateInfo::default()
                    .command_pool(vk.pool)
                    .level(vk::CommandBufferLevel::PRIMARY)
                    .command_buffer_count(chain.images.len() as u32),
            )?;
            let deferred = switch
                .flags
                .contains(vk::SwapchainCreateFlagsKHR::DEFERRED_MEMORY_ALLOCATION_EXT);
            chain.recorded = vec![false; chain.images.len()];
            for i in 0..chain.images.len() as u32 {
                if !deferred {
                    chain.record(i)?;
                }
                chain.rendered.push(vk.semaphore()?);
            }
            for slot in 0..SLOTS {
                chain.acquired[slot] = vk.semaphore()?;
                chain.fences[slot] = vk.fence(true)?;
            }
            Ok(chain)
        }
    }

    /// `vkAcquireNextImageKHR` as is.
    pub fn acquire(
        &self,
        timeout: u64,
        semaphore: vk::Semaphore,
        fence: vk::Fence,
    ) -> std::result::Result<u32, vk::Result> {
        // SAFETY: the live swapchain; the caller's semaphore and fence are
        // unsignalled with no pending operation, as the spec requires.
        unsafe {
            self.vk
                .swapchain_fn
                .acquire_next_image(self.swapchain, timeout, semaphore, fence)
                .map(|(i, _suboptimal)| i)
        }
    }

    /// Presents `index` after `wait`.
    pub fn present(
        &self,
        index: u32,
        wait: &[vk::Semaphore],
    ) -> std::result::Result<(), vk::Result> {
        self.present_with(index, wait, &Extras::default())
    }

    /// One whole frame, as a correct application renders it; returns the
    /// image index.
    pub fn frame(&mut self) -> Result<u32> {
        self.frame_with(&Extras::default()).map(|(i, _)| i)
    }

    /// [`Chain::frame`] with `extras` chained to its present; returns the
    /// image index and the fence its render signals (valid until the frame
    /// after next).
    pub fn frame_with(&mut self, extras: &Extras) -> Result<(u32, vk::Fence)> {
        let slot = self.frame % SLOTS;
        self.frame += 1;
        let fence = self.fences[slot];
        // SAFETY: the slot's fence guards the slot's acquire semaphore.
        unsafe {
            self.vk.device.wait_for_fences(&[fence], true, u64::MAX)?;
            self.vk.device.reset_fences(&[fence])?;
        }
        let index = self
            .acquire(u64::MAX, self.acquired[slot], vk::Fence::null())
            .map_err(|e| format!("vkAcquireNextImageKHR: {e:?}"))?;
        if !self.recorded[index as usize] {
            self.record(index)?;
        }
        self.submit_clear(index, self.acquired[slot], fence)?;
        self.present_with(index, &[self.rendered[index as usize]], extras)
            .map_err(|e| format!("vkQueuePresentKHR: {e:?}"))?;
        Ok((index, fence))
    }

    /// Acquires an image and clears it, and waits for the clear: a frame
    /// whose render is complete, not presented. Returns its index.
    pub fn render_unpresented(&self) -> Result<u32> {
        let acquired = self.vk.semaphore()?;
        let rendered = self.vk.fence(false)?;
        let done = match self.acquire(u64::MAX, acquired, vk::Fence::null()) {
            Ok(i) => self.submit_clear(i, acquired, rendered).map(|()| i),
            Err(e) => Err(format!("vkAcquireNextImageKHR: {e:?}").into()),
        };
        // SAFETY: the fence of the submission just made (if made); once it
        // signalled, neither object is in use.
        unsafe {
            if done.is_ok() {
                self.vk
                    .device
                    .wait_for_fences(&[rendered], true, u64::MAX)?;
            }
            self.vk.device.destroy_semaphore(acquired, None);
            self.vk.device.destroy_fence(rendered, None);
        }
        done
    }

    pub fn wait_idle(&self) -> Result<()> {
        // SAFETY: the live device.
        unsafe { self.vk.device.device_wait_idle()? };
        Ok(())
    }

    /// Destroys the swapchain now, with `host` (the callbacks it was made
    /// with), whatever its images are doing (the rest goes when the chain
    /// is dropped).
    pub fn destroy_swapchain(&mut self, host: Option<&vk::AllocationCallbacks<'_>>) {
        // SAFETY: the application's swapchain, destroyed once.
        unsafe { self.vk.swapchain_fn.destroy_swapchain(self.swapchain, host) };
        self.swapchain = vk::SwapchainKHR::null();
    }

    /// Drops everything but the swapchain, which the application then
    /// leaves alive.
    pub fn leak_swapchain(mut self) {
        self.swapchain = vk::SwapchainKHR::null();
    }
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
