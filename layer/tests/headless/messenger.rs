//! The one kind of driver-caused false positive the validation tests prove
//! before leaving it uncounted; the rest of the messenger is shared (see
//! `common::validation`).

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ash::vk;

use crate::common::validation::{self, message_text};

/// Set once `Vk::modifier_features2_missing` proved the driver bug below.
static EXCUSE_FEATURES2: AtomicBool = AtomicBool::new(false);
static EXCUSED: AtomicUsize = AtomicUsize::new(0);

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

/// [`validation::on_message`], less the excused false positive.
///
/// # Safety
///
/// Called by the messenger, with its arguments.
pub unsafe extern "system" fn on_message(
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    user: *mut c_void,
) -> vk::Bool32 {
    if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::ERROR)
        && EXCUSE_FEATURES2.load(Ordering::Relaxed)
    {
        // SAFETY: the messenger's callback data, during its call.
        let text = unsafe { message_text(data) };
        if is_features2_false_positive(&text) {
            EXCUSED.fetch_add(1, Ordering::Relaxed);
            return vk::FALSE;
        }
    }
    // SAFETY: the messenger's own arguments, passed on during its call.
    unsafe { validation::on_message(severity, types, data, user) }
}

/// Leaves the false positive of [`is_features2_false_positive`] uncounted
/// from now on, once the caller established its cause.
pub fn excuse_features2(on: bool) {
    EXCUSE_FEATURES2.store(on, Ordering::Relaxed);
}
