//! One swapchain image: a Vulkan image with an explicit DRM format
//! modifier, in dedicated memory exported as a dma-buf, and the semaphore
//! (and, for the CPU fallback, the fence) its present signals.

use std::os::fd::{FromRawFd, OwnedFd};

use ash::vk;
use syncfile::DmaBuf;

use crate::device::ExtFns;
use crate::error::SwapchainError;

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
    pub modifiers: &'a [u64],
    pub memory: &'a vk::PhysicalDeviceMemoryProperties,
}

/// The device and the commands an image is made and destroyed with.
pub struct Ctx<'a> {
    pub device: &'a ash::Device,
    pub ext: &'a ExtFns,
    pub allocator: Option<&'a vk::AllocationCallbacks<'a>>,
}

#[derive(Default)]
pub struct Image {
    pub image: vk::Image,
    memory: vk::DeviceMemory,
    /// Signalled by the present submission.
    pub semaphore: vk::Semaphore,
    /// CPU fallback only: signalled once that submission is done.
    pub fence: vk::Fence,
    pub dma_buf: Option<DmaBuf>,
    pub modifier: u64,
    pub layout: vk::SubresourceLayout,
    freed: bool,
}

impl Image {
    /// Makes the image, its memory and its dma-buf; on failure frees
    /// whatever it made.
    pub fn create(ctx: &Ctx<'_>, spec: &ImageSpec<'_>) -> Result<Image, SwapchainError> {
        let mut image = Image::default();
        match image.build(ctx, spec) {
            Ok(()) => Ok(image),
            Err(e) => {
                image.destroy(ctx);
                Err(e)
            }
        }
    }

    fn build(&mut self, ctx: &Ctx<'_>, spec: &ImageSpec<'_>) -> Result<(), SwapchainError> {
        let d = ctx.device;
        let mut external = vk::ExternalMemoryImageCreateInfo::default()
            .handle_types(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
        let mut modifiers = vk::ImageDrmFormatModifierListCreateInfoEXT::default()
            .drm_format_modifiers(spec.modifiers);
        let mut list = vk::ImageFormatListCreateInfo::default().view_formats(spec.view_formats);
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
            .push_next(&mut external)
            .push_next(&mut modifiers);
        if !spec.view_formats.is_empty() {
            info = info.push_next(&mut list);
        }
        // SAFETY: a valid create info for a device with the modifier and
        // external-memory extensions enabled.
        self.image = unsafe { d.create_image(&info, ctx.allocator) }
            .map_err(|r| SwapchainError::Vulkan("vkCreateImage", r))?;

        let mut props = vk::ImageDrmFormatModifierPropertiesEXT::default();
        // SAFETY: the image was made with DRM_FORMAT_MODIFIER tiling.
        let r = unsafe {
            (ctx.ext.get_image_drm_format_modifier_properties)(d.handle(), self.image, &mut props)
        };
        if r != vk::Result::SUCCESS {
            return Err(SwapchainError::Vulkan(
                "vkGetImageDrmFormatModifierPropertiesEXT",
                r,
            ));
        }
        self.modifier = props.drm_format_modifier;

        // SAFETY: the image is alive.
        let reqs = unsafe { d.get_image_memory_requirements(self.image) };
        let type_index =
            memory_type(spec.memory, reqs.memory_type_bits).ok_or(SwapchainError::NoMemoryType)?;
        // Drivers export dma-bufs only for exactly this handle type.
        let mut export = vk::ExportMemoryAllocateInfo::default()
            .handle_types(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
        let mut dedicated = vk::MemoryDedicatedAllocateInfo::default().image(self.image);
        let alloc = vk::MemoryAllocateInfo::default()
            .allocation_size(reqs.size)
            .memory_type_index(type_index)
            .push_next(&mut export)
            .push_next(&mut dedicated);
        // SAFETY: a valid allocation for this image.
        self.memory = unsafe { d.allocate_memory(&alloc, ctx.allocator) }
            .map_err(|r| SwapchainError::Vulkan("vkAllocateMemory", r))?;
        // SAFETY: fresh memory of a type the image accepts, dedicated to it.
        unsafe { d.bind_image_memory(self.image, self.memory, 0) }
            .map_err(|r| SwapchainError::Vulkan("vkBindImageMemory", r))?;

        let get = vk::MemoryGetFdInfoKHR::default()
            .memory(self.memory)
            .handle_type(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
        let mut fd = -1;
        // SAFETY: memory allocated exportable as a dma-buf.
        let r = unsafe { (ctx.ext.get_memory_fd)(d.handle(), &get, &mut fd) };
        if r != vk::Result::SUCCESS || fd < 0 {
            return Err(SwapchainError::Vulkan("vkGetMemoryFdKHR", r));
        }
        // SAFETY: a successful export hands the caller a new descriptor.
        self.dma_buf = Some(DmaBuf::from(unsafe { OwnedFd::from_raw_fd(fd) }));

        let plane = vk::ImageSubresource {
            aspect_mask: vk::ImageAspectFlags::MEMORY_PLANE_0_EXT,
            mip_level: 0,
            array_layer: 0,
        };
        // SAFETY: a single-plane image with a modifier.
        self.layout = unsafe { d.get_image_subresource_layout(self.image, plane) };
        Ok(())
    }

    /// Makes the semaphore its present signals (exportable as a sync_file
    /// unless the CPU fallback presents it) and, for that fallback, a fence.
    pub fn add_sync(&mut self, ctx: &Ctx<'_>, exportable: bool) -> Result<(), SwapchainError> {
        let mut export = vk::ExportSemaphoreCreateInfo::default()
            .handle_types(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD);
        let mut info = vk::SemaphoreCreateInfo::default();
        if exportable {
            info = info.push_next(&mut export);
        }
        // SAFETY: a valid create info.
        self.semaphore = unsafe { ctx.device.create_semaphore(&info, ctx.allocator) }
            .map_err(|r| SwapchainError::Vulkan("vkCreateSemaphore", r))?;
        if !exportable {
            // SAFETY: as above.
            self.fence = unsafe {
                ctx.device
                    .create_fence(&vk::FenceCreateInfo::default(), ctx.allocator)
            }
            .map_err(|r| SwapchainError::Vulkan("vkCreateFence", r))?;
        }
        Ok(())
    }

    /// Frees everything the image has, which nothing may use any more; its
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
                d.destroy_fence(self.fence, ctx.allocator);
                self.fence = vk::Fence::null();
            }
            if self.semaphore != vk::Semaphore::null() {
                d.destroy_semaphore(self.semaphore, ctx.allocator);
                self.semaphore = vk::Semaphore::null();
            }
            if self.image != vk::Image::null() {
                d.destroy_image(self.image, ctx.allocator);
            }
            if self.memory != vk::DeviceMemory::null() {
                d.free_memory(self.memory, ctx.allocator);
                self.memory = vk::DeviceMemory::null();
            }
        }
        self.dma_buf = None;
    }
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
