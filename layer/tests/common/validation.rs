//! The Khronos validation layer above and below this one: in the child, a
//! debug-utils messenger counting its errors and a deliberate mistake that
//! proves the messenger hears it; in the test, stacking the two layers
//! either way and telling from the loader's log which way it came out.

use std::ffi::c_void;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ash::vk;
use libtest_mimic::Failed;
use serde_json::Value;
use VkLayer_syncfile_wsi::manifest::LAYER_NAME;

use super::check;
use super::child::APP_LAYERS;

pub const VALIDATION: &str = "VK_LAYER_KHRONOS_validation";

static ERRORS: AtomicUsize = AtomicUsize::new(0);
/// The first messages only: they are for a failure's report, and a broken
/// run can produce thousands.
static MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());
const KEPT_MESSAGES: usize = 50;

/// A messenger for errors and warnings of every type, calling `callback`
/// (normally [`on_message`]).
pub fn messenger_info<'a>(
    callback: vk::PFN_vkDebugUtilsMessengerCallbackEXT,
) -> vk::DebugUtilsMessengerCreateInfoEXT<'a> {
    vk::DebugUtilsMessengerCreateInfoEXT::default()
        .message_severity(
            vk::DebugUtilsMessageSeverityFlagsEXT::ERROR
                | vk::DebugUtilsMessageSeverityFlagsEXT::WARNING,
        )
        .message_type(
            vk::DebugUtilsMessageTypeFlagsEXT::GENERAL
                | vk::DebugUtilsMessageTypeFlagsEXT::VALIDATION
                | vk::DebugUtilsMessageTypeFlagsEXT::PERFORMANCE,
        )
        .pfn_user_callback(callback)
}

/// The text of a message.
///
/// # Safety
///
/// `data` is the callback data the messenger was called with, during the
/// call.
pub unsafe fn message_text(data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>) -> String {
    // SAFETY: the caller's promise: valid for the duration of the call.
    unsafe { data.as_ref().and_then(|d| d.message_as_c_str()) }
        .map(|m| m.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Counts errors and keeps the first messages, for [`validation_errors`].
///
/// # Safety
///
/// Called by the messenger, with its arguments.
pub unsafe extern "system" fn on_message(
    severity: vk::DebugUtilsMessageSeverityFlagsEXT,
    _types: vk::DebugUtilsMessageTypeFlagsEXT,
    data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    _user: *mut c_void,
) -> vk::Bool32 {
    // SAFETY: the messenger's callback data, during its call.
    let text = unsafe { message_text(data) };
    if severity.contains(vk::DebugUtilsMessageSeverityFlagsEXT::ERROR) {
        ERRORS.fetch_add(1, Ordering::Relaxed);
    }
    if let Ok(mut m) = MESSAGES.lock() {
        if m.len() < KEPT_MESSAGES {
            m.push(format!("{severity:?}: {text}"));
        }
    }
    vk::FALSE
}

/// Errors the messenger has seen so far, and the messages kept.
pub fn validation_errors() -> (usize, Vec<String>) {
    let messages = MESSAGES.lock().map(|m| m.clone()).unwrap_or_default();
    (ERRORS.load(Ordering::Relaxed), messages)
}

/// Makes a mistake the validation layer must report (a semaphore left
/// alive when `device` is destroyed): a count of no errors means something
/// only once its messages are shown to reach the messenger in this very
/// setup.
pub fn leak_a_semaphore(device: &ash::Device) -> Result<(), vk::Result> {
    // SAFETY: a live device; the semaphore is left for its destruction to
    // find.
    unsafe { device.create_semaphore(&vk::SemaphoreCreateInfo::default(), None) }?;
    Ok(())
}

/// Fails unless the validation layer reported the leaked semaphore
/// (`errors`, counted after the mistake) in the child that printed `result`.
pub fn check_canary(errors: &Value, result: &Value) -> Result<(), Failed> {
    check(errors.as_u64() > Some(0), || {
        format!("validation reported nothing for a leaked semaphore: the messenger does not hear it: {result}")
    })
}

/// Enables `env_layers` and `app_layers` for `c`, this layer from the
/// explicit manifest in `explicit`, with the loader logging the instance
/// chain it builds.
pub fn stack<'c>(
    c: &'c mut Command,
    explicit: PathBuf,
    env_layers: &str,
    app_layers: &str,
) -> &'c mut Command {
    c.env("VK_ADD_LAYER_PATH", explicit)
        .env("VK_INSTANCE_LAYERS", env_layers)
        .env(APP_LAYERS, app_layers)
        .env("VK_LOADER_DEBUG", "layer")
}

/// Runs `run` with each way of enabling both layers explicitly, as
/// (`VK_INSTANCE_LAYERS`, the application's own list; see [`stack`]), until
/// the loader's log in the output's stderr shows this layer below (nearer
/// the driver than) the validation layer, or above it: loaders differ in
/// which end of a list goes on top, so the order is read, not assumed.
pub fn in_order<T>(
    below: bool,
    mut run: impl FnMut(&str, &str) -> Result<(Output, T), Failed>,
) -> Result<(Output, T), Failed> {
    let ways = [
        (format!("{VALIDATION}:{LAYER_NAME}"), ""),
        (format!("{LAYER_NAME}:{VALIDATION}"), ""),
        (VALIDATION.to_owned(), LAYER_NAME),
        (LAYER_NAME.to_owned(), VALIDATION),
    ];
    for (env_layers, app_layers) in ways {
        let (out, more) = run(&env_layers, app_layers)?;
        if layer_is_below_validation(&out)? == below {
            return Ok((out, more));
        }
    }
    Err("no way of enabling the two layers gave the wanted order".into())
}

/// Whether the loader's log in `out`'s stderr shows this layer below the
/// validation layer.
fn layer_is_below_validation(out: &Output) -> Result<bool, Failed> {
    let log = String::from_utf8_lossy(&out.stderr);
    let names: Vec<&str> = log
        .split("<Application>")
        .nth(1)
        .and_then(|after| after.split("<Drivers>").next())
        .map(|chain| {
            chain
                .lines()
                .filter_map(|l| l.split_once("LAYER:")?.1.split_whitespace().next())
                .filter(|n| *n == LAYER_NAME || *n == VALIDATION)
                .collect()
        })
        .unwrap_or_default();
    match names[..] {
        [first, _] => Ok(first == VALIDATION),
        _ => Err("the loader's log shows no instance chain with both layers".into()),
    }
}
