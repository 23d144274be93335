//! The application's host allocation callbacks (`pAllocator`), kept with the
//! objects they were given for: the driver objects a swapchain is made of
//! (its images, their memory, semaphores and fences) are made and freed
//! with the callbacks given to `vkCreateSwapchainKHR`, as a driver's own
//! swapchain would make its images, whichever thread frees them later. The
//! layer's own bookkeeping stays on Rust's allocator: it is not host memory
//! of any Vulkan object the application can name.

use ash::vk;

/// A copy of the application's callbacks, or none (the driver's own
/// allocator).
#[derive(Clone, Copy, Default)]
pub struct HostAllocator(Option<vk::AllocationCallbacks<'static>>);

// SAFETY: Vulkan's callbacks may be called from any thread the
// implementation uses (the spec's "Memory Allocation": they must be
// thread-safe as the application's use of the API is), and `pUserData` is
// the application's to keep valid for as long as the objects live.
unsafe impl Send for HostAllocator {}
// SAFETY: as above; the copy itself is never written.
unsafe impl Sync for HostAllocator {}

impl HostAllocator {
    /// # Safety
    /// `callbacks` is null or valid callbacks, which (with their user
    /// data) stay usable as long as objects made with them live, as the
    /// spec asks of the application.
    pub unsafe fn from_raw(callbacks: *const vk::AllocationCallbacks<'_>) -> Self {
        // SAFETY: null or valid, as the caller promises.
        let Some(c) = (unsafe { callbacks.as_ref() }) else {
            return HostAllocator(None);
        };
        HostAllocator(Some(vk::AllocationCallbacks {
            p_user_data: c.p_user_data,
            pfn_allocation: c.pfn_allocation,
            pfn_reallocation: c.pfn_reallocation,
            pfn_free: c.pfn_free,
            pfn_internal_allocation: c.pfn_internal_allocation,
            pfn_internal_free: c.pfn_internal_free,
            _marker: std::marker::PhantomData,
        }))
    }

    /// What the driver's create and destroy commands take.
    pub fn get(&self) -> Option<&vk::AllocationCallbacks<'static>> {
        self.0.as_ref()
    }
}
