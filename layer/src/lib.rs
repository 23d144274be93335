//! The syncfile-wsi Vulkan layer.
//!
//! An implicit layer that will own the swapchains of the surfaces it
//! supports and carry their synchronization through dma-buf sync_files; see
//! `DESIGN.md`. The library exports only the loader interface (`entry`);
//! the rest is reached through the function pointers it hands out.

// Layer libraries are named VkLayer_*, by the loader's convention.
#![allow(non_snake_case)]

mod device;
mod dispatch;
mod entry;
mod error;
mod instance;
mod loader;
mod log;
pub mod manifest;
mod settings;
mod stats;
