//! What applications attach to objects: debug-utils and debug-marker names
//! and tags, and private data. For the layer's own objects the layer keeps
//! them (`vulkan::objects`); everything else goes down.

use std::ffi::{c_void, CStr};

use ash::vk;

use super::{device_of, Scope};
use crate::vulkan::device::DeviceState;
use crate::vulkan::objects;

pub(super) fn lookup(name: &[u8]) -> Option<(Scope, *const c_void)> {
    let f = match name {
        b"vkSetDebugUtilsObjectNameEXT" => set_debug_utils_object_name as *const c_void,
        b"vkSetDebugUtilsObjectTagEXT" => set_debug_utils_object_tag as *const c_void,
        b"vkDebugMarkerSetObjectNameEXT" => debug_marker_set_object_name as *const c_void,
        b"vkDebugMarkerSetObjectTagEXT" => debug_marker_set_object_tag as *const c_void,
        b"vkSetPrivateData" => set_private_data as *const c_void,
        b"vkSetPrivateDataEXT" => set_private_data_ext as *const c_void,
        b"vkGetPrivateData" => get_private_data as *const c_void,
        b"vkGetPrivateDataEXT" => get_private_data_ext as *const c_void,
        b"vkDestroyPrivateDataSlot" => destroy_private_data_slot as *const c_void,
        b"vkDestroyPrivateDataSlotEXT" => destroy_private_data_slot_ext as *const c_void,
        _ => return None,
    };
    Some((Scope::Owned, f))
}

/// Whether `kind` is a type of object the layer makes (checked first, so
/// naming the application's own objects takes no lock).
fn made_by_layers(kind: vk::ObjectType) -> bool {
    matches!(
        kind,
        vk::ObjectType::SWAPCHAIN_KHR
            | vk::ObjectType::DISPLAY_KHR
            | vk::ObjectType::DISPLAY_MODE_KHR
    )
}

fn ours(kind: vk::ObjectType, handle: u64) -> bool {
    made_by_layers(kind) && objects::is_ours(kind, handle)
}

/// A name as the layer keeps it: none for null or empty, as the spec says.
///
/// # Safety
/// `name` is null or NUL-terminated.
unsafe fn name_of(name: *const std::ffi::c_char) -> Option<String> {
    if name.is_null() {
        return None;
    }
    // SAFETY: as the caller promises.
    let s = unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned();
    (!s.is_empty()).then_some(s)
}

/// `vkSetPrivateData` through `next` (the core command or its EXT alias).
///
/// # Safety
/// The application's arguments.
unsafe fn set_private(
    device: vk::Device,
    kind: vk::ObjectType,
    handle: u64,
    slot: vk::PrivateDataSlot,
    data: u64,
    next: impl FnOnce(&DeviceState) -> vk::PFN_vkSetPrivateData,
) -> vk::Result {
    if ours(kind, handle) {
        objects::set_private(kind, handle, slot, data);
        return vk::Result::SUCCESS;
    }
    // SAFETY: the application's device, alive for the command.
    match unsafe { device_of("vkSetPrivateData", device) } {
        // SAFETY: the application's arguments, for the next entity.
        Some(d) => unsafe { next(d)(device, kind, handle, slot, data) },
        None => vk::Result::ERROR_OUT_OF_HOST_MEMORY,
    }
}

/// `vkGetPrivateData` through `next`.
///
/// # Safety
/// The application's arguments.
unsafe fn get_private(
    device: vk::Device,
    kind: vk::ObjectType,
    handle: u64,
    slot: vk::PrivateDataSlot,
    p_data: *mut u64,
    next: impl FnOnce(&DeviceState) -> vk::PFN_vkGetPrivateData,
) {
    if let Some(data) = made_by_layers(kind)
        .then(|| objects::private(kind, handle, slot))
        .flatten()
    {
        // SAFETY: the application passes a valid output pointer.
        unsafe { *p_data = data };
        return;
    }
    // SAFETY: the application's device, alive for the command.
    if let Some(d) = unsafe { device_of("vkGetPrivateData", device) } {
        // SAFETY: the application's arguments, for the next entity.
        unsafe { next(d)(device, kind, handle, slot, p_data) }
    }
}

/// `vkDestroyPrivateDataSlot` through `next`: what the slot held on the
/// layer's objects goes too.
///
/// # Safety
/// The application's arguments.
unsafe fn destroy_slot(
    device: vk::Device,
    slot: vk::PrivateDataSlot,
    p_allocator: *const vk::AllocationCallbacks<'_>,
    next: impl FnOnce(&DeviceState) -> vk::PFN_vkDestroyPrivateDataSlot,
) {
    objects::forget_slot(slot);
    // SAFETY: the application's device, alive for the command.
    if let Some(d) = unsafe { device_of("vkDestroyPrivateDataSlot", device) } {
        // SAFETY: the application's arguments, for the next entity.
        unsafe { next(d)(device, slot, p_allocator) }
    }
}

entry! {
    fn set_debug_utils_object_name(
        device: vk::Device,
        p_info: *const vk::DebugUtilsObjectNameInfoEXT<'_>,
    ) -> vk::Result, "vkSetDebugUtilsObjectNameEXT", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application passes a valid name info.
        let info = unsafe { &*p_info };
        if ours(info.object_type, info.object_handle) {
            // SAFETY: the name is null or NUL-terminated.
            let name = unsafe { name_of(info.p_object_name) };
            objects::set_name(info.object_type, info.object_handle, name);
            return vk::Result::SUCCESS;
        }
        // SAFETY: the application's device and arguments, for the next entity.
        match unsafe { device_of("vkSetDebugUtilsObjectNameEXT", device) } {
            // SAFETY: as above.
            Some(d) => unsafe { (d.debug_utils.set_debug_utils_object_name_ext)(device, p_info) },
            None => vk::Result::ERROR_OUT_OF_HOST_MEMORY,
        }
    }

    /// Tags are data for tools below the layer; the layer's own objects
    /// have none to give them.
    fn set_debug_utils_object_tag(
        device: vk::Device,
        p_info: *const vk::DebugUtilsObjectTagInfoEXT<'_>,
    ) -> vk::Result, "vkSetDebugUtilsObjectTagEXT", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application passes a valid tag info.
        let info = unsafe { &*p_info };
        if ours(info.object_type, info.object_handle) {
            return vk::Result::SUCCESS;
        }
        // SAFETY: the application's device and arguments, for the next entity.
        match unsafe { device_of("vkSetDebugUtilsObjectTagEXT", device) } {
            // SAFETY: as above.
            Some(d) => unsafe { (d.debug_utils.set_debug_utils_object_tag_ext)(device, p_info) },
            None => vk::Result::ERROR_OUT_OF_HOST_MEMORY,
        }
    }

    fn debug_marker_set_object_name(
        device: vk::Device,
        p_info: *const vk::DebugMarkerObjectNameInfoEXT<'_>,
    ) -> vk::Result, "vkDebugMarkerSetObjectNameEXT", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application passes a valid name info.
        let info = unsafe { &*p_info };
        if let Some(kind) = objects::from_debug_report_type(info.object_type) {
            if objects::is_ours(kind, info.object) {
                // SAFETY: the name is null or NUL-terminated.
                objects::set_name(kind, info.object, unsafe { name_of(info.p_object_name) });
                return vk::Result::SUCCESS;
            }
        }
        // SAFETY: the application's device and arguments, for the next entity.
        match unsafe { device_of("vkDebugMarkerSetObjectNameEXT", device) } {
            Some(d) => unsafe { (d.debug_marker.debug_marker_set_object_name_ext)(device, p_info) },
            None => vk::Result::ERROR_OUT_OF_HOST_MEMORY,
        }
    }

    fn debug_marker_set_object_tag(
        device: vk::Device,
        p_info: *const vk::DebugMarkerObjectTagInfoEXT<'_>,
    ) -> vk::Result, "vkDebugMarkerSetObjectTagEXT", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application passes a valid tag info.
        let info = unsafe { &*p_info };
        if objects::from_debug_report_type(info.object_type)
            .is_some_and(|kind| objects::is_ours(kind, info.object))
        {
            return vk::Result::SUCCESS;
        }
        // SAFETY: the application's device and arguments, for the next entity.
        match unsafe { device_of("vkDebugMarkerSetObjectTagEXT", device) } {
            Some(d) => unsafe { (d.debug_marker.debug_marker_set_object_tag_ext)(device, p_info) },
            None => vk::Result::ERROR_OUT_OF_HOST_MEMORY,
        }
    }

    fn set_private_data(
        device: vk::Device,
        kind: vk::ObjectType,
        handle: u64,
        slot: vk::PrivateDataSlot,
        data: u64,
    ) -> vk::Result, "vkSetPrivateData", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe { set_private(device, kind, handle, slot, data, |d| d.fns.fp_v1_3().set_private_data) }
    }

    fn set_private_data_ext(
        device: vk::Device,
        kind: vk::ObjectType,
        handle: u64,
        slot: vk::PrivateDataSlot,
        data: u64,
    ) -> vk::Result, "vkSetPrivateDataEXT", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application's arguments.
        unsafe { set_private(device, kind, handle, slot, data, |d| d.aliases.private_data.set_private_data_ext) }
    }

    fn get_private_data(
        device: vk::Device,
        kind: vk::ObjectType,
        handle: u64,
        slot: vk::PrivateDataSlot,
        p_data: *mut u64,
    ), "vkGetPrivateData", on panic (), {
        // SAFETY: the application's arguments.
        unsafe { get_private(device, kind, handle, slot, p_data, |d| d.fns.fp_v1_3().get_private_data) }
    }

    fn get_private_data_ext(
        device: vk::Device,
        kind: vk::ObjectType,
        handle: u64,
        slot: vk::PrivateDataSlot,
        p_data: *mut u64,
    ), "vkGetPrivateDataEXT", on panic (), {
        // SAFETY: the application's arguments.
        unsafe { get_private(device, kind, handle, slot, p_data, |d| d.aliases.private_data.get_private_data_ext) }
    }

    fn destroy_private_data_slot(
        device: vk::Device,
        slot: vk::PrivateDataSlot,
        p_allocator: *const vk::AllocationCallbacks<'_>,
    ), "vkDestroyPrivateDataSlot", on panic (), {
        // SAFETY: the application's arguments.
        unsafe { destroy_slot(device, slot, p_allocator, |d| d.fns.fp_v1_3().destroy_private_data_slot) }
    }

    fn destroy_private_data_slot_ext(
        device: vk::Device,
        slot: vk::PrivateDataSlot,
        p_allocator: *const vk::AllocationCallbacks<'_>,
    ), "vkDestroyPrivateDataSlotEXT", on panic (), {
        // SAFETY: the application's arguments.
        unsafe { destroy_slot(device, slot, p_allocator, |d| d.aliases.private_data.destroy_private_data_slot_ext) }
    }
}
