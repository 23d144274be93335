//! Vulkan objects: instances and devices made through the loader's chain,
//! the application's host allocation callbacks,
//! the extensions the layer adds, needs and refuses, what a physical
//! device's swapchains can be made of, the registry's list of commands that
//! carry the layer's handles, and `pNext` chains.

pub mod caps;
pub mod chain;
pub mod device;
pub mod extensions;
pub mod host;
pub mod instance;
pub mod newer;
pub mod objects;
pub mod provided;
pub mod queues;
pub mod registry;
pub mod support;

use std::ffi::{c_void, CStr};

use ash::vk;

/// The next entity's commands for one instance or device, looked up by
/// name, in the shape ash's function-table loaders take.
pub struct Next<'a>(pub &'a dyn Fn(&CStr) -> vk::PFN_vkVoidFunction);

impl Next<'_> {
    /// The command `name`, or null.
    pub fn ptr(&self, name: &CStr) -> *const c_void {
        (self.0)(name).map_or(std::ptr::null(), |f| f as *const c_void)
    }

    /// Loads the commands `names` of a table with ash's `load`, if every
    /// one is there. The table's other commands are not even looked up
    /// (some layers crash when asked for a global command they do not
    /// expect): ash makes them stubs that panic, so only `names` may be
    /// called.
    pub fn table<T>(
        &self,
        names: &[&CStr],
        load: impl FnOnce(&mut dyn FnMut(&CStr) -> *const c_void) -> T,
    ) -> Option<T> {
        if names.iter().any(|n| self.ptr(n).is_null()) {
            return None;
        }
        Some(load(&mut |name| {
            if names.contains(&name) {
                self.ptr(name)
            } else {
                std::ptr::null()
            }
        }))
    }
}

/// A Vulkan input array: `count` items at `ptr`, which may be null when
/// there are none.
///
/// # Safety
/// `ptr` points to `count` valid items that outlive `'a`, or `count` is 0.
pub unsafe fn array<'a, T>(ptr: *const T, count: u32) -> &'a [T] {
    if count == 0 || ptr.is_null() {
        &[]
    } else {
        // SAFETY: as the caller promises.
        unsafe { std::slice::from_raw_parts(ptr, count as usize) }
    }
}

/// Fills an array the Vulkan way: with a null pointer, the count; else as
/// many as fit, and `VK_INCOMPLETE` if not all did.
///
/// # Safety
/// `p_count` is valid; `p_out` is null or has room for `*p_count` items.
pub unsafe fn fill<T: Copy>(items: &[T], p_count: *mut u32, p_out: *mut T) -> vk::Result {
    // SAFETY: the caller passes a valid count pointer.
    let count = unsafe { &mut *p_count };
    if p_out.is_null() {
        *count = items.len() as u32;
        return vk::Result::SUCCESS;
    }
    let n = (*count as usize).min(items.len());
    // SAFETY: the caller's array has room for `*count` items, n of them used.
    unsafe { std::ptr::copy_nonoverlapping(items.as_ptr(), p_out, n) };
    *count = n as u32;
    if n < items.len() {
        vk::Result::INCOMPLETE
    } else {
        vk::Result::SUCCESS
    }
}

/// Fills an array of output structures the Vulkan way, `len` of them, by
/// writing into each in place (so that its `sType` and `pNext` stay the
/// application's): with a null pointer, the count; else as many as fit,
/// and `VK_INCOMPLETE` if not all did.
///
/// # Safety
/// `p_count` is valid; `p_out` is null or has room for `*p_count` items.
pub unsafe fn fill_in_place<T>(
    len: usize,
    p_count: *mut u32,
    p_out: *mut T,
    mut write: impl FnMut(usize, &mut T),
) -> vk::Result {
    // SAFETY: the caller passes a valid count pointer.
    let count = unsafe { &mut *p_count };
    if p_out.is_null() {
        *count = len as u32;
        return vk::Result::SUCCESS;
    }
    let n = (*count as usize).min(len);
    for i in 0..n {
        // SAFETY: the caller's array has room for `*count` items.
        write(i, unsafe { &mut *p_out.add(i) });
    }
    *count = n as u32;
    if n < len {
        vk::Result::INCOMPLETE
    } else {
        vk::Result::SUCCESS
    }
}
