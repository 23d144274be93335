//! Why a swapchain could not be made, and the `VkResult` each reason
//! becomes.

use ash::vk;

use crate::plumbing::dispatch::Full;
use crate::wsi::platform::PlatformError;

#[derive(Debug, thiserror::Error)]
pub enum SwapchainError {
    #[error("the surface does not offer format {0:?} in colour space {1:?}")]
    Format(vk::Format, vk::ColorSpaceKHR),
    #[error("no DRM format modifier of {0:?} can make exportable images with this usage, size and flags")]
    NoModifier(vk::Format),
    #[error("{0}")]
    Unsupported(String),
    #[error("no memory type takes the image")]
    NoMemoryType,
    #[error("{0} failed: {1}")]
    Vulkan(&'static str, vk::Result),
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("the kernel refused the image's dma-buf: {0}")]
    Kernel(#[from] syncfile::Error),
    #[error(transparent)]
    TooMany(#[from] Full),
    #[error("cannot start the present thread: {0}")]
    Thread(std::io::Error),
}

impl SwapchainError {
    /// The result `vkCreateSwapchainKHR` returns for this error.
    pub fn result(&self) -> vk::Result {
        match self {
            SwapchainError::Format(..) | SwapchainError::NoModifier(_) => {
                vk::Result::ERROR_FORMAT_NOT_SUPPORTED
            }
            SwapchainError::NoMemoryType => vk::Result::ERROR_OUT_OF_DEVICE_MEMORY,
            SwapchainError::TooMany(_) | SwapchainError::Thread(_) => {
                vk::Result::ERROR_OUT_OF_HOST_MEMORY
            }
            SwapchainError::Vulkan(
                _,
                r @ (vk::Result::ERROR_OUT_OF_HOST_MEMORY
                | vk::Result::ERROR_OUT_OF_DEVICE_MEMORY
                | vk::Result::ERROR_DEVICE_LOST),
            ) => *r,
            SwapchainError::Platform(p) => p.result(),
            SwapchainError::Unsupported(_)
            | SwapchainError::Vulkan(..)
            | SwapchainError::Kernel(_) => vk::Result::ERROR_INITIALIZATION_FAILED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_window_system_loses_the_surface_other_failures_do_not() {
        let lost = SwapchainError::Platform(PlatformError::Lost("Broken pipe".into()));
        assert_eq!(lost.result(), vk::Result::ERROR_SURFACE_LOST_KHR);
        let refused = SwapchainError::Platform(PlatformError::Refused("no such format".into()));
        assert_eq!(refused.result(), vk::Result::ERROR_INITIALIZATION_FAILED);
        let oom =
            SwapchainError::Vulkan("vkAllocateMemory", vk::Result::ERROR_OUT_OF_DEVICE_MEMORY);
        assert_eq!(oom.result(), vk::Result::ERROR_OUT_OF_DEVICE_MEMORY);
    }
}
