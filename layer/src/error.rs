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
