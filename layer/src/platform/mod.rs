//! The platforms: one module per window system behind the platform
//! interface (`crate::wsi::platform`). A platform makes no Vulkan call and
//! has no sync code of its own: it talks to its consumer, and reaches the
//! dma-bufs' fences only through the sync bridge.

pub mod display;
mod dumb;
pub mod headless;
pub mod wayland;
mod worker;
pub mod x11;
