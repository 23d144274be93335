//! One swapchain image: a Vulkan image with an explicit DRM format
//! modifier in dedicated memory that is a dma-buf, either allocated by the
//! driver and exported (at creation, or at its first acquire when the
//! application defers it), or allocated by the consumer and imported; the
//! semaphore (and, for the CPU fallback, the fence) its present signals;
//! and its ownership-transfer command buffers, one pair per queue family.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, OnceLock};

use ash::vk;
use syncfile::DmaBuf;

use super::error::SwapchainError;
use crate::vulkan::device::ExtFns;
use crate::vulkan::host::HostAllocator;
use crate::wsi::platform::Buffer;

/// How every image of a swapchain is made.
pub struct ImageSpec<'a> {
    pub flags: vk::ImageCreateFlags,
    pub format: vk::Format,
    pub extent: vk::Extent2D,
    pub layers: u32,
    pub usage: vk::ImageUsageFlags,
    pub sharing: vk::SharingMode,
    pub families: &'a [u32],
    /// The formats of a mutable-format swapchain's views (empty otherwise).
    pub view_formats: &'a [vk::Format],
    /// The modifiers the driver may choose from, for driver-allocated
    /// images.
    pub modifiers: &'a [u64],
    pub memory: &'a vk::PhysicalDeviceMemoryProperties,
    /// The application's callbacks for the swapchain's objects.
    pub host: HostAllocator,
}

/// The device and the commands an image is made and destroyed with.
pub struct Ctx<'a> {
    pub device: &'a ash::Device,
    pub ext: &'a ExtFns,
}

/// The command buffers that hand an image to its consumer at present and
/// take it back before the application's first use after an acquire, on
/// queues of one family.
#[derive(Clone, Copy)]
pub struct Transfers {
    pub family: u32,
    pub release: vk::CommandBuffer,
    pub acquire: vk::CommandBuffer,
}

/// The dedicated allocation a driver-allocated image takes when it is bound.
#[derive(Clone, Copy, Default)]
struct Allocation {
    size: vk::DeviceSize,
    type_index: u32,
}

#[derive(Default)]
pub struct Image {
    pub image: vk::Image,
    /// Set once, when the memory is bound; with [`Image::dma_buf`].
    memory: OnceLock<vk::DeviceMemory>,
    allocation: Allocation,
    /// Signalled by the present submission.
    pub semaphore: vk::Semaphore,
    /// CPU fallback only: signalled once that submission is done (and
    /// made signalled: no submission yet).
    pub fence: vk::Fence,
    /// Signalled by the layer's batch that takes the image back from the
    /// consumer, and waited on by the application's batch after it in
    /// place of the acquire semaphore.
    pub handback: vk::Semaphore,
    pub dma_buf: OnceLock<DmaBuf>,
    pub modifier: u64,
    pub layout: vk::SubresourceLayout,
    /// Recorded on first use of each queue family (see `ownership`), from
    /// the device's pool for that family.
    pub transfers: Mutex<Vec<Transfers>>,
    /// Whether a present has handed it to its consumer: from then on the
    /// application's first use after an acquire takes it back.
    pub released: AtomicBool,
    /// What its driver objects are made and freed with.
    host: HostAllocator,
    freed: bool,
}

impl Image {
    /// Makes the image, with its memory allocated by the driver and
    /// exported as a dma-buf now if `bind`, else at [`Image::bind`]; on
    /// failure frees whatever it made.
    pub fn export(
        ctx: &Ctx<'_>,
        spec: &ImageSpec<'_>,
        bind: bool,
    ) -> Result<Image, SwapchainError> {
        let mut image = Image {
            host: spec.host,
            ..Image::default()
        };
        let built = image.build_exported(ctx, spec).and_then(|()| {
            if bind {
                image.bind(ctx).map(drop)
            } else {
                Ok(())
            }
        });
        match built {
            Ok(()) => Ok(image),
            Err(e) => {
                image.destroy(ctx);
                Err(e)
            }
        }
    }

    /// Makes the image on the consumer's `buffer`, imported into Vulkan;
    /// on failure frees whatever it made (the buffer's descriptor too).
    pub fn import(
        ctx: &Ctx<'_>,
        spec: &ImageSpec<'_>,
        buffer: Buffer,
    ) -> Result<Image, SwapchainError> {
        let mut image = Image {
            host: spec.host,
            ..Image::default()
        };
        match image.build_imported(ctx, spec, buffer) {
            Ok(()) => Ok(image),
            Err(e) => {
                image.destroy(ctx);
                Err(e)
            }
        }
    }

    fn create_image(
        &mut self,
        ctx: &Ctx<'_>,
        spec: &ImageSpec<'_>,
        modifier: Modifier<'_>,
    ) -> Result<(), SwapchainError> {
        let mut external = vk::ExternalMemoryImageCreateInfo::default()
            .handle_types(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
        let mut list = vk::ImageDrmFormatModifierListCreateInfoEXT::default();
        let mut explicit = vk::ImageDrmFormatModifierExplicitCreateInfoEXT::default();
        let mut views = vk::ImageFormatListCreateInfo::default().view_formats(spec.view_formats);
        let mut info = vk::ImageCreateInfo::default()
            .flags(spec.flags)
            .image_type(vk::ImageType::TYPE_2D)
            .format(spec.format)
            .extent(vk::Extent3D {
                width: spec.extent.width,
                height: spec.extent.height,
                depth: 1,
            })
            .mip_levels(1)
            .array_layers(spec.layers)
            .samples(vk::SampleCountFlags::TYPE_1)
            .tiling(vk::ImageTiling::DRM_FORMAT_MODIFIER_EXT)
            .usage(spec.usage)
            .sharing_mode(spec.sharing)
            .queue_family_indices(spec.families)
            .initial_layout(vk::ImageLayout::UNDEFINED)
            .push_next(&mut external);
        info = match modifier {
            Modifier::Choose(m) => {
                list = list.drm_format_modifiers(m);
                info.push_next(&mut list)
            }
            Modifier::Exactly(m, plane) => {
                explicit = explicit
                    .drm_format_modifier(m)
                    .plane_layouts(std::slice::from_ref(plane));
                info.push_next(&mut explicit)
            }
        };
        if !spec.view_formats.is_empty() {
            info = info.push_next(&mut views);
        }
        // SAFETY: a valid create info for a device with the modifier and
        // external-memory extensions enabled.
        self.image = unsafe { ctx.device.create_image(&info, self.host.get()) }
            .map_err(|r| SwapchainError::Vulkan("vkCreateImage", r))?;
        Ok(())
    }

    fn build_exported(
        &mut self,
        ctx: &Ctx<'_>,
        spec: &ImageSpec<'_>,
    ) -> Result<(), SwapchainError> {
        let d = ctx.device;
        self.create_image(ctx, spec, Modifier::Choose(spec.modifiers))?;
        let mut props = vk::ImageDrmFormatModifierPropertiesEXT::default();
        // SAFETY: the image was made with DRM_FORMAT_MODIFIER tiling.
        let r = unsafe {
            (ctx.ext
                .modifier
                .get_image_drm_format_modifier_properties_ext)(
                d.handle(), self.image, &mut props
            )
        };
        if r != vk::Result::SUCCESS {
            return Err(SwapchainError::Vulkan(
                "vkGetImageDrmFormatModifierPropertiesEXT",
                r,
            ));
        }
        self.modifier = props.drm_format_modifier;
        let plane = vk::ImageSubresource {
            aspect_mask: vk::ImageAspectFlags::MEMORY_PLANE_0_EXT,
            mip_level: 0,
            array_layer: 0,
        };
        // SAFETY: a single-plane image with a modifier.
        self.layout = unsafe { d.get_image_subresource_layout(self.image, plane) };
        // SAFETY: the image is alive.
        let reqs = unsafe { d.get_image_memory_requirements(self.image) };
        self.allocation = Allocation {
            size: reqs.size,
            type_index: memory_type(spec.memory, reqs.memory_type_bits)
                .ok_or(SwapchainError::NoMemoryType)?,
        };
        Ok(())
    }

    /// Allocates, binds and exports the memory of a driver-allocated
    /// image, unless it has it; whether it did now.
    pub fn bind(&self, ctx: &Ctx<'_>) -> Result<bool, SwapchainError> {
        if self.memory.get().is_some() {
            return Ok(false);
        }
        let d = ctx.device;
        // Drivers export dma-bufs only for exactly this handle type.
        let mut export = vk::ExportMemoryAllocateInfo::default()
            .handle_types(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
        let mut dedicated = vk::MemoryDedicatedAllocateInfo::default().image(self.image);
        let alloc = vk::MemoryAllocateInfo::default()
            .allocation_size(self.allocation.size)
            .memory_type_index(self.allocation.type_index)
            .push_next(&mut export)
            .push_next(&mut dedicated);
        // SAFETY: a valid allocation for this image.
        let memory = unsafe { d.allocate_memory(&alloc, self.host.get()) }
            .map_err(|r| SwapchainError::Vulkan("vkAllocateMemory", r))?;
        match export_bound(ctx, self.image, memory) {
            Ok(dma_buf) => {
                let _ = self.memory.set(memory);
                let _ = self.dma_buf.set(dma_buf);
                Ok(true)
            }
            Err(e) => {
                // SAFETY: the memory is this call's own and unused.
                unsafe { d.free_memory(memory, self.host.get()) };
                Err(e)
            }
        }
    }

    fn build_imported(
        &mut self,
        ctx: &Ctx<'_>,
        spec: &ImageSpec<'_>,
        buffer: Buffer,
    ) -> Result<(), SwapchainError> {
        let d = ctx.device;
        let layout = vk::SubresourceLayout {
            offset: buffer.offset,
            size: buffer.size,
            row_pitch: buffer.stride,
            array_pitch: 0,
            depth_pitch: 0,
        };
        self.layout = layout;
        self.modifier = buffer.modifier;
        // The plane's size is the implementation's to work out from the
        // pitch (VUID-VkImageDrmFormatModifierExplicitCreateInfoEXT-size-02267).
        let explicit = vk::SubresourceLayout { size: 0, ..layout };
        // The image's own from here on, so that a failure below closes it.
        let dma_buf: &DmaBuf = self.dma_buf.get_or_init(|| buffer.dma_buf);
        let fd = dma_buf.as_fd().as_raw_fd();
        // The import takes a descriptor of its own on success.
        let import_fd = rustix::io::fcntl_dupfd_cloexec(dma_buf.as_fd(), 0)
            .map_err(|e| SwapchainError::Kernel(syncfile::Error::Os(e)))?;
        self.create_image(ctx, spec, Modifier::Exactly(buffer.modifier, &explicit))?;
        let mut fd_props = vk::MemoryFdPropertiesKHR::default();
        // SAFETY: a live dma-buf descriptor, only read.
        let r = unsafe {
            (ctx.ext.memory_fd.get_memory_fd_properties_khr)(
                d.handle(),
                vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT,
                fd,
                &mut fd_props,
            )
        };
        if r != vk::Result::SUCCESS {
            return Err(SwapchainError::Vulkan("vkGetMemoryFdPropertiesKHR", r));
        }
        // SAFETY: the image is alive.
        let reqs = unsafe { d.get_image_memory_requirements(self.image) };
        let type_index = memory_type(
            spec.memory,
            reqs.memory_type_bits & fd_props.memory_type_bits,
        )
        .ok_or(SwapchainError::NoMemoryType)?;
        let import_fd = import_fd.into_raw_fd();
        let mut import = vk::ImportMemoryFdInfoKHR::default()
            .handle_type(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT)
            .fd(import_fd);
        let mut dedicated = vk::MemoryDedicatedAllocateInfo::default().image(self.image);
        let alloc = vk::MemoryAllocateInfo::default()
            .allocation_size(reqs.size)
            .memory_type_index(type_index)
            .push_next(&mut import)
            .push_next(&mut dedicated);
        // SAFETY: a valid import of a dma-buf for this image.
        let memory = match unsafe { d.allocate_memory(&alloc, self.host.get()) } {
            Ok(m) => *self.memory.get_or_init(|| m),
            Err(r) => {
                // SAFETY: a failed import leaves the descriptor the caller's.
                drop(unsafe { OwnedFd::from_raw_fd(import_fd) });
                return Err(SwapchainError::Vulkan("vkAllocateMemory (import)", r));
            }
        };
        // SAFETY: fresh memory of a type the image accepts, dedicated to it.
        unsafe { d.bind_image_memory(self.image, memory, 0) }
            .map_err(|r| SwapchainError::Vulkan("vkBindImageMemory", r))
    }

    /// Makes the semaphore its present signals (`exportable` as a
    /// sync_file) and, for a CPU fallback (`fenced`), the fence its present
    /// thread waits on.
    pub fn add_sync(
        &mut self,
        ctx: &Ctx<'_>,
        exportable: bool,
        fenced: bool,
    ) -> Result<(), SwapchainError> {
        let mut export = vk::ExportSemaphoreCreateInfo::default()
            .handle_types(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD);
        let mut info = vk::SemaphoreCreateInfo::default();
        if exportable {
            info = info.push_next(&mut export);
        }
        // SAFETY: valid create infos.
        self.semaphore = unsafe { ctx.device.create_semaphore(&info, self.host.get()) }
            .map_err(|r| SwapchainError::Vulkan("vkCreateSemaphore", r))?;
        // SAFETY: as above.
        self.handback = unsafe {
            ctx.device
                .create_semaphore(&vk::SemaphoreCreateInfo::default(), self.host.get())
        }
        .map_err(|r| SwapchainError::Vulkan("vkCreateSemaphore", r))?;
        if fenced {
            // SAFETY: as above.
            self.fence = unsafe {
                ctx.device.create_fence(
                    &vk::FenceCreateInfo::default().flags(vk::FenceCreateFlags::SIGNALED),
                    self.host.get(),
                )
            }
            .map_err(|r| SwapchainError::Vulkan("vkCreateFence", r))?;
        }
        Ok(())
    }

    /// The command buffers it recorded so far, for their pools to free.
    pub fn take_transfers(&mut self) -> Vec<Transfers> {
        std::mem::take(self.transfers.get_mut().unwrap_or_else(|e| e.into_inner()))
    }

    /// Frees everything the image has, which nothing may use any more
    /// (its transfer command buffers are freed with their pools'); its
    /// `VkImage` handle stays readable for `vkGetSwapchainImagesKHR`.
    pub fn destroy(&mut self, ctx: &Ctx<'_>) {
        if self.freed {
            return;
        }
        self.freed = true;
        let d = ctx.device;
        // SAFETY: each handle is null or this image's own, and unused.
        unsafe {
            if self.fence != vk::Fence::null() {
                d.destroy_fence(self.fence, self.host.get());
                self.fence = vk::Fence::null();
            }
            for s in [&mut self.semaphore, &mut self.handback] {
                if *s != vk::Semaphore::null() {
                    d.destroy_semaphore(*s, self.host.get());
                    *s = vk::Semaphore::null();
                }
            }
            if self.image != vk::Image::null() {
                d.destroy_image(self.image, self.host.get());
            }
            if let Some(memory) = self.memory.take() {
                d.free_memory(memory, self.host.get());
            }
        }
        self.dma_buf.take();
    }
}

/// Binds `memory` (fresh, exportable, of a type `image` accepts) to it and
/// exports it as a dma-buf.
fn export_bound(
    ctx: &Ctx<'_>,
    image: vk::Image,
    memory: vk::DeviceMemory,
) -> Result<DmaBuf, SwapchainError> {
    let d = ctx.device;
    // SAFETY: fresh memory of a type the image accepts, dedicated to it.
    unsafe { d.bind_image_memory(image, memory, 0) }
        .map_err(|r| SwapchainError::Vulkan("vkBindImageMemory", r))?;
    let get = vk::MemoryGetFdInfoKHR::default()
        .memory(memory)
        .handle_type(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
    let mut fd = -1;
    // SAFETY: memory allocated exportable as a dma-buf.
    let r = unsafe { (ctx.ext.memory_fd.get_memory_fd_khr)(d.handle(), &get, &mut fd) };
    if r != vk::Result::SUCCESS || fd < 0 {
        return Err(SwapchainError::Vulkan("vkGetMemoryFdKHR", r));
    }
    // SAFETY: a successful export hands the caller a new descriptor.
    Ok(DmaBuf::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// How an image's modifier is decided.
enum Modifier<'a> {
    /// The driver picks one of these.
    Choose(&'a [u64]),
    /// The consumer's buffer has this one, with this plane layout.
    Exactly(u64, &'a vk::SubresourceLayout),
}

/// The memory type for an image that accepts `bits`: device-local if one
/// is.
fn memory_type(props: &vk::PhysicalDeviceMemoryProperties, bits: u32) -> Option<u32> {
    let types = &props.memory_types[..props.memory_type_count as usize];
    let accepted = |i: usize| bits & (1 << i) != 0;
    types
        .iter()
        .enumerate()
        .find(|(i, t)| {
            accepted(*i)
                && t.property_flags
                    .contains(vk::MemoryPropertyFlags::DEVICE_LOCAL)
        })
        .or_else(|| types.iter().enumerate().find(|(i, _)| accepted(*i)))
        .map(|(i, _)| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefers_device_local_memory() {
        let mut props = vk::PhysicalDeviceMemoryProperties {
            memory_type_count: 3,
            ..Default::default()
        };
        props.memory_types[1].property_flags = vk::MemoryPropertyFlags::DEVICE_LOCAL;
        assert_eq!(memory_type(&props, 0b111), Some(1));
        assert_eq!(memory_type(&props, 0b101), Some(0));
        assert_eq!(memory_type(&props, 0b1000), None);
    }
}
