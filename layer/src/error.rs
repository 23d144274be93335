//! The layer's errors, and the `VkResult` each one becomes at the API
//! boundary.

use ash::vk;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the loader passed no layer link in the create info (not loaded by a Vulkan loader?)")]
    NoLoaderLink,
    #[error("the next layer or driver returned no {0}")]
    MissingCommand(&'static str),
    #[error("the {0} is not one this layer has seen created")]
    UnknownHandle(&'static str),
    #[error(transparent)]
    TooMany(#[from] crate::dispatch::Full),
    #[error("{0} failed: {1}")]
    Vulkan(&'static str, vk::Result),
}

impl Error {
    /// The result a command returns for this error; each is legal for every
    /// creation command the layer intercepts.
    pub fn result(&self) -> vk::Result {
        match self {
            Error::NoLoaderLink | Error::MissingCommand(_) | Error::UnknownHandle(_) => {
                vk::Result::ERROR_INITIALIZATION_FAILED
            }
            Error::TooMany(_) => vk::Result::ERROR_OUT_OF_HOST_MEMORY,
            Error::Vulkan(_, r) => *r,
        }
    }
}

/// Why a swapchain could not be made.
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
    Backend(#[from] crate::backend::BackendError),
    #[error("the kernel refused the image's dma-buf: {0}")]
    Kernel(#[from] syncfile::Error),
    #[error(transparent)]
    TooMany(#[from] crate::dispatch::Full),
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
            SwapchainError::Backend(crate::backend::BackendError::Wayland(
                crate::backend::wayland::WaylandError::Lost(_),
            )) => vk::Result::ERROR_SURFACE_LOST_KHR,
            SwapchainError::Unsupported(_)
            | SwapchainError::Vulkan(..)
            | SwapchainError::Backend(_)
            | SwapchainError::Kernel(_) => vk::Result::ERROR_INITIALIZATION_FAILED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::wayland::WaylandError;
    use crate::backend::BackendError;

    #[test]
    fn a_lost_compositor_loses_the_surface_other_backend_errors_do_not() {
        let lost = SwapchainError::Backend(BackendError::Wayland(WaylandError::Lost(
            "Broken pipe".into(),
        )));
        assert_eq!(lost.result(), vk::Result::ERROR_SURFACE_LOST_KHR);
        let refused = SwapchainError::Backend(BackendError::Wayland(WaylandError::Format(0, 0, 0)));
        assert_eq!(refused.result(), vk::Result::ERROR_INITIALIZATION_FAILED);
        let slow = SwapchainError::Backend(BackendError::Wayland(WaylandError::Timeout(
            std::time::Duration::from_secs(10),
        )));
        assert_eq!(slow.result(), vk::Result::ERROR_INITIALIZATION_FAILED);
    }
}
