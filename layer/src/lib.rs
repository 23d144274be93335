//! The syncfile-wsi Vulkan layer.
//!
//! An implicit layer that owns the swapchains of the surfaces it supports
//! and carries their synchronization through dma-buf sync_files; see
//! `DESIGN.md` and the README's layout section. Modules, each using only
//! those listed before it:
//!
//! * `plumbing`: the loader's interface, dispatch, the panic guard,
//!   settings, statistics, the log and the manifest;
//! * `vulkan`: instances, devices, extensions, capabilities, the registry
//!   table of commands that carry the layer's handles, `pNext` chains and
//!   the layer's own objects;
//! * `wsi`: surfaces and their queries, the platform-independent
//!   swapchain, the sync bridge and the platform interface;
//! * `platform`: one module per window system;
//! * `entry`: every command the layer intercepts;
//! * `doctor`: the settings, probes and rules `syncfile-wsi doctor`
//!   reports, used by nothing in the layer.
//!
//! The library exports only the loader interface (`entry`); the rest is
//! reached through the function pointers it hands out. The sync bridge and
//! the Wayland platform are public for their tests.

// Layer libraries are named VkLayer_*, by the loader's convention.
#![allow(non_snake_case)]

#[doc(hidden)]
pub mod doctor;
#[macro_use]
mod entry;
mod platform;
mod plumbing;
#[cfg(test)]
mod properties;
mod vulkan;
mod wsi;

pub use plumbing::manifest;
pub use wsi::bridge;
// The Wayland platform, public for its guest tests (tests/wayland), which
// drive its protocol side against a real compositor.
#[doc(hidden)]
pub use platform::wayland;
