//! The syncfile-wsi Vulkan layer.
//!
//! An implicit layer that owns the swapchains of the surfaces it supports
//! and carries their synchronization through dma-buf sync_files; see
//! `DESIGN.md`. The library exports only the loader interface (`entry`);
//! the rest is reached through the function pointers it hands out. The
//! sync bridge is public for its tests.

// Layer libraries are named VkLayer_*, by the loader's convention.
#![allow(non_snake_case)]

mod backend;
pub mod bridge;
mod capture;
mod device;
mod dispatch;
mod entry;
mod error;
mod extensions;
mod formats;
mod instance;
mod loader;
mod log;
pub mod manifest;
mod present;
mod settings;
mod stats;
mod surface;
mod swapchain;
// The Wayland backend, public for its guest tests (tests/wayland), which
// drive its protocol side against a real compositor.
#[doc(hidden)]
pub use backend::wayland;
