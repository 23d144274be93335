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
/// Bumped with every release that changes behaviour.
pub const IMPLEMENTATION_VERSION: u32 = 1;

/// An extension the layer implements, as the manifest lists it.
pub struct Extension {
    pub name: &'static str,
    pub spec_version: u32,
    /// Device extensions only: the commands the layer provides for it.
    pub entrypoints: &'static [&'static str],
}

/// Surface extensions the layer implements. The loader creates surfaces
/// itself and only forwards the call; listing VK_EXT_headless_surface makes
/// headless swapchains available through the layer on drivers that lack
/// them. Where the driver has it too, the loader lists it once.
pub const INSTANCE_EXTENSIONS: &[Extension] = &[Extension {
    name: "VK_EXT_headless_surface",
    spec_version: 1,
    entrypoints: &[],
}];
/// Device extensions the layer implements: swapchains, for the surfaces it
/// owns (the others go to the driver's).
pub const DEVICE_EXTENSIONS: &[Extension] = &[Extension {
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
}];

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
    let manifest = json!({ "file_format_version": FILE_FORMAT_VERSION, "layer": layer });
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
