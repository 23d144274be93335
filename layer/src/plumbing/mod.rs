//! The layer's plumbing, which knows nothing of Vulkan objects or window
//! systems: the loader's interface structures, the lock-free map from a
//! dispatch key to its state, the panic guard, settings, statistics, the
//! log and the manifest's contents.

pub mod dispatch;
pub mod guard;
pub mod histogram;
pub mod loader;
pub mod log;
pub mod manifest;
pub mod settings;
pub mod stats;
