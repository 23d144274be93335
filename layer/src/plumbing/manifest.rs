//! What the layer declares to the loader: its name, versions, switches and
//! the extensions it implements. The manifests in `manifest/` and the ones
//! `scripts/install` writes are rendered from here (by the
//! `syncfile-wsi-manifest` tool), and the layer itself uses the same values.
//!
//! The loader advertises a layer's extensions from its manifest without
//! asking the layer, so only extensions that work may be listed.

use serde_json::{json, Value};

pub const LAYER_NAME: &str = "VK_LAYER_SYNCFILE_wsi";
pub const DESCRIPTION: &str =
    "syncfile-wsi: swapchains on dma-bufs, synchronized through sync_files";
pub const LIBRARY_NAME: &str = "libVkLayer_syncfile_wsi.so";
/// The Vulkan version the layer is written against.
pub const API_VERSION: &str = "1.3.281";
pub const ENABLE_ENV: &str = "ENABLE_SYNCFILE_WSI";
pub const DISABLE_ENV: &str = "DISABLE_SYNCFILE_WSI";
const FILE_FORMAT_VERSION: &str = "1.2.0";
/// The format that added `library_arch` (loader 1.3.239, Debian bookworm's,
/// reads it too).
const ARCH_FILE_FORMAT_VERSION: &str = "1.2.1";
/// Bumped with every release that changes behaviour.
pub const IMPLEMENTATION_VERSION: u32 = 1;

/// An extension the layer implements, as the manifest lists it.
pub struct Extension {
    pub name: &'static str,
    pub spec_version: u32,
    /// Device extensions only: the commands the layer provides for it.
    pub entrypoints: &'static [&'static str],
}

/// Instance extensions the layer implements. The loader creates surfaces
/// itself and only forwards the call; listing VK_EXT_headless_surface makes
/// headless swapchains available through the layer on drivers that lack
/// them. VK_EXT_surface_maintenance1 is answered by the layer for the
/// surfaces it owns; where the driver has it too, the loader lists it once.
/// The display extensions are the display platform's: KMS outputs as
/// displays on drivers without their own (the loader passes each driver
/// only the extensions it has).
/// VK_KHR_surface_maintenance1 is not listed: loaders before Vulkan 1.4.321
/// (Debian's 1.3.239 and 1.4.309 among them) fail `vkCreateInstance` for an
/// instance extension they do not know, and vulkaninfo enables every one.
pub const INSTANCE_EXTENSIONS: &[Extension] = &[
    Extension {
        name: "VK_EXT_headless_surface",
        spec_version: 1,
        entrypoints: &[],
    },
    Extension {
        name: "VK_EXT_surface_maintenance1",
        spec_version: 1,
        entrypoints: &[],
    },
    Extension {
        name: "VK_KHR_display",
        spec_version: 23,
        entrypoints: &[],
    },
    Extension {
        name: "VK_KHR_get_display_properties2",
        spec_version: 1,
        entrypoints: &[],
    },
    Extension {
        name: "VK_EXT_direct_mode_display",
        spec_version: 1,
        entrypoints: &[],
    },
    Extension {
        name: "VK_EXT_acquire_drm_display",
        spec_version: 1,
        entrypoints: &[],
    },
];

/// Device extensions the layer implements for the swapchains it owns (the
/// others go to the driver's), in the order `vulkan::provided` lists them.
pub const DEVICE_EXTENSIONS: &[Extension] = &[
    Extension {
        name: "VK_KHR_swapchain",
        spec_version: 70,
        entrypoints: &[
            "vkCreateSwapchainKHR",
            "vkDestroySwapchainKHR",
            "vkGetSwapchainImagesKHR",
            "vkAcquireNextImageKHR",
            "vkQueuePresentKHR",
            "vkAcquireNextImage2KHR",
            "vkGetDeviceGroupSurfacePresentModesKHR",
            "vkGetPhysicalDevicePresentRectanglesKHR",
        ],
    },
    Extension {
        name: "VK_KHR_present_id",
        spec_version: 1,
        entrypoints: &[],
    },
    Extension {
        name: "VK_KHR_present_wait",
        spec_version: 1,
        entrypoints: &["vkWaitForPresentKHR"],
    },
    Extension {
        name: "VK_KHR_present_id2",
        spec_version: 1,
        entrypoints: &[],
    },
    Extension {
        name: "VK_KHR_present_wait2",
        spec_version: 1,
        entrypoints: &["vkWaitForPresent2KHR"],
    },
    Extension {
        name: "VK_EXT_swapchain_maintenance1",
        spec_version: 1,
        entrypoints: &["vkReleaseSwapchainImagesEXT"],
    },
    Extension {
        name: "VK_KHR_swapchain_maintenance1",
        spec_version: 1,
        entrypoints: &["vkReleaseSwapchainImagesKHR"],
    },
    Extension {
        name: "VK_EXT_present_mode_fifo_latest_ready",
        spec_version: 1,
        entrypoints: &[],
    },
    Extension {
        name: "VK_KHR_present_mode_fifo_latest_ready",
        spec_version: 1,
        entrypoints: &[],
    },
    Extension {
        name: "VK_KHR_incremental_present",
        spec_version: 2,
        entrypoints: &[],
    },
    Extension {
        name: "VK_GOOGLE_display_timing",
        spec_version: 1,
        entrypoints: &[
            "vkGetRefreshCycleDurationGOOGLE",
            "vkGetPastPresentationTimingGOOGLE",
        ],
    },
    Extension {
        name: "VK_EXT_hdr_metadata",
        spec_version: 2,
        entrypoints: &["vkSetHdrMetadataEXT"],
    },
];

/// Device extensions the layer refuses on the physical devices whose
/// swapchains it serves, each with the reason. Every one brings commands or
/// structures that carry a swapchain handle which the layer does not serve
/// (the generated registry table lists them all; a unit test holds every
/// such command to being served or refused here), so the driver must never
/// see them used with the layer's swapchains. They are hidden from
/// `vkEnumerateDeviceExtensionProperties` there; an application that
/// enables one anyway gets its device passed through, and the driver's
/// answers to the surface queries of that physical device from then on.
pub const REFUSED_DEVICE_EXTENSIONS: &[(&str, &str)] = &[
    ("VK_EXT_display_control", "swapchain counters belong to displays the driver drives"),
    ("VK_KHR_display_swapchain", "shared swapchains on the driver's displays are the driver's"),
    ("VK_KHR_shared_presentable_image", "a shared image is read by the consumer while the application writes it: no fence can order that"),
    ("VK_EXT_full_screen_exclusive", "exclusive full-screen is a Windows mechanism"),
    ("VK_NV_present_barrier", "the present barrier synchronizes the driver's own swapchains"),
    ("VK_NV_low_latency2", "latency markers and sleeps are timed by the driver's own swapchains"),
    ("VK_AMD_display_native_hdr", "local dimming is set on the driver's own swapchains"),
    ("VK_EXT_image_compression_control_swapchain", "the layer's images take the modifier their consumer negotiates, not a compression rate"),
    ("VK_FUCHSIA_buffer_collection", "buffer collections are Fuchsia's"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Loaded into every application that sets `ENABLE_SYNCFILE_WSI=1`.
    Implicit,
    /// Loaded on request (`VK_INSTANCE_LAYERS`, or the application's list).
    Explicit,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Implicit, Kind::Explicit];

    /// The manifest's file name, under `manifest/` and once installed.
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::Implicit => "VkLayer_syncfile_wsi.implicit.json",
            Kind::Explicit => "VkLayer_syncfile_wsi.explicit.json",
        }
    }

    /// The loader's directory for this kind, under `.../share/vulkan/`.
    pub fn directory(self) -> &'static str {
        match self {
            Kind::Implicit => "implicit_layer.d",
            Kind::Explicit => "explicit_layer.d",
        }
    }
}

/// The manifest of `kind` with `library_path` (a bare file name is looked up
/// by the dynamic linker; a path with a slash is absolute or relative to the
/// manifest).
pub fn render(kind: Kind, library_path: &str) -> String {
    render_with(kind, library_path, None)
}

/// The word size of a layer's library, as `library_arch` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LibraryArch {
    Bits32,
    Bits64,
}

impl LibraryArch {
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "32" => Some(Self::Bits32),
            "64" => Some(Self::Bits64),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Bits32 => "32",
            Self::Bits64 => "64",
        }
    }
}

/// As [`render`], for a manifest that sits beside another architecture's
/// (a package's `VkLayer_syncfile_wsi.x86_64.json` and `.i686.json`): it
/// names the library's word size, so that the loader skips the manifest of
/// the other one. Without it, both manifests declare the same layer, and
/// where the loader reads the other architecture's first, it tries only
/// that library, fails ("wrong ELF class") and loads neither (seen in the
/// test guest with loader 1.4.309).
pub fn render_for_arch(kind: Kind, library_path: &str, arch: LibraryArch) -> String {
    render_with(kind, library_path, Some(arch))
}

fn render_with(kind: Kind, library_path: &str, arch: Option<LibraryArch>) -> String {
    let mut layer = json!({
        "name": LAYER_NAME,
        "type": "GLOBAL",
        "library_path": library_path,
        "api_version": API_VERSION,
        "implementation_version": IMPLEMENTATION_VERSION.to_string(),
        "description": DESCRIPTION,
        "functions": {
            "vkNegotiateLoaderLayerInterfaceVersion": "vkNegotiateLoaderLayerInterfaceVersion",
        },
        "instance_extensions": extensions(INSTANCE_EXTENSIONS, false),
        "device_extensions": extensions(DEVICE_EXTENSIONS, true),
    });
    if kind == Kind::Implicit {
        layer["enable_environment"] = json!({ ENABLE_ENV: "1" });
        layer["disable_environment"] = json!({ DISABLE_ENV: "1" });
    }
    let format = match arch {
        Some(a) => {
            layer["library_arch"] = json!(a.name());
            ARCH_FILE_FORMAT_VERSION
        }
        None => FILE_FORMAT_VERSION,
    };
    let manifest = json!({ "file_format_version": format, "layer": layer });
    let mut text = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    text.push('\n');
    text
}

fn extensions(list: &[Extension], device: bool) -> Value {
    list.iter()
        .map(|e| {
            let mut v = json!({ "name": e.name, "spec_version": e.spec_version.to_string() });
            if device {
                v["entrypoints"] = json!(e.entrypoints);
            }
            v
        })
        .collect()
}
