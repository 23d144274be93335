//! What applications attach to the layer's own objects (swapchains now;
//! displays and modes with the display platform): debug names and private
//! data. The driver never sees these handles, so the layer keeps both
//! itself, answers for them, and names its swapchains by their debug names
//! in its own log lines.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard};

use ash::vk;

#[derive(Default)]
struct ObjectData {
    name: Option<String>,
    /// Private data by slot.
    private: Vec<(vk::PrivateDataSlot, u64)>,
}

/// The layer's live objects by (type, handle).
static OBJECTS: LazyLock<Mutex<HashMap<(vk::ObjectType, u64), ObjectData>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn lock() -> MutexGuard<'static, HashMap<(vk::ObjectType, u64), ObjectData>> {
    OBJECTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records a new object of the layer's.
pub fn register(kind: vk::ObjectType, handle: u64) {
    lock().insert((kind, handle), ObjectData::default());
}

/// Records an object of the layer's that lives as long as the process (a
/// display, a mode), keeping what was attached to it already.
pub fn register_once(kind: vk::ObjectType, handle: u64) {
    lock().entry((kind, handle)).or_default();
}

/// Forgets an object being destroyed, with its name and private data.
pub fn forget(kind: vk::ObjectType, handle: u64) {
    lock().remove(&(kind, handle));
}

/// Whether `handle` of `kind` is one of the layer's own objects.
pub fn is_ours(kind: vk::ObjectType, handle: u64) -> bool {
    handle != 0 && lock().contains_key(&(kind, handle))
}

/// Names one of the layer's objects; false if it is not one.
pub fn set_name(kind: vk::ObjectType, handle: u64, name: Option<String>) -> bool {
    match lock().get_mut(&(kind, handle)) {
        Some(o) => {
            o.name = name;
            true
        }
        None => false,
    }
}

/// The debug name the application gave one of the layer's objects.
pub fn name(kind: vk::ObjectType, handle: u64) -> Option<String> {
    lock().get(&(kind, handle)).and_then(|o| o.name.clone())
}

/// How the layer's log lines name an object: by its debug name, if it has
/// one, else by its handle.
pub fn describe(kind: vk::ObjectType, handle: u64) -> String {
    match name(kind, handle) {
        Some(n) => format!("'{n}' ({handle:#x})"),
        None => format!("{handle:#x}"),
    }
}

/// Sets private data on one of the layer's objects; false if it is not one.
pub fn set_private(
    kind: vk::ObjectType,
    handle: u64,
    slot: vk::PrivateDataSlot,
    data: u64,
) -> bool {
    match lock().get_mut(&(kind, handle)) {
        Some(o) => {
            match o.private.iter_mut().find(|(s, _)| *s == slot) {
                Some(entry) => entry.1 = data,
                None => o.private.push((slot, data)),
            }
            true
        }
        None => false,
    }
}

/// The private data in `slot` of one of the layer's objects (0 when never
/// set, as the spec says); `None` if it is not one.
pub fn private(kind: vk::ObjectType, handle: u64, slot: vk::PrivateDataSlot) -> Option<u64> {
    lock().get(&(kind, handle)).map(|o| {
        o.private
            .iter()
            .find(|(s, _)| *s == slot)
            .map_or(0, |(_, d)| *d)
    })
}

/// Drops what a destroyed private-data slot held on the layer's objects.
pub fn forget_slot(slot: vk::PrivateDataSlot) {
    for o in lock().values_mut() {
        o.private.retain(|(s, _)| *s != slot);
    }
}

/// The object type `VK_EXT_debug_report` and `VK_EXT_debug_marker` use
/// for a `VkObjectType` of the layer's, if they have one.
pub fn debug_report_type(kind: vk::ObjectType) -> vk::DebugReportObjectTypeEXT {
    match kind {
        vk::ObjectType::SWAPCHAIN_KHR => vk::DebugReportObjectTypeEXT::SWAPCHAIN_KHR,
        vk::ObjectType::DISPLAY_KHR => vk::DebugReportObjectTypeEXT::DISPLAY_KHR,
        vk::ObjectType::DISPLAY_MODE_KHR => vk::DebugReportObjectTypeEXT::DISPLAY_MODE_KHR,
        _ => vk::DebugReportObjectTypeEXT::UNKNOWN,
    }
}

/// The `VkObjectType` of a debug-report object type, for the kinds the
/// layer makes.
pub fn from_debug_report_type(kind: vk::DebugReportObjectTypeEXT) -> Option<vk::ObjectType> {
    [
        vk::ObjectType::SWAPCHAIN_KHR,
        vk::ObjectType::DISPLAY_KHR,
        vk::ObjectType::DISPLAY_MODE_KHR,
    ]
    .into_iter()
    .find(|&k| debug_report_type(k) == kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ash::vk::Handle;

    #[test]
    fn names_and_private_data_live_and_die_with_the_object() {
        let (kind, h) = (vk::ObjectType::SWAPCHAIN_KHR, 0x5a5a_0000u64);
        let slot = vk::PrivateDataSlot::from_raw(7);
        assert!(!is_ours(kind, h));
        assert!(!set_name(kind, h, Some("x".into())));
        register(kind, h);
        assert!(is_ours(kind, h) && !is_ours(vk::ObjectType::IMAGE, h));
        assert_eq!(private(kind, h, slot), Some(0), "never set reads 0");
        assert!(set_name(kind, h, Some("chain".into())) && set_private(kind, h, slot, 42));
        assert_eq!(describe(kind, h), "'chain' (0x5a5a0000)");
        assert_eq!(private(kind, h, slot), Some(42));
        forget_slot(slot);
        assert_eq!(private(kind, h, slot), Some(0));
        forget(kind, h);
        assert_eq!((name(kind, h), private(kind, h, slot)), (None, None));
    }

    #[test]
    fn debug_report_types_round_trip() {
        for k in [vk::ObjectType::SWAPCHAIN_KHR, vk::ObjectType::DISPLAY_KHR] {
            assert_eq!(from_debug_report_type(debug_report_type(k)), Some(k));
        }
        assert_eq!(
            from_debug_report_type(vk::DebugReportObjectTypeEXT::IMAGE),
            None
        );
    }
}
