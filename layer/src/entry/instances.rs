//! Instance-level commands: creating and destroying instances, the device
//! extensions the layer refuses hidden from the list, and the debug
//! messages applications inject, which may name the layer's objects.

use std::ffi::{c_char, c_void};

use ash::vk;

use super::Scope;
use crate::plumbing::guard::install_panic_hook;
use crate::plumbing::stats::{self, Counter};
use crate::vulkan::array;
use crate::vulkan::extensions;
use crate::vulkan::instance::{self, CreateError, InstanceState};
use crate::vulkan::objects;
use crate::vulkan::provided;
use crate::wsi::surface;

pub(super) fn lookup(name: &[u8]) -> Option<(Scope, *const c_void)> {
    Some(match name {
        b"vkGetInstanceProcAddr" => (
            Scope::Global,
            super::get_instance_proc_addr as *const c_void,
        ),
        b"vkCreateInstance" => (Scope::Global, create_instance as *const c_void),
        b"vkDestroyInstance" => (Scope::Everyone, destroy_instance as *const c_void),
        b"vkGetDeviceProcAddr" => (
            Scope::Everyone,
            super::get_device_proc_addr as *const c_void,
        ),
        b"vkEnumerateDeviceExtensionProperties" => (
            Scope::Everyone,
            enumerate_device_extensions as *const c_void,
        ),
        b"vkGetPhysicalDeviceFeatures2" => (Scope::Everyone, features2 as *const c_void),
        b"vkGetPhysicalDeviceFeatures2KHR" => (Scope::Everyone, features2_khr as *const c_void),
        b"vkDebugReportMessageEXT" => (Scope::Everyone, debug_report_message as *const c_void),
        b"vkSubmitDebugUtilsMessageEXT" => {
            (Scope::Everyone, submit_debug_utils_message as *const c_void)
        }
        _ => return None,
    })
}

/// `vkGetPhysicalDeviceFeatures2` through `next` (the core command or its
/// KHR alias), with the features of the layer's own extensions answered on
/// the physical devices it serves.
///
/// # Safety
/// The application's arguments.
unsafe fn features(
    pd: vk::PhysicalDevice,
    p_features: *mut vk::PhysicalDeviceFeatures2<'_>,
    next: impl FnOnce(&InstanceState) -> vk::PFN_vkGetPhysicalDeviceFeatures2,
) {
    // SAFETY: the application passes a live physical device.
    let Some(state) = (unsafe { instance::of(pd) }) else {
        tracing::error!("vkGetPhysicalDeviceFeatures2: unknown physical device");
        return;
    };
    // SAFETY: the application's arguments, for the next entity.
    unsafe { next(state)(pd, p_features) };
    if state.serves(pd) {
        // SAFETY: the application's valid output chain.
        unsafe { provided::answer_features((*p_features).p_next) };
    }
}

entry! {
    fn create_instance(
        p_create_info: *const vk::InstanceCreateInfo<'_>,
        p_allocator: *const vk::AllocationCallbacks<'_>,
        p_instance: *mut vk::Instance,
    ) -> vk::Result, "vkCreateInstance", on panic vk::Result::ERROR_INITIALIZATION_FAILED, {
        install_panic_hook();
        // SAFETY: the loader passes valid create-info and handle pointers.
        match unsafe { instance::create(&*p_create_info, p_allocator, p_instance) } {
            Ok(()) => vk::Result::SUCCESS,
            Err(e) => {
                if !matches!(e, CreateError::Vulkan(..)) {
                    tracing::error!("vkCreateInstance: {e}");
                }
                e.result()
            }
        }
    }

    fn destroy_instance(instance: vk::Instance, p_allocator: *const vk::AllocationCallbacks<'_>),
        "vkDestroyInstance", on panic (), {
        if instance == vk::Instance::null() {
            return;
        }
        let left = surface::forget_instance(instance);
        if left > 0 {
            tracing::warn!("vkDestroyInstance: the application left {left} surface(s) alive; forgetting them");
            stats::add(Counter::SurfacesLeaked, left as u64);
        }
        // SAFETY: the application's arguments.
        unsafe { instance::destroy(instance, p_allocator) }
    }

    /// The driver's device extensions on the physical devices whose
    /// swapchains the layer serves: without those the layer refuses, with
    /// those it implements.
    fn enumerate_device_extensions(
        pd: vk::PhysicalDevice,
        p_layer_name: *const c_char,
        p_count: *mut u32,
        p_properties: *mut vk::ExtensionProperties,
    ) -> vk::Result, "vkEnumerateDeviceExtensionProperties", on panic vk::Result::ERROR_OUT_OF_HOST_MEMORY, {
        // SAFETY: the application passes a live physical device.
        let Some(state) = (unsafe { instance::of(pd) }) else {
            return vk::Result::ERROR_INITIALIZATION_FAILED;
        };
        let next = state.fns.fp_v1_0().enumerate_device_extension_properties;
        if !p_layer_name.is_null() || !state.serves(pd) {
            // SAFETY: the application's arguments, for the next entity.
            return unsafe { next(pd, p_layer_name, p_count, p_properties) };
        }
        // SAFETY: a physical device of this instance.
        let all = match unsafe { state.fns.enumerate_device_extension_properties(pd) } {
            Ok(all) => all,
            Err(r) => return r,
        };
        let shown = provided::with_provided(
            all.into_iter()
                .filter(|e| {
                    e.extension_name_as_c_str()
                        .is_ok_and(|n| extensions::refused(n).is_none())
                })
                .collect(),
        );
        // SAFETY: the application's valid count and array.
        unsafe { crate::vulkan::fill(&shown, p_count, p_properties) }
    }

    fn features2(pd: vk::PhysicalDevice, p_features: *mut vk::PhysicalDeviceFeatures2<'_>),
        "vkGetPhysicalDeviceFeatures2", on panic (), {
        // SAFETY: the application's arguments.
        unsafe { features(pd, p_features, |i| i.fns.fp_v1_1().get_physical_device_features2) }
    }

    fn features2_khr(pd: vk::PhysicalDevice, p_features: *mut vk::PhysicalDeviceFeatures2<'_>),
        "vkGetPhysicalDeviceFeatures2KHR", on panic (), {
        // SAFETY: the application's arguments.
        unsafe {
            features(pd, p_features, |i| {
                i.properties2.get_physical_device_features2_khr
            })
        }
    }

    /// A message naming one of the layer's objects goes on without it: the
    /// layers below and the driver do not know the handle.
    fn debug_report_message(
        instance: vk::Instance,
        flags: vk::DebugReportFlagsEXT,
        object_type: vk::DebugReportObjectTypeEXT,
        object: u64,
        location: usize,
        message_code: i32,
        p_layer_prefix: *const c_char,
        p_message: *const c_char,
    ), "vkDebugReportMessageEXT", on panic (), {
        // SAFETY: the application passes a live instance.
        let Some(state) = (unsafe { instance::of(instance) }) else {
            return;
        };
        let ours = objects::from_debug_report_type(object_type)
            .is_some_and(|kind| objects::is_ours(kind, object));
        let (object_type, object) = if ours {
            (vk::DebugReportObjectTypeEXT::UNKNOWN, 0)
        } else {
            (object_type, object)
        };
        // SAFETY: the application's arguments, for the next entity.
        unsafe {
            (state.debug_report.debug_report_message_ext)(
                instance,
                flags,
                object_type,
                object,
                location,
                message_code,
                p_layer_prefix,
                p_message,
            )
        }
    }

    /// Likewise for a debug-utils message's objects.
    fn submit_debug_utils_message(
        instance: vk::Instance,
        severity: vk::DebugUtilsMessageSeverityFlagsEXT,
        types: vk::DebugUtilsMessageTypeFlagsEXT,
        p_data: *const vk::DebugUtilsMessengerCallbackDataEXT<'_>,
    ), "vkSubmitDebugUtilsMessageEXT", on panic (), {
        // SAFETY: the application passes a live instance.
        let Some(state) = (unsafe { instance::of(instance) }) else {
            return;
        };
        let next = state.debug_utils.submit_debug_utils_message_ext;
        // SAFETY: the application passes valid callback data.
        let Some(data) = (unsafe { p_data.as_ref() }) else {
            // SAFETY: the application's arguments, for the next entity.
            return unsafe { next(instance, severity, types, p_data) };
        };
        // SAFETY: the callback data holds this many objects.
        let listed = unsafe { array(data.p_objects, data.object_count) };
        let ours = |o: &vk::DebugUtilsObjectNameInfoEXT<'_>| objects::is_ours(o.object_type, o.object_handle);
        if !listed.iter().any(ours) {
            // SAFETY: as above.
            return unsafe { next(instance, severity, types, p_data) };
        }
        let objects: Vec<vk::DebugUtilsObjectNameInfoEXT<'_>> = listed
            .iter()
            .map(|o| {
                let mut o = *o;
                if ours(&o) {
                    o.object_type = vk::ObjectType::UNKNOWN;
                    o.object_handle = 0;
                }
                o
            })
            .collect();
        let mut copy = *data;
        copy.p_objects = objects.as_ptr();
        // SAFETY: the application's message, with the layer's objects left out.
        unsafe { next(instance, severity, types, &copy) }
    }
}
