//! The WSI core: the surfaces the layer owns and the answers to their
//! queries ([`surface`]), the platform-independent swapchain
//! ([`swapchain`]), the sync bridge, the only code that touches SYNC_FD
//! or the dma-buf sync ioctls ([`bridge`]), frame capture ([`capture`]),
//! and the interface every platform implements ([`platform`]).

pub mod bridge;
pub mod capture;
pub mod platform;
pub mod surface;
pub mod swapchain;
