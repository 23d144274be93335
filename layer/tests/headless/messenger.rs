//! The debug-utils messenger's side: counting the validation layer's
//! errors (and the one kind of driver-caused false positive the tests
//! prove before leaving it uncounted).

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use ash::vk;

/// Layers the child enables in its own `VkInstanceCreateInfo`, `:`-separated
/// (the loader stacks them differently from those in `VK_INSTANCE_LAYERS`).
pub const APP_LAYERS: &str = "SYNCFILE_TEST_APP_LAYERS";

static ERRORS: AtomicUsize = AtomicUsize::new(0);
static MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Set once `Vk::modifier_features2_missing` proved the driver bug below.
static EXCUSE_FEATURES2: AtomicBool = AtomicBool::new(false);
static EXCUSED: AtomicUsize = AtomicUsize::new(0);

/// Errors the debug-utils messenger has seen so far, and their messages.
pub fn validation_errors() -> (usize, Vec<String>) {
    let messages = MESSAGES.lock().map(|m| m.clone()).unwrap_or_default();
    (ERRORS.load(Ordering::Relaxed), messages)
}

/// Errors not counted because they come from the driver bug that
/// `Vk::modifier_features2_missing` detects.
pub fn excused_errors() -> usize {
    EXCUSED.load(Ordering::Relaxed)
}

/// Whether `text` is the validation layer's false positive on images with
/// DRM-modifier tiling when the driver leaves its modifier list in the
/// `VkFormatFeatureFlags2` form empty: it then takes the image's format
/// features to be none at all.
fn is_features2_false_positive(text: &str) -> bool {
    text.contains("VK_IMAGE_TILING_DRM_FORMAT_MODIFIER_EXT")
        && text.contains("VkFormatFeatureFlags2(0)")
}

pub unsafe extern "system" fn on_message(
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    _types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    _user: *mut c_void,
) -> vk::Bool32 {
    // SAFETY: the callback data is valid for the duration of the call.
    let text = unsafe { data.as_ref().and_then(|d| d.message_as_c_str()) }
        .map(|m| m.to_string_lossy().into_owned())
        .unwrap_or_default();
    if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::ERROR) {
        if EXCUSE_FEATURES2.load(Ordering::Relaxed) && is_features2_false_positive(&text) {
            EXCUSED.fetch_add(1, Ordering::Relaxed);
            return vk::FALSE;
        }
        ERRORS.fetch_add(1, Ordering::Relaxed);
    }
    if let Ok(mut m) = MESSAGES.lock() {
        if m.len() < 50 {
            m.push(format!("{severity:?}: {text}"));
        }
    }
    vk::FALSE
}

/// Leaves the false positive of [`is_features2_false_positive`] uncounted
/// from now on, once the caller established its cause.
pub fn excuse_features2(on: bool) {
    EXCUSE_FEATURES2.store(on, Ordering::Relaxed);
}
