//! What swapchain images a physical device can make for a dma-buf: the
//! surface formats it can create with an explicit DRM format modifier and
//! export as a dma-buf, the usages that work, and whether its semaphores
//! and fences speak sync_file.

use ash::vk;

use super::Next;

/// The physical-device commands of Vulkan 1.1 the layer uses, by their core
/// names or (for instances of Vulkan 1.0) their KHR names; the signatures
/// are the same.
#[derive(Clone, Copy)]
pub struct PhysicalDeviceFns {
    pub format_properties2: vk::PFN_vkGetPhysicalDeviceFormatProperties2,
    pub image_format_properties2: vk::PFN_vkGetPhysicalDeviceImageFormatProperties2,
    pub external_semaphore_properties: vk::PFN_vkGetPhysicalDeviceExternalSemaphoreProperties,
    pub external_fence_properties: vk::PFN_vkGetPhysicalDeviceExternalFenceProperties,
}

impl PhysicalDeviceFns {
    /// Loads them from the next entity's instance commands; `None` if one
    /// is missing.
    pub fn load(khr: bool, next: &Next<'_>) -> Option<PhysicalDeviceFns> {
        if !khr {
            let core = next.table(
                &[
                    c"vkGetPhysicalDeviceFormatProperties2",
                    c"vkGetPhysicalDeviceImageFormatProperties2",
                    c"vkGetPhysicalDeviceExternalSemaphoreProperties",
                    c"vkGetPhysicalDeviceExternalFenceProperties",
                ],
                |f| ash::InstanceFnV1_1::load(f),
            )?;
            return Some(PhysicalDeviceFns {
                format_properties2: core.get_physical_device_format_properties2,
                image_format_properties2: core.get_physical_device_image_format_properties2,
                external_semaphore_properties: core
                    .get_physical_device_external_semaphore_properties,
                external_fence_properties: core.get_physical_device_external_fence_properties,
            });
        }
        let props2 = next.table(
            &[
                c"vkGetPhysicalDeviceFormatProperties2KHR",
                c"vkGetPhysicalDeviceImageFormatProperties2KHR",
            ],
            |f| ash::khr::get_physical_device_properties2::InstanceFn::load(f),
        )?;
        let semaphore = next.table(
            &[c"vkGetPhysicalDeviceExternalSemaphorePropertiesKHR"],
            |f| ash::khr::external_semaphore_capabilities::InstanceFn::load(f),
        )?;
        let fence = next.table(&[c"vkGetPhysicalDeviceExternalFencePropertiesKHR"], |f| {
            ash::khr::external_fence_capabilities::InstanceFn::load(f)
        })?;
        Some(PhysicalDeviceFns {
            format_properties2: props2.get_physical_device_format_properties2_khr,
            image_format_properties2: props2.get_physical_device_image_format_properties2_khr,
            external_semaphore_properties: semaphore
                .get_physical_device_external_semaphore_properties_khr,
            external_fence_properties: fence.get_physical_device_external_fence_properties_khr,
        })
    }
}

/// A surface format the layer offers: its Vulkan format, the DRM fourcc
/// consumers know it by, and whether its bytes are in B, G, R, A order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    pub vk: vk::Format,
    pub fourcc: u32,
    pub bgra: bool,
}

const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*code)
}

/// The formats every 8-bit-per-channel consumer takes, BGRA first (the
/// order scanout hardware and compositors prefer). `DRM_FORMAT_ARGB8888` is
/// B, G, R, A in memory; `DRM_FORMAT_ABGR8888` is R, G, B, A.
pub const CANDIDATES: [Format; 4] = [
    Format {
        vk: vk::Format::B8G8R8A8_SRGB,
        fourcc: fourcc(b"AR24"),
        bgra: true,
    },
    Format {
        vk: vk::Format::B8G8R8A8_UNORM,
        fourcc: fourcc(b"AR24"),
        bgra: true,
    },
    Format {
        vk: vk::Format::R8G8B8A8_SRGB,
        fourcc: fourcc(b"AB24"),
        bgra: false,
    },
    Format {
        vk: vk::Format::R8G8B8A8_UNORM,
        fourcc: fourcc(b"AB24"),
        bgra: false,
    },
];

/// Usages a swapchain image may be asked for; each is offered where at
/// least one format can have it.
const USAGES: [vk::ImageUsageFlags; 6] = [
    vk::ImageUsageFlags::COLOR_ATTACHMENT,
    vk::ImageUsageFlags::TRANSFER_SRC,
    vk::ImageUsageFlags::TRANSFER_DST,
    vk::ImageUsageFlags::SAMPLED,
    vk::ImageUsageFlags::STORAGE,
    vk::ImageUsageFlags::INPUT_ATTACHMENT,
];

/// What swapchains on one physical device can be made of.
#[derive(Debug)]
pub struct SwapchainCaps {
    /// The offered formats, in order of preference.
    pub formats: Vec<Format>,
    /// Every usage some offered format supports (always COLOR_ATTACHMENT).
    pub usage: vk::ImageUsageFlags,
    pub max_extent: u32,
    /// Whether a semaphore can be exported as a sync_file; without it,
    /// presents take the CPU fallback.
    pub semaphore_export: bool,
}

impl SwapchainCaps {
    pub fn format(&self, f: vk::Format) -> Option<Format> {
        self.formats.iter().copied().find(|c| c.vk == f)
    }
}

/// The parameters of a swapchain's images that decide which modifiers work.
pub struct ImageParams<'a> {
    pub format: vk::Format,
    pub usage: vk::ImageUsageFlags,
    pub flags: vk::ImageCreateFlags,
    pub sharing: vk::SharingMode,
    pub families: &'a [u32],
    /// The formats of a mutable-format swapchain's views (empty otherwise).
    pub view_formats: &'a [vk::Format],
    pub extent: vk::Extent2D,
    pub layers: u32,
}

/// Checks `pd` and describes what its swapchains can be made of, or says
/// why it cannot have any.
pub fn probe(
    fns: &PhysicalDeviceFns,
    pd: vk::PhysicalDevice,
    props: &vk::PhysicalDeviceProperties,
) -> Result<SwapchainCaps, String> {
    let semaphore = {
        let info = vk::PhysicalDeviceExternalSemaphoreInfo::default()
            .handle_type(vk::ExternalSemaphoreHandleTypeFlags::SYNC_FD);
        let mut out = vk::ExternalSemaphoreProperties::default();
        // SAFETY: valid structures for a physical device of this instance.
        unsafe { (fns.external_semaphore_properties)(pd, &info, &mut out) };
        out.external_semaphore_features
    };
    if !semaphore.contains(vk::ExternalSemaphoreFeatureFlags::IMPORTABLE) {
        return Err("its semaphores cannot import a sync_file".into());
    }
    let fence = {
        let info = vk::PhysicalDeviceExternalFenceInfo::default()
            .handle_type(vk::ExternalFenceHandleTypeFlags::SYNC_FD);
        let mut out = vk::ExternalFenceProperties::default();
        // SAFETY: as above.
        unsafe { (fns.external_fence_properties)(pd, &info, &mut out) };
        out.external_fence_features
    };
    if !fence.contains(vk::ExternalFenceFeatureFlags::IMPORTABLE) {
        return Err("its fences cannot import a sync_file".into());
    }
    let mut formats = Vec::new();
    let mut usage = vk::ImageUsageFlags::empty();
    for f in CANDIDATES {
        let works = |u| {
            let params = ImageParams {
                format: f.vk,
                usage: u,
                flags: vk::ImageCreateFlags::empty(),
                sharing: vk::SharingMode::EXCLUSIVE,
                families: &[],
                view_formats: &[],
                extent: vk::Extent2D {
                    width: 1,
                    height: 1,
                },
                layers: 1,
            };
            !modifiers(fns, pd, &params, |_| true).is_empty()
        };
        if !works(vk::ImageUsageFlags::COLOR_ATTACHMENT) {
            continue;
        }
        formats.push(f);
        usage |= USAGES
            .into_iter()
            .filter(|&u| works(u))
            .fold(vk::ImageUsageFlags::empty(), |a, u| a | u);
    }
    tracing::debug!(
        "swapchain images: formats {:?}, usage {:?}, semaphore export {}",
        formats.iter().map(|f| f.vk).collect::<Vec<_>>(),
        usage,
        semaphore.contains(vk::ExternalSemaphoreFeatureFlags::EXPORTABLE)
    );
    if formats.is_empty() {
        return Err(
            "it can export none of the 8-bit RGBA formats as a dma-buf with a modifier".into(),
        );
    }
    Ok(SwapchainCaps {
        formats,
        usage,
        max_extent: props.limits.max_image_dimension2_d,
        semaphore_export: semaphore.contains(vk::ExternalSemaphoreFeatureFlags::EXPORTABLE),
    })
}

/// The single-plane DRM format modifiers with which `pd` can make an image
/// of `params` for export as a dma-buf, which `accept` (the consumer's
/// choice) also takes, in the driver's order.
pub fn modifiers(
    fns: &PhysicalDeviceFns,
    pd: vk::PhysicalDevice,
    params: &ImageParams<'_>,
    accept: impl Fn(u64) -> bool,
) -> Vec<u64> {
    let needed = features_for(params.usage);
    listed_modifiers(fns, pd, params.format)
        .into_iter()
        .filter(|m| {
            m.drm_format_modifier_plane_count == 1
                && m.drm_format_modifier_tiling_features.contains(needed)
        })
        .map(|m| m.drm_format_modifier)
        .filter(|&m| accept(m) && exportable(fns, pd, params, m))
        .collect()
}

/// The format features an image of `usage` needs from its modifier (an
/// image's features are its modifier's tiling features).
fn features_for(usage: vk::ImageUsageFlags) -> vk::FormatFeatureFlags {
    use vk::FormatFeatureFlags as F;
    use vk::ImageUsageFlags as U;
    [
        (U::COLOR_ATTACHMENT, F::COLOR_ATTACHMENT),
        (U::INPUT_ATTACHMENT, F::COLOR_ATTACHMENT),
        (U::SAMPLED, F::SAMPLED_IMAGE),
        (U::STORAGE, F::STORAGE_IMAGE),
        (U::TRANSFER_SRC, F::TRANSFER_SRC),
        (U::TRANSFER_DST, F::TRANSFER_DST),
    ]
    .into_iter()
    .filter(|(u, _)| usage.contains(*u))
    .fold(F::empty(), |a, (_, f)| a | f)
}

/// The modifiers the driver lists for `format`.
fn listed_modifiers(
    fns: &PhysicalDeviceFns,
    pd: vk::PhysicalDevice,
    format: vk::Format,
) -> Vec<vk::DrmFormatModifierPropertiesEXT> {
    let mut list = vk::DrmFormatModifierPropertiesListEXT::default();
    {
        let mut props = vk::FormatProperties2::default().push_next(&mut list);
        // SAFETY: a valid output chain for a physical device of this instance.
        unsafe { (fns.format_properties2)(pd, format, &mut props) };
    }
    let mut out = vec![
        vk::DrmFormatModifierPropertiesEXT::default();
        list.drm_format_modifier_count as usize
    ];
    if out.is_empty() {
        return out;
    }
    let mut list =
        vk::DrmFormatModifierPropertiesListEXT::default().drm_format_modifier_properties(&mut out);
    {
        let mut props = vk::FormatProperties2::default().push_next(&mut list);
        // SAFETY: as above, with room for the count the driver gave.
        unsafe { (fns.format_properties2)(pd, format, &mut props) };
    }
    let n = list.drm_format_modifier_count as usize;
    out.truncate(n);
    out
}

/// Whether an image of `params` with `modifier` can be made and exported
/// as a dma-buf, at least as large as asked.
fn exportable(
    fns: &PhysicalDeviceFns,
    pd: vk::PhysicalDevice,
    params: &ImageParams<'_>,
    modifier: u64,
) -> bool {
    let mut drm = vk::PhysicalDeviceImageDrmFormatModifierInfoEXT::default()
        .drm_format_modifier(modifier)
        .sharing_mode(params.sharing)
        .queue_family_indices(params.families);
    let mut external = vk::PhysicalDeviceExternalImageFormatInfo::default()
        .handle_type(vk::ExternalMemoryHandleTypeFlags::DMA_BUF_EXT);
    let mut list = vk::ImageFormatListCreateInfo::default().view_formats(params.view_formats);
    let mut info = vk::PhysicalDeviceImageFormatInfo2::default()
        .format(params.format)
        .ty(vk::ImageType::TYPE_2D)
        .tiling(vk::ImageTiling::DRM_FORMAT_MODIFIER_EXT)
        .usage(params.usage)
        .flags(params.flags)
        .push_next(&mut drm)
        .push_next(&mut external);
    if !params.view_formats.is_empty() {
        info = info.push_next(&mut list);
    }
    let mut external_props = vk::ExternalImageFormatProperties::default();
    let mut props = vk::ImageFormatProperties2::default().push_next(&mut external_props);
    // SAFETY: valid input and output chains for a physical device of this
    // instance, which lists VK_EXT_image_drm_format_modifier.
    let result = unsafe { (fns.image_format_properties2)(pd, &info, &mut props) };
    let limits = props.image_format_properties;
    result == vk::Result::SUCCESS
        && external_props
            .external_memory_properties
            .external_memory_features
            .contains(vk::ExternalMemoryFeatureFlags::EXPORTABLE)
        && limits.max_extent.width >= params.extent.width
        && limits.max_extent.height >= params.extent.height
        && limits.max_array_layers >= params.layers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_needs_features() {
        use vk::FormatFeatureFlags as F;
        use vk::ImageUsageFlags as U;
        assert_eq!(
            features_for(U::COLOR_ATTACHMENT | U::TRANSFER_DST),
            F::COLOR_ATTACHMENT | F::TRANSFER_DST
        );
        assert_eq!(features_for(U::empty()), F::empty());
    }

    #[test]
    fn fourccs_are_drm_codes() {
        // DRM_FORMAT_ARGB8888 and DRM_FORMAT_ABGR8888 from drm_fourcc.h.
        assert_eq!(CANDIDATES[0].fourcc, 0x3432_5241);
        assert_eq!(CANDIDATES[2].fourcc, 0x3432_4241);
        assert!(CANDIDATES
            .iter()
            .all(|f| f.bgra == (f.fourcc == 0x3432_5241)));
    }
}
