//! The layer's own objects in front of the driver, in the child process:
//! an application that names its swapchain, keeps private data on it and
//! makes an image that aliases one of its images (the layer must keep all
//! three from the driver, which does not know the handle), and one that
//! enables an extension the layer refuses (the driver must then answer
//! every surface query).

use std::ffi::CString;

use ash::vk;
use serde_json::{json, Value};
use VkLayer_syncfile_wsi::manifest::REFUSED_DEVICE_EXTENSIONS;

use crate::client::{Chain, Options, Vk, COLOURS};
use crate::common::child::{create_instance, Result};
use crate::common::validation::{leak_a_semaphore, validation_errors};
use crate::messenger::excused_errors;
use crate::record::{barrier, colour_range};

pub const SWAPCHAIN_NAME: &std::ffi::CStr = c"the-named-swapchain";
const SIZE: u32 = 64;
const PRIVATE: u64 = 0x5eed_f00d;

/// A clear colour as the bytes of one pixel of `format` (8-bit UNORM).
pub fn pixel(colour: [f32; 4], format: vk::Format) -> [u8; 4] {
    let [r, g, b, a] = colour.map(|c| (c * 255.0).round() as u8);
    match format {
        vk::Format::B8G8R8A8_UNORM | vk::Format::B8G8R8A8_SRGB => [b, g, r, a],
        _ => [r, g, b, a],
    }
}

/// Names the swapchain, keeps private data on it and on one of its
/// images, presents, then reads the last presented image back through an
/// image bound to its memory with `VkBindImageMemorySwapchainInfoKHR`.
pub fn objects() -> Result<Value> {
    let vk = Vk::with(&Options {
        messenger: true,
        device_extensions: &[ash::ext::private_data::NAME],
        private_data: true,
        ..Options::default()
    })?;
    let features2_missing = vk.modifier_features2_missing(vk::Format::B8G8R8A8_UNORM);
    let mut chain = Chain::new(&vk, vk.fast_mode()?, SIZE, 0, vk::SwapchainKHR::null())?;
    let utils = ash::ext::debug_utils::Device::new(&vk.instance, &vk.device);
    let name_info = vk::DebugUtilsObjectNameInfoEXT::default()
        .object_handle(chain.swapchain)
        .object_name(SWAPCHAIN_NAME);
    // SAFETY: a live swapchain of this device.
    let named = unsafe { utils.set_debug_utils_object_name(&name_info) };
    let pd = ash::ext::private_data::Device::new(&vk.instance, &vk.device);
    // SAFETY: objects of the live device; the slot is destroyed below.
    let (private_swapchain, private_image, slot) = unsafe {
        let slot = pd.create_private_data_slot(&vk::PrivateDataSlotCreateInfo::default(), None)?;
        pd.set_private_data(chain.swapchain, slot, PRIVATE)?;
        pd.set_private_data(chain.images[0], slot, 7)?;
        (
            pd.get_private_data(chain.swapchain, slot),
            pd.get_private_data(chain.images[0], slot),
            slot,
        )
    };
    let mut last = 0;
    for _ in 0..10 {
        last = chain.frame()?;
    }
    chain.wait_idle()?;
    let expected = pixel(COLOURS[last as usize % COLOURS.len()], chain.format);
    let seen = read_through_alias(&vk, &chain, last)?;
    let alias_matches = seen.chunks_exact(4).all(|p| p == expected);
    // SAFETY: the slot is unused now.
    unsafe { pd.destroy_private_data_slot(slot, None) };
    chain.destroy_swapchain(None);
    drop(chain);
    let (errors, messages) = validation_errors();
    leak_a_semaphore(&vk.device)?;
    drop(vk);
    let (after, _) = validation_errors();
    Ok(json!({
        "named": format!("{named:?}"),
        "private_swapchain": private_swapchain,
        "private_image": private_image,
        "alias_matches": alias_matches,
        "alias_first_pixel": seen.get(..4),
        "expected_pixel": expected,
        "errors": errors,
        "messages": messages,
        "driver_lacks_modifier_features2": features2_missing,
        "excused": excused_errors(),
        "canary_errors": after - errors,
    }))
}

/// The pixels of image `index` of `chain`, read through an image made
/// with `VkImageSwapchainCreateInfoKHR` and bound with
/// `VkBindImageMemorySwapchainInfoKHR`.
fn read_through_alias(vk: &Vk, chain: &Chain<'_>, index: u32) -> Result<Vec<u8>> {
    let d = &vk.device;
    let mut names_swapchain = vk::ImageSwapchainCreateInfoKHR::default().swapchain(chain.swapchain);
    let info = vk::ImageCreateInfo::default()
        .image_type(vk::ImageType::TYPE_2D)
        .format(chain.format)
        .extent(vk::Extent3D {
            width: chain.extent.width,
            height: chain.extent.height,
            depth: 1,
        })
        .mip_levels(1)
        .array_layers(1)
        .samples(vk::SampleCountFlags::TYPE_1)
        .tiling(vk::ImageTiling::OPTIMAL)
        .usage(chain.usage)
        .sharing_mode(vk::SharingMode::EXCLUSIVE)
        .initial_layout(vk::ImageLayout::UNDEFINED)
        .push_next(&mut names_swapchain);
    let buffer = vk.host_buffer(u64::from(chain.extent.width * chain.extent.height) * 4)?;
    // SAFETY: objects of the live device, destroyed below after the device
    // is idle.
    unsafe {
        let image = d.create_image(&info, None)?;
        let mut to_swapchain = vk::BindImageMemorySwapchainInfoKHR::default()
            .swapchain(chain.swapchain)
            .image_index(index);
        let bind = vk::BindImageMemoryInfo::default()
            .image(image)
            .push_next(&mut to_swapchain);
        d.bind_image_memory2(&[bind])?;
        let cmd = d.allocate_command_buffers(
            &vk::CommandBufferAllocateInfo::default()
                .command_pool(vk.pool)
                .level(vk::CommandBufferLevel::PRIMARY)
                .command_buffer_count(1),
        )?[0];
        d.begin_command_buffer(cmd, &vk::CommandBufferBeginInfo::default())?;
        // From UNDEFINED, as a first use of an image must be; the memory
        // is the swapchain image's, which the driver leaves as it is.
        barrier(
            d,
            cmd,
            image,
            (
                vk::ImageLayout::UNDEFINED,
                vk::PipelineStageFlags::TOP_OF_PIPE,
                vk::AccessFlags::empty(),
            ),
            (
                vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
                vk::PipelineStageFlags::TRANSFER,
                vk::AccessFlags::TRANSFER_READ,
            ),
        );
        let region = vk::BufferImageCopy::default()
            .image_subresource(
                vk::ImageSubresourceLayers::default()
                    .aspect_mask(colour_range().aspect_mask)
                    .layer_count(1),
            )
            .image_extent(info.extent);
        d.cmd_copy_image_to_buffer(
            cmd,
            image,
            vk::ImageLayout::TRANSFER_SRC_OPTIMAL,
            buffer.buffer,
            &[region],
        );
        let host = vk::MemoryBarrier::default()
            .src_access_mask(vk::AccessFlags::TRANSFER_WRITE)
            .dst_access_mask(vk::AccessFlags::HOST_READ);
        d.cmd_pipeline_barrier(
            cmd,
            vk::PipelineStageFlags::TRANSFER,
            vk::PipelineStageFlags::HOST,
            vk::DependencyFlags::empty(),
            &[host],
            &[],
            &[],
        );
        d.end_command_buffer(cmd)?;
        let done = vk.fence(false)?;
        let cmds = [cmd];
        d.queue_submit(
            vk.queue,
            &[vk::SubmitInfo::default().command_buffers(&cmds)],
            done,
        )?;
        d.wait_for_fences(&[done], true, 10_000_000_000)?;
        d.destroy_fence(done, None);
        d.free_command_buffers(vk.pool, &cmds);
        d.destroy_image(image, None);
    }
    Ok(buffer.bytes())
}

/// What the surface queries answer on `pd` for `surface`.
fn answers(
    surface_fn: &ash::khr::surface::Instance,
    pd: vk::PhysicalDevice,
    surface: vk::SurfaceKHR,
) -> Result<Value> {
    // SAFETY: queries on a live physical device and surface.
    unsafe {
        let caps = surface_fn.get_physical_device_surface_capabilities(pd, surface)?;
        let formats = surface_fn.get_physical_device_surface_formats(pd, surface)?;
        let modes = surface_fn.get_physical_device_surface_present_modes(pd, surface)?;
        Ok(json!({
            "min_image_count": caps.min_image_count,
            "max_image_count": caps.max_image_count,
            "usage": caps.supported_usage_flags.as_raw(),
            "alpha": caps.supported_composite_alpha.as_raw(),
            "formats": formats.iter().map(|f| format!("{:?}", f.format)).collect::<Vec<_>>(),
            "present_modes": modes.iter().map(|m| m.as_raw()).collect::<Vec<_>>(),
        }))
    }
}

/// Which of the extensions the layer refuses the first device lists (run
/// without the layer, which would hide them).
pub fn refusable() -> Result<Value> {
    // SAFETY: loading the system's loader, as every application does.
    let entry = unsafe { ash::Entry::load()? };
    let instance = create_instance(&entry, &[], None)?;
    // SAFETY: queries on the live instance, destroyed at the end.
    let listed = unsafe {
        let pd = *instance
            .enumerate_physical_devices()?
            .first()
            .ok_or("no device")?;
        let exts = instance.enumerate_device_extension_properties(pd)?;
        instance.destroy_instance(None);
        exts
    };
    let names: Vec<&str> = REFUSED_DEVICE_EXTENSIONS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| {
            listed.iter().any(|e| {
                e.extension_name_as_c_str()
                    .is_ok_and(|c| c.to_bytes() == n.as_bytes())
            })
        })
        .collect();
    Ok(json!({ "listed": names }))
}

/// The surface queries' answers before and after a device that enables the
/// extension `PARAM` names (one the layer refuses and hides) is made, and
/// the swapchain made on it.
pub fn refused() -> Result<Value> {
    let refused = CString::new(std::env::var(crate::child::PARAM)?)?;
    // SAFETY: loading the system's loader, as every application does.
    let entry = unsafe { ash::Entry::load()? };
    let instance = create_instance(
        &entry,
        &[ash::khr::surface::NAME, ash::ext::headless_surface::NAME],
        None,
    )?;
    let surface_fn = ash::khr::surface::Instance::new(&entry, &instance);
    // SAFETY: everything below is made from this instance and destroyed
    // before it.
    unsafe {
        let surface = ash::ext::headless_surface::Instance::new(&entry, &instance)
            .create_headless_surface(&vk::HeadlessSurfaceCreateInfoEXT::default(), None)?;
        let pd = *instance
            .enumerate_physical_devices()?
            .first()
            .ok_or("no device")?;
        let before = answers(&surface_fn, pd, surface)?;
        let priorities = [1.0f32];
        let queues = [vk::DeviceQueueCreateInfo::default()
            .queue_family_index(0)
            .queue_priorities(&priorities)];
        let exts = [ash::khr::swapchain::NAME.as_ptr(), refused.as_ptr()];
        let made = instance.create_device(
            pd,
            &vk::DeviceCreateInfo::default()
                .queue_create_infos(&queues)
                .enabled_extension_names(&exts),
            None,
        );
        let device = match made {
            Ok(d) => d,
            Err(e) => {
                // The loader checks the extensions against the list the
                // layers report, which the layer's hiding shortens.
                surface_fn.destroy_surface(surface, None);
                instance.destroy_instance(None);
                return Ok(json!({ "before": before, "device": format!("{e:?}") }));
            }
        };
        let after = answers(&surface_fn, pd, surface)?;
        let caps = surface_fn.get_physical_device_surface_capabilities(pd, surface)?;
        let format = surface_fn.get_physical_device_surface_formats(pd, surface)?[0];
        let swapchain_fn = ash::khr::swapchain::Device::new(&instance, &device);
        let made = swapchain_fn.create_swapchain(
            &vk::SwapchainCreateInfoKHR::default()
                .surface(surface)
                .min_image_count(caps.min_image_count)
                .image_format(format.format)
                .image_color_space(format.color_space)
                .image_extent(vk::Extent2D {
                    width: SIZE,
                    height: SIZE,
                })
                .image_array_layers(1)
                .image_usage(vk::ImageUsageFlags::COLOR_ATTACHMENT)
                .pre_transform(caps.current_transform)
                .composite_alpha(vk::CompositeAlphaFlagsKHR::OPAQUE)
                .present_mode(vk::PresentModeKHR::FIFO),
            None,
        );
        let swapchain = match made {
            Ok(s) => {
                swapchain_fn.destroy_swapchain(s, None);
                "SUCCESS".to_owned()
            }
            Err(e) => format!("{e:?}"),
        };
        device.destroy_device(None);
        surface_fn.destroy_surface(surface, None);
        instance.destroy_instance(None);
        Ok(json!({
            "before": before,
            "device": "SUCCESS",
            "after": after,
            "swapchain": swapchain,
        }))
    }
}
