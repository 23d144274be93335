//! What the child scenarios of both test binaries share: their error type
//! and the instance they create as an application would.

use std::ffi::{CStr, CString};

use ash::vk;

/// What a child scenario returns: its JSON, or why it failed.
pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Layers the child enables in its own `VkInstanceCreateInfo`, `:`-separated:
/// the loader stacks them differently from those in `VK_INSTANCE_LAYERS`,
/// which the validation tests need to put this layer on either side.
pub const APP_LAYERS: &str = "SYNCFILE_TEST_APP_LAYERS";

/// A Vulkan 1.1 instance with `extensions`, the layers [`APP_LAYERS`] names,
/// and `p_next` chained (a debug-utils messenger, so that instance creation
/// itself is validated). The caller destroys it.
pub fn create_instance(
    entry: &ash::Entry,
    extensions: &[&CStr],
    p_next: Option<&mut vk::DebugUtilsMessengerCreateInfoEXT<'_>>,
) -> std::result::Result<ash::Instance, vk::Result> {
    let app = vk::ApplicationInfo::default()
        .application_name(c"syncfile-wsi-test")
        .api_version(vk::API_VERSION_1_1);
    let names: Vec<_> = extensions.iter().map(|e| e.as_ptr()).collect();
    let layers: Vec<CString> = std::env::var(APP_LAYERS)
        .unwrap_or_default()
        .split(':')
        .filter(|l| !l.is_empty())
        .filter_map(|l| CString::new(l).ok())
        .collect();
    let layer_names: Vec<_> = layers.iter().map(|l| l.as_ptr()).collect();
    let mut info = vk::InstanceCreateInfo::default()
        .application_info(&app)
        .enabled_layer_names(&layer_names)
        .enabled_extension_names(&names);
    if let Some(n) = p_next {
        info = info.push_next(n);
    }
    // SAFETY: a valid create info, whose names outlive the call.
    unsafe { entry.create_instance(&info, None) }
}
